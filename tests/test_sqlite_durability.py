"""SQLite store durability: numbered migrations, SIGKILL after a put (B21), failed writes.

The SIGKILL tests run a real child process; no timing is involved: the child prints a
line only after ``put`` has returned, and the parent kills it as soon as it reads one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Device

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.errors import StorageError, UsageError
from meshsync.store.base import RecordRow, StoredChange
from meshsync.store.sqlite import MIGRATIONS, SQLiteStore

MakeDevice = Callable[..., Device]

# -- migrations --------------------------------------------------------------------------


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_fresh_store_has_every_migration(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        assert store.schema_version == len(MIGRATIONS) >= 1
    finally:
        store.close()
    assert user_version(tmp_path / "s.sqlite") == len(MIGRATIONS)


def test_reopening_keeps_data_and_version(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path)
    with store.transaction():
        store.set_meta("hlc", b"\x01")
    store.close()
    again = SQLiteStore(path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert again.get_meta("hlc") == b"\x01"
    finally:
        again.close()


def test_store_from_a_newer_meshsync_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StorageError, match=r"newer than this meshsync.*upgrade meshsync"):
        SQLiteStore(path)
    assert user_version(path) == len(MIGRATIONS) + 1  # left as it was, for the newer version


def test_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE changes (x)")  # something in the way of migration 1
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="cannot open store"):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"changes"}  # meta and feeds, created before the failure, are gone
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        db.close()


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database file, it is a note from an officer" * 100)
    with pytest.raises(StorageError):
        SQLiteStore(path)
    assert path.read_bytes().startswith(b"this is not")  # never deleted or overwritten


# -- SIGKILL right after put returns -----------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    from meshsync.host.local import open_node
    with open_node(sys.argv[1]) as node:
        i = int(sys.argv[2])
        while True:
            node.put("voters", f"v-{i:05d}", {"nama": f"Contoh {i}", "n": i, "pad": "x" * 300})
            print(i, flush=True)
            i += 1
""")


def kill_after(home: Path, lines: int, start: int) -> int:
    """Run the child (numbering puts from ``start``) until it has reported ``lines``
    puts, then SIGKILL it at once. Returns the index of the last put that returned,
    counting lines the child printed that were still in the pipe when it died."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        last = -1
        for _ in range(lines):
            line = child.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"child died: {child.stderr.read()}")  # type: ignore[union-attr]
            last = int(line)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
        for line in child.stdout.read().splitlines():  # type: ignore[union-attr]
            last = int(line)  # a put that returned while we were reading
        return last
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]


def check_home(home: Path, last: int) -> int:
    """Every put up to ``last`` is there and the file is sound; returns the number of puts.

    The put the kill interrupted is either wholly there or wholly absent.
    """
    store = SQLiteStore(Home.open(home).store_path)
    try:
        assert store.integrity_check() == "ok"
    finally:
        store.close()
    with open_node(home) as node:
        keys = [r.key for r in node.records("voters")]
        count = len(keys)
        assert count in (last + 1, last + 2)
        assert keys == [f"v-{i:05d}" for i in range(count)]  # nothing lost in between
        for i in (last, count - 1):
            fields = node.get("voters", f"v-{i:05d}").fields  # type: ignore[union-attr]
            assert fields == {"nama": f"Contoh {i}", "n": i, "pad": "x" * 300}
        [feed] = node.store.feeds()
        assert feed.head_seq == count == node.store.count_changes()
        for change in node.changes_since({}):
            change.verify()  # every stored change is whole and signed
        return count


@pytest.mark.parametrize("schedule", [(1,), (4,), (40,), (1, 1, 1), (2, 7, 25)])
def test_put_that_returned_survives_sigkill(tmp_path: Path, schedule: tuple[int, ...]) -> None:
    home = tmp_path / "phone-a"
    Home.create(home, partition="mimika/jila/tps-001")
    count = 0
    for lines in schedule:  # kill, restart where it stopped, kill again elsewhere
        last = kill_after(home, lines, start=count)
        assert last >= count + lines - 1
        count = check_home(home, last)
    with open_node(home) as node:  # the feed goes on after the last kill: no gap, no fork
        node.put("notes", "after-restart", {"teks": "ok"})
        assert node.store.feeds()[0].head_seq == count + 1


# -- a write failing mid-transaction -------------------------------------------------------


def disk_state(path: Path) -> tuple[object, ...]:
    store = SQLiteStore(path)
    try:
        rows = list(store.iter_records())
        feeds = store.feeds()
        return (rows, feeds, store.count_changes(), store.get_meta("hlc"),
                store.refusals(), store.credentials(), store.forks())
    finally:
        store.close()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Device]:
    device = Device.sqlite("phone-A", tmp_path / "phone.sqlite")
    device.put("voters", "v-1", {"nama": "Contoh", "status": "terdaftar"})
    device.put("voters", "v-2", {"nama": "Yosina"})
    yield device
    device.close()  # closing twice is harmless; some tests close it to reopen the file


def test_exception_inside_a_node_transaction_leaves_the_file_unchanged(
        phone: Device, tmp_path: Path) -> None:
    path = tmp_path / "phone.sqlite"
    before = phone.canonical_state()
    vv = phone.version_vector()
    store = phone.store
    [feed] = store.feeds()
    with pytest.raises(RuntimeError, match="battery"), store.transaction():
        store.save_record(RecordRow("mimika/jila/tps-001", "voters", "v-1", b"junk", True,
                                    True))
        store.append_change(feed.feed, StoredChange(3, b"h" * 32, b"b", b"s" * 64), 1)
        store.set_meta("hlc", b"\xff" * 8)
        store.add_credential(b"\x01" * 32, b"cert")
        raise RuntimeError("battery died")
    assert phone.canonical_state() == before
    assert phone.version_vector() == vv
    phone.close()
    reopened = Device.sqlite("phone-A", path)
    try:
        assert reopened.canonical_state() == before
        assert reopened.version_vector() == vv
        assert reopened.store.credentials() == []
        assert reopened.put("voters", "v-3", {"nama": "X"}).seq == 3  # no gap, no fork
    finally:
        reopened.close()


def test_local_edit_failing_half_way_stores_nothing(phone: Device, tmp_path: Path) -> None:
    """A two-record edit whose second record fails validation: all or nothing."""
    def needs_nama(key: str, fields: dict[str, object], *, partial: bool) -> list[
            tuple[str, str]]:
        return [] if "nama" in fields else [("nama", "required")]

    phone.register_validator("voters", needs_nama)
    before = disk_state(tmp_path / "phone.sqlite")
    with pytest.raises(UsageError):
        phone.write("mimika/jila/tps-001", [("put", "voters", "v-1", {"status": "ms"}),
                                            ("put", "voters", "v-9", {"status": "ms"})])
    assert disk_state(tmp_path / "phone.sqlite") == before
    assert phone.get("voters", "v-9") is None


def test_disk_full_mid_transaction_is_a_storage_error_and_stores_nothing(
        phone: Device, tmp_path: Path) -> None:
    before = disk_state(tmp_path / "phone.sqlite")
    hlc_before = phone.hlc.last
    # Fault injection: cap the file a few pages above its size, so a big record fails
    # with SQLITE_FULL half-way through the transaction (as a full phone would).
    db = phone.store._db  # no public hook to fill the disk
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 4}")
    with pytest.raises(StorageError, match="full"):
        phone.put("voters", "v-big", {"foto": b"\x00" * 200_000})
    assert disk_state(tmp_path / "phone.sqlite") == before
    assert phone.get("voters", "v-big") is None
    db.execute("PRAGMA max_page_count = 1073741823")
    after = phone.put("voters", "v-3", {"nama": "X"})  # the node goes on, same feed
    assert after.seq == 3
    assert after.hlc > hlc_before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_read_only_home_is_named_as_read_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    SQLiteStore(home / "store.sqlite").close()
    home.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="is read-only"):
            SQLiteStore(home / "store.sqlite")
    finally:
        home.chmod(0o755)


def test_the_read_only_hint_names_the_folder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from meshsync.store import sqlite as sqlite_module

    assert sqlite_module._read_only_hint(tmp_path / "s.sqlite") == ""  # writable
    monkeypatch.setattr(sqlite_module.os, "access", lambda *_: False)
    assert f"the folder {tmp_path} is read-only" in sqlite_module._read_only_hint(
        tmp_path / "s.sqlite")
    assert sqlite_module._read_only_hint(":memory:") == ""
