"""One home, one writer (docs/architecture.md §9), with real processes on 127.0.0.1.

Each writer keeps the home's hybrid logical clock in memory. When that clock is ahead
of wall time (it received a change stamped in the future), two writers on one home
would reserve the same HLC for two changes of the same author, and op ids
``(hlc, author)`` would collide. So while a daemon holds a home, CLI writes go through
its local API; with none, a CLI write holds the home's lock; a second daemon or
``serve`` on the home is refused with one line naming the home and the holder's pid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from daemonfixtures import DaemonProcess
from netfixtures import LOOPBACK, MESHSYNC, VILLAGE, District, run, run_json, wait_until

from meshsync.host.home import Home
from meshsync.model.change import decode_stored
from meshsync.model.hlc import make
from meshsync.store import SQLiteStore

TPS = f"{VILLAGE}/tps-001"
#: How far ahead of wall time the home's clock is set (it learned a future stamp).
AHEAD_MS = 5 * 60 * 1000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One enrolled phone home, made once."""
    root = tmp_path_factory.mktemp("writer")
    district = District(root)
    district.enrol("phone", partition=TPS)
    district.enrol("central", "central", scope="", partition="mimika")
    return root / "phone"


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the phone home whose stored HLC is :data:`AHEAD_MS` past wall time."""
    path = tmp_path / "phone"
    shutil.copytree(template, path)
    store = SQLiteStore(path / "store.sqlite")
    try:
        with store.transaction():
            ahead = make(time.time_ns() // 1_000_000 + AHEAD_MS)
            store.set_meta("hlc", ahead.to_bytes(8, "big"))
    finally:
        store.close()
    yield path


def own_changes(home: Path) -> list[tuple[str, int, int, int]]:
    """``(partition, seq, hlc, op count)`` of every change the home's store holds."""
    store = SQLiteStore(home / "store.sqlite")
    try:
        rows = []
        for feed in store.feeds():
            for stored in store.iter_changes(feed.feed, 0):
                change = decode_stored(stored.body, stored.sig, stored.hash)
                rows.append((change.partition, change.seq, change.hlc, len(change.ops)))
        return rows
    finally:
        store.close()


def assert_distinct_and_contiguous(home: Path, expected: int) -> None:
    """Every op id ``(hlc, author)`` distinct (one author here), every feed's seqs
    1..n, ``expected`` changes in all."""
    rows = own_changes(home)
    op_ids = Counter(hlc + i for _, _, hlc, n in rows for i in range(n))
    duplicated = {op: k for op, k in op_ids.items() if k > 1}
    assert not duplicated, (f"{sum(duplicated.values()) - len(duplicated)} duplicate op "
                            f"ids among {len(rows)} changes")
    for partition in {p for p, *_ in rows}:
        seqs = sorted(seq for p, seq, *_ in rows if p == partition)
        assert seqs == list(range(1, len(seqs) + 1)), f"seqs of {partition}: {seqs}"
    assert len(rows) == expected, len(rows)


def cli_put(home: Path, key: str) -> None:
    run("put", "--home", home, "voters", key, f"nama=Warga {key}", timeout=120)


def test_cli_and_daemon_writes_on_one_home_get_distinct_op_ids(home: Path,
                                                               tmp_path: Path) -> None:
    daemon = DaemonProcess(home, tmp_path / "daemon.log", {"mesh": "uji"}).start()
    try:
        with ThreadPoolExecutor(8) as pool:
            jobs = []
            for i in range(100):
                jobs.append(pool.submit(cli_put, home, f"c-{i:03}"))
                jobs.append(pool.submit(daemon.put, "voters", f"a-{i:03}",
                                        {"nama": f"Warga a-{i:03}"}))
            for job in jobs:
                job.result()
    finally:
        assert daemon.stop() == 0
    assert_distinct_and_contiguous(home, 200)


def test_cli_writes_without_a_daemon_take_turns(home: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        for job in [pool.submit(cli_put, home, f"c-{i:02}") for i in range(24)]:
            job.result()
    assert_distinct_and_contiguous(home, 24)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshsync: error: "), stderr
    return lines[0]


@pytest.mark.parametrize("second", ["daemon", "serve"])
def test_a_second_daemon_or_serve_on_a_home_is_refused_naming_the_holder(
        home: Path, tmp_path: Path, second: str) -> None:
    first = DaemonProcess(home, tmp_path / "daemon.log", {"mesh": "uji"}).start()
    try:
        args = ["--listen", f"{LOOPBACK}:0"]
        if second == "daemon":
            args += ["--api", f"{LOOPBACK}:0"]
        proc = run(second, "--home", home, *args, check=False, timeout=60)
    finally:
        first.stop()
    line = one_error_line(proc.stderr)
    assert proc.returncode == 1, proc.returncode
    assert str(home) in line and f"pid {first.pid}" in line, line


def test_serve_holds_the_home_so_a_daemon_is_refused(home: Path, tmp_path: Path) -> None:
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([*MESHSYNC, "serve", "--home", str(home), "--listen",
                              f"{LOOPBACK}:0"], stdin=subprocess.DEVNULL, stderr=log)
    try:
        wait_until(lambda: "serving" in (tmp_path / "serve.log").read_text(), 30, "serve")
        proc = run("daemon", "--home", home, "--listen", f"{LOOPBACK}:0", "--api",
                   f"{LOOPBACK}:0", check=False, timeout=60)
        line = one_error_line(proc.stderr)
        assert str(home) in line and f"pid {serve.pid}" in line, line
        assert "serve" in line
    finally:
        serve.terminate()
        serve.wait(15)
        log.close()
    assert os.path.exists(home / "daemon.lock")


def test_rekey_and_enroll_go_through_the_daemon_which_switches_keys(
        home: Path, template: Path, tmp_path: Path) -> None:
    kpu = tmp_path / "kpu"
    shutil.copytree(template.parent / "kpu", kpu)
    daemon = DaemonProcess(home, tmp_path / "daemon.log", {"mesh": "uji"}).start()
    try:
        old = daemon.status()["device_id"]
        plan = run_json("rekey", "--home", home)
        assert plan["old_device_id"] == old and plan["created"], plan
        cert = tmp_path / "new.crt"
        run("authority", "rotate", "--home", kpu, old, plan["csr"], "--after-seq",
            plan["after_seq"], "--old-cert", home / "device.crt", "-o", cert)
        enrolled = run_json("enroll", "--home", home, cert)
        assert enrolled["rotated_from"] == old, enrolled
        assert daemon.status()["device_id"] == plan["new_device_id"]
        change = run_json("put", "--home", home, "voters", "v-baru", "nama=Baru")["change"]
        assert change["author"] == plan["new_device_id"], change
    finally:
        assert daemon.stop() == 0
    assert Home.open(home).load_key().device_id == plan["new_device_id"]


def test_a_voter_list_import_goes_through_the_daemon(template: Path, tmp_path: Path) -> None:
    home = tmp_path / "central"
    shutil.copytree(template.parent / "central", home)
    csv = tmp_path / "dpt.csv"
    run("coklit", "generate", "--seed", 7, "--distrik", "Jila", "--voters-per-tps", 5,
        "--tps-per-kampung", 1, "-o", csv)
    daemon = DaemonProcess(home, tmp_path / "daemon.log", {"mesh": "uji"}).start()
    try:
        report = run_json("coklit", "import", csv, "--home", home, "--batch-size", 4)
        assert report["bad"] == [] and report["imported"] > 0, report
        assert daemon.status()["changes"] == report["changes"]
        again = run_json("coklit", "import", csv, "--home", home)
        assert again["imported"] == 0 and again["unchanged"] == report["imported"], again
    finally:
        assert daemon.stop() == 0
    assert "schema = \"coklit\"" in (home / "config.toml").read_text()


def test_authority_revoke_goes_through_the_daemon_holding_the_home(
        home: Path, template: Path, tmp_path: Path) -> None:
    """The revocation is stored, and its changes quarantined, by the daemon holding the
    authority's home (whose counts follow at once), not by the CLI process."""
    kpu = tmp_path / "kpu"
    shutil.copytree(template.parent / "kpu", kpu)
    for i in range(3):
        cli_put(home, f"r-{i}")
    bundle = tmp_path / "phone.bundle"
    run("bundle", "export", "--clear", "--home", home, "-o", bundle)
    daemon = DaemonProcess(kpu, tmp_path / "daemon.log", {"mesh": "uji"}).start()
    try:
        run("bundle", "import", "--home", kpu, bundle)
        before = daemon.status()["changes"]
        phone = Home.open(home).load_key().device_id
        done = run_json("authority", "revoke", "--home", kpu, phone, "--after-seq", "1")
        assert done["stored"] and done["after_seq"] == 1, done
        assert daemon.status()["changes"] == before - 2
    finally:
        assert daemon.stop() == 0
    quarantined = run_json("log", "--home", kpu)["quarantined"]
    assert len(quarantined) == 2, quarantined


def test_authority_commands_are_refused_while_serve_holds_the_home(
        template: Path, tmp_path: Path) -> None:
    kpu = tmp_path / "kpu"
    shutil.copytree(template.parent / "kpu", kpu)
    phone = Home.open(template).load_key().device_id
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([*MESHSYNC, "serve", "--home", str(kpu), "--listen",
                              f"{LOOPBACK}:0"], stdin=subprocess.DEVNULL, stderr=log)
    try:
        wait_until(lambda: "serving" in (tmp_path / "serve.log").read_text(), 30, "serve")
        proc = run("authority", "revoke", "--home", kpu, phone, check=False, timeout=60)
        line = one_error_line(proc.stderr)
        assert str(kpu) in line and "serve" in line, line
    finally:
        serve.terminate()
        serve.wait(15)
        log.close()
