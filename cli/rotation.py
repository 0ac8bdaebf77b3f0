"""Key rotation (docs/failure-cases.md B14): ``meshsync rekey``, ``meshsync authority rotate``
and the key switch ``meshsync enroll`` makes when it installs the new certificate.

The flow, e.g. when an officer's phone key may have been copied::

    phone$   meshsync rekey --home PHONE            # new key in next.key, next.csr;
                                                    # prints old id, new id, heads
    laptop$  meshsync authority rotate --home PPK OLD_ID PHONE/next.csr \\
                 --after-seq N -o phone-new.crt     # new certificate (same role and
                                                    # scope) + revocation of OLD after N
    phone$   meshsync enroll --home PHONE phone-new.crt   # switches to the new key

Until the new certificate is enrolled the phone signs with its old key, so the
officer is never blocked; every edit made meanwhile raises the old key's seq, and
changes past the rotation point N are refused everywhere, so enrol it right away
(``enroll`` warns about any). What the phone signed with the old key stays in its
store as it was (never re-signed); the old key is kept in ``retired-keys/``.
The library side is :mod:`meshsync.trust.rotation`; what ``rekey`` and ``enroll``
write is :mod:`meshsync.host.enrol` (run by the daemon when one holds the home); the
files are :mod:`meshsync.host.home`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from meshsync.cli.authority import (
    ROOT_CERT,
    _cert_data,
    _load_authority,
    _now,
    _show,
    days_option,
    read_certificates,
    read_csr,
)
from meshsync.cli.common import errors_to_exit, home_option, json_option, resolve_home
from meshsync.cli.credentials import credential_writer
from meshsync.cli.revoke import MAX_AFTER_SEQ

from meshsync.host.enrol import describe_spans, heads_of, start_rekey
from meshsync.host.files import replace_file
from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, parse_device_id, short_id
from meshsync.trust import (
    DEFAULT_DEVICE_DAYS,
    TrustStore,
    carried_certificate,
    issue_rotation,
    parse_blob,
    rotation_file,
)
from meshsync.trust.profile import common_name
from meshsync.trust.rotation import csr_device_key, signed_after

_heads = heads_of
_ranges = describe_spans


def _warn(message: str) -> None:
    click.echo(_("meshsync: warning: %(message)s") % {"message": message}, err=True)


@click.command("rekey")
@home_option
@click.option("--name", default=None,
              help="Device name in the request [default: the current certificate's name].")
@json_option
@errors_to_exit
def rekey(home: Path | None, name: str | None, as_json: bool) -> None:
    """Start a key rotation: a new device key (next.key, 0600) and its request (next.csr).

    The device goes on signing with its current key until the certificate for the
    new one is enrolled (meshsync enroll), which switches keys; the old key is then
    kept in retired-keys/. Prints the old and new device ids and the old key's
    highest seq per feed (partition): give the highest as --after-seq to
    `meshsync authority rotate`. Run again, it shows the same new key and the
    current heads. Needs an enrolled home.
    """
    from meshsync.cli.writer import home_writer

    path = resolve_home(home)
    node_home = Home.open(path)
    with home_writer(path) as api:
        data = (start_rekey(node_home, name) if api is None
                else api.call_json("POST", "/api/rekey", {"name": name}))
    heads = data["heads"]
    after = data["after_seq"]
    if not isinstance(heads, dict):
        raise UsageError("the daemon's answer to POST /api/rekey has no heads")
    if as_json:
        _show(data, True)
        return
    click.echo(_("old device: %(id)s") % {"id": data["old_device_id"]})
    new = (_("new device: %(id)s") if data["created"]
           else _("new device: %(id)s (made earlier)"))
    click.echo(new % {"id": data["new_device_id"]})
    for partition, seq in heads.items():
        click.echo(_("  old key in %(partition)s: seq %(seq)s")
                   % {"partition": partition, "seq": seq})
    click.echo(_("request: %(file)s") % {"file": node_home.next_csr_path})
    click.echo(_("this device signs with the old key until the new certificate is enrolled"))
    click.echo(_("next: %(command)s") % {
        "command": f"meshsync authority rotate --home AUTHORITY {data['old_device_id']} "
                   f"{node_home.next_csr_path} --after-seq {after} -o NEW.crt"})
    click.echo(_("then: %(command)s") % {"command": f"meshsync enroll --home {path} NEW.crt"})


def _add_old_certificate(add: Callable[[bytes], bool], old: bytes, cert_file: Path) -> None:
    """Hand the certificates of ``cert_file`` (the old device's device.crt) to ``add``
    (a node's ``add_credential``). UsageError if it is another device's."""
    infos = read_certificates(cert_file)[0]
    if infos[0].device_key != old:
        other = device_id(infos[0].device_key) if infos[0].device_key else infos[0].describe()
        raise UsageError(f"{cert_file} is for {other}, not device {device_id(old)}")
    for info in infos:
        if not info.is_root:
            add(info.der)


@click.command("rotate")
@home_option
@click.argument("old_device", metavar="OLD_DEVICE_ID")
@click.argument("request_file", metavar="NEW_CSR",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--after-seq", type=click.IntRange(0, MAX_AFTER_SEQ), required=True,
              help="Last seq of the old key still accepted (its head, from `meshsync rekey`; "
                   "one number for all its feeds).")
@click.option("--old-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="The old device's certificate (its device.crt), if this home's store "
                   "does not hold it yet.")
@days_option(DEFAULT_DEVICE_DAYS, "Validity of the new certificate, in days.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write to (PEM): the new certificate, its chain, the revocation.")
@json_option
@errors_to_exit
def rotate(home: Path | None, old_device: str, request_file: Path, after_seq: int,
           old_cert: Path | None, days: int, output: Path, as_json: bool) -> None:
    """Rotate OLD_DEVICE_ID's key to the key in NEW_CSR (the device's next.csr).

    In one step: a certificate for the new key with the old certificate's role and
    scope, and a revocation of the old key after --after-seq. Both go to --output
    (the certificate chain, then the revocation) for `meshsync enroll` on the device,
    and into HOME's store, so they travel with its next sync or bundle. Refused if
    the old device is unknown here (no verified certificate: sync first or give
    --old-cert), already revoked, or NEW_CSR holds the old key.
    """
    path = resolve_home(home)
    key, chain = _load_authority(path)
    old = parse_device_id(old_device)
    csr = read_csr(request_file)
    if csr_device_key(csr) == old:
        raise UsageError(f"{request_file} is for device {short_id(old)} itself: a rotation "
                         "needs a new key (run `meshsync rekey` on the device)")
    now = _now()
    with credential_writer(path) as writer:
        trust = writer.trust
        if not isinstance(trust, TrustStore):
            raise UsageError(f"{path} is not enrolled (no {ROOT_CERT})")
        if old_cert is not None:
            _add_old_certificate(writer.add, old, old_cert)
        carried = carried_certificate(trust, old)
        rotation = issue_rotation(key, chain, csr, old_key=old, role=carried["role"],
                                  scope=carried["scope"], after_seq=after_seq, now=now,
                                  days=days)
        held = signed_after(_heads(writer.store, old), after_seq)
        # The file first: if storing failed after the revocation was stored, the
        # officer would be cut off with no certificate to go on with.
        replace_file(output, rotation_file(rotation.certificate + chain, rotation.revocation))
        info = parse_blob(rotation.certificate)[0]
        writer.add(info.der)
        writer.add(rotation.revocation)
    if held:
        _warn(f"this store holds changes of {short_id(old)} past --after-seq {after_seq} "
              f"({_ranges(held)}): every device that learns the rotation refuses them")
    data = {
        **_cert_data(info, common_name(info.cert.issuer), output),
        "old_device_id": device_id(old),
        "old_certificate": carried["name"],
        "after_seq": after_seq,
        "held_after_seq": {p: list(span) for p, span in held.items()},
        "stored": True,
    }
    _show(data, as_json)


COMMANDS: list[click.Command] = [rekey]
"""Top-level commands; ``rotate`` joins the ``authority`` group (see cli/main.py)."""
