"""``meshsync authority ...`` and ``meshsync enroll``: certificates and revocations.

Files these commands add to a node home (see :mod:`meshsync.host.home` for the rest)::

    authority.key   ECDSA P-256 authority key, PKCS#8 PEM, mode 0600
    authority.csr   a district laptop's request to become a sub-authority
    authority.crt   the authority certificate, then its chain up to the root (PEM)
    root.crt        the trusted root certificate (PEM)

A sub-authority (the district laptop) has its **own** authority key, separate
from its device key: the X.509 verifier needs authority keys to be ECDSA P-256
while device keys are Ed25519 (see :mod:`meshsync.trust.profile`), and keeping
them apart means the key that syncs all day never signs certificates. Enrolment
offline at the laptop::

    central$ meshsync authority init --home KPU --name "KPU Mimika"
    laptop$  meshsync authority request --home PPK --name "PPK Jila"
    central$ meshsync authority delegate --home KPU PPK/authority.csr \\
                 --scope mimika/jila -o jila.crt
    laptop$  meshsync authority install --home PPK jila.crt
    laptop$  meshsync authority issue --home PPK PHONE/device.csr --role pantarlih \\
                 --scope mimika/jila/diloa/tps-003 -o phone.crt
    phone$   meshsync enroll --home PHONE phone.crt

Replacing a device's key (``meshsync rekey``, ``authority rotate``, and ``enroll``
switching keys) is in :mod:`meshsync.cli.rotation` and :mod:`meshsync.host.enrol`
(what ``enroll`` and ``rekey`` write, also run by the daemon when one holds the home);
``authority revoke`` in :mod:`meshsync.cli.revoke`, its rules (scope, already revoked)
in :mod:`meshsync.trust.revoke_rules`.

Scopes given or carried are checked like partitions (:func:`check_scope`): a
scope no partition can match would certify a device that can never write.

This is the only place of the trust code that reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric import ec
from meshsync.cli.common import (
    F,
    echo_json,
    errors_to_exit,
    home_option,
    json_option,
    resolve_home,
)

from meshsync.host.enrol import cert_data, checked_root, enrol, read_credentials
from meshsync.host.enrol import check_cert_scope as check_scope_of
from meshsync.host.enrol import read_schemas as enrol_read_schemas
from meshsync.host.files import replace_file, write_private
from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _
from meshsync.model.errors import NotFoundError, UsageError
from meshsync.trust import (
    DEFAULT_AUTHORITY_DAYS,
    DEFAULT_DEVICE_DAYS,
    DEFAULT_SUB_AUTHORITY_DAYS,
    MAX_DAYS,
    ROLES,
    AuthorityKey,
    CertInfo,
    TrustStore,
    authority_key_to_pem,
    create_authority,
    generate_authority_key,
    issue_device_certificate,
    issue_sub_authority,
    load_authority_key,
    load_csr,
    make_authority_request,
    make_csr,
    parse_blob,
)
from meshsync.trust.issue import check_delegated_roles
from meshsync.trust.profile import DEFAULT_DELEGATED_ROLES, common_name, to_pem
from meshsync.trust.scope import check_scope

AUTHORITY_KEY = "authority.key"
AUTHORITY_CSR = "authority.csr"
AUTHORITY_CERT = "authority.crt"
ROOT_CERT = "root.crt"

_output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write the certificate and its chain to (PEM).",
)


def days_option(default: int, help: str | None = None) -> Callable[[F], F]:
    """``--days`` (1 to :data:`MAX_DAYS`): a larger value would overflow the date."""
    return click.option("--days", type=click.IntRange(1, MAX_DAYS), default=default,
                        show_default=True, help=help)


def _now() -> datetime:
    return datetime.now(UTC)


def read_csr(path: Path) -> bytes:
    """The bytes of the certificate request in ``path``; UsageError naming it if it
    is none ("not a PEM certificate signing request: FILE") or does not verify."""
    data = path.read_bytes()
    try:
        load_csr(data)
    except UsageError as exc:
        raise UsageError(f"{exc}: {path}") from None
    return data


def read_certificates(path: Path) -> tuple[list[CertInfo], bytes, list[bytes]]:
    """(parsed certificates, their PEM text, raw revocations) of a credential file;
    UsageError naming ``path`` if it holds no certificate ("not a PEM certificate")."""
    return read_credentials(path.read_bytes(), str(path))


def read_schemas(path: Path) -> list[bytes]:
    """The schema documents in a credential file (`authority delegate` and `issue`
    put the authority's there: :mod:`meshsync.cli.schema`); UsageError naming
    ``path`` if one is malformed."""
    return enrol_read_schemas(path.read_bytes(), str(path))


def check_cert_scope(info: CertInfo, path: Path) -> None:
    """UsageError naming ``path`` unless ``info`` has a scope its verifiers can use
    (see :func:`meshsync.host.enrol.check_cert_scope`)."""
    check_scope_of(info, str(path))


def _read_key(path: Path) -> AuthorityKey:
    if not path.exists():
        raise NotFoundError(_("no authority key at %(path)s") % {"path": path})
    if path.stat().st_mode & 0o077:
        raise UsageError(_("%(path)s is readable by others (chmod 600 it)") % {"path": path})
    return load_authority_key(path.read_bytes())


def _load_authority(home: Path) -> tuple[AuthorityKey, bytes]:
    """(authority key, authority.crt chain PEM) of an authority home."""
    key = _read_key(home / AUTHORITY_KEY)
    cert = home / AUTHORITY_CERT
    if not cert.exists():
        raise NotFoundError(
            _("no %(file)s in %(home)s (run: meshsync authority install --home %(home)s CERT)")
            % {"file": AUTHORITY_CERT, "home": home}
        )
    return key, cert.read_bytes()


def schema_blocks(home: Path) -> bytes:
    """The schema documents ``home`` holds, armoured (:func:`meshsync.cli.schema.schema_blocks`)."""
    from meshsync.cli.schema import schema_blocks as blocks

    return blocks(home)


def _store_credentials(home: Path, blobs: list[bytes]) -> bool:
    """Add credentials (canonical DER / revocation bytes) to the node's store: through
    the running daemon's API if one holds the home (:mod:`meshsync.cli.credentials`).

    They then travel with the next sync or bundle. Returns True.
    """
    from meshsync.cli.credentials import credential_writer

    with credential_writer(home) as writer:
        for blob in blobs:
            writer.add(blob)
    return True


_cert_data = cert_data


def _show(data: dict[str, Any], as_json: bool) -> None:
    """``data`` as JSON, or as ``key: value`` lines (None values left out)."""
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key}: {_text(value)}")


def _text(value: object) -> str:
    """A value for a ``key: value`` line: a map as ``k v, ...``, a list as ``a, b``
    (never a Python repr)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "none"
    return str(value)


@click.group("authority")
def authority_group() -> None:
    """Run the certificate authority: the root (KPU) or a district sub-authority."""


@authority_group.command("init")
@home_option
@click.option("--name", required=True, help="Authority name, e.g. 'KPU Mimika'.")
@days_option(DEFAULT_AUTHORITY_DAYS, "Validity of the root certificate.")
@json_option
@errors_to_exit
def init(home: Path | None, name: str, days: int, as_json: bool) -> None:
    """Create a root authority in HOME (a node home, created if needed).

    Writes authority.key (0600) and authority.crt, copies the root to root.crt,
    and gives the home's own device an admin certificate for every partition
    (device.crt, with its chain).
    """
    path = resolve_home(home)
    node = Home.open(path) if Home(path).key_path.exists() else Home.create(path)
    if (path / AUTHORITY_KEY).exists():
        raise UsageError(f"{path} already holds an authority ({AUTHORITY_KEY} exists)")
    if (path / ROOT_CERT).exists():
        raise UsageError(f"{path} is already enrolled under an authority ({ROOT_CERT} exists)")
    now = _now()
    key, root = create_authority(name, now, days)
    csr = make_csr(node.load_key(), name)
    cert = issue_device_certificate(key, root, csr, role="admin", scope="", now=now, days=days)
    write_private(path / AUTHORITY_KEY, authority_key_to_pem(key))
    replace_file(path / AUTHORITY_CERT, root)
    replace_file(path / ROOT_CERT, root)
    replace_file(node.cert_path, cert + root)
    stored = _store_credentials(path, [parse_blob(cert)[0].der])
    info = parse_blob(cert)[0]
    _show({**_cert_data(info, name, node.cert_path), "authority": name, "stored": stored}, as_json)


@authority_group.command("request")
@home_option
@click.option("--name", required=True, help="Sub-authority name, e.g. 'PPK Jila'.")
@json_option
@errors_to_exit
def request(home: Path | None, name: str, as_json: bool) -> None:
    """Ask to become a district sub-authority: writes authority.csr.

    Generates a separate ECDSA P-256 authority.key (0600) unless HOME has one;
    the device key is never used to sign certificates. Take authority.csr to the
    root (authority delegate), then install the answer (authority install).
    """
    path = resolve_home(home)
    Home.open(path)
    key_path = path / AUTHORITY_KEY
    cert_path = path / AUTHORITY_CERT
    if cert_path.exists() and parse_blob(cert_path.read_bytes())[0].is_root:
        raise UsageError(f"{path} is the root authority; it needs no delegation")
    if key_path.exists():
        key = _read_key(key_path)
    else:
        key = generate_authority_key()
        write_private(key_path, authority_key_to_pem(key))
    replace_file(path / AUTHORITY_CSR, make_authority_request(key, name))
    _show({"request": str(path / AUTHORITY_CSR), "name": name}, as_json)


@authority_group.command("delegate")
@home_option
@click.argument(
    "request_file", metavar="REQUEST", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--scope", required=True, help="Partition prefix it may enrol, e.g. mimika/jila.")
@click.option("--roles", default=",".join(DEFAULT_DELEGATED_ROLES), show_default=True,
              help="Comma-separated device roles it may issue (pantarlih, gateway; "
                   "only the root issues central and admin).")
@days_option(DEFAULT_SUB_AUTHORITY_DAYS)
@_output_option
@json_option
@errors_to_exit
def delegate(
    home: Path | None, request_file: Path, scope: str, roles: str, days: int, output: Path,
    as_json: bool,
) -> None:
    """Root only: make the key in REQUEST (authority.csr) a sub-authority for --scope.

    It may issue the device roles of --roles, inside --scope. Writes the
    sub-authority certificate followed by the root to --output, then the schema
    documents HOME holds (`authority schema publish`).
    """
    allowed = check_delegated_roles([r.strip() for r in roles.split(",") if r.strip()])
    path = resolve_home(home)
    key, chain = _load_authority(path)
    check_scope(scope)
    csr = load_csr(read_csr(request_file))
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise UsageError(f"{request_file} is not a sub-authority request (authority request)")
    cert = issue_sub_authority(
        key, chain, public, name=common_name(csr.subject), scope=scope, now=_now(), days=days,
        roles=allowed,
    )
    replace_file(output, cert + chain + schema_blocks(path))
    info = parse_blob(cert)[0]
    _show(_cert_data(info, common_name(info.cert.issuer), output), as_json)


@authority_group.command("install")
@home_option
@click.argument(
    "cert_file", metavar="CERT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--force", is_flag=True,
              help="Replace an installed sub-authority certificate for another scope.")
@json_option
@errors_to_exit
def install(home: Path | None, cert_file: Path, force: bool, as_json: bool) -> None:
    """Install a sub-authority certificate from `authority delegate` as authority.crt.

    CERT must be for this home's authority.key, have a valid non-empty scope and
    end with the root, which becomes root.crt (or must equal the root.crt already
    there). Replacing an installed certificate for the same scope (a renewal) needs
    nothing more; for another scope it needs --force.
    """
    path = resolve_home(home)
    key = _read_key(path / AUTHORITY_KEY)
    infos = read_certificates(cert_file)[0]
    leaf = infos[0]
    if not leaf.is_ca or leaf.is_root or leaf.cert.public_key() != key.public_key():
        raise UsageError(f"{cert_file} is not a sub-authority certificate for this home's key")
    check_cert_scope(leaf, cert_file)
    installed = path / AUTHORITY_CERT
    current = parse_blob(installed.read_bytes())[0] if installed.exists() else None
    if current is not None and current.is_root:
        raise UsageError(f"{path} is the root authority; it installs no sub-authority "
                         "certificate")
    if current is not None and current.scope != leaf.scope and not force:
        raise UsageError(f"{path} is already the sub-authority for scope {current.scope!r}; "
                         f"{cert_file} is for scope {leaf.scope!r}: give --force to replace it")
    root = _checked_root(path, infos)
    TrustStore([to_pem([root])]).add(to_pem([leaf]))
    replace_file(path / AUTHORITY_CERT, to_pem([leaf, root]))
    replace_file(path / ROOT_CERT, to_pem([root]))
    stored = _store_credentials(path, [leaf.der, *read_schemas(cert_file)])
    _show({**_cert_data(leaf, root.name, path / AUTHORITY_CERT), "stored": stored}, as_json)


def _checked_root(home: Path, infos: list[CertInfo]) -> CertInfo:
    """The root ending ``infos``; must match the home's root.crt if there is one."""
    return checked_root(home, infos)


@authority_group.command("issue")
@home_option
@click.argument(
    "request_file", metavar="REQUEST", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--scope", required=True, help="Partition or prefix, e.g. mimika/jila/diloa.")
@days_option(DEFAULT_DEVICE_DAYS)
@_output_option
@json_option
@errors_to_exit
def issue(
    home: Path | None,
    request_file: Path,
    role: str,
    scope: str,
    days: int,
    output: Path,
    as_json: bool,
) -> None:
    """Certify the device in REQUEST (its device.csr) for --role in --scope.

    Works at the root or a sub-authority (only inside its scope, and only the roles
    its delegation lists: never central or admin). Writes the
    device certificate followed by its chain up to and including the root. An empty
    --scope means every partition and is only for the central and admin roles.
    The schema documents HOME holds follow, so the device validates from `enroll`.
    """
    check_scope(scope)
    if not scope and role not in ("central", "admin"):
        raise UsageError(_("--scope is empty, which means every partition; a %(role)s needs "
                           "a partition prefix such as mimika/jila/diloa") % {"role": role})
    path = resolve_home(home)
    key, chain = _load_authority(path)
    cert = issue_device_certificate(
        key, chain, read_csr(request_file), role=role, scope=scope, now=_now(), days=days
    )
    replace_file(output, cert + chain + schema_blocks(path))
    info = parse_blob(cert)[0]
    _show(_cert_data(info, common_name(info.cert.issuer), output), as_json)


@click.command("enroll")
@home_option
@click.argument(
    "cert_file", metavar="CERT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@errors_to_exit
def enroll(home: Path | None, cert_file: Path, as_json: bool) -> None:
    """Install this device's certificate CERT (from `authority issue` or `rotate`).

    CERT must be for this home's device key, or for the new key `meshsync rekey`
    made (then the device switches to it: see `meshsync rekey`), and carry its chain
    up to the root; it becomes device.crt and its root root.crt. Revocations in the
    file (`authority rotate` puts one there) are stored with it, and so are the
    signed schema documents (`authority issue` puts the authority's there). While a
    daemon runs on the home, it enrols through the daemon, which switches keys at once.
    """
    from meshsync.cli.writer import home_writer, quote_segment

    path = resolve_home(home)
    data = cert_file.read_bytes()
    with home_writer(path) as api:
        if api is None:
            done = enrol(Home.open(path), data, str(cert_file))
            shown, warnings = done.data, done.warnings
        else:
            answer = api.post_bytes(f"/api/enroll?name={quote_segment(str(cert_file))}",
                                    data, "application/x-pem-file")
            shown, warnings = _enrol_answer(answer)
    for warning in warnings:
        click.echo(_("meshsync: warning: %(message)s") % {"message": warning}, err=True)
    _show(shown, as_json)


def _enrol_answer(answer: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """(what to print, warnings) of the daemon's answer to ``POST /api/enroll``."""
    enrolment = answer.get("enrolment")
    if not isinstance(enrolment, dict):
        raise UsageError("the daemon's answer to POST /api/enroll has no enrolment")
    warnings = answer.get("warnings")
    return enrolment, [str(w) for w in warnings] if isinstance(warnings, list) else []


COMMANDS: list[click.Command] = [authority_group, enroll]
