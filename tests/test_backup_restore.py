"""Issue 15 item 6: ``meshsync backup`` / ``meshsync restore`` with real processes on
127.0.0.1, in the README's district (KPU, central, the PPK laptop as sub-authority,
a phone).

* A phone is backed up while its daemon runs and takes puts through its API; the
  backup is restored into a new home, which gets a new key; the laptop rotates the old
  device to it and the new home enrolls; after syncing phone -> laptop -> central
  and restored home <-> laptop, nobody holds fork evidence and no record is lost
  (those of the backup, and the phone's edits made after it).
* A restored home never signs as the old device: the backup holds no private key,
  and before its rotation the home may not write at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonfixtures import DaemonProcess
from netfixtures import Servers, device_id, run, run_json, sync
from test_district_readme import SETUP, Shell

NOTES = "notes"

#: Holds the home lock of the folder argv[1] as a daemon would, until killed.
LOCK_HOLDER = """
import sys, time
from pathlib import Path
from meshsync.host.lock import try_lock
lock = try_lock(Path(sys.argv[1]), "daemon")
print("held" if lock else "refused", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README.md's district, set up once (KPU, CENTRAL, PPK, PHONE1, PHONE2)."""
    root = tmp_path_factory.mktemp("district")
    sh = Shell(root)
    for line in SETUP.splitlines():
        sh(line)
    return root


@pytest.fixture
def district(template: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(template, tmp_path / "d")
    return tmp_path / "d"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    found = Servers(tmp_path)
    yield found
    found.stop_all()


def notes(home: Path) -> dict[str, str]:
    """``key -> text`` of every note ``meshsync ls`` shows on ``home``."""
    return {r["key"]: r["fields"]["text"] for r in run_json("ls", "--home", home, NOTES)}


def forks(home: Path) -> list[Any]:
    """The fork evidence ``meshsync log`` shows on ``home``."""
    found: list[Any] = run_json("log", "--home", home)["forks"]
    return found


def feed_heads(home: Path) -> dict[tuple[str, str], tuple[int, str]]:
    """``(author, partition) -> (head seq, head hash)`` of every feed ``home`` holds."""
    feeds = run_json("log", "--home", home)["feeds"]
    return {(f["author"], f["partition"]): (f["seq"], f["head"]) for f in feeds}


def head_of(home: Path, author: str) -> int:
    """The highest seq of ``author`` that ``home`` holds (0: none)."""
    feeds = run_json("log", "--home", home)["feeds"]
    return max((f["seq"] for f in feeds if f["author"] == author), default=0)


def integrity_of(backup_file: Path, scratch: Path) -> str:
    """SQLite's ``integrity_check`` of the store copy inside ``backup_file``."""
    import sqlite3

    with tarfile.open(backup_file) as tar:
        member = tar.extractfile("store.sqlite")
        assert member is not None
        scratch.write_bytes(member.read())
    db = sqlite3.connect(scratch)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


class Writer(threading.Thread):
    """Puts notes through a daemon's API, one after another, until stopped."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon=True)
        self.node, self.done = daemon, threading.Event()
        self.written: dict[str, str] = {}

    def run(self) -> None:
        i = 0
        while not self.done.is_set():
            key, text = f"n{i:04d}", f"catatan {i}"
            self.node.put(NOTES, key, {"text": text})
            self.written[key] = text
            i += 1

    def wait_for(self, count: int) -> None:
        while len(self.written) < count:
            self.done.wait(0.01)
            assert self.is_alive(), "the writer stopped"


def back_up_while_writing(phone: Path, output: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Back up ``phone`` while its daemon takes puts; ``(written before the backup
    started, written in all)``. The daemon keeps writing after the backup ends."""
    daemon = DaemonProcess(phone, phone.parent / "phone-daemon.log", {}).start()
    writer = Writer(daemon)
    try:
        writer.start()
        writer.wait_for(20)
        before = dict(writer.written)
        run("backup", "--home", phone, "-o", output)
        assert len(writer.written) > len(before), "no put ran while the backup was made"
        writer.wait_for(len(writer.written) + 15)  # edits after the backup
    finally:
        writer.done.set()
        writer.join(30)
        daemon.stop()
    return before, dict(writer.written)


def test_backup_restore_rotate_sync_no_fork_nothing_lost(district: Path,
                                                         servers: Servers) -> None:
    phone, laptop, central = district / "PHONE1", district / "PPK", district / "CENTRAL"
    new = district / "PHONE1-RESTORED"
    backup_file = district / "phone1.backup"
    old_id = device_id(phone)
    before, written = back_up_while_writing(phone, backup_file)
    assert backup_file.stat().st_mode & 0o777 == 0o600
    assert integrity_of(backup_file, district / "copy.sqlite") == "ok"

    # the original phone still exists: its edits after the backup reach the laptop
    ppk = servers.start(laptop)
    sync(phone, ppk)

    plan = run_json("restore", backup_file, "--home", new)
    assert plan["old_device_id"] == old_id != plan["new_device_id"]
    in_backup = notes(new)
    assert before.items() <= in_backup.items() <= written.items()
    assert plan["after_seq"] >= len(before)

    # the rotation at the laptop (sub-authority), then enroll on the restored home
    after = max(head_of(laptop, old_id), int(plan["after_seq"]))
    ppk.stop()
    cert = district / "restored.crt"
    run("authority", "rotate", "--home", laptop, old_id, plan["csr"], "--after-seq",
        after, "-o", cert)
    run("enroll", "--home", new, cert)
    run("put", "--home", new, NOTES, "after-restore", "text=baru")
    assert device_id(new) == plan["new_device_id"]

    ppk = servers.start(laptop)
    sync(new, ppk)
    ppk.stop()
    hub = servers.start(central)
    sync(laptop, hub)
    hub.stop()
    ppk = servers.start(laptop)
    sync(new, ppk)

    expected = {**written, "after-restore": "baru"}
    agreed = feed_heads(laptop)
    for home in (laptop, central, new):
        assert forks(home) == [], home.name
        assert notes(home) == expected, home.name
        assert feed_heads(home) == agreed, home.name  # one history per feed
    old_feeds = {k: v for k, v in feed_heads(phone).items() if k[0] == old_id}
    assert old_feeds.items() <= agreed.items()  # the original phone's own feed agrees
    assert head_of(central, plan["new_device_id"]) == 1


def test_a_restored_home_cannot_sign_as_the_old_device(district: Path) -> None:
    phone, new = district / "PHONE2", district / "PHONE2-RESTORED"
    run("put", "--home", phone, NOTES, "a", "text=satu")
    backup_file = district / "phone2.backup"
    made = run_json("backup", "--home", phone, "-o", backup_file)
    assert made["private_keys"] is False
    with tarfile.open(backup_file) as tar:
        names = tar.getnames()
        blobs = [f.read() for m in tar.getmembers() if (f := tar.extractfile(m))]
    assert "device.key" not in names and "next.key" not in names
    assert not any(b"PRIVATE KEY" in blob for blob in blobs)
    assert json.loads(blobs[0])["device_id"] == device_id(phone)

    run("restore", backup_file, "--home", new)
    assert device_id(new) != device_id(phone)
    assert notes(new) == {"a": "satu"}
    proc = run("put", "--home", new, NOTES, "b", "text=dua", check=False)
    assert proc.returncode == 1
    assert "no certificate" in proc.stderr, proc.stderr
    assert run_json("log", "--home", new)["feeds"] == run_json("log", "--home", phone)["feeds"]


def test_restore_refuses_an_existing_home_or_one_in_use(district: Path) -> None:
    phone = district / "PHONE2"
    backup_file = district / "phone2.backup"
    run("backup", "--home", phone, "-o", backup_file)
    for target in (phone, district / "PPK"):
        proc = run("restore", backup_file, "--home", target, check=False)
        assert proc.returncode == 1 and "already a node home" in proc.stderr, proc.stderr
    busy = district / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    proc = run("restore", backup_file, "--home", busy, check=False)
    assert "not empty" in proc.stderr
    again = run("backup", "--home", phone, "-o", backup_file, check=False)
    assert again.returncode == 1 and "exists" in again.stderr, again.stderr
    busy.joinpath("x").unlink()
    # a process holding the folder's home lock as a daemon does (a daemon needs a home)
    with subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(busy)],
                          stdout=subprocess.PIPE, text=True) as lock_holder:
        try:
            assert lock_holder.stdout is not None
            assert lock_holder.stdout.readline() == "held\n"
            proc = run("restore", backup_file, "--home", busy, check=False)
            assert proc.returncode == 1 and "in use" in proc.stderr, proc.stderr
            assert sorted(p.name for p in busy.iterdir()) == ["daemon.lock"]
        finally:
            lock_holder.kill()
    run("restore", backup_file, "--home", busy)  # the same folder, once free
    assert device_id(busy) != device_id(phone)
    not_backup = district / "phone1.crt"
    proc = run("restore", not_backup, "--home", district / "other", check=False)
    assert proc.returncode == 1 and "not a meshsync backup" in proc.stderr, proc.stderr


def test_control_a_copied_home_with_its_key_forks_its_feed(district: Path,
                                                           servers: Servers) -> None:
    """Why a backup holds no key: a plain copy of a home (key included) that writes
    after the original did is a fork, and the laptop's ``meshsync log`` shows it once
    the copy's feed runs past the original's. (A copy that stops at the same seq is
    not seen by a sync today, which compares seqs: the restore test therefore also
    compares every feed's head hash.) So the fork-free result of the restore test
    is not for want of looking."""
    import shutil

    phone, copy, laptop = district / "PHONE2", district / "PHONE2-COPY", district / "PPK"
    run("put", "--home", phone, NOTES, "a", "text=satu")
    shutil.copytree(phone, copy)
    run("put", "--home", phone, NOTES, "b", "text=dua")
    run("put", "--home", copy, NOTES, "c", "text=tiga")
    run("put", "--home", copy, NOTES, "d", "text=empat")
    ppk = servers.start(laptop)
    sync(phone, ppk)
    sync(copy, ppk, check=False)
    assert [f["author"] for f in forks(laptop)] == [device_id(phone)]
