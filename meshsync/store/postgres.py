"""PostgreSQL store (psycopg 3) for central, where several processes share one database.

Install with the ``central`` extra (``pip install 'meshsync[central]'``). Nothing
else in meshsync imports this module, so phones never need psycopg. Its parts:
:mod:`~meshsync.store.pg_schema` (migrations, views), :mod:`~meshsync.store.pg_write`
(the write-behind buffer), :mod:`~meshsync.store.pg_records` (record rows),
:mod:`~meshsync.store.pg_evidence` (evidence tables), :mod:`~meshsync.store.pg_text`
(text escape, jsonb); this module holds the connection, transactions, feeds and
changes, and metadata.

**Schema.** Numbered migrations (:mod:`meshsync.store.pg_schema`) recorded in
``meshsync_schema`` and applied under an advisory lock when a store opens, so
several processes may start at once. Records are stored with their opaque state
plus the visible fields as ``jsonb``; the views ``meshsync_records_current`` and
``meshsync_progress`` are documented in ``docs/central-sql.md``. Text columns hold
:func:`~meshsync.store.pg_text.escape` of the value (PostgreSQL text cannot hold
U+0000).

**Transactions** run at READ COMMITTED, explicitly, whatever the server default.
Each statement sees what other processes have committed; races are resolved by
row locks and compare-and-set, never by snapshots (see
:mod:`meshsync.store.pg_write`). SERIALIZABLE would also be correct but would
make every overlapping transaction a retry, including the common case of two
processes ingesting different feeds that touch no common record. Commits are
durable: the session sets ``synchronous_commit = on`` (the server must run with
``fsync = on``, its default).

**Errors.** psycopg errors become :class:`~meshsync.model.errors.StorageError`; lost
races (a feed head or record another process changed first, and PostgreSQL's own
deadlock, serialization and lock-timeout errors) become
:class:`~meshsync.model.errors.ConcurrentAppendError`, after which the transaction rolls
back and the caller runs it again. Write-behind: appends and record saves are sent
in bulk, so a lost race may surface at a later write, a read or the commit (always
before anything is committed). If the connection breaks during COMMIT the outcome
is unknown; sending the same changes again is safe (ingest is idempotent on
``(feed, seq)``). A broken connection is reopened at the next use outside a
transaction. A store object is for one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

try:
    import psycopg
    from psycopg.rows import TupleRow
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError("PostgresStore needs psycopg 3: pip install 'meshsync[central]'") from _exc

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.errors import ConcurrentAppendError, StorageError, UsageError
from meshsync.store.base import (
    RECEIPTS_META,
    FeedInfo,
    StoredChange,
)
from meshsync.store.pg_evidence import PgEvidence
from meshsync.store.pg_progress import PgProgress
from meshsync.store.pg_records import PAGE, PgRecords
from meshsync.store.pg_schema import migrate
from meshsync.store.pg_text import escape, unescape, unescape_opt
from meshsync.store.pg_write import Head, RecordKey, WriteBuffer, configure

T = TypeVar("T")

#: sqlstates of lost races: serialization failure, deadlock, lock timeout.
_RACE_STATES = {"40001", "40P01", "55P03"}


def _map_error(exc: psycopg.Error) -> StorageError:
    if exc.sqlstate in _RACE_STATES:
        return ConcurrentAppendError(f"lost a race with another process: {exc}")
    return StorageError(f"PostgreSQL store failed, the transaction was rolled back: {exc}")


class PostgresStore(PgRecords, PgEvidence, PgProgress):
    """A :class:`Store` in a PostgreSQL database (see the module docs).

    Args:
        dsn: libpq connection string or URI, e.g. ``"host=/run/postgresql
            dbname=meshsync"``; add ``options=-csearch_path=NAME`` to keep the
            store in schema ``NAME`` (which must exist).
        lock_timeout_ms: longest wait (milliseconds) for a row another process
            holds locked before giving up with :class:`ConcurrentAppendError`.

    Raises :class:`StorageError` if the database cannot be reached or migrated.
    """

    def __init__(self, dsn: str, *, lock_timeout_ms: int = 30_000) -> None:
        self._dsn, self._lock_timeout_ms = dsn, lock_timeout_ms
        self._closed = self._in_tx = False
        self._doomed: StorageError | None = None
        self._buf = WriteBuffer()
        self._seen: dict[RecordKey, int] = {}
        self.schema_version = 0
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[TupleRow]:
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, application_name="meshsync")
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            conn.execute("SET synchronous_commit = on")
            conn.execute("SELECT set_config('lock_timeout', %s, false)",
                         [f"{self._lock_timeout_ms}ms"])
            self.schema_version = migrate(conn)
            configure(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open the PostgreSQL store: {exc}") from exc
            raise
        return conn

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """Yield the connection; map psycopg errors and doom the open transaction."""
        if self._closed:
            raise UsageError("the store is closed")
        if self._conn.broken and not self._in_tx:
            self._conn = self._connect()
        try:
            yield self._conn
        except psycopg.Error as exc:
            err = _map_error(exc)
            if self._in_tx:
                self._doomed = err
            raise err from exc
        except StorageError as err:
            if self._in_tx:
                self._doomed = err
            raise

    def _one(self, sql: str, args: Any = None) -> TupleRow | None:
        with self._guard() as conn:
            return conn.execute(sql.encode(), args).fetchone()

    def _all(self, sql: str, args: Any = None) -> list[TupleRow]:
        with self._guard() as conn:
            return conn.execute(sql.encode(), args).fetchall()

    def _write(self, sql: str, args: Any) -> int:
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        with self._guard() as conn:
            return conn.execute(sql.encode(), args).rowcount

    def _read_pages(self, fetch: Callable[[T | None], list[TupleRow]],
                    last: Callable[[TupleRow], T]) -> Iterator[TupleRow]:
        after: T | None = None
        while True:
            self.flush()  # the caller may have written between two pages
            rows = fetch(after)
            yield from rows
            if len(rows) < PAGE:
                return
            after = last(rows[-1])

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Store.transaction`. Not re-entrant.

        Raises :class:`ConcurrentAppendError` (run the transaction again) or
        :class:`StorageError`; in both cases nothing of the transaction is stored.
        """
        if self._in_tx:
            raise UsageError("transaction already open")
        with self._guard() as conn:
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        self._in_tx, self._doomed, self._buf = True, None, WriteBuffer()
        try:
            yield
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._in_tx, self._buf = False, WriteBuffer()

    def _commit(self) -> None:
        if self._doomed is not None:
            raise type(self._doomed)(
                f"an error inside this transaction was caught and ignored: {self._doomed}")
        self.flush()
        with self._guard() as conn:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                raise StorageError("the transaction failed earlier and cannot commit")
            try:
                conn.execute("COMMIT")
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise
                raise StorageError(
                    "the connection to PostgreSQL broke during COMMIT, so the transaction "
                    "may or may not be stored; ingest is idempotent, sending the same "
                    f"changes again is safe: {exc}") from exc

    def _rollback(self) -> None:
        # If the connection is gone, the server has rolled back by itself.
        if not self._conn.broken and not self._conn.closed:
            with suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")

    def flush(self) -> None:
        """Send buffered writes of the open transaction now (no-op outside one).

        Raises :class:`ConcurrentAppendError` if another process won a race.
        """
        if self._in_tx and self._buf.pending():
            with self._guard() as conn:
                self._buf.flush(conn)

    # -- feeds and changes -------------------------------------------------------------

    def _tx_head(self, feed: FeedId) -> Head:
        head = self._buf.heads.get(feed)
        if head is None:
            r = self._one("SELECT id, head_seq, head_hash FROM meshsync_feeds "
                          "WHERE author = %s AND partition = %s", [feed[0], escape(feed[1])])
            head = Head(r[0], r[1], r[1], r[2]) if r else Head(None, 0, 0, b"")
            self._buf.heads[feed] = head
        return head

    def feed_head(self, feed: FeedId) -> FeedInfo | None:
        """See :meth:`Store.feed_head`. Inside a transaction, the head as this
        transaction sees it (including its own appends)."""
        if self._in_tx:
            head = self._tx_head(feed)
            return FeedInfo(feed[0], feed[1], head.seq, head.hash) if head.seq else None
        r = self._one("SELECT head_seq, head_hash FROM meshsync_feeds "
                      "WHERE author = %s AND partition = %s", [feed[0], escape(feed[1])])
        return FeedInfo(feed[0], feed[1], r[0], r[1]) if r else None

    def feeds(self) -> list[FeedInfo]:
        """See :meth:`Store.feeds`."""
        self.flush()
        rows = self._all("SELECT author, partition, head_seq, head_hash FROM meshsync_feeds "
                         "ORDER BY author, partition")
        return [FeedInfo(r[0], unescape(r[1]), r[2], r[3]) for r in rows]

    def append_change(self, feed: FeedId, change: StoredChange, hlc: int) -> None:
        """See :meth:`Store.append_change`.

        ``change.seq`` must follow the head this transaction sees (else
        :class:`UsageError`, and the transaction stays usable). If another process
        appends to the feed first, :class:`ConcurrentAppendError` is raised here or
        at a later flush or the commit.
        """
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        buf = self._buf
        head = buf.heads.get(feed) or self._tx_head(feed)
        if change.seq != head.seq + 1:
            raise UsageError(f"append at seq {change.seq} does not follow the feed head "
                             f"{head.seq}")
        buf.append(feed, head, change, hlc)
        if buf.full():
            self.flush()

    def change_at(self, feed: FeedId, seq: int) -> StoredChange | None:
        """See :meth:`Store.change_at`."""
        if self._in_tx and (pending := self._buf.pending_change(feed, seq)) is not None:
            return pending
        r = self._one(
            "SELECT c.seq, c.hash, c.body, c.sig, c.invalid FROM meshsync_changes c "
            "JOIN meshsync_feeds f ON f.id = c.feed "
            "WHERE f.author = %s AND f.partition = %s AND c.seq = %s",
            [feed[0], escape(feed[1]), seq])
        return StoredChange(r[0], r[1], r[2], r[3], unescape_opt(r[4])) if r else None

    def iter_changes(self, feed: FeedId, after_seq: int = 0) -> Iterator[StoredChange]:
        """See :meth:`Store.iter_changes`. Reads in pages, so memory stays bounded."""
        def fetch(after: int | None) -> list[TupleRow]:
            return self._all(
                "SELECT c.seq, c.hash, c.body, c.sig, c.invalid FROM meshsync_changes c "
                "JOIN meshsync_feeds f ON f.id = c.feed WHERE f.author = %s "
                "AND f.partition = %s AND c.seq > %s ORDER BY c.seq LIMIT %s",
                [feed[0], escape(feed[1]), after_seq if after is None else after, PAGE])
        for r in self._read_pages(fetch, lambda r: int(r[0])):
            yield StoredChange(r[0], r[1], r[2], r[3], unescape_opt(r[4]))

    def count_changes(self) -> int:
        """See :meth:`Store.count_changes`. Feeds are contiguous from seq 1, so this
        is the sum of the heads (no scan of the changes)."""
        self.flush()
        r = self._one("SELECT coalesce(sum(head_seq), 0) FROM meshsync_feeds")
        return int(r[0]) if r else 0

    def truncate_feed(self, feed: FeedId, after_seq: int) -> list[StoredChange]:
        """See :meth:`Store.truncate_feed`. The feed's row is locked (``FOR UPDATE``)
        first, so a process appending to it meanwhile loses its head compare-and-set."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        self.flush()
        self._buf.heads.pop(feed, None)
        r = self._one("SELECT id FROM meshsync_feeds WHERE author = %s AND partition = %s "
                      "FOR UPDATE", [feed[0], escape(feed[1])])
        if r is None:
            return []
        fid, after_seq = r[0], max(after_seq, 0)
        rows = self._all("DELETE FROM meshsync_changes WHERE feed = %s AND seq > %s "
                         "RETURNING seq, hash, body, sig, invalid", [fid, after_seq])
        if not rows:
            return []
        if after_seq == 0:
            self._write("DELETE FROM meshsync_feeds WHERE id = %s", [fid])
        else:
            self._write("UPDATE meshsync_feeds SET head_seq = %s, head_hash = (SELECT hash "
                        "FROM meshsync_changes WHERE feed = %s AND seq = %s) WHERE id = %s",
                        [after_seq, fid, after_seq, fid])
        return sorted((StoredChange(r[0], r[1], r[2], r[3], unescape_opt(r[4])) for r in rows),
                      key=lambda c: c.seq)

    # -- metadata (evidence, refusals, quarantine, credentials: pg_evidence) ----------

    def get_meta(self, name: str) -> bytes | None:
        """See :meth:`Store.get_meta`."""
        r = self._one("SELECT value FROM meshsync_meta WHERE name = %s", [escape(name)])
        return bytes(r[0]) if r else None

    def set_meta(self, name: str, value: bytes) -> None:
        """See :meth:`Store.set_meta`. Last writer wins across processes."""
        self._write("INSERT INTO meshsync_meta (name, value) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    [escape(name), value])

    def put_receipt(self, issuer: bytes, scope: str, at_ms: int, blob: bytes) -> bool:
        """See :meth:`Store.put_receipt`. The receipts row is locked (``FOR UPDATE``)
        for the rest of the transaction, so central processes sharing the database
        update it one after another and never lose each other's receipts."""
        self._write("INSERT INTO meshsync_meta (name, value) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO NOTHING", [escape(RECEIPTS_META), codec.pack({})])
        self._one("SELECT value FROM meshsync_meta WHERE name = %s FOR UPDATE",
                  [escape(RECEIPTS_META)])
        return super().put_receipt(issuer, scope, at_ms, blob)

    def close(self) -> None:
        """See :meth:`Store.close`. An open transaction is rolled back by the server."""
        if not self._closed:
            self._closed = True
            self._conn.close()
