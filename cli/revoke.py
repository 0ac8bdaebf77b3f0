"""``meshsync authority revoke``: cut a device off after a seq.

Checked here, before anything is signed or stored:

* a **sub-authority** may revoke only a device with a certificate inside its own
  scope (verifiers ignore its revocation of any other: see
  :func:`meshsync.trust.grant.revocation_applies`). It must see that certificate:
  in its store (after a sync) or given with ``--cert`` (the device's device.crt);
* a revocation that changes nothing (the device is already revoked at the same
  or a stricter point) is refused; a stricter one is stored.

The root may revoke any device, known here or not.
"""

from __future__ import annotations

from pathlib import Path

import click
from meshsync.cli.authority import (
    ROOT_CERT,
    _load_authority,
    _now,
    _show,
    read_certificates,
)
from meshsync.cli.common import errors_to_exit, home_option, json_option, resolve_home

from meshsync.host.files import replace_file
from meshsync.host.local import open_node
from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, parse_device_id, short_id
from meshsync.trust import NOT_REVOKED, TrustStore, armor, make_revocation, parse_blob
from meshsync.trust.grant import describe_point, stricter
from meshsync.trust.scope import scope_contains

#: Largest seq a revocation can name (msgpack int64).
MAX_AFTER_SEQ = 2**63 - 1


def _outside(scope: str, scopes: list[str]) -> str:
    shown = ", ".join(repr(s) for s in dict.fromkeys(scopes))
    return (f"its certificate scope {shown} is outside this sub-authority's scope {scope!r}: "
            "only the root authority (or the sub-authority of that district) can revoke it")


@click.command("revoke")
@home_option
@click.argument("device")
@click.option("--after-seq", type=click.IntRange(0, MAX_AFTER_SEQ), default=None,
              help="Last seq still accepted [default: refuse every change].")
@click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="The device's certificate (its device.crt), if this home's store does not "
                   "hold it yet (a sub-authority must see it is inside its scope).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the revocation to this file (PEM-armoured).")
@json_option
@errors_to_exit
def revoke(home: Path | None, device: str, after_seq: int | None, cert_file: Path | None,
           output: Path | None, as_json: bool) -> None:
    """Revoke DEVICE (a device id): changes after --after-seq are refused everywhere.

    The revocation is stored in HOME's node store, so it travels with the next
    sync; --output also writes it to a file for a bundle or a USB stick. A
    sub-authority may revoke only devices whose certificate is inside its scope
    (sync first, or give --cert). Refused if the device is already revoked at
    --after-seq or a stricter point.
    """
    path = resolve_home(home)
    key, chain = _load_authority(path)
    own = parse_blob(chain)[0]
    raw = parse_device_id(device)
    short = short_id(raw)
    given = read_certificates(cert_file)[0] if cert_file is not None else []
    if given and given[0].device_key != raw:
        other = device_id(given[0].device_key) if given[0].device_key else given[0].describe()
        raise UsageError(f"{cert_file} is for {other}, not device {device_id(raw)}")
    sub_scope = None if own.is_root else own.scope or ""
    if sub_scope is not None and given and not scope_contains(sub_scope, given[0].scope or ""):
        raise UsageError(f"cannot revoke device {short}: "
                         f"{_outside(sub_scope, [given[0].scope or ''])}")
    now = _now()
    with open_node(path) as node:
        trust = node.trust
        if not isinstance(trust, TrustStore):
            raise UsageError(f"{path} is not enrolled (no {ROOT_CERT})")
        for info in given:
            if not info.is_root:
                node.add_credential(info.der)
        if sub_scope is not None:
            scopes = [r["scope"] for r in trust.device_info(raw) if r["status"] == "verified"]
            if not scopes:
                raise UsageError(
                    f"cannot revoke device {short}: this home holds no certificate of it, so "
                    f"it cannot tell it is inside its scope {sub_scope!r}; sync first or give "
                    "--cert DEVICE.crt")
            if not any(scope_contains(sub_scope, s) for s in scopes):
                raise UsageError(f"cannot revoke device {short}: {_outside(sub_scope, scopes)}")
        current = trust.revocation_for(raw)
        if current is not NOT_REVOKED and stricter(current, after_seq) == current:
            asked = "all changes" if after_seq is None else f"--after-seq {after_seq}"
            raise UsageError(f"device {short} is already {describe_point(current)}: a "
                             f"revocation of {asked} would change nothing; nothing stored")
        blob = make_revocation(key, chain, raw, after_seq, int(now.timestamp() * 1000))
        if output is not None:
            replace_file(output, armor(blob))
        node.add_credential(blob)
    data = {
        "device_id": device_id(raw),
        "after_seq": after_seq,
        "issued": now.isoformat(),
        "file": str(output) if output else None,
        "stored": True,
    }
    _show(data, as_json)
