"""Key rotation (docs/failure-cases.md B14, the rotation half), with the real ``meshsync``
command in subprocesses, ``meshsync serve`` / ``sync`` on 127.0.0.1 and bundles.

Made-up devices: KPU (root authority, admin), the district laptop (gateway), phone-A
(officer, key kA1 rotated to kA2), phone-B (another officer) and a "thief" holding a
copy of phone-A's home taken before the rotation (the copied key kA1).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netfixtures import (
    DISTRICT,
    VILLAGE,
    District,
    Servers,
    device_id,
    run,
    run_json,
    stored_changes,
    sync,
)

from meshsync.host.home import Home
from meshsync.model.change import decode_stored
from meshsync.model.identity import device_id as device_id_of
from meshsync.model.identity import sha256

TPS_A = f"{VILLAGE}/tps-001"
TPS_B = f"{VILLAGE}/tps-002"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrol once: laptop, phone-A (one TPS), phone-B and phone-W (the whole village)."""
    root = tmp_path_factory.mktemp("rotation")
    district = District(root)
    district.enrol("laptop", "gateway", DISTRICT)
    district.enrol("phone-a", scope=TPS_A, partition=TPS_A)
    district.enrol("phone-b", scope=VILLAGE, partition=TPS_B)
    district.enrol("phone-w", scope=VILLAGE, partition=TPS_A)
    return root


@dataclass
class Net:
    district: District
    servers: Servers

    def home(self, name: str) -> Path:
        return self.district.home(name)


@pytest.fixture
def net(template: Path, tmp_path: Path) -> Iterator[Net]:
    shutil.copytree(template, tmp_path / "d")
    servers = Servers(tmp_path)
    yield Net(District(tmp_path / "d"), servers)
    servers.stop_all()


# -- helpers -----------------------------------------------------------------------------


def put(home: Path, key: str, *assignments: str) -> dict[str, Any]:
    """``meshsync put --json``: the change (author, partition, seq)."""
    change: dict[str, Any] = run_json("put", "--home", home, "voters", key, *assignments)["change"]
    return change


def records(home: Path) -> dict[str, dict[str, Any]]:
    return {r["key"]: r["fields"] for r in run_json("ls", "--home", home, "voters")}


def bundle_from(home: Path, name: str) -> Path:
    out = home.parent / name
    run("bundle", "export", "--clear", "--home", home, "-o", out)
    return out


def import_bundle(home: Path, bundle: Path) -> tuple[int, dict[str, Any]]:
    proc = run("bundle", "import", "--home", home, bundle, "--json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def refused(*args: object, code: int = 1) -> str:
    """Run a command that must fail: exit ``code``, one ``meshsync: error:`` line
    (besides the notice of a revoked device wiping itself, cli/wipe.py)."""
    proc = run(*args, check=False)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith(
        ("meshsync: this device has been revoked", "  its own "))]
    assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), proc.stderr
    return lines[0]


def hlc_of(home: Path, author: str, partition: str, seq: int) -> int:
    from meshsync.model.identity import parse_device_id

    body, sig = stored_changes(home)[(parse_device_id(author), partition, seq)]
    return decode_stored(body, sig, sha256(body)).hlc


def rotate(net: Net, phone: Path, after_seq: int, *extra: object) -> dict[str, Any]:
    """``rekey`` on ``phone``, ``authority rotate`` at KPU, ``enroll`` on the phone."""
    plan = run_json("rekey", "--home", phone)
    cert = phone.parent / f"{phone.name}-rotated.crt"
    run("authority", "rotate", "--home", net.district.authority, plan["old_device_id"],
        plan["csr"], "--after-seq", after_seq, "-o", cert, *extra)
    enrolled: dict[str, Any] = run_json("enroll", "--home", phone, cert)
    return {"plan": plan, "enrolled": enrolled, "cert": cert}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- B14: the rotation reaches a phone that missed it through the laptop ----------------


def test_b14_rotated_key_is_refused_after_its_point_even_where_the_rotation_came_late(
        net: Net) -> None:
    kpu, laptop = net.district.authority, net.home("laptop")
    a, b = net.home("phone-a"), net.home("phone-b")
    ka1 = device_id(a)
    for i in (1, 2, 3):
        put(a, f"v-{i}", f"nama=Pemilih {i}")
    thief = a.parent / "thief"
    shutil.copytree(a, thief)  # the officer's key kA1 was copied

    server = net.servers.start(laptop)
    for home in (a, b, kpu):  # everyone holds kA1 1..3; KPU learns A's certificate
        assert sync(home, server)["rc"] == 0

    plan = run_json("rekey", "--home", a)
    assert plan["old_device_id"] == ka1 != plan["new_device_id"]
    assert (plan["heads"], plan["after_seq"], plan["created"]) == ({TPS_A: 3}, 3, True)
    assert mode(a / "next.key") == 0o600 and device_id(a) == ka1  # still signing with kA1
    cert = a.parent / "a2.crt"
    issued = run_json("authority", "rotate", "--home", kpu, ka1, a / "next.csr",
                      "--after-seq", "3", "-o", cert)
    assert (issued["role"], issued["scope"], issued["after_seq"]) == ("pantarlih", TPS_A, 3)
    assert issued["device_id"] == plan["new_device_id"]
    assert b"BEGIN MESHSYNC REVOCATION" in cert.read_bytes()

    enrolled = run_json("enroll", "--home", a, cert)
    ka2 = device_id(a)
    assert ka2 == plan["new_device_id"] == enrolled["device_id"]
    assert (enrolled["rotated_from"], enrolled["old_key"]) == (ka1, "revoked after seq 3")
    assert enrolled["signed_after_rotation"] == {}
    retired = Path(enrolled["retired_key"])
    assert mode(retired) == 0o600 and retired.name == f"{ka1}.key"
    assert not (a / "next.key").exists()
    change = put(a, "v-5", "nama=Sesudah rotasi")
    assert (change["author"], change["seq"]) == (ka2, 1)  # a new feed for the new key
    assert hlc_of(a, ka2, TPS_A, 1) > hlc_of(a, ka1, TPS_A, 3)  # the HLC goes on rising

    # The rotation reaches the laptop only (A's first session with its new key).
    assert sync(a, server)["rc"] == 0
    # The thief, with the copied kA1, writes seq 4; phone-B, which has not met anyone
    # since, takes it from a bundle: it cannot know.
    put(thief, "v-thief-1", "nama=Palsu 1")
    code, report = import_bundle(b, bundle_from(thief, "thief-1.bundle"))
    assert (code, report["applied"]) == (0, 1)
    put(thief, "v-thief-2", "nama=Palsu 2")
    later = bundle_from(thief, "thief-2.bundle")

    # B syncs with the laptop and learns the rotation, with kA2's change. B offered
    # kA1's seq 4 before the laptop's credentials reached it (the laptop refused it);
    # learning the rotation, B quarantines seq 4: out of its records, no longer
    # offered, kept as evidence. Both then hold the same, and the sync says so.
    met = sync(b, server)
    assert met["credentials_received"] >= 2 and met["changes_received"] == 1
    assert met["rc"] == 0 and met["converged"]
    laptop_log = run_json("log", "--home", laptop)
    (refusal,) = [r for r in laptop_log["refusals"] if r["author"] == ka1]
    assert refusal["seq"] == 4 and "revoked after seq 3" in refusal["reason"]
    (held,) = run_json("log", "--home", b)["quarantined"]
    assert (held["author"], held["seq"], held["ops"][0]["key"]) == (ka1, 4, "v-thief-1")
    assert "revoked after seq 3 (change seq 4)" in held["reason"]
    assert "quarantined" in held["reason"]
    # Later kA1 changes beyond 3 are refused with a reason naming the revocation ...
    code, report = import_bundle(b, later)
    assert (code, report["applied"], report["quarantined"]) == (3, 0, [])
    assert [(r["author"], r["seq"], r["stage"]) for r in report["refused"]] == [
        (ka1, 4, "authorization"), (ka1, 5, "hash chain")]
    assert "revoked after seq 3 (change seq 4)" in report["refused"][0]["reason"]
    # ... and the thief cannot even open a session with the old key any more.
    assert "revoked" in refused("sync", "--home", thief, server.address)

    # kA2 is accepted everywhere; `log` shows both of A's feeds.
    for home in (a, laptop, b):
        feeds = {(f["author"], f["partition"]): f["seq"] for f in run_json("log", "--home",
                                                                         home)["feeds"]}
        assert feeds[(ka2, TPS_A)] == 1 and feeds[(ka1, TPS_A)] >= 3
    assert sync(a, server)["rc"] == 0
    assert records(a) == records(laptop)
    assert set(records(laptop)) == {"v-1", "v-2", "v-3", "v-5"}
    # B took kA1's seq 4 before it knew of the rotation and quarantined it when it
    # learned it: B holds what A and the laptop hold, and its syncs converge.
    assert records(b) == records(laptop)
    assert sync(b, server)["converged"]
    assert server.stop() == 0


# -- the officer is never blocked; nothing of the old key is lost -------------------------


def test_the_old_key_signs_until_the_new_certificate_is_enrolled(net: Net) -> None:
    a, b = net.home("phone-a"), net.home("phone-b")
    ka1 = device_id(a)
    put(a, "v-1", "nama=Satu")
    first = run_json("rekey", "--home", a)
    assert first["after_seq"] == 1
    assert put(a, "v-2", "nama=Dua")["author"] == ka1  # work goes on with kA1
    again = run_json("rekey", "--home", a)  # the same new key, the current head
    assert (again["new_device_id"], again["created"], again["after_seq"]) == \
        (first["new_device_id"], False, 2)
    cert = a.parent / "a2.crt"
    # KPU has never met phone-A: the old certificate comes from the phone.
    run("authority", "rotate", "--home", net.district.authority, ka1, a / "next.csr",
        "--after-seq", "2", "--old-cert", a / "device.crt", "-o", cert)
    before = stored_changes(a)
    enrolled = run_json("enroll", "--home", a, cert)
    assert enrolled["signed_after_rotation"] == {}
    assert put(a, "v-3", "nama=Tiga")["author"] == device_id(a) != ka1
    after = stored_changes(a)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing re-signed
    # device.csr follows the device key; the old key is kept as it was.
    from meshsync.trust.rotation import csr_device_key

    home = Home.open(a)
    assert csr_device_key(home.csr_path.read_bytes()) == home.load_key().public_key
    assert [k.device_id for k in home.retired_keys()] == [ka1]

    code, report = import_bundle(b, bundle_from(a, "a.bundle"))
    assert (code, report["applied"], report["refused"]) == (0, 3, [])
    assert records(b) == records(a)


def test_old_key_edits_past_the_rotation_point_are_quarantined_at_enrolment(net: Net) -> None:
    a, b = net.home("phone-a"), net.home("phone-b")
    put(a, "v-1", "nama=Satu")
    plan = run_json("rekey", "--home", a)
    cert = a.parent / "a2.crt"
    run("authority", "rotate", "--home", net.district.authority, plan["old_device_id"],
        plan["csr"], "--after-seq", plan["after_seq"], "--old-cert", a / "device.crt",
        "-o", cert)
    put(a, "v-2", "nama=Terlambat")  # kA1 seq 2, after the point the authority signed
    enrolled = run("enroll", "--home", a, cert)
    assert "seq 2" in enrolled.stderr, enrolled.stderr
    assert "quarantined here" in enrolled.stderr, enrolled.stderr
    # Enrolling stores the revocation of the old key, which quarantines kA1's seq 2 on
    # A itself (one rule for every key, this device's own included): out of A's
    # records, listed by `meshsync log` with what it wrote, never offered.
    assert set(records(a)) == {"v-1"}
    (held,) = run_json("log", "--home", a)["quarantined"]
    assert (held["author"], held["seq"]) == (plan["old_device_id"], 2)
    assert held["ops"] == [{"op": "put", "collection": "voters", "key": "v-2",
                            "fields": {"nama": "Terlambat"}}]
    code, report = import_bundle(b, bundle_from(a, "a.bundle"))
    assert (code, report["refused"]) == (0, [])
    assert records(b) == records(a)


def test_one_after_seq_for_every_feed_leaves_lower_feeds_open_up_to_it(net: Net) -> None:
    """The documented limitation: a revocation has one seq for all of a device's feeds."""
    w, b = net.home("phone-w"), net.home("phone-b")
    for i in (1, 2, 3):
        put(w, f"v-a{i}", "nama=A")
    run("put", "--home", w, "voters", "v-b1", "nama=B", "--partition", TPS_B)
    thief = w.parent / "thief"
    shutil.copytree(w, thief)
    done = rotate(net, w, 3, "--old-cert", w / "device.crt")
    assert done["plan"]["heads"] == {TPS_A: 3, TPS_B: 1}
    run("put", "--home", thief, "voters", "v-b2", "nama=Palsu", "--partition", TPS_B)
    put(thief, "v-a4", "nama=Palsu")
    import_bundle(b, bundle_from(net.district.authority, "kpu.bundle"))  # the rotation
    code, report = import_bundle(b, bundle_from(thief, "thief.bundle"))
    assert code == 3
    assert [(r["partition"], r["seq"]) for r in report["refused"]] == [(TPS_A, 4)]
    assert "v-b2" in records(b)  # TPS_B seq 2 <= 3: still accepted (the gap)


def test_enroll_run_again_finishes_an_interrupted_switch(net: Net) -> None:
    """If enrolment stops after next.key became device.key but before device.crt was
    replaced, running the same `enroll` again finishes it."""
    a = net.home("phone-a")
    plan = run_json("rekey", "--home", a)
    cert = a.parent / "a2.crt"
    run("authority", "rotate", "--home", net.district.authority, plan["old_device_id"],
        plan["csr"], "--after-seq", 0, "--old-cert", a / "device.crt", "-o", cert)
    retired = Home.open(a).retired_key_path(plan["old_device_id"])  # the steps done
    retired.parent.mkdir(mode=0o700)
    shutil.copy2(a / "device.key", retired)
    (a / "next.key").replace(a / "device.key")
    run("enroll", "--home", a, cert)  # the certificate is for the device key now
    from meshsync.trust import parse_blob

    leaf = parse_blob((a / "device.crt").read_bytes())[0]
    assert leaf.device_key == Home.open(a).load_key().public_key
    assert put(a, "v-1", "nama=Satu")["author"] == plan["new_device_id"]


def test_a_rotation_file_splits_into_certificates_and_the_revocation(net: Net) -> None:
    from meshsync.trust import decode_revocation, parse_blob, split_credentials

    done = rotate(net, net.home("phone-a"), 0, "--old-cert", net.home("phone-a") / "device.crt")
    certs, revocations = split_credentials(done["cert"].read_bytes())
    assert [i.is_root for i in parse_blob(certs)] == [False, True]
    (revocation,) = [decode_revocation(r) for r in revocations]
    assert revocation.after_seq == 0
    assert device_id_of(revocation.device_key) == done["plan"]["old_device_id"]
    assert split_credentials(certs) == (certs, [])


# -- bad input ------------------------------------------------------------------------------


def test_rotate_refuses_bad_input_in_one_line(net: Net) -> None:
    kpu, a, b = net.district.authority, net.home("phone-a"), net.home("phone-b")
    ka1 = device_id(a)
    run("rekey", "--home", a)
    out = a.parent / "x.crt"
    stranger = a.parent / "stranger"
    run("init", "--home", stranger)

    def rot(*args: object, code: int = 1) -> str:
        return refused("authority", "rotate", "--home", kpu, *args, "-o", out, code=code)

    assert "unknown device" in rot(ka1, a / "next.csr", "--after-seq", 1)
    assert "unknown device" in rot(device_id(stranger), a / "next.csr", "--after-seq", 1)
    assert "itself" in rot(ka1, a / "device.csr", "--after-seq", 1, "--old-cert",
                           a / "device.crt")
    assert "does not exist" in rot(ka1, a / "missing.csr", "--after-seq", 1, code=2)
    assert "--after-seq" in rot(ka1, a / "next.csr", code=2)
    assert "-1" in rot(ka1, a / "next.csr", "--after-seq", -1, code=2)
    assert "not a device id" in rot("phone-a", a / "next.csr", "--after-seq", 1)
    assert "is for" in rot(ka1, a / "next.csr", "--after-seq", 1, "--old-cert",
                           b / "device.crt")
    garbage = a.parent / "garbage.csr"
    garbage.write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    assert "malformed certificate request" in rot(ka1, garbage, "--after-seq", 1)
    assert "no authority key" in refused("authority", "rotate", "--home", b, ka1,
                                         a / "next.csr", "--after-seq", 1, "-o", out)
    run("authority", "revoke", "--home", kpu, ka1, "--after-seq", "5")
    assert "already revoked after seq 5" in rot(ka1, a / "next.csr", "--after-seq", 1,
                                                "--old-cert", a / "device.crt")
    assert not out.exists()


def test_rekey_and_enroll_refuse_bad_input_in_one_line(net: Net) -> None:
    a, b = net.home("phone-a"), net.home("phone-b")
    bare = a.parent / "bare"
    run("init", "--home", bare)
    assert "not enrolled" in refused("rekey", "--home", bare)
    assert "no node home" in refused("rekey", "--home", a.parent / "nowhere")
    assert "Missing argument" in refused("authority", "rotate", "--home",
                                         net.district.authority, code=2)
    plan = run_json("rekey", "--home", a)
    cert = a.parent / "a2.crt"
    run("authority", "rotate", "--home", net.district.authority, plan["old_device_id"],
        plan["csr"], "--after-seq", 0, "--old-cert", a / "device.crt", "-o", cert)
    # The rotation certificate is not phone-B's.
    assert "not this device" in refused("enroll", "--home", b, cert)
    # `meshsync serve` holds the home (it takes no writes): refused, naming it.
    with (a / "daemon.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write(f"serve {os.getpid()}\n")
        lock.flush()
        assert f"meshsync serve (pid {os.getpid()})" in refused("enroll", "--home", a, cert)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert device_id(a) == plan["old_device_id"]  # nothing switched
    (a / "next.key").chmod(0o644)
    assert "readable by others" in refused("enroll", "--home", a, cert)
    (a / "next.key").chmod(0o600)
    run("enroll", "--home", a, cert)
    assert device_id(a) == plan["new_device_id"]


def test_rotate_is_an_authority_command() -> None:
    assert "rotate" in run("authority", "--help").stdout
