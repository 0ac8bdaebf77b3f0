"""Write-behind buffer of :class:`~meshsync.store.postgres.PostgresStore`.

A transaction's appends and record saves are kept here and sent to PostgreSQL in
bulk (:meth:`WriteBuffer.flush`): a few set-based statements per flush (``unnest``
of arrays sent in binary, ``%b``, and binary ``COPY``) instead of one round trip per
row; set-based statements beat ``executemany`` even in pipeline mode, which still
executes one statement per row on the server. The store flushes
before a read that needs the database, when the buffer is full, and at commit.

**Concurrency control** (the transaction runs at READ COMMITTED):

* *Feed heads* are compare-and-set. A flush locks the touched feed rows with
  ``SELECT ... ORDER BY id FOR UPDATE`` (one lock order for every process, so two
  flushes do not deadlock), checks that each head is still the one this
  transaction read, then moves it. A new feed is inserted with ``ON CONFLICT DO
  NOTHING``: if another transaction inserted it first, the insert waits for that
  transaction and inserts nothing. Changes are then copied in; their primary key
  ``(feed, seq)`` is a second guard against duplicates.
* *Record rows* carry a ``version``. A save is checked against the version its
  row had when this store last read it (optimistic control: reads take no lock,
  as most ingest touches records nobody else touches). One ``UPDATE`` sets each
  row whose version is still the one read; under READ COMMITTED it waits for a
  transaction holding the row, then checks the version that one committed, and a
  row count short of the rows sent is a lost race. Rows are sent in key order;
  should two processes still lock rows in opposite orders, PostgreSQL's deadlock
  error is a lost race too. Rows read as absent are copied in (binary ``COPY``,
  in key order): if another process inserted one of them first, the primary key
  refuses the copy (a unique violation, after waiting for that process's
  transaction as an insert does). A row saved without having been read is
  upserted.

Any mismatch raises :class:`~meshsync.model.errors.ConcurrentAppendError`: the loser of a
race stores nothing and retries; it never holds a duplicate, a gap or a record
state that misses the winner's changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.string import BytesBinaryDumper

from meshsync.model.change import FeedId
from meshsync.model.errors import ConcurrentAppendError
from meshsync.model.identity import short_id
from meshsync.store.base import RecordRow, StoredChange
from meshsync.store.pg_text import escape, fields_json, fields_jsonb

if TYPE_CHECKING:
    from psycopg.rows import TupleRow

RecordKey = tuple[str, str, str]
"""``(partition, collection, key)``, as in :mod:`meshsync.replica.receive`."""

ABSENT = 0  #: base version of a row that did not exist when read
UNKNOWN = -1  #: base version of a row saved without being read (blind upsert)

MAX_PENDING_ROWS = 4000  #: pending changes + record saves that trigger a flush
MAX_PENDING_BYTES = 32 << 20  #: pending change bytes that trigger a flush
MAX_CACHED_ROWS = 20_000  #: past this, a flush drops cached row contents (not versions)

_COPY_CHANGES = ("COPY meshsync_changes (feed, seq, hash, hlc, body, sig, invalid) "
                 "FROM STDIN (FORMAT BINARY)")
_COPY_TYPES = ["int8", "int8", "bytea", "numeric", "bytea", "bytea", "text"]
# `fields` is jsonb: its binary form is the version byte 1 and the JSON text, sent
# as raw bytes (pg_text.fields_jsonb), so the client needs no jsonb dumper.
# label, done, done_ms: the progress classification (meshsync.store.pg_progress).
_COPY_RECORDS = ("COPY meshsync_records (collection, key, partition, state, fields, "
                 "deleted, conflict, label, done, done_ms) FROM STDIN (FORMAT BINARY)")
_COPY_RECORD_TYPES = ["text", "text", "text", "bytea", "bytea", "bool", "bool", "text",
                      "bool", "int8"]
_ROW_ARRAYS = ("unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[], "
               "%b::bool[], %b::bool[], %b::text[], %b::bool[], %b::int8[]")
_ROW_NAMES = "c, k, p, state, fields, deleted, conflict, label, done, done_ms"
_RECORD_ARRAYS = f"{_ROW_ARRAYS}) AS u({_ROW_NAMES})"
_UPDATE_ARRAYS = f"{_ROW_ARRAYS}, %b::bigint[]) AS u({_ROW_NAMES}, base)"
_SET_LABELS = "label = u.label, done = u.done, done_ms = u.done_ms, "


@dataclass(slots=True)
class Head:
    """A feed's head as the transaction sees it."""

    fid: int | None  # feed row id; None until the feed exists in the database
    db_seq: int  # head_seq in the database when read or last flushed (0: absent)
    seq: int  # head including pending appends
    hash: bytes


@dataclass(slots=True)
class Entry:
    """A record row as the transaction sees it."""

    row: RecordRow | None  # None: absent
    base: int  # version when read (ABSENT, UNKNOWN or >= 1)
    dirty: bool = False
    loaded: bool = True  # False once the content was dropped; `base` still holds


_sort_key = itemgetter(1, 2, 0)  # a RecordKey in the primary key's order


def configure(conn: psycopg.Connection[TupleRow]) -> None:
    """Adapt ``conn`` for the bulk writes: binary ``COPY`` sends ``bytea`` through
    psycopg's C dumper (the default for a type given by name is a Python one that
    also accepts ``psycopg.Binary``, which meshsync never passes)."""
    conn.adapters.register_dumper(None, BytesBinaryDumper)


def _conflict(what: str) -> ConcurrentAppendError:
    return ConcurrentAppendError(f"{what} was changed by another process sharing the "
                                 "database; nothing was stored, run the transaction again")


@dataclass
class WriteBuffer:
    """Pending writes and read state of one transaction (see module docs)."""

    heads: dict[FeedId, Head] = field(default_factory=dict)
    changes: dict[FeedId, list[tuple[StoredChange, int]]] = field(default_factory=dict)
    n_changes: int = 0
    rows: dict[RecordKey, Entry] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)  # partitions wholly in `rows`
    misses: dict[str, int] = field(default_factory=dict)  # uncached loads per partition
    dirty: list[RecordKey] = field(default_factory=list)  # saved since the last flush
    evicted: int = 0  # rows whose content was dropped at the last eviction
    bytes: int = 0

    def append(self, feed: FeedId, head: Head, change: StoredChange, hlc: int) -> None:
        """Queue ``change`` (already checked against ``head``, ``heads[feed]``)."""
        head.seq, head.hash = change.seq, change.hash
        pending = self.changes.get(feed)
        if pending is None:
            pending = self.changes[feed] = []
        pending.append((change, hlc))
        self.n_changes += 1
        self.bytes += len(change.body) + len(change.sig)

    def save(self, rkey: RecordKey, row: RecordRow, base: int) -> None:
        """Queue a record save; ``base`` is used if the row was not read in this tx."""
        entry = self.rows.get(rkey)
        if entry is None:
            entry = self.rows[rkey] = Entry(row, base, True)
            self.dirty.append(rkey)
            return
        if not entry.dirty:
            self.dirty.append(rkey)
        entry.row, entry.dirty, entry.loaded = row, True, True

    def lookup(self, rkey: RecordKey) -> Entry | None:
        """The entry for ``rkey`` if it answers a load without a query."""
        entry = self.rows.get(rkey)
        if entry is None and rkey[0] in self.complete:
            entry = self.rows[rkey] = Entry(None, ABSENT)
        return entry if entry is not None and entry.loaded else None

    def pending_change(self, feed: FeedId, seq: int) -> StoredChange | None:
        """The change at ``seq`` of ``feed`` if it is pending here."""
        head = self.heads.get(feed)
        if head is None or not head.db_seq < seq <= head.seq:
            return None
        return self.changes[feed][seq - head.db_seq - 1][0]

    def full(self) -> bool:
        """True when the pending writes should be flushed."""
        return (self.n_changes + len(self.dirty) >= MAX_PENDING_ROWS
                or self.bytes >= MAX_PENDING_BYTES)

    def pending(self) -> bool:
        """True if anything waits to be flushed."""
        return bool(self.changes or self.dirty)

    def flush(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Send every pending write inside the open transaction.

        Raises :class:`ConcurrentAppendError` when another process won a race and
        lets psycopg errors through; after either, the transaction must roll back.
        """
        if self.changes:
            self._flush_feeds(conn)
            self._copy_changes(conn)
        if self.dirty:
            self._flush_records(conn)
        if len(self.rows) - self.evicted > MAX_CACHED_ROWS:
            for entry in self.rows.values():
                entry.row, entry.loaded = None, False
            self.evicted = len(self.rows)
            self.complete.clear()
            self.misses.clear()

    # -- feeds and changes ----------------------------------------------------------

    def _flush_feeds(self, conn: psycopg.Connection[TupleRow]) -> None:
        touched = set(self.changes)
        new = sorted(f for f in touched if self.heads[f].fid is None)
        old = sorted((h.fid, f) for f in touched if (h := self.heads[f]).fid is not None)
        if new:
            self._insert_feeds(conn, new)
        if old:
            self._move_heads(conn, [f for _, f in old])
        for feed in touched:
            head = self.heads[feed]
            head.db_seq = head.seq

    def _insert_feeds(self, conn: psycopg.Connection[TupleRow], new: list[FeedId]) -> None:
        heads = [self.heads[f] for f in new]
        rows = conn.execute(
            "INSERT INTO meshsync_feeds (author, partition, head_seq, head_hash) "
            "SELECT * FROM unnest(%b::bytea[], %b::text[], %b::bigint[], %b::bytea[]) "
            "ORDER BY 1, 2 ON CONFLICT (author, partition) DO NOTHING "
            "RETURNING id, author, partition",
            [[f[0] for f in new], [escape(f[1]) for f in new], [h.seq for h in heads],
             [h.hash for h in heads]]).fetchall()
        made = {(bytes(a), p): int(i) for i, a, p in rows}
        for feed in new:
            fid = made.get((feed[0], escape(feed[1])))
            if fid is None:
                raise _conflict(f"new feed {short_id(feed[0])}/{feed[1]}")
            self.heads[feed].fid = fid

    def _move_heads(self, conn: psycopg.Connection[TupleRow], feeds: list[FeedId]) -> None:
        heads = [self.heads[f] for f in feeds]
        ids = [h.fid for h in heads]
        locked = conn.execute(
            "SELECT id, head_seq FROM meshsync_feeds WHERE id = ANY(%b::bigint[]) "
            "ORDER BY id FOR UPDATE", [ids]).fetchall()
        now = {int(i): int(s) for i, s in locked}
        for feed, fid, head in zip(feeds, ids, heads, strict=True):
            held = now.get(fid) if fid is not None else None
            if held != head.db_seq:
                raise _conflict(f"feed {short_id(feed[0])}/{feed[1]} (head seq {held}, "
                                f"this transaction read {head.db_seq})")
        conn.execute(
            "UPDATE meshsync_feeds f SET head_seq = u.seq, head_hash = u.hash "
            "FROM unnest(%b::bigint[], %b::bigint[], %b::bytea[]) AS u(id, seq, hash) "
            "WHERE f.id = u.id", [ids, [h.seq for h in heads], [h.hash for h in heads]])

    def _copy_changes(self, conn: psycopg.Connection[TupleRow]) -> None:
        with conn.cursor() as cur, cur.copy(_COPY_CHANGES) as copy:
            copy.set_types(_COPY_TYPES)
            for feed, pending in self.changes.items():
                fid = self.heads[feed].fid
                for ch, hlc in pending:
                    copy.write_row((fid, ch.seq, ch.hash, hlc, ch.body, ch.sig,
                                    None if ch.invalid is None else escape(ch.invalid)))
        self.changes.clear()
        self.n_changes = self.bytes = 0

    # -- records --------------------------------------------------------------------

    def _flush_records(self, conn: psycopg.Connection[TupleRow]) -> None:
        rows = self.rows
        read: list[tuple[RecordKey, Entry]] = []
        absent: list[tuple[RecordKey, Entry]] = []
        unknown: list[tuple[RecordKey, Entry]] = []
        for rkey in sorted(self.dirty, key=_sort_key):
            entry = rows[rkey]
            entry.dirty = False  # (if a write below fails, the transaction is lost anyway)
            base = entry.base
            (absent if base == ABSENT else unknown if base == UNKNOWN else read).append(
                (rkey, entry))
        self.dirty.clear()
        if read:
            self._update_rows(conn, read)
        if absent:
            self._insert_rows(conn, absent)
        if unknown:
            self._upsert_rows(conn, unknown)

    @staticmethod
    def _arrays(dirty: list[tuple[RecordKey, Entry]]) -> list[list[Any]]:
        cols: list[list[Any]] = [[], [], [], [], [], [], [], [], [], []]
        c, k, p, state, fields, deleted, conflict, label, done, done_ms = cols
        for rkey, entry in dirty:
            row = entry.row
            assert row is not None  # dirty entries always hold their row
            c.append(escape(rkey[1]))
            k.append(escape(rkey[2]))
            p.append(escape(rkey[0]))
            state.append(row.state)
            fields.append(fields_json(row.state, row.deleted))
            deleted.append(row.deleted)
            conflict.append(row.conflict)
            label.append(None if row.label is None else escape(row.label))
            done.append(row.done)
            done_ms.append(row.done_ms)
        return cols

    def _update_rows(self, conn: psycopg.Connection[TupleRow],
                     dirty: list[tuple[RecordKey, Entry]]) -> None:
        arrays = self._arrays(dirty)
        arrays.append([entry.base for _, entry in dirty])
        updated = conn.execute(
            "UPDATE meshsync_records r SET state = u.state, fields = u.fields::jsonb, "
            f"deleted = u.deleted, conflict = u.conflict, {_SET_LABELS}"
            "version = r.version + 1, "
            f"updated_at = now() FROM {_UPDATE_ARRAYS} WHERE r.collection = u.c "
            "AND r.key = u.k AND r.partition = u.p AND r.version = u.base", arrays).rowcount
        if updated != len(dirty):
            (p, c, k), lost = dirty[0][0], len(dirty) - updated
            raise _conflict(f"record {c}/{k} in {p}" if len(dirty) == 1 else
                            f"{lost} of the {len(dirty)} records this transaction saved")
        for _, entry in dirty:
            entry.base += 1  # as the update set it

    def _insert_rows(self, conn: psycopg.Connection[TupleRow],
                     dirty: list[tuple[RecordKey, Entry]]) -> None:
        try:
            with conn.cursor() as cur, cur.copy(_COPY_RECORDS) as copy:
                copy.set_types(_COPY_RECORD_TYPES)
                write = copy.write_row
                for rkey, entry in dirty:
                    row = entry.row
                    assert row is not None  # dirty entries always hold their row
                    write((escape(rkey[1]), escape(rkey[2]), escape(rkey[0]), row.state,
                           fields_jsonb(row.state, row.deleted), row.deleted, row.conflict,
                           None if row.label is None else escape(row.label), row.done,
                           row.done_ms))
                    entry.base = 1  # the column's default version
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(f"a record read as absent ({exc.diag.message_detail})") from exc

    def _upsert_rows(self, conn: psycopg.Connection[TupleRow],
                     dirty: list[tuple[RecordKey, Entry]]) -> None:
        rows = conn.execute(
            "INSERT INTO meshsync_records (collection, key, partition, state, fields, "
            "deleted, conflict, label, done, done_ms) SELECT c, k, p, state, fields::jsonb, "
            "deleted, conflict, label, done, done_ms "
            f"FROM {_RECORD_ARRAYS} ORDER BY 1, 2, 3 "
            "ON CONFLICT (collection, key, partition) DO UPDATE SET state = excluded.state, "
            "fields = excluded.fields, deleted = excluded.deleted, "
            "conflict = excluded.conflict, label = excluded.label, done = excluded.done, "
            "done_ms = excluded.done_ms, version = meshsync_records.version + 1, "
            "updated_at = now() RETURNING collection, key, partition, version",
            self._arrays(dirty)).fetchall()
        by_pk = {(c, k, p): int(v) for c, k, p, v in rows}
        for rkey, entry in dirty:
            version = by_pk.get((escape(rkey[1]), escape(rkey[2]), escape(rkey[0])))
            if version is None:  # (an upsert always returns its row)
                raise _conflict(f"record {rkey[1]}/{rkey[2]} in {rkey[0]}")
            entry.base = version
