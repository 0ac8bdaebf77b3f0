"""Group commit (field failure B21): a sync's frames commit without a sync each, and
one fsync of the WAL makes them durable before any acknowledgement leaves.

The driver test runs two real sessions on SQLite files through the real trio driver
(``run_session``) over an in-memory stream pair. It logs, in order, every commit of
the receiver (with the ``synchronous`` level it ran under), every fsync of its WAL
file and every write the receiver sends, and checks that no send follows a commit
that is not yet durable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from driverpair import PassThroughStream, run_pair, session
from helpers import Device

from meshsync.model.errors import StorageError
from meshsync.protocol.session import SessionConfig
from meshsync.store.sqlite import SQLiteStore

MakeDevice = Callable[..., Device]
TPS = "mimika/jila/diloa/tps-003"
CONFIG = SessionConfig(mesh_id="kpu-mimika", share_scope="mimika/jila")
NORMAL, FULL = 1, 2


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def log_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``os.fsync`` the SQLite store makes, as ``("fsync", path)`` (then done for real)."""
    log: list[tuple[str, str]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        log.append(("fsync", fd_path(fd)))
        real(fd)
    monkeypatch.setattr("meshsync.store.sqlite.os.fsync", spy)
    return log


def log_commits(store: SQLiteStore, log: list[tuple[str, str]]) -> None:
    """Log ``("commit", level)`` after each transaction of ``store`` commits."""
    inner = store.transaction

    @contextmanager
    def transaction() -> Iterator[None]:
        level = store._db.execute("PRAGMA synchronous").fetchone()[0]
        with inner():
            yield
        log.append(("commit", "full" if level == FULL else "normal"))
    store.transaction = transaction  # type: ignore[method-assign]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name fds")
def test_commits_inside_a_group_are_durable_at_its_end(
        tmp_path: Path, log_syncs: list[tuple[str, str]]) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        level = lambda: store._db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        assert level() == FULL
        with store.group_commit():
            assert level() == NORMAL
            for i in range(3):
                with store.transaction():
                    store.set_meta(f"k{i}", b"v")
            with store.group_commit():  # nested: the outer block syncs
                pass
            assert log_syncs == []  # nothing synced by hand yet
        assert level() == FULL
        assert log_syncs == [("fsync", str(tmp_path / "s.sqlite-wal"))]
        assert store.get_meta("k2") == b"v"
    finally:
        store.close()


def test_memory_store_group_is_a_no_op(log_syncs: list[tuple[str, str]]) -> None:
    store = SQLiteStore(":memory:")
    with store.group_commit(), store.transaction():
        store.set_meta("k", b"v")
    assert log_syncs == []
    store.close()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name fds")
def test_no_acknowledgement_leaves_before_its_commit_is_durable(
        make_device: MakeDevice, log_syncs: list[tuple[str, str]]) -> None:
    sender = make_device("phone-A", "sqlite", partition=TPS)
    receiver = make_device("laptop", "sqlite", partition=TPS)
    for start in range(0, 1200, 200):  # six changes of 200 voters: several frames
        sender.node.write(TPS, [("put", "voters", f"v-{i:05d}",
                                 {"nama": f"Contoh {i}", "alamat": "Jalan Uji " * 4})
                                for i in range(start, start + 200)])
    store = receiver.node.store
    assert isinstance(store, SQLiteStore)
    log = log_syncs
    log_commits(store, log)
    wal = str(store._wal)

    class LoggingStream(PassThroughStream):
        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            log.append(("send", str(len(data))))
            await self.inner.send_all(data)

    a, b = session(sender.node, CONFIG), session(receiver.node, CONFIG)
    run_pair(a, b, wrap_b=LoggingStream)
    assert a.summary.converged and b.summary.converged, (a.summary, b.summary)
    assert receiver.node.store.count_changes() == 6
    assert ("commit", "normal") in log  # the driver groups the frames' commits
    undurable = 0
    for kind, what in log:
        if kind == "commit" and what == "normal":
            undurable += 1
        elif kind == "fsync" and what == wal:
            undurable = 0
        elif kind == "send":
            assert undurable == 0, f"sent {what} bytes before a commit was durable: {log}"


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name fds")
def test_a_failed_wal_sync_sends_no_acknowledgement(
        make_device: MakeDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    sender = make_device("phone-A", "sqlite", partition=TPS)
    receiver = make_device("laptop", "sqlite", partition=TPS)
    sender.node.write(TPS, [("put", "voters", f"v-{i:05d}", {"nama": f"Contoh {i}"})
                            for i in range(50)])
    store = receiver.node.store
    assert isinstance(store, SQLiteStore)
    real = os.fsync

    def failing(fd: int) -> None:
        if fd_path(fd) == str(store._wal) and store.count_changes():
            raise OSError(5, "Input/output error")
        real(fd)
    monkeypatch.setattr("meshsync.store.sqlite.os.fsync", failing)
    a, b = session(sender.node, CONFIG), session(receiver.node, CONFIG)
    run_pair(a, b)
    assert b.summary.error and "sync the store's journal" in b.summary.error
    assert a.summary.error and "journal" in a.summary.error  # told why, by an ERROR frame
    assert a.session._window.acked == 0  # the frame committed, but its ack never left
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == FULL


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name fds")
def test_a_symlinked_store_syncs_the_wal_beside_its_target(
        tmp_path: Path, log_syncs: list[tuple[str, str]]) -> None:
    (tmp_path / "real").mkdir()
    SQLiteStore(tmp_path / "real" / "s.sqlite").close()
    (tmp_path / "s.sqlite").symlink_to(tmp_path / "real" / "s.sqlite")
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        with store.group_commit(), store.transaction():
            store.set_meta("k", b"v")
        assert log_syncs == [("fsync", str(tmp_path / "real" / "s.sqlite-wal"))]
    finally:
        store.close()


def test_a_failed_wal_sync_after_the_last_message_fails_the_session(
        make_device: MakeDevice) -> None:
    a_dev = make_device("phone-A", "sqlite", partition=TPS)
    b_dev = make_device("laptop", "sqlite", partition=TPS)
    for dev in (a_dev, b_dev):
        dev.node.write(TPS, [("put", "voters", f"{dev.name}-{i}", {"nama": "Contoh"})
                             for i in range(50)])
    store = b_dev.node.store
    assert isinstance(store, SQLiteStore)
    real = store._sync_wal
    b = session(b_dev.node, CONFIG)
    failed: list[bool] = []

    def flaky() -> None:  # fails once the receiver's session has finished
        if b.finished and not failed:
            failed.append(True)
            raise StorageError("cannot sync the store's journal: Input/output error")
        real()
    store._sync_wal = flaky  # type: ignore[method-assign]

    run_pair(session(a_dev.node, CONFIG), b)
    assert failed and b.summary.error and "journal" in b.summary.error, b.summary
    assert not b.summary.converged
