"""Sealed bundles and the wipe on revocation (issue 17), with the real ``meshsync``.

A district made with the real commands: KPU (root and admin device), central, the
Jila laptop (gateway), two Jila phones, a phone of another distrik and an unenrolled
home. Phone 1 records invented voters (examples/coklit sample generator) and exports a
bundle; every other step runs the ``meshsync`` console script in its own process:

* the sealed bundle holds none of the voters' NIKs or names (a clear one holds all);
* it imports on the district's other phone, on the laptop and at central, and is
  refused, in Indonesian with the reason, by the other distrik's phone and by the
  unenrolled home; an altered byte is refused whole;
* once KPU revokes phone 2, phone 1's next bundle is not sealed to it; importing it
  brings phone 2 its revocation (in the clear header), so phone 2 wipes itself: no
  voter's NIK or name left in its home, its own changes sealed for the authority in
  an evidence bundle that central reads and the laptop cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from meshsync.coklit.sample import generate
from test_bundle import meshsync_cmd

from meshsync.host.home import Home
from meshsync.model.identity import sha256
from meshsync.store.sqlite import SQLiteStore
from meshsync.trust import parse_blob

VOTERS = generate(1717, "Jila", voters_per_tps=4, tps_per_kampung=2)
TPS_A, TPS_B = VOTERS[0].partition, next(v.partition for v in VOTERS
                                          if v.partition != VOTERS[0].partition)
OTHER = "mimika/agimuga/kiliarma/tps-001"


def run(*args: Any, ok: tuple[int, ...] = (0,),
        lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    env["MESHSYNC_LANG"] = lang
    proc = subprocess.run([*meshsync_cmd(), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode in ok, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_json(*args: Any, ok: tuple[int, ...] = (0,)) -> Any:
    return json.loads(run(*args, "--json", ok=ok).stdout)


def enrolled(root: Path, name: str, kpu: Path, role: str, scope: str, partition: str) -> Path:
    home = root / name
    run("init", "--home", home, "--partition", partition)
    run("authority", "issue", "--home", kpu, home / "device.csr", "--role", role,
        "--scope", scope, "-o", root / f"{name}.crt")
    run("enroll", "--home", home, root / f"{name}.crt")
    return home


def share_credentials(homes: list[Path], into: Path) -> None:
    """What a sync's credential exchange does: every certificate and revocation the
    ``homes`` hold (their stores and device.crt) into ``into``'s store."""
    blobs: list[bytes] = []
    for home in homes:
        blobs += [i.der for i in parse_blob((home / "device.crt").read_bytes()) if not i.is_root]
        store = SQLiteStore(Home.open(home).store_path)
        blobs += store.credentials()
        store.close()
    store = SQLiteStore(Home.open(into).store_path)
    try:
        with store.transaction():
            for blob in blobs:
                store.add_credential(sha256(blob), blob)
    finally:
        store.close()


def secrets() -> list[bytes]:
    """Every sample voter's NIK and name, as the bytes a file would hold."""
    return [s.encode() for v in VOTERS for s in (v.fields["nik"], v.fields["nama"])]


def found_in(data: bytes) -> list[bytes]:
    return [s for s in secrets() if s in data]


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sealed")
    kpu = root / "kpu"
    run("authority", "init", "--home", kpu, "--name", "KPU Uji")
    homes = {
        "kpu": kpu,
        "central": enrolled(root, "central", kpu, "central", "", "mimika"),
        "laptop": enrolled(root, "laptop", kpu, "gateway", "mimika/jila", "mimika/jila"),
        "p1": enrolled(root, "p1", kpu, "pantarlih", TPS_A, TPS_A),
        "p2": enrolled(root, "p2", kpu, "pantarlih", TPS_B, TPS_B),
        "other": enrolled(root, "other", kpu, "pantarlih", OTHER, OTHER),
    }
    run("init", "--home", root / "stranger", "--partition", TPS_A)
    homes["stranger"] = root / "stranger"
    for name in ("p1", "p2"):  # the phones met every device in a sync
        share_credentials([h for k, h in homes.items() if k != "stranger"], homes[name])
    for v in VOTERS:
        if v.partition == TPS_A:
            run("put", "--home", homes["p1"], "voters", v.key, f"nik={v.fields['nik']}",
                f"nama={v.fields['nama']}")
    return homes


def test_a_sealed_bundle_opens_only_in_its_district(district: dict[str, Path]) -> None:
    p1 = district["p1"]
    own = sum(v.partition == TPS_A for v in VOTERS)
    clear = run_json("bundle", "export", "--clear", "--home", p1, "-o", p1.parent / "c.bundle")
    in_clear = found_in((p1.parent / "c.bundle").read_bytes())
    assert (p1.parent / "c.bundle").stat().st_mode & 0o777 == 0o600  # personal data
    assert not clear["sealed"] and {s for v in VOTERS if v.partition == TPS_A for s in (
        v.fields["nik"].encode(), v.fields["nama"].encode())} <= set(in_clear)
    sealed = run_json("bundle", "export", "--home", p1, "-o", p1.parent / "s.bundle")
    data = (p1.parent / "s.bundle").read_bytes()
    assert sealed["sealed"] and data.startswith(b"MSBUNDLE\x02")
    assert found_in(data) == []
    assert sorted(r["name"] for r in sealed["recipients"]) == sorted(
        [Home.open(district[n]).load_key().device_id and _cn(district[n])
         for n in ("kpu", "central", "laptop", "p1", "p2")])

    for name in ("p2", "laptop", "central"):
        report = run_json("bundle", "import", "--home", district[name], p1.parent / "s.bundle")
        assert report["applied"] == own, (name, report)

    other = run("bundle", "import", "--home", district["other"], p1.parent / "s.bundle",
                ok=(1,), lang="id")
    assert other.stderr.startswith("meshsync: gagal: ") and "bukan salah satunya" in \
        other.stderr, other.stderr
    stranger = run("bundle", "import", "--home", district["stranger"], p1.parent / "s.bundle",
                   ok=(1,), lang="id")
    assert "belum terdaftar" in stranger.stderr, stranger.stderr
    assert run_json("ls", "--home", district["other"], "voters") == []

    narrowed = run_json("bundle", "export", "--home", p1, "--to", "gateway",
                        "-o", p1.parent / "to-laptop.bundle")
    assert [r["name"] for r in narrowed["recipients"]] == [_cn(district["laptop"])]
    assert "is not one of them" in run("bundle", "import", "--home", district["p2"],
                                       p1.parent / "to-laptop.bundle", ok=(1,)).stderr
    outside = run("bundle", "export", "--home", p1, "--to", "mimika/agimuga",
                  "-o", p1.parent / "x.bundle", ok=(1,))
    assert "--to mimika/agimuga names no device" in outside.stderr


def _cn(home: Path) -> str:
    return parse_blob((home / "device.crt").read_bytes())[0].name


def test_an_altered_sealed_bundle_is_refused_whole(district: dict[str, Path],
                                                   tmp_path: Path) -> None:
    data = bytearray((district["p1"].parent / "s.bundle").read_bytes())
    data[-100] ^= 1  # inside the last chunk; the footer recomputed, as a forger would
    body = bytes(data[:-37])
    forged = tmp_path / "forged.bundle"
    forged.write_bytes(body + b"MSEND" + hashlib.sha256(body).digest())
    laptop = district["laptop"]
    before = run_json("log", "--home", laptop)
    proc = run("bundle", "import", "--home", laptop, forged, ok=(1,))
    assert "does not authenticate" in proc.stderr, proc.stderr
    assert run_json("log", "--home", laptop) == before
    flipped = tmp_path / "flipped.bundle"
    flipped.write_bytes(bytes(data))
    assert "checksum" in run("bundle", "import", "--home", laptop, flipped, ok=(1,)).stderr


def test_a_revoked_phone_wipes_itself_and_keeps_its_changes_for_the_authority(
        district: dict[str, Path]) -> None:
    p1, p2, kpu, root = district["p1"], district["p2"], district["kpu"], district["p1"].parent
    mine = [v for v in VOTERS if v.partition == TPS_B]
    for v in mine:  # phone 2's own work, never sent
        run("put", "--home", p2, "voters", v.key, f"nik={v.fields['nik']}",
            f"nama={v.fields['nama']}")
    p2_id = Home.open(p2).load_key().device_id
    run("authority", "revoke", "--home", kpu, p2_id, "--after-seq", "1",
        "--cert", p2 / "device.crt")
    share_credentials([kpu], p1)  # phone 1 learns the revocation
    sealed = run_json("bundle", "export", "--home", p1, "-o", root / "after.bundle")
    assert _cn(p2) not in [r["name"] for r in sealed["recipients"]]

    proc = run("bundle", "import", "--home", p2, root / "after.bundle", ok=(1,), lang="id")
    assert "dicabut" in proc.stderr and "bukan salah satunya" in proc.stderr, proc.stderr
    status = run_json("status", "--home", p2)
    wiped = status["wiped"]
    assert "store.sqlite" in wiped["removed"] and wiped["own_changes"] == len(mine)
    assert {r["role"] for r in wiped["evidence_for"]} <= {"central", "admin"}
    leftovers = b"".join(f.read_bytes() for f in p2.rglob("*") if f.is_file())
    assert found_in(leftovers) == [], "voter data left in the wiped home"
    assert "changes" not in status and not (p2 / "store.sqlite").exists()  # never reopened

    evidence = Path(wiped["evidence"])
    refused = run("bundle", "import", "--home", district["laptop"], evidence, ok=(1,))
    assert "is not one of them" in refused.stderr
    report = run_json("bundle", "import", "--home", district["central"], evidence, ok=(3,))
    assert report["applied"] == 1 and [r["seq"] for r in report["refused"]] == \
        list(range(2, len(mine) + 1))
    first = run_json("get", "--home", district["central"], "voters", mine[0].key)
    assert first["fields"]["nama"] == mine[0].fields["nama"]


def test_wipe_command_asks_first_and_leaves_no_voter_data(district: dict[str, Path]) -> None:
    laptop = district["laptop"]
    assert run_json("ls", "--home", laptop, "voters")
    run("backup", "--home", laptop, "-o", laptop / "laptop-backup.tar.gz")
    (laptop / "notes.log").write_text("imported " + VOTERS[0].fields["nama"])
    asked = subprocess.run([*meshsync_cmd(), "wipe", "--home", str(laptop)], input="n\n",
                           capture_output=True, text=True, check=False, timeout=60)
    assert asked.returncode == 1 and (laptop / "store.sqlite").exists()
    unasked = subprocess.run([*meshsync_cmd(), "wipe", "--home", str(laptop)], input="",
                             capture_output=True, text=True, check=False, timeout=60)
    assert unasked.returncode == 1 and "add --yes" in unasked.stderr, unasked.stderr
    assert "Ctrl-C" not in unasked.stderr and (laptop / "store.sqlite").exists()
    record = run_json("wipe", "--home", laptop, "--yes")
    assert {"store.sqlite", "laptop-backup.tar.gz", "notes.log"} <= set(record["removed"])
    leftovers = b"".join(f.read_bytes() for f in laptop.rglob("*") if f.is_file())
    assert found_in(leftovers) == []
    refused = run("ls", "--home", laptop, "voters", ok=(1,))  # never reopened, no new store
    assert "was wiped" in refused.stderr and not (laptop / "store.sqlite").exists()


def test_a_revoked_phone_running_its_daemon_wipes_itself_and_stops(
        district: dict[str, Path], tmp_path: Path) -> None:
    """The bundle goes through the phone's daemon (as on a phone, where the app's node
    runs): the daemon learns the revocation, seals the officer's work, stops, wipes."""
    from daemonfixtures import DaemonProcess
    from netfixtures import wait_until

    kpu, p1, root = district["kpu"], district["p1"], district["p1"].parent
    p3 = enrolled(root, "p3", kpu, "pantarlih", TPS_B, TPS_B)
    share_credentials([h for k, h in district.items() if k not in ("stranger", "p2")], p3)
    share_credentials([p3], p1)  # they met: phone 1 now seals to phone 3 too
    run_json("bundle", "export", "--home", p1, "-o", root / "to-p3.bundle")
    assert run_json("bundle", "import", "--home", p3, root / "to-p3.bundle")["applied"]
    mine = next(v for v in VOTERS if v.partition == TPS_B)
    run("put", "--home", p3, "voters", "p3-own", f"nik={mine.fields['nik']}",
        f"nama={mine.fields['nama']}")
    daemon = DaemonProcess(p3, tmp_path / "p3.log", {"mesh": "uji"}).start()
    try:
        run("authority", "revoke", "--home", kpu, Home.open(p3).load_key().device_id,
            "--cert", p3 / "device.crt")
        share_credentials([kpu], p1)
        run_json("bundle", "export", "--home", p1, "-o", root / "after-p3.bundle")
        run("bundle", "import", "--home", p3, root / "after-p3.bundle", ok=(1,))
        assert daemon.proc is not None
        wait_until(lambda: daemon.proc is not None and daemon.proc.poll() is not None, 30,
                   "the revoked daemon to stop")
        assert daemon.proc.returncode == 0, daemon.quoted_log()
    finally:
        daemon.kill()
    assert "this device has been revoked" in daemon.log()
    assert "Traceback" not in daemon.log(), daemon.quoted_log()
    wiped = run_json("status", "--home", p3)["wiped"]
    assert wiped["own_changes"] == 1 and wiped["evidence"]
    leftovers = b"".join(f.read_bytes() for f in p3.rglob("*") if f.is_file())
    assert found_in(leftovers) == []
    report = run_json("bundle", "import", "--home", district["central"], wiped["evidence"],
                      ok=(3,))
    assert [r["stage"] for r in report["refused"]] == ["authorization"]


def test_wipe_keeps_own_changes_it_cannot_seal_unless_told(district: dict[str, Path]) -> None:
    stranger = district["stranger"]  # unenrolled: no authority device to seal to
    run("put", "--home", stranger, "voters", "v-1", f"nama={VOTERS[0].fields['nama']}")
    refused = run("wipe", "--home", stranger, "--yes", ok=(1,))
    assert "--discard-own" in refused.stderr and (stranger / "store.sqlite").exists()
    record = run_json("wipe", "--home", stranger, "--yes", "--discard-own")
    assert record["evidence"] is None and record["own_changes"] == 1
    assert not (stranger / "store.sqlite").exists()


def test_a_revoked_phone_learns_it_from_the_peer_that_refuses_its_sync(
        district: dict[str, Path], tmp_path: Path) -> None:
    """Central refuses the revoked phone's session and sends the revocation with its
    ERROR; the phone stores it and wipes itself (cli/sync.py, net/endpoints.py)."""
    from netfixtures import ServerProcess

    kpu, central, root = district["kpu"], district["central"], district["p1"].parent
    p4 = enrolled(root, "p4", kpu, "pantarlih", TPS_B, TPS_B)
    share_credentials([central], p4)
    mine = next(v for v in VOTERS if v.partition == TPS_B)
    run("put", "--home", p4, "voters", "p4-own", f"nama={mine.fields['nama']}")
    run("authority", "revoke", "--home", kpu, Home.open(p4).load_key().device_id,
        "--cert", p4 / "device.crt")
    share_credentials([kpu], central)
    server = ServerProcess(central, tmp_path / "serve.log")
    try:
        proc = run("sync", "--home", p4, server.address, ok=(1,))
    finally:
        server.stop()
    assert "revoked" in proc.stderr and "sync failed" in proc.stderr, proc.stderr
    assert not (p4 / "store.sqlite").exists()
    wiped = run_json("status", "--home", p4)["wiped"]
    assert wiped["own_changes"] == 1 and wiped["evidence"], wiped
    assert "sync with" in wiped["reason"]


def test_no_wipe_while_a_key_rotation_waits(district: dict[str, Path]) -> None:
    """A rotation revokes the old key; a device that learns it before it enrols its new
    certificate (next.key waiting) must not wipe itself."""
    from meshsync.host.local import open_node
    from meshsync.host.wipe import revoked_self

    kpu, root = district["kpu"], district["p1"].parent
    p5 = enrolled(root, "p5", kpu, "pantarlih", TPS_B, TPS_B)
    run("rekey", "--home", p5)
    run("authority", "revoke", "--home", kpu, Home.open(p5).load_key().device_id,
        "--after-seq", "0", "--cert", p5 / "device.crt")
    share_credentials([kpu], p5)
    with open_node(p5) as node:
        assert revoked_self(node) and not revoked_self(node, Home.open(p5))
    (p5 / "next.key").unlink()
    with open_node(p5) as node:
        assert revoked_self(node, Home.open(p5))
