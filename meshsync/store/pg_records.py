"""Record rows of :class:`~meshsync.store.postgres.PostgresStore`: reads (with the
transaction's cache and the versions saves are checked against), saves, deletes and
pages.

A save goes through the write-behind buffer (:mod:`meshsync.store.pg_write`), checked
against the ``version`` the row had when this store read it; a delete is
compare-and-set at once. Text values go through :func:`meshsync.store.pg_text.escape`
as everywhere in the PostgreSQL store.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from meshsync.model.errors import ConcurrentAppendError, UsageError
from meshsync.store.base import RecordPos, RecordRow, Store, record_pos
from meshsync.store.pg_text import escape, unescape
from meshsync.store.pg_write import ABSENT, UNKNOWN, Entry, RecordKey, WriteBuffer

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

PAGE = 500  # rows per page of iter_changes / iter_records
_SCAN_LIMIT = 5000  # largest partition load_record prefetches whole
_SEEN_MAX = 4096  # record versions remembered from reads outside a transaction
_RECORD_COLS = "partition, collection, key, state, deleted, conflict"


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    # '0' sorts right after '/', so every partition below `prefix` lies in
    # [prefix + '/', prefix + '0') under COLLATE "C" (see the SQLite store).
    return prefix + "/", prefix + "0"


def _record(r: TupleRow) -> RecordRow:
    return RecordRow(unescape(r[0]), unescape(r[1]), unescape(r[2]), r[3], r[4], r[5])


class PgRecords(Store):
    """The record part of the PostgreSQL store; the store supplies the connection, the
    transaction state and the write buffer."""

    _in_tx: bool
    _buf: WriteBuffer
    _seen: dict[RecordKey, int]

    @abc.abstractmethod
    def _guard(self) -> AbstractContextManager[psycopg.Connection[TupleRow]]:
        """The connection, with psycopg errors mapped to meshsync's."""

    @abc.abstractmethod
    def _one(self, sql: str, args: Any = None) -> TupleRow | None:
        """Run a query and fetch its first row."""

    @abc.abstractmethod
    def _all(self, sql: str, args: Any = None) -> list[TupleRow]:
        """Run a query and fetch every row."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Send the open transaction's buffered writes."""

    def _select_record(self, rkey: RecordKey) -> tuple[RecordRow | None, int]:
        r = self._one(f"SELECT {_RECORD_COLS}, version FROM meshsync_records "
                      "WHERE collection = %s AND key = %s AND partition = %s",
                      [escape(rkey[1]), escape(rkey[2]), escape(rkey[0])])
        return (_record(r), r[6]) if r else (None, ABSENT)

    def _scan_partition(self, partition: str) -> None:
        rows = self._all(f"SELECT {_RECORD_COLS}, version FROM meshsync_records "
                         "WHERE partition = %s LIMIT %s", [escape(partition), _SCAN_LIMIT + 1])
        if len(rows) > _SCAN_LIMIT:
            self._buf.misses[partition] = -(1 << 62)  # too large: never scan it again
            return
        for r in rows:
            row = _record(r)
            entry = self._buf.rows.get((row.partition, row.collection, row.key))
            if entry is None or not entry.loaded:
                self._buf.rows[(row.partition, row.collection, row.key)] = Entry(row, r[6])
        self._buf.complete.add(partition)

    def _note(self, rkey: RecordKey, row: RecordRow | None, version: int) -> None:
        """Remember the version the caller was shown (what its save is checked against)."""
        if self._in_tx:
            self._seen.pop(rkey, None)  # this read supersedes one made before the tx
            self._buf.rows[rkey] = Entry(row, version)
            return
        self._seen.pop(rkey, None)
        self._seen[rkey] = version
        if len(self._seen) > _SEEN_MAX:
            del self._seen[next(iter(self._seen))]

    def load_record(self, partition: str, collection: str, key: str) -> RecordRow | None:
        """See :meth:`Store.load_record`.

        Inside a transaction, the second uncached load in one partition reads the
        whole partition (up to 5,000 rows) into the transaction's cache, so ingest
        costs no round trip per record. The version read is what the record's save
        is checked against (see :mod:`meshsync.store.pg_write`).
        """
        rkey = (partition, collection, key)
        if self._in_tx:
            buf = self._buf
            if rkey not in buf.rows and partition not in buf.complete:
                if buf.misses.get(partition, 0) >= 1:
                    self._scan_partition(partition)
                buf.misses[partition] = buf.misses.get(partition, 0) + 1
            entry = buf.lookup(rkey)
            if entry is not None:
                return entry.row
        row, version = self._select_record(rkey)
        self._note(rkey, row, version)
        return row

    def load_records(self, keys: list[RecordKey]) -> dict[RecordKey, RecordRow]:
        """See :meth:`Store.load_records`: one query for the keys not cached."""
        out, todo = {}, []
        for rkey in dict.fromkeys(keys):
            entry = self._buf.lookup(rkey) if self._in_tx else None
            if entry is None:
                todo.append(rkey)
            elif entry.row is not None:
                out[rkey] = entry.row
        if todo:
            rows = self._all(
                f"SELECT {_RECORD_COLS}, version FROM meshsync_records r "
                "JOIN unnest(%b::text[], %b::text[], %b::text[]) AS u(c, k, p) "
                "ON r.collection = u.c AND r.key = u.k AND r.partition = u.p",
                [[escape(k[1]) for k in todo], [escape(k[2]) for k in todo],
                 [escape(k[0]) for k in todo]])
            found = {(row.partition, row.collection, row.key): (row, r[6])
                     for r in rows if (row := _record(r))}
            for rkey in todo:
                hit = found.get(rkey)
                self._note(rkey, hit[0] if hit else None, hit[1] if hit else ABSENT)
                if hit:
                    out[rkey] = hit[0]
        return out

    def save_record(self, row: RecordRow) -> None:
        """See :meth:`Store.save_record`. A lost update (another process changed the
        row since this store read it) raises :class:`ConcurrentAppendError` at a
        later flush or the commit."""
        self.save_records([row])

    def save_records(self, rows: list[RecordRow]) -> None:
        """See :meth:`Store.save_records` and :meth:`save_record`."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        buf, seen = self._buf, self._seen
        for row in rows:
            rkey = (row.partition, row.collection, row.key)
            base = seen.pop(rkey, UNKNOWN) if seen else UNKNOWN
            buf.save(rkey, row, ABSENT if row.partition in buf.complete else base)
            if buf.full():
                self.flush()

    def delete_record(self, partition: str, collection: str, key: str) -> None:
        """See :meth:`Store.delete_record`. Compare-and-set like a save: if another
        process changed the row since this store read it, :class:`ConcurrentAppendError`."""
        if not self._in_tx:
            raise UsageError("write outside a transaction")
        self.flush()
        rkey = (partition, collection, key)
        entry = self._buf.rows.get(rkey)
        base = entry.base if entry is not None else self._seen.pop(rkey, UNKNOWN)
        self._buf.rows[rkey] = Entry(None, ABSENT)
        if base == ABSENT:
            return
        sql = "DELETE FROM meshsync_records WHERE collection = %s AND key = %s AND partition = %s"
        args = [escape(collection), escape(key), escape(partition)]
        with self._guard() as conn:
            if base == UNKNOWN:
                conn.execute(sql.encode(), args)
            elif conn.execute(f"{sql} AND version = %s".encode(), [*args, base]).rowcount != 1:
                raise ConcurrentAppendError(f"record {collection}/{key} in {partition} was "
                                            "changed by another process; run it again")

    def iter_records(self, collection: str | None = None, partition_prefix: str = "",
                     *, conflicts_only: bool = False) -> Iterator[RecordRow]:
        """See :meth:`Store.iter_records`. Reads in pages of 500 rows."""
        after: RecordPos | None = None
        while True:
            rows = self.records_page(collection, partition_prefix, after, PAGE,
                                     conflicts_only=conflicts_only)
            yield from rows
            if len(rows) < PAGE:
                return
            after = record_pos(rows[-1])

    def records_page(self, collection: str | None, partition_prefix: str = "",
                     after: RecordPos | None = None, limit: int = 500, *,
                     live_only: bool = False, conflicts_only: bool = False
                     ) -> list[RecordRow]:
        """See :meth:`Store.records_page`: one query on the primary key's index."""
        self.flush()  # the caller may have written between two pages
        where, args = ["true"], []
        for term, arg in ((collection is not None, "collection = %s"),
                          (conflicts_only, "conflict"), (live_only, "NOT deleted")):
            if term:
                where.append(arg)
        if collection is not None:
            args.append(escape(collection))
        if partition_prefix:
            prefix = escape(partition_prefix)
            where.append("(partition = %s OR (partition >= %s AND partition < %s))")
            args += [prefix, *_prefix_bounds(prefix)]
        if after is not None:
            where.append("(collection, key, partition) > (%s, %s, %s)")
            args += [escape(a) for a in after]
        rows = self._all(f"SELECT {_RECORD_COLS} FROM meshsync_records WHERE "
                         f"{' AND '.join(where)} ORDER BY collection, key, partition "
                         "LIMIT %s", [*args, limit])
        return [_record(r) for r in rows]

    def find_record(self, collection: str, key: str) -> list[RecordRow]:
        """See :meth:`Store.find_record`."""
        self.flush()
        rows = self._all(f"SELECT {_RECORD_COLS} FROM meshsync_records "
                         "WHERE collection = %s AND key = %s ORDER BY partition",
                         [escape(collection), escape(key)])
        return [_record(r) for r in rows]
