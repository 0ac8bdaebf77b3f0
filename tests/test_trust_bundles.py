"""Issue 3 end to end: authorization of every change, through the CLI and bundles.

Homes: KPU (root authority), the district laptop, phones, and a receiving phone C,
all made with the real ``meshsync`` commands. Changes a well-behaved device could not
make (outside its scope, after its certificate expired) are forged with the library
on the device's own key and store, as a misbehaving or tampered phone would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from meshsync.cli.main import main

from meshsync.host.home import Home
from meshsync.replica.node import Node
from meshsync.replica.policy import OpenTrust
from meshsync.store.sqlite import SQLiteStore
from meshsync.trust import issue_device_certificate, issue_sub_authority, load_authority_key

VILLAGE = "mimika/jila/diloa"
TPS1 = f"{VILLAGE}/tps-001"


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> Any:
    """Run ``meshsync ARGS``; parse JSON output when ``--json`` is given."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code in ok, (args, result.exit_code, result.output)
    if "--json" in args and result.exit_code in (0, 3):
        return json.loads(result.stdout)
    return result


def enrolled(root: Path, name: str, authority: Path, role: str, scope: str,
             partition: str = TPS1, days: int = 365) -> Path:
    home = root / name
    cli("init", "--home", str(home), "--partition", partition)
    cert = root / f"{name}.crt"
    cli("authority", "issue", "--home", str(authority), str(home / "device.csr"), "--role",
        role, "--scope", scope, "--days", str(days), "-o", str(cert))
    cli("enroll", "--home", str(home), str(cert))
    return home


def forge(home: Path, edits: list[tuple[str, str, dict[str, Any]]], clock_ms: int | None = None
          ) -> None:
    """Write changes with the device's own key, skipping its local authorization."""
    h = Home.open(home)
    store = SQLiteStore(h.store_path)
    try:
        now = clock_ms or int(datetime.now(UTC).timestamp() * 1000)
        node = Node(store, h.load_key(), lambda: now, trust=OpenTrust())
        for partition, key, fields in edits:
            node.put("voters", key, fields, partition)
    finally:
        store.close()


def export(home: Path, name: str) -> Path:
    out = home.parent / name
    cli("bundle", "export", "--clear", "--home", str(home), "-o", str(out))
    return out


def import_json(home: Path, bundle: Path) -> dict[str, Any]:
    result: dict[str, Any] = cli("bundle", "import", "--home", str(home), str(bundle), "--json",
                                 ok=(0, 3))
    return result


def keys_in(home: Path) -> list[str]:
    return [r["key"] for r in cli("ls", "--home", str(home), "voters", "--json")]


@pytest.fixture
def district(tmp_path: Path) -> dict[str, Path]:
    kpu = tmp_path / "kpu"
    cli("authority", "init", "--home", str(kpu), "--name", "KPU Uji")
    return {
        "kpu": kpu,
        "laptop": enrolled(tmp_path, "laptop", kpu, "gateway", "mimika/jila", "mimika/jila"),
        "p1": enrolled(tmp_path, "p1", kpu, "pantarlih", TPS1),
        "c": enrolled(tmp_path, "c", kpu, "pantarlih", VILLAGE, f"{VILLAGE}/tps-002"),
    }


def test_bundle_from_an_unenrolled_device_is_refused_naming_it(
        tmp_path: Path, district: dict[str, Path]) -> None:
    stranger = tmp_path / "stranger"
    cli("init", "--home", str(stranger), "--partition", TPS1)
    cli("put", "--home", str(stranger), "voters", "v-9", "nama=Contoh Palsu")
    stranger_id = Home.open(stranger).load_key().device_id
    bundle = export(stranger, "stranger.bundle")

    result = CliRunner().invoke(main, ["bundle", "import", "--home", str(district["c"]),
                                       str(bundle)])
    assert result.exit_code == 3
    assert stranger_id[:8] in result.output
    report = import_json(district["c"], bundle)
    assert report["applied"] == 0
    assert [r["stage"] for r in report["refused"]] == ["authorization"]
    assert report["refused"][0]["author"] == stranger_id
    assert stranger_id[:8] in report["refused"][0]["reason"]
    assert "v-9" not in keys_in(district["c"])


def test_change_outside_scope_is_refused_and_the_rest_applies(
        district: dict[str, Path]) -> None:
    forge(district["p1"], [(TPS1, "v-1", {"nama": "Yosina"}),
                           (f"{VILLAGE}/tps-009", "v-2", {"nama": "Di luar"}),
                           ])
    forge(district["p1"], [(TPS1, "v-3", {"nama": "Natalis"})])
    report = import_json(district["c"], export(district["p1"], "p1.bundle"))

    assert report["applied"] == 2
    (refusal,) = report["refused"]
    assert refusal["partition"] == f"{VILLAGE}/tps-009"
    assert refusal["stage"] == "authorization"
    assert "scope" in refusal["reason"]
    assert keys_in(district["c"]) == ["v-1", "v-3"]
    log = cli("log", "--home", str(district["c"]), "--json")
    assert any(r["partition"] == f"{VILLAGE}/tps-009" for r in log["refusals"])


def test_revocation_learned_through_someone_elses_bundle(district: dict[str, Path]) -> None:
    p1 = district["p1"]
    p1_id = Home.open(p1).load_key().device_id
    for i in range(3):
        cli("put", "--home", str(p1), "voters", f"v-{i}", f"nama=Contoh {i}")
    cli("authority", "revoke", "--home", str(district["kpu"]), p1_id, "--after-seq", "1")
    # KPU -> laptop -> C: C only ever sees the revocation inside the laptop's bundle.
    import_json(district["laptop"], export(district["kpu"], "kpu.bundle"))
    import_json(district["c"], export(district["laptop"], "laptop.bundle"))

    report = import_json(district["c"], export(p1, "p1.bundle"))
    assert report["applied"] == 1
    assert sorted(r["seq"] for r in report["refused"]) == [2, 3]
    assert "revoked" in report["refused"][0]["reason"]
    assert keys_in(district["c"]) == ["v-0"]


def test_expired_certificate_is_refused(tmp_path: Path, district: dict[str, Path]) -> None:
    home = enrolled(tmp_path, "short-lived", district["kpu"], "pantarlih", TPS1, days=1)
    three_days_on = int((datetime.now(UTC) + timedelta(days=3)).timestamp() * 1000)
    forge(home, [(TPS1, "v-late", {"nama": "Terlambat"})], clock_ms=three_days_on)

    report = import_json(district["c"], export(home, "late.bundle"))
    assert report["applied"] == 0
    (refusal,) = report["refused"]
    assert refusal["stage"] == "authorization"
    assert "expired" in refusal["reason"]
    assert "v-late" not in keys_in(district["c"])


def test_sub_authority_cannot_issue_outside_its_prefix(
        tmp_path: Path, district: dict[str, Path]) -> None:
    from test_trust import hand_built  # the profile without issue-time checks

    from meshsync.trust import generate_authority_key

    kpu = district["kpu"]
    root_key = load_authority_key((kpu / "authority.key").read_bytes())
    sub_key = generate_authority_key()
    sub_pem = issue_sub_authority(root_key, (kpu / "authority.crt").read_bytes(),
                                  sub_key.public_key(), name="PPK Agimuga",
                                  scope="mimika/agimuga", now=datetime.now(UTC))
    # The library refuses to issue outside the prefix ...
    home = tmp_path / "rogue"
    cli("init", "--home", str(home), "--partition", TPS1)
    with pytest.raises(Exception, match="outside"):
        issue_device_certificate(sub_key, sub_pem, (home / "device.csr").read_bytes(),
                                 role="pantarlih", scope=TPS1, now=datetime.now(UTC))
    # ... and a certificate built by hand anyway is refused where it is used.
    rogue = hand_built(sub_key, sub_pem, Home.open(home).load_key(), TPS1)
    _add_credential(home, sub_pem)
    _add_credential(home, rogue)
    forge(home, [(TPS1, "v-rogue", {"nama": "Palsu"})])

    report = import_json(district["c"], export(home, "rogue.bundle"))
    assert report["applied"] == 0
    assert report["refused"][0]["stage"] == "authorization"
    assert "v-rogue" not in keys_in(district["c"])


def test_certificate_from_another_authority_is_refused(
        tmp_path: Path, district: dict[str, Path]) -> None:
    other = tmp_path / "other-kpu"
    cli("authority", "init", "--home", str(other), "--name", "KPU Lain")
    home = enrolled(tmp_path, "foreign", other, "pantarlih", TPS1)
    cli("put", "--home", str(home), "voters", "v-x", "nama=Asing")

    report = import_json(district["c"], export(home, "foreign.bundle"))
    assert report["applied"] == 0
    (refusal,) = report["refused"]
    assert refusal["stage"] == "authorization"
    assert "trusted root" in refusal["reason"]
    assert "v-x" not in keys_in(district["c"])


def test_importing_the_same_bundle_twice_changes_nothing(district: dict[str, Path]) -> None:
    for i in range(3):
        cli("put", "--home", str(district["p1"]), "voters", f"v-{i}", f"nama=Contoh {i}")
    bundle = export(district["p1"], "p1.bundle")
    first = import_json(district["c"], bundle)
    before = (cli("ls", "--home", str(district["c"]), "voters", "--json"),
              cli("log", "--home", str(district["c"]), "--json"))
    second = import_json(district["c"], bundle)
    after = (cli("ls", "--home", str(district["c"]), "voters", "--json"),
             cli("log", "--home", str(district["c"]), "--json"))

    assert first["applied"] == 3
    assert (second["applied"], second["duplicates"], second["credentials_new"]) == (0, 3, 0)
    assert before == after


def _add_credential(home: Path, pem: bytes) -> None:
    """Put a certificate into the home's store so it travels in its bundles."""
    from meshsync.model.identity import sha256
    from meshsync.trust import parse_blob

    store = SQLiteStore(Home.open(home).store_path)
    try:
        with store.transaction():
            for info in parse_blob(pem):
                if not info.is_root:
                    store.add_credential(sha256(info.der), info.der)
    finally:
        store.close()
