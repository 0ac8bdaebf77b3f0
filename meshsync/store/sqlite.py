"""SQLite store (stdlib ``sqlite3``), the embedded default.

Durability: WAL journal with ``synchronous=FULL``, so a transaction that has
returned survives SIGKILL and power loss (https://www.sqlite.org/wal.html, §
"Performance Considerations"; FULL syncs the WAL at every commit). A sync's frames
commit inside :meth:`SQLiteStore.group_commit`: one WAL sync for all of them, before
any of them is acknowledged. Schema changes
are numbered migrations recorded in ``PRAGMA user_version``.

Errors from SQLite (disk full, corrupt file) are raised as
:class:`~meshsync.model.errors.StorageError` after the transaction is rolled back.

**Encrypted stores** (docs/architecture.md §6, "Encrypted homes"): given a 32-byte
``key``, the store opens through SQLCipher (:mod:`meshsync.store.sqlite_connect`), and
``temp_store=MEMORY`` keeps temporary tables and sorts off the disk.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshsync.model.change import FeedId
from meshsync.model.errors import StorageError, UsageError
from meshsync.store import sqlite_progress
from meshsync.store.base import (
    FeedInfo,
    RecordPos,
    RecordRow,
    Store,
    StoredChange,
)
from meshsync.store.sqlite_connect import connect
from meshsync.store.sqlite_evidence import SQLiteEvidence
from meshsync.store.sqlite_progress import SQLiteProgress

MIGRATIONS: list[str] = [
    # 1: initial schema. Feeds get a small integer id so changes carry 8 bytes, not 40.
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE feeds (
        id INTEGER PRIMARY KEY, author BLOB NOT NULL, partition TEXT NOT NULL,
        head_seq INTEGER NOT NULL, head_hash BLOB NOT NULL, UNIQUE (author, partition));
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY, feed INTEGER NOT NULL REFERENCES feeds(id),
        seq INTEGER NOT NULL, hash BLOB NOT NULL, hlc INTEGER NOT NULL,
        body BLOB NOT NULL, sig BLOB NOT NULL, invalid TEXT, UNIQUE (feed, seq));
    CREATE TABLE records (
        id INTEGER PRIMARY KEY, collection TEXT NOT NULL, key TEXT NOT NULL,
        partition TEXT NOT NULL, state BLOB NOT NULL, deleted INTEGER NOT NULL,
        conflict INTEGER NOT NULL, UNIQUE (collection, key, partition));
    CREATE INDEX records_conflict ON records (collection) WHERE conflict;
    CREATE TABLE forks (
        id INTEGER PRIMARY KEY, author BLOB NOT NULL, partition TEXT NOT NULL,
        seq INTEGER NOT NULL, held_hash BLOB NOT NULL, other_body BLOB NOT NULL,
        other_sig BLOB NOT NULL, note TEXT NOT NULL,
        UNIQUE (author, partition, seq, other_body));
    CREATE TABLE refusals (
        id INTEGER PRIMARY KEY, author BLOB NOT NULL, partition TEXT NOT NULL,
        seq INTEGER NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL,
        source TEXT NOT NULL);
    CREATE TABLE credentials (
        id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, blob BLOB NOT NULL);
    """,
    # 2: quarantined changes (meshsync.replica.quarantine): taken out of their feed after
    # their author's revocation was learned, kept as evidence.
    """
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY, author BLOB NOT NULL, partition TEXT NOT NULL,
        seq INTEGER NOT NULL, hash BLOB NOT NULL, body BLOB NOT NULL, sig BLOB NOT NULL,
        reason TEXT NOT NULL, UNIQUE (author, partition, seq, hash));
    """,
    # 3: evidence is capped per author and in total (store.base.EvidenceLimits); what is
    # past a cap is only counted here. Refusals are counted per author by index. Forks
    # lose their unique index on the refused body, which held a second copy of every
    # body (up to 8 MiB each): the store keeps one body per (author, partition, seq)
    # and compares bodies itself (Store.add_fork).
    """
    CREATE TABLE evidence_counts (
        kind TEXT NOT NULL, author BLOB NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (kind, author));
    CREATE INDEX refusals_author ON refusals (author);
    CREATE TABLE forks_v3 (
        id INTEGER PRIMARY KEY, author BLOB NOT NULL, partition TEXT NOT NULL,
        seq INTEGER NOT NULL, held_hash BLOB NOT NULL, other_body BLOB NOT NULL,
        other_sig BLOB NOT NULL, note TEXT NOT NULL);
    INSERT INTO forks_v3 SELECT id, author, partition, seq, held_hash, other_body,
        other_sig, note FROM forks;
    DROP TABLE forks;
    ALTER TABLE forks_v3 RENAME TO forks;
    CREATE INDEX forks_seq ON forks (author, partition, seq);
    """,
    # 4: a refusal records the refused change's hash and is kept once per (author,
    # partition, seq, hash, stage): importing one refused bundle twice counted every
    # refusal twice. Duplicates kept before are dropped (rows without a hash: once per
    # author, partition, seq and stage).
    """
    ALTER TABLE refusals ADD COLUMN hash BLOB NOT NULL DEFAULT x'';
    DELETE FROM refusals WHERE id NOT IN (SELECT min(id) FROM refusals
        GROUP BY author, partition, seq, hash, stage);
    CREATE UNIQUE INDEX refusals_once ON refusals (author, partition, seq, hash, stage);
    """,
    # 5: progress counts kept up to date on every record write
    # (meshsync.store.sqlite_progress).
    sqlite_progress.MIGRATION,
]


def _read_only_hint(path: Path | str) -> str:
    """A note for an error opening ``path`` when the user cannot write beside it."""
    where = Path(path).parent
    if str(path) != ":memory:" and where.is_dir() and not os.access(where, os.W_OK):
        return (f" (the folder {where} is read-only for this user: SQLite writes its "
                "journal beside the store, even to read)")
    return ""


#: The files SQLite keeps beside a WAL-mode database (https://www.sqlite.org/tempfiles.html).
STORE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make_store_files_private(path: Path | str) -> None:
    """Make the store at ``path`` readable by its owner only (mode 0600).

    The store holds voters' personal data (docs/architecture.md §9). The database file
    is created 0600 before SQLite opens it, since SQLite gives its ``-wal`` and ``-shm``
    files the database file's mode; files an older meshsync left readable by group or
    others (0644) lose those bits. ``":memory:"`` and URIs are left alone. Errors are
    not raised here: when the folder is unwritable, opening the store reports it.
    """
    text = str(path)
    if text == ":memory:" or text.startswith("file:"):
        return
    try:
        os.close(os.open(text, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError:
        return
    for suffix in STORE_FILE_SUFFIXES:
        try:
            mode = os.stat(text + suffix).st_mode
            if mode & 0o077:
                os.chmod(text + suffix, mode & 0o700)
        except OSError:
            continue  # absent (no WAL yet) or not ours to change


# A RecordRow is the parameter tuple, in column order.
_SAVE_RECORD = (
    "INSERT INTO records (partition, collection, key, state, deleted, conflict, label, "
    "done, done_ms) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (collection, key, partition) "
    "DO UPDATE SET state=excluded.state, deleted=excluded.deleted, "
    "conflict=excluded.conflict, label=excluded.label, done=excluded.done, "
    "done_ms=excluded.done_ms")


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    # Partition segments never contain '/', and '0' sorts right after '/', so every
    # partition strictly below `prefix` lies in [prefix + '/', prefix + '0').
    return prefix + "/", prefix + "0"


def _record_filter(collection: str | None, prefix: str, conflicts_only: bool
                   ) -> tuple[list[str], list[object]]:
    """The WHERE terms and arguments of :meth:`Store.iter_records`'s filters."""
    where: list[str] = ["1"]
    args: list[object] = []
    if collection is not None:
        where.append("collection=?")
        args.append(collection)
    if conflicts_only:
        where.append("conflict")
    if prefix:
        lo, hi = _prefix_bounds(prefix)
        where.append("(partition=? OR (partition>=? AND partition<?))")
        args += [prefix, lo, hi]
    return where, args


class SQLiteStore(SQLiteEvidence, SQLiteProgress, Store):
    """A :class:`Store` in one SQLite file. ``path`` may be ``":memory:"`` for tests.

    ``key`` (32 bytes) opens an encrypted store through SQLCipher, creating it
    encrypted if the file is new (module docstring); None opens a clear one.
    Raises :class:`StorageError` if the store cannot be opened or the key does not
    open it, or SQLCipher is needed and not installed.
    """

    def __init__(self, path: Path | str, key: bytes | None = None) -> None:
        make_store_files_private(path)
        try:
            self._db, self._error = connect(path, key)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open store {path}: {exc}") from exc
        self.encrypted = key is not None
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA temp_store=MEMORY")  # no temporary files on disk
            self._migrate()
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, self._error):
                raise StorageError(f"cannot open store {path}: {exc}"
                                   f"{_read_only_hint(path)}") from exc
            raise
        self._in_tx = False
        self._grouped = False
        # Without WAL (a file system that refuses it) every commit stays FULL on its own.
        self._wal = self._wal_path() if str(mode).lower() == "wal" else None
        self._feed_ids: dict[FeedId, int] = {}

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StorageError(
                f"store schema version {version} is newer than this meshsync "
                f"({len(MIGRATIONS)}); upgrade meshsync"
            )
        for number in range(version, len(MIGRATIONS)):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in sqlite_progress.statements(MIGRATIONS[number]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The applied migration number."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Store.transaction`. Not re-entrant."""
        if self._in_tx:
            raise UsageError("transaction already open")
        self._in_tx = True
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:  # SQLITE_FULL and IOERR roll back by themselves
                    self._db.execute("ROLLBACK")
                self._feed_ids.clear()
                raise
            self._db.execute("COMMIT")
        except self._error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._feed_ids.clear()
            raise StorageError(f"store write failed, nothing was saved: {exc}") from exc
        finally:
            self._in_tx = False

    @contextmanager
    def group_commit(self) -> Iterator[None]:
        """See :meth:`Store.group_commit`: inside, commits run with
        ``synchronous=NORMAL`` (WAL frames written, not synced); at the end one
        ``fsync`` of the WAL file makes all of them durable, as ``FULL`` would have
        one by one (https://www.sqlite.org/pragma.html#pragma_synchronous: in WAL
        mode NORMAL loses only durability, never consistency). Nested: the outer
        block syncs. Raises :class:`StorageError` if the sync fails.
        """
        if self._grouped or self._in_tx or self._wal is None:
            yield
            return
        self._grouped = True
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._grouped = False
            try:
                self._db.execute("PRAGMA synchronous=FULL")
            except self._error as exc:
                raise StorageError(f"cannot set the store back to synchronous=FULL: "
                                   f"{exc}") from exc
            self._sync_wal()

    def _wal_path(self) -> Path | None:
        """The WAL file SQLite uses: beside the database as SQLite resolved it (a
        symlinked store has its WAL beside the link's target); None in memory."""
        name = self._db.execute("PRAGMA database_list").fetchone()[2]
        return Path(f"{name}-wal") if name else None

    def _sync_wal(self) -> None:
        assert self._wal is not None
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except OSError as exc:  # the WAL exists while the store is open: never skip
            raise StorageError(f"cannot sync the store's journal {self._wal}: {exc}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot sync the store's journal {self._wal}: {exc}") from exc
        finally:
            os.close(fd)

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        return self._db.execute(sql, args)

    def _feed_id(self, feed: FeedId) -> int | None:
        fid = self._feed_ids.get(feed)
        if fid is None:
            row = self._db.execute(
                "SELECT id FROM feeds WHERE author=? AND partition=?", feed).fetchone()
            if row is None:
                return None
            fid = self._feed_ids[feed] = row[0]
        return fid

    def feed_head(self, feed: FeedId) -> FeedInfo | None:
        """See :meth:`Store.feed_head`."""
        row = self._db.execute(
            "SELECT head_seq, head_hash FROM feeds WHERE author=? AND partition=?", feed
        ).fetchone()
        return FeedInfo(feed[0], feed[1], row[0], row[1]) if row else None

    def feeds(self) -> list[FeedInfo]:
        """See :meth:`Store.feeds`."""
        rows = self._db.execute(
            "SELECT author, partition, head_seq, head_hash FROM feeds "
            "ORDER BY author, partition")
        return [FeedInfo(*r) for r in rows]

    def append_change(self, feed: FeedId, change: StoredChange, hlc: int) -> None:
        """See :meth:`Store.append_change`."""
        fid = self._feed_id(feed)
        if fid is None:
            if change.seq != 1:
                raise UsageError(f"append at seq {change.seq} to an empty feed")
            fid = self._write(
                "INSERT INTO feeds (author, partition, head_seq, head_hash) VALUES (?,?,?,?)",
                (feed[0], feed[1], 1, change.hash)).lastrowid
            assert fid is not None
            self._feed_ids[feed] = fid
        else:
            cur = self._write(
                "UPDATE feeds SET head_seq=?, head_hash=? WHERE id=? AND head_seq=?",
                (change.seq, change.hash, fid, change.seq - 1))
            if cur.rowcount != 1:
                raise UsageError(f"append at seq {change.seq} does not follow the feed head")
        self._write(
            "INSERT INTO changes (feed, seq, hash, hlc, body, sig, invalid) "
            "VALUES (?,?,?,?,?,?,?)",
            (fid, change.seq, change.hash, hlc, change.body, change.sig, change.invalid))

    def change_at(self, feed: FeedId, seq: int) -> StoredChange | None:
        """See :meth:`Store.change_at`."""
        fid = self._feed_id(feed)
        if fid is None:
            return None
        row = self._db.execute(
            "SELECT seq, hash, body, sig, invalid FROM changes WHERE feed=? AND seq=?",
            (fid, seq)).fetchone()
        return StoredChange(*row) if row else None

    def iter_changes(self, feed: FeedId, after_seq: int = 0) -> Iterator[StoredChange]:
        """See :meth:`Store.iter_changes`. Reads in pages, so memory stays bounded."""
        fid = self._feed_id(feed)
        if fid is None:
            return
        last = after_seq
        while True:
            rows = self._db.execute(
                "SELECT seq, hash, body, sig, invalid FROM changes WHERE feed=? AND seq>? "
                "ORDER BY seq LIMIT 256", (fid, last)).fetchall()
            if not rows:
                return
            for row in rows:
                yield StoredChange(*row)
            last = rows[-1][0]

    def count_changes(self) -> int:
        """See :meth:`Store.count_changes`."""
        return int(self._db.execute("SELECT count(*) FROM changes").fetchone()[0])

    def truncate_feed(self, feed: FeedId, after_seq: int) -> list[StoredChange]:
        """See :meth:`Store.truncate_feed`."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        fid = self._feed_id(feed)
        if fid is None:
            return []
        after_seq = max(after_seq, 0)
        removed = [StoredChange(*r) for r in self._db.execute(
            "SELECT seq, hash, body, sig, invalid FROM changes WHERE feed=? AND seq>? "
            "ORDER BY seq", (fid, after_seq))]
        if not removed:
            return []
        self._write("DELETE FROM changes WHERE feed=? AND seq>?", (fid, after_seq))
        if after_seq == 0:
            self._write("DELETE FROM feeds WHERE id=?", (fid,))
            self._feed_ids.pop(feed, None)
        else:
            self._write("UPDATE feeds SET head_seq=?, head_hash=(SELECT hash FROM changes "
                        "WHERE feed=? AND seq=?) WHERE id=?", (after_seq, fid, after_seq, fid))
        return removed

    _RECORD_COLS = "partition, collection, key, state, deleted, conflict"

    def _row(self, r: tuple[Any, ...]) -> RecordRow:
        return RecordRow(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]))

    def load_record(self, partition: str, collection: str, key: str) -> RecordRow | None:
        """See :meth:`Store.load_record`."""
        r = self._db.execute(
            f"SELECT {self._RECORD_COLS} FROM records "
            "WHERE collection=? AND key=? AND partition=?", (collection, key, partition)
        ).fetchone()
        return self._row(r) if r else None

    def save_record(self, row: RecordRow) -> None:
        """See :meth:`Store.save_record`."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        self._save_counted(_SAVE_RECORD, [row])

    def delete_record(self, partition: str, collection: str, key: str) -> None:
        """See :meth:`Store.delete_record`."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        self._delete_counted(partition, collection, key)

    def load_records(self, keys: list[tuple[str, str, str]]
                     ) -> dict[tuple[str, str, str], RecordRow]:
        """See :meth:`Store.load_records`: ``collection = ? AND key IN (...)`` per
        collection, in chunks of 500 keys, so the unique index serves it."""
        wanted = set(keys)
        by_collection: dict[str, list[str]] = {}
        for _, collection, key in keys:
            by_collection.setdefault(collection, []).append(key)
        rows: dict[tuple[str, str, str], RecordRow] = {}
        for collection, names in by_collection.items():
            unique = list(dict.fromkeys(names))
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for r in self._db.execute(
                        f"SELECT {self._RECORD_COLS} FROM records "
                        f"WHERE collection=? AND key IN ({marks})", [collection, *chunk]):
                    if (r[0], r[1], r[2]) in wanted:
                        rows[(r[0], r[1], r[2])] = self._row(r)
        return rows

    def save_records(self, rows: list[RecordRow]) -> None:
        """See :meth:`Store.save_records` (one ``executemany``)."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        self._save_counted(_SAVE_RECORD, rows)

    def iter_records(self, collection: str | None = None, partition_prefix: str = "",
                     *, conflicts_only: bool = False) -> Iterator[RecordRow]:
        """See :meth:`Store.iter_records`."""
        where, args = _record_filter(collection, partition_prefix, conflicts_only)
        sql = (f"SELECT {self._RECORD_COLS} FROM records WHERE {' AND '.join(where)} "
               "ORDER BY collection, key, partition")
        for r in self._db.execute(sql, args):
            yield self._row(r)

    def records_page(self, collection: str | None, partition_prefix: str = "",
                     after: RecordPos | None = None, limit: int = 500, *,
                     live_only: bool = False, conflicts_only: bool = False
                     ) -> list[RecordRow]:
        """See :meth:`Store.records_page`: one query on the (collection, key,
        partition) index."""
        where, args = _record_filter(collection, partition_prefix, conflicts_only)
        if collection is not None and after is not None:
            if after[0] > collection:
                return []
            if after[0] == collection:  # this form is an index range (the other scans)
                where.append("(key, partition) > (?, ?)")
                args += [after[1], after[2]]
        elif after is not None:
            where.append("(collection, key, partition) > (?, ?, ?)")
            args += list(after)
        if live_only:
            where.append("NOT deleted")
        sql = (f"SELECT {self._RECORD_COLS} FROM records WHERE {' AND '.join(where)} "
               "ORDER BY collection, key, partition LIMIT ?")
        return [self._row(r) for r in self._db.execute(sql, [*args, limit])]

    def find_record(self, collection: str, key: str) -> list[RecordRow]:
        """See :meth:`Store.find_record`."""
        rows = self._db.execute(
            f"SELECT {self._RECORD_COLS} FROM records WHERE collection=? AND key=? "
            "ORDER BY partition", (collection, key))
        return [self._row(r) for r in rows]

    def get_meta(self, name: str) -> bytes | None:
        """See :meth:`Store.get_meta`."""
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def set_meta(self, name: str, value: bytes) -> None:
        """See :meth:`Store.set_meta`."""
        self._write("INSERT INTO meta (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value=excluded.value", (name, value))

    def add_credential(self, digest: bytes, blob: bytes) -> bool:
        """See :meth:`Store.add_credential`."""
        cur = self._write("INSERT OR IGNORE INTO credentials (digest, blob) VALUES (?, ?)",
                          (digest, blob))
        return cur.rowcount == 1

    def credentials(self) -> list[bytes]:
        """See :meth:`Store.credentials`."""
        return [r[0] for r in self._db.execute("SELECT blob FROM credentials ORDER BY id")]

    def integrity_check(self) -> str:
        """Result of ``PRAGMA integrity_check`` (``"ok"`` when healthy)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        """See :meth:`Store.close`."""
        self._db.close()
