"""Issue 13 item 1: roles by authority level (docs/architecture.md §6).

Only the root issues ``central`` and ``admin``; a delegation lists the roles its
sub-authority may issue. A certificate that breaks this, crafted directly with
``cryptography`` on the district laptop's authority key (as a stolen laptop could),
is refused everywhere: issuing, enrolling, TLS, bundles and custody receipts, so a
phone never shows "safe at central" from it. Homes are made with the real CLI.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from meshsync.cli.main import main

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.errors import AuthorizationError, UsageError
from meshsync.replica import custody
from meshsync.replica.receipt import make_receipt
from meshsync.store.sqlite import SQLiteStore
from meshsync.trust import (
    TrustStore,
    issue_device_certificate,
    issue_sub_authority,
    load_authority_key,
    parse_blob,
)
from tests.netfixtures import Servers, sync

DISTRICT = "mimika/jila"
TPS = f"{DISTRICT}/diloa/tps-003"


def cli(*args: object, ok: bool = True) -> Any:
    """Run ``meshsync ARGS``; parse the output when ``--json`` is given."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    else:
        assert result.exit_code != 0, result.output
        return result
    return json.loads(result.stdout) if "--json" in args else result


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def kpu(tmp_path: Path) -> Path:
    home = tmp_path / "KPU"
    cli("authority", "init", "--home", home, "--name", "KPU Mimika")
    return home


def delegate(tmp_path: Path, kpu: Path, name: str, *extra: str) -> Path:
    """A laptop home made a sub-authority for mimika/jila (``extra``: delegate options)."""
    home = tmp_path / name
    cli("init", "--home", home, "--partition", DISTRICT)
    cli("authority", "request", "--home", home, "--name", f"PPK {name}")
    cert = tmp_path / f"{name}-authority.crt"
    cli("authority", "delegate", "--home", kpu, home / "authority.csr", "--scope", DISTRICT,
        "-o", cert, *extra)
    cli("authority", "install", "--home", home, cert)
    return home


@pytest.fixture
def ppk(tmp_path: Path, kpu: Path) -> Path:
    return delegate(tmp_path, kpu, "PPK")


def phone(tmp_path: Path, name: str, partition: str = TPS) -> Path:
    home = tmp_path / name
    cli("init", "--home", home, "--partition", partition)
    return home


def enrol(tmp_path: Path, authority: Path, home: Path, role: str, scope: str) -> None:
    cert = tmp_path / f"{home.name}.crt"
    cli("authority", "issue", "--home", authority, home / "device.csr", "--role", role,
        "--scope", scope, "-o", cert)
    cli("enroll", "--home", home, cert)


def forged_device_cert(authority: Path, home: Path, role: str, scope: str) -> bytes:
    """A device certificate for ``home``'s key, signed with ``authority``'s key by hand
    (no meshsync check), followed by the authority's chain: what a stolen laptop mints."""
    key = load_authority_key((authority / "authority.key").read_bytes())
    chain = (authority / "authority.crt").read_bytes()
    issuer = parse_blob(chain)[0].cert
    device = Home.open(home).load_key()
    public = device.private_key.public_key()
    uris = [f"meshsync:device/{device.device_id}", f"meshsync:role/{role}",
            f"meshsync:scope/{scope}"]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Forged")]))
        .issuer_name(issuer.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                     False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                              ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
        .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM) + chain


def root_signed_sub_authority(kpu: Path, uris: list[str]) -> bytes:
    """A sub-authority certificate signed by the root by hand with the given SAN URIs."""
    key = load_authority_key((kpu / "authority.key").read_bytes())
    root = parse_blob((kpu / "root.crt").read_bytes())[0].cert
    sub = ec.generate_private_key(ec.SECP256R1()).public_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PPK Lama")]))
        .issuer_name(root.subject).public_key(sub).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
        .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


# -- issuing ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["central", "admin"])
def test_sub_authority_cannot_mint_central_or_admin_cli(tmp_path: Path, ppk: Path,
                                                        role: str) -> None:
    home = phone(tmp_path, "PHONE3")
    out = tmp_path / "x.crt"
    result = cli("authority", "issue", "--home", ppk, home / "device.csr", "--role", role,
                 "--scope", DISTRICT, "-o", out, ok=False)
    assert "may not issue role" in result.stderr
    assert "only the root authority issues central and admin" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("role", ["central", "admin"])
def test_sub_authority_cannot_mint_central_or_admin_library(tmp_path: Path, ppk: Path,
                                                            role: str) -> None:
    home = phone(tmp_path, "PHONE3")
    key = load_authority_key((ppk / "authority.key").read_bytes())
    with pytest.raises(UsageError, match="may not issue role"):
        issue_device_certificate(key, (ppk / "authority.crt").read_bytes(),
                                 (home / "device.csr").read_bytes(), role=role,
                                 scope=DISTRICT, now=_now())


def test_the_root_still_issues_central(tmp_path: Path, kpu: Path) -> None:
    home = phone(tmp_path, "CENTRAL", partition=DISTRICT)
    enrol(tmp_path, kpu, home, "central", "")


def test_delegation_lists_its_roles(tmp_path: Path, kpu: Path) -> None:
    only_phones = delegate(tmp_path, kpu, "PPK1", "--roles", "pantarlih")
    assert parse_blob((only_phones / "authority.crt").read_bytes())[0].may_issue == (
        "pantarlih",)
    home = phone(tmp_path, "LAPTOP", partition=DISTRICT)
    result = cli("authority", "issue", "--home", only_phones, home / "device.csr", "--role",
                 "gateway", "--scope", DISTRICT, "-o", tmp_path / "g.crt", ok=False)
    assert "may not issue role 'gateway'" in result.stderr
    enrol(tmp_path, only_phones, phone(tmp_path, "PHONE1"), "pantarlih", TPS)


@pytest.mark.parametrize("roles", ["central", "pantarlih,admin", "kepala"])
def test_delegate_refuses_roles_only_the_root_issues(tmp_path: Path, kpu: Path,
                                                     roles: str) -> None:
    home = tmp_path / "PPK"
    cli("init", "--home", home)
    cli("authority", "request", "--home", home, "--name", "PPK Jila")
    result = cli("authority", "delegate", "--home", kpu, home / "authority.csr", "--scope",
                 DISTRICT, "--roles", roles, "-o", tmp_path / "d.crt", ok=False)
    assert "cannot be allowed to issue" in result.stderr


def test_issue_sub_authority_refuses_central_in_library(kpu: Path) -> None:
    key = load_authority_key((kpu / "authority.key").read_bytes())
    sub = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(UsageError, match="only the root authority issues it"):
        issue_sub_authority(key, (kpu / "authority.crt").read_bytes(), sub, name="PPK",
                            scope=DISTRICT, now=_now(), roles=("pantarlih", "central"))


def test_old_sub_authority_without_a_roles_list_gets_the_default(kpu: Path) -> None:
    old = parse_blob(root_signed_sub_authority(kpu, [f"meshsync:scope/{DISTRICT}"]))[0]
    assert old.may_issue == ("pantarlih", "gateway")


def test_sub_authority_certificate_granting_central_is_refused(kpu: Path) -> None:
    blob = root_signed_sub_authority(kpu, [f"meshsync:scope/{DISTRICT}",
                                           "meshsync:issues/central"])
    with pytest.raises(AuthorizationError, match="may not issue role 'central'"):
        parse_blob(blob)
    with pytest.raises(AuthorizationError, match="may not issue role 'central'"):
        TrustStore([(kpu / "root.crt").read_bytes()]).add(blob)


# -- a forged central certificate -------------------------------------------------------


@pytest.fixture
def forged(tmp_path: Path, ppk: Path) -> dict[str, Path]:
    """PHONE1 (pantarlih, with one change) and PHONE3 holding a forged central
    certificate from the district laptop's authority key, written into its home by hand
    (``enroll`` refuses it)."""
    phone1 = phone(tmp_path, "PHONE1")
    enrol(tmp_path, ppk, phone1, "pantarlih", TPS)
    cli("put", "--home", phone1, "voters", "v-1", "nama=Yosina")
    cli("put", "--home", phone1, "voters", "v-2", "nama=Markus")
    phone3 = phone(tmp_path, "PHONE3", partition=DISTRICT)
    blob = forged_device_cert(ppk, phone3, "central", DISTRICT)
    (tmp_path / "x.crt").write_bytes(blob)
    (phone3 / "device.crt").write_bytes(blob)
    (phone3 / "root.crt").write_bytes((ppk / "root.crt").read_bytes())
    return {"ppk": ppk, "phone1": phone1, "phone3": phone3, "cert": tmp_path / "x.crt"}


def test_forged_central_is_refused_by_the_trust_store(forged: dict[str, Path]) -> None:
    blob = forged["cert"].read_bytes()
    store = TrustStore([(forged["ppk"] / "root.crt").read_bytes()])
    with pytest.raises(AuthorizationError, match="may not issue"):
        store.add(blob)  # the sub-authority is kept; the device certificate is refused
    key = Home.open(forged["phone3"]).load_key().public_key
    (row,) = store.device_info(key)
    assert row["status"] == "rejected"
    assert "may not issue" in row["reason"]
    chain = [c.der for c in parse_blob(blob) if not c.is_root]
    with pytest.raises(AuthorizationError, match="may not issue"):
        store.peer_identity(chain, int(_now().timestamp() * 1000))


def test_enroll_refuses_a_forged_central_certificate(forged: dict[str, Path]) -> None:
    home = forged["phone3"]
    (home / "device.crt").unlink()
    result = cli("enroll", "--home", home, forged["cert"], ok=False)
    assert "may not issue" in result.stderr or "lacks" in result.stderr


def _receipt_of_phone3(forged: dict[str, Path]) -> bytes:
    phone1 = Home.open(forged["phone1"]).load_key().public_key
    return make_receipt(Home.open(forged["phone3"]).load_key(), DISTRICT,
                        int(_now().timestamp() * 1000), {(phone1, TPS): 2})


def test_receipt_from_a_forged_central_never_counts(forged: dict[str, Path]) -> None:
    receipt = _receipt_of_phone3(forged)
    store = SQLiteStore(Home.open(forged["phone1"]).store_path)
    try:  # as a phone that accepted it before this check existed would hold it
        with store.transaction():
            store.add_credential(b"\x01" * 32, forged["cert"].read_bytes())
            store.put_receipt(Home.open(forged["phone3"]).load_key().public_key, DISTRICT,
                              0, receipt)
    finally:
        store.close()
    with open_node(forged["phone1"]) as node:
        held = custody.custody(node)
        with pytest.raises(AuthorizationError, match="may not issue"), \
                node.store.transaction():
            custody.add_receipt(node, receipt)
    assert [f["central"] for f in held["feeds"]] == [0]
    assert not held["feeds"][0]["safe_at_central"]
    (row,) = held["receipts"]
    assert "may not issue" in row["ignored"]
    text = cli("status", "--home", forged["phone1"]).stdout
    assert "0 at central (not yet at central)" in text


def test_forged_central_is_refused_in_tls_and_sync(tmp_path: Path,
                                                   forged: dict[str, Path]) -> None:
    servers = Servers(tmp_path)
    try:
        server = servers.start(forged["phone3"])
        result = sync(forged["phone1"], server, check=False)
    finally:
        servers.stop_all()
    assert result["rc"] != 0
    assert "may not issue" in result["stderr"]
    status = cli("status", "--home", forged["phone1"], "--json")
    assert [f["central"] for f in status["custody"]["feeds"]] == [0]
    text = cli("status", "--home", forged["phone1"]).stdout
    assert "2 here, 0 at the gateway, 0 at central (not yet at central)" in text


def test_forged_central_is_refused_in_bundles(tmp_path: Path, forged: dict[str, Path]) -> None:
    store = SQLiteStore(Home.open(forged["phone3"]).store_path)
    try:
        with store.transaction():
            store.add_credential(b"\x02" * 32, forged["cert"].read_bytes())
    finally:
        store.close()
    bundle = tmp_path / "p3.bundle"
    cli("bundle", "export", "--clear", "--home", forged["phone3"], "-o", bundle)
    report = cli("bundle", "import", "--home", forged["phone1"], bundle, "--json")
    assert any("may not issue" in r for r in report["credentials_refused"])
