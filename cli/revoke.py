"""``meshsync authority revoke``: cut a device off after a seq.

This module parses the arguments and stores the result; who may revoke whom (a
sub-authority only inside its scope, never a revocation that changes nothing) is
:mod:`meshsync.trust.revoke_rules`.
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
from meshsync.cli.credentials import credential_writer

from meshsync.host.files import replace_file
from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, parse_device_id
from meshsync.trust import TrustStore, armor, make_revocation, parse_blob
from meshsync.trust.revoke_rules import (
    MAX_AFTER_SEQ,
    check_given_certificate,
    check_revocable,
)

__all__ = ["MAX_AFTER_SEQ", "revoke"]


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
    given = read_certificates(cert_file)[0] if cert_file is not None else []
    check_given_certificate(own, raw, given, str(cert_file))
    now = _now()
    with credential_writer(path) as writer:
        trust = writer.trust
        if not isinstance(trust, TrustStore):
            raise UsageError(f"{path} is not enrolled (no {ROOT_CERT})")
        for info in given:
            if not info.is_root:
                writer.add(info.der)
        check_revocable(trust, own, raw, after_seq)
        blob = make_revocation(key, chain, raw, after_seq, int(now.timestamp() * 1000))
        if output is not None:
            replace_file(output, armor(blob))
        writer.add(blob)
    data = {
        "device_id": device_id(raw),
        "after_seq": after_seq,
        "issued": now.isoformat(),
        "file": str(output) if output else None,
        "stored": True,
    }
    if after_seq is None and not as_json:
        data["after_seq"] = "none (every change of the device is refused)"
    _show(data, as_json)
