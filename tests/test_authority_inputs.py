"""Bad inputs to ``meshsync authority …`` and ``meshsync enroll``, through the real CLI.

Each is refused with one ``meshsync: error:`` line naming the culprit, exits
non-zero and writes nothing: scopes that are not partition prefixes, a
sub-authority revoking outside its scope, a second revocation that changes
nothing, out-of-range numbers, files that are not what they should be.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from meshsync.host.local import open_node
from meshsync.trust import (
    issue_device_certificate,
    issue_sub_authority,
    load_authority_key,
    load_csr,
    parse_blob,
)
from tests.netfixtures import DISTRICT, VILLAGE, District, device_id, run, run_json

PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def refused(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one error line of a refused command; it must contain every needle."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def district(tmp_path: Path) -> District:
    return District(tmp_path)


def sub_authority(district: District, name: str = "ppk", scope: str = DISTRICT) -> Path:
    """A district laptop made a sub-authority for ``scope`` by the district's root."""
    home = district.home(name)
    run("init", "--home", home, "--partition", scope)
    run("authority", "request", "--home", home, "--name", f"PPK {name}")
    cert = district.root / f"{name}-ca.crt"
    run("authority", "delegate", "--home", district.authority, home / "authority.csr",
        "--scope", scope, "-o", cert)
    run("authority", "install", "--home", home, cert)
    return home


def forged_device_cert(authority: Path, csr: Path, scope: str, out: Path) -> None:
    """What an unchecked ``authority issue`` wrote: a signed certificate for ``scope``."""
    key = load_authority_key((authority / "authority.key").read_bytes())
    chain = (authority / "authority.crt").read_bytes()
    with mock.patch("meshsync.trust.issue.validate_scope", lambda s: s):
        cert = issue_device_certificate(key, chain, csr.read_bytes(), role="pantarlih",
                                        scope=scope, now=datetime.now(UTC))
    out.write_bytes(cert + chain)


def forged_sub_authority(root: Path, request: Path, scope: str, out: Path) -> None:
    key = load_authority_key((root / "authority.key").read_bytes())
    chain = (root / "authority.crt").read_bytes()
    public = load_csr(request.read_bytes()).public_key()
    with mock.patch("meshsync.trust.issue.validate_scope", lambda s: s):
        cert = issue_sub_authority(key, chain, public, name="PPK", scope=scope,  # type: ignore[arg-type]
                                   now=datetime.now(UTC))
    out.write_bytes(cert + chain)


# -- 1. scopes --------------------------------------------------------------------------


def test_issue_refuses_a_scope_that_is_not_a_partition_prefix(district: District) -> None:
    phone = district.home("phone")
    run("init", "--home", phone, "--partition", VILLAGE)
    out = district.root / "phone.crt"
    for scope in ("Bad Scope", "MIMIKA/../x", "mimika/../x"):
        refused(run("authority", "issue", "--home", district.authority, phone / "device.csr",
                    "--role", "pantarlih", "--scope", scope, "-o", out, check=False),
                repr(scope))
        assert not out.exists()
    # the empty scope stays for the central and admin roles (bench/sync_full.py's central)
    refused(run("authority", "issue", "--home", district.authority, phone / "device.csr",
                "--role", "pantarlih", "--scope", "", "-o", out, check=False),
            "--scope is empty")
    central = district.enrol("central", role="central", scope="", partition=VILLAGE)
    assert parse_blob((central / "device.crt").read_bytes())[0].scope == ""


@pytest.mark.parametrize("scope", ["Mimika Jila", "", "../x"])
def test_delegate_refuses_a_bad_or_empty_scope(district: District, scope: str) -> None:
    home = district.home("ppk")
    run("init", "--home", home, "--partition", DISTRICT)
    run("authority", "request", "--home", home, "--name", "PPK Jila")
    out = district.root / "ca.crt"
    refused(run("authority", "delegate", "--home", district.authority, home / "authority.csr",
                "--scope", scope, "-o", out, check=False), repr(scope))
    assert not out.exists()


def test_enroll_refuses_a_certificate_with_an_invalid_scope(district: District) -> None:
    phone = district.home("phone")
    run("init", "--home", phone, "--partition", VILLAGE)
    cert = district.root / "bad.crt"
    forged_device_cert(district.authority, phone / "device.csr", "Bad Scope", cert)
    refused(run("enroll", "--home", phone, cert, check=False), "'Bad Scope'")
    assert not (phone / "device.crt").exists()
    assert not (phone / "root.crt").exists()


def test_install_refuses_a_sub_authority_certificate_with_an_invalid_scope(
        district: District) -> None:
    home = district.home("ppk")
    run("init", "--home", home, "--partition", DISTRICT)
    run("authority", "request", "--home", home, "--name", "PPK Jila")
    cert = district.root / "bad-ca.crt"
    forged_sub_authority(district.authority, home / "authority.csr", "Mimika Jila", cert)
    refused(run("authority", "install", "--home", home, cert, check=False), "'Mimika Jila'")
    assert not (home / "authority.crt").exists()


def test_install_does_not_silently_change_a_sub_authority_scope(district: District) -> None:
    ppk = sub_authority(district)
    before = (ppk / "authority.crt").read_bytes()
    other = district.root / "other.crt"
    run("authority", "delegate", "--home", district.authority, ppk / "authority.csr",
        "--scope", "mimika/agimuga", "-o", other)
    refused(run("authority", "install", "--home", ppk, other, check=False),
            "'mimika/jila'", "'mimika/agimuga'", "--force")
    assert (ppk / "authority.crt").read_bytes() == before
    # nor, even with --force, a certificate for another authority key
    stranger = sub_authority(district, "ppk2", "mimika/agimuga")
    refused(run("authority", "install", "--home", ppk, stranger / "authority.crt", "--force",
                check=False), "not a sub-authority certificate for this home's key")
    assert (ppk / "authority.crt").read_bytes() == before
    # a renewal for the same scope needs no --force; another scope does with it
    renewal = district.root / "renewal.crt"
    run("authority", "delegate", "--home", district.authority, ppk / "authority.csr",
        "--scope", DISTRICT, "-o", renewal)
    assert run_json("authority", "install", "--home", ppk, renewal)["scope"] == DISTRICT
    assert run_json("authority", "install", "--home", ppk, other, "--force")["scope"] == (
        "mimika/agimuga")


# -- 2. revocations ---------------------------------------------------------------------


def stored_revocations(home: Path) -> int:
    with open_node(home) as node:
        trust = node.trust
        assert trust is not None
        return sum(1 for blob in trust.blobs() if not blob.startswith(b"0"))


def test_sub_authority_cannot_revoke_outside_its_scope(district: District) -> None:
    ppk = sub_authority(district)
    outside = district.enrol("outside", scope="mimika/agimuga/x")
    # unknown to the laptop: sync first or give --cert
    refused(run("authority", "revoke", "--home", ppk, device_id(outside), check=False),
            "--cert", "sync")
    # known (given with --cert), but outside mimika/jila
    refused(run("authority", "revoke", "--home", ppk, device_id(outside),
                "--cert", outside / "device.crt", check=False),
            "'mimika/agimuga/x'", "'mimika/jila'")
    # the root's own admin device: scope "" (everything)
    refused(run("authority", "revoke", "--home", ppk, device_id(district.authority),
                "--cert", district.authority / "device.crt", check=False), "'mimika/jila'")
    assert stored_revocations(ppk) == 0
    # inside its district: allowed, with the root-issued certificate given once
    inside = district.enrol("inside", scope=VILLAGE)
    data = run_json("authority", "revoke", "--home", ppk, device_id(inside),
                    "--cert", inside / "device.crt", "--after-seq", "3")
    assert data["stored"] is True and data["after_seq"] == 3
    assert stored_revocations(ppk) == 1


def test_revoking_again_with_the_same_or_a_weaker_point_stores_nothing(
        district: District) -> None:
    phone = district.enrol("phone")
    kpu, dev = district.authority, device_id(phone)
    run("authority", "revoke", "--home", kpu, dev, "--after-seq", "5")
    assert stored_revocations(kpu) == 1
    for weaker in ("5", "7"):
        refused(run("authority", "revoke", "--home", kpu, dev, "--after-seq", weaker,
                    check=False), "already revoked after seq 5")
    assert stored_revocations(kpu) == 1
    run("authority", "revoke", "--home", kpu, dev, "--after-seq", "2")   # stricter
    run("authority", "revoke", "--home", kpu, dev)                       # all changes
    assert stored_revocations(kpu) == 3
    refused(run("authority", "revoke", "--home", kpu, dev, "--after-seq", "0", check=False),
            "already revoked (all changes)")
    assert stored_revocations(kpu) == 3


# -- 3. --days ----------------------------------------------------------------------------


def test_huge_days_is_a_one_line_error(district: District) -> None:
    phone = district.home("phone")
    run("init", "--home", phone, "--partition", VILLAGE)
    refused(run("authority", "issue", "--home", district.authority, phone / "device.csr",
                "--role", "pantarlih", "--scope", VILLAGE, "--days", "99999999",
                "-o", district.root / "p.crt", check=False), "--days")
    ppk = district.home("ppk")
    run("init", "--home", ppk, "--partition", DISTRICT)
    run("authority", "request", "--home", ppk, "--name", "PPK Jila")
    refused(run("authority", "delegate", "--home", district.authority, ppk / "authority.csr",
                "--scope", DISTRICT, "--days", "99999999", "-o", district.root / "c.crt",
                check=False), "--days")
    enrolled = district.enrol("enrolled")
    run("rekey", "--home", enrolled)
    refused(run("authority", "rotate", "--home", district.authority, device_id(enrolled),
                enrolled / "next.csr", "--after-seq", "0", "--days", "99999999",
                "-o", district.root / "r.crt", check=False), "--days")
    assert not any((district.root / f).exists() for f in ("p.crt", "c.crt", "r.crt"))


# -- 4. messages ----------------------------------------------------------------------------


def test_files_of_the_wrong_kind_are_named(district: District) -> None:
    junk = district.root / "passwd"
    junk.write_bytes(PASSWD)
    line = refused(run("authority", "issue", "--home", district.authority, junk, "--role",
                       "pantarlih", "--scope", VILLAGE, "-o", district.root / "x.crt",
                       check=False), f"not a PEM certificate signing request: {junk}")
    assert "ParseError" not in line
    ppk = district.home("ppk")
    run("init", "--home", ppk, "--partition", DISTRICT)
    run("authority", "request", "--home", ppk, "--name", "PPK Jila")
    refused(run("authority", "delegate", "--home", district.authority, junk, "--scope",
                DISTRICT, "-o", district.root / "x.crt", check=False),
            f"not a PEM certificate signing request: {junk}")
    refused(run("authority", "install", "--home", ppk, junk, check=False),
            f"not a PEM certificate: {junk}")
    phone = district.home("phone")
    run("init", "--home", phone, "--partition", VILLAGE)
    refused(run("enroll", "--home", phone, junk, check=False), f"not a PEM certificate: {junk}")


def test_output_errors_name_the_given_path(district: District) -> None:
    phone = district.home("phone")
    run("init", "--home", phone, "--partition", VILLAGE)
    out = "/nonexistent/dir/x.crt"
    line = refused(run("authority", "issue", "--home", district.authority,
                       phone / "device.csr", "--role", "pantarlih", "--scope", VILLAGE,
                       "-o", out, check=False), out)
    assert ".tmp" not in line


def test_after_seq_out_of_range_names_the_option(district: District) -> None:
    phone = district.enrol("phone")
    line = refused(run("authority", "revoke", "--home", district.authority, device_id(phone),
                       "--after-seq", "99999999999999999999999", check=False), "--after-seq")
    assert "after_seq" not in line
    assert stored_revocations(district.authority) == 0
    assert parse_blob((phone / "device.crt").read_bytes())[0].scope == VILLAGE
