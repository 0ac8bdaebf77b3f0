"""Progress counts of :class:`~meshsync.store.postgres.PostgresStore`, kept up to date
on write (migration 7) and read by the KPU page and ``GET /api/progress``.

Every record row carries its progress classification (``label``, ``done``,
``done_ms``; :class:`~meshsync.store.base.RecordRow`, computed by
:mod:`meshsync.replica.progress`). Statement-level triggers on ``meshsync_records``
add, in the writing transaction, one row per changed group to
``meshsync_progress_tally``: ``(collection, partition, label, done, deleted,
conflict)`` with the change of its count ``n`` (+ for rows that arrived in the
group, - for rows that left it). The table has no key and is only appended to, so
concurrent central processes never wait for each other on a shared counter; the
view ``meshsync_progress_counts`` sums it. A reader folds the table into one row per
group when it has grown (:meth:`PgProgress.progress_counts`): one statement that
deletes the rows it sees and inserts their sums, which stays correct beside
concurrent writers and folders (rows deleted by another are skipped, rows it did not
see are left).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from meshsync.store.base import ProgressCount, RecordRow, Store
from meshsync.store.pg_text import escape, unescape

if TYPE_CHECKING:
    from psycopg.rows import TupleRow

#: Advisory lock key of a full recount (ASCII "prog").
RECOUNT_LOCK = 0x70726F67

_GROUP = ("collection, partition, CASE WHEN deleted THEN '' ELSE coalesce(label, '') END, "
          "done, deleted, conflict")
_COLUMNS = "collection, partition, label, done, deleted, conflict, n, last_done_ms"

_RECOUNT = f"""
WITH gone AS (DELETE FROM meshsync_progress_tally RETURNING 1)
INSERT INTO meshsync_progress_tally ({_COLUMNS})
SELECT {_GROUP}, count(*), max(done_ms) FROM meshsync_records
GROUP BY 1, 2, 3, 4, 5, 6
"""

_FOLD = f"""
WITH gone AS (DELETE FROM meshsync_progress_tally RETURNING *)
INSERT INTO meshsync_progress_tally ({_COLUMNS})
SELECT collection, partition, label, done, deleted, conflict, sum(n), max(last_done_ms)
FROM gone GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0
"""


def _delta(source: str, sign: int, ms: str) -> str:
    return f"SELECT {_GROUP}, {sign} AS n, {ms} AS ms FROM {source}"


def _trigger_function(op: str, body: str) -> str:
    return (f"CREATE FUNCTION meshsync_progress_on_{op}() RETURNS trigger LANGUAGE plpgsql "
            f"AS $f$ BEGIN INSERT INTO meshsync_progress_tally ({_COLUMNS}) "
            f"SELECT collection, partition, label, done, deleted, conflict, sum(n), max(ms) "
            f"FROM ({body}) d(collection, partition, label, done, deleted, conflict, n, ms) "
            "GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0 OR max(ms) IS NOT NULL; "
            "RETURN NULL; END $f$")


def _trigger(op: str, tables: str) -> str:
    return (f"CREATE TRIGGER meshsync_records_progress_{op} AFTER {op.upper()} ON "
            f"meshsync_records REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION meshsync_progress_on_{op}()")


#: Migration 7, as separate statements (the functions hold ``;``).
MIGRATION: tuple[str, ...] = (
    "ALTER TABLE meshsync_records ADD COLUMN label text COLLATE \"C\", "
    "ADD COLUMN done boolean NOT NULL DEFAULT false, ADD COLUMN done_ms bigint",
    "CREATE TABLE meshsync_progress_tally ("
    "collection text COLLATE \"C\" NOT NULL, partition text COLLATE \"C\" NOT NULL, "
    "label text COLLATE \"C\" NOT NULL, done boolean NOT NULL, deleted boolean NOT NULL, "
    "conflict boolean NOT NULL, n bigint NOT NULL, last_done_ms bigint)",
    "CREATE INDEX meshsync_progress_tally_partition ON meshsync_progress_tally "
    "(collection, partition)",
    _trigger_function("insert", _delta("new_rows", 1, "done_ms")),
    _trigger_function("delete", _delta("old_rows", -1, "NULL::bigint")),
    _trigger_function("update", _delta("old_rows", -1, "NULL::bigint") + " UNION ALL "
                      + _delta("new_rows", 1, "done_ms")),
    _trigger("insert", "NEW TABLE AS new_rows"),
    _trigger("delete", "OLD TABLE AS old_rows"),
    _trigger("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    _RECOUNT,
    """CREATE VIEW meshsync_progress_counts AS
SELECT collection, partition, label, done, deleted, conflict, sum(n)::bigint AS n,
       to_timestamp(max(last_done_ms) / 1000.0) AS last_done_at
FROM meshsync_progress_tally GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0""",
    # Per TPS, kampung and distrik of the coklit voters, from the counts (no scan of
    # the records): "dicoklit X dari Y" with MS/TMS/ubah/baru.
    """CREATE VIEW meshsync_kpu_progress AS
SELECT array_to_string(p.segs[1:cardinality(p.segs) - u.up], '/') COLLATE "C" AS prefix,
       u.up AS up, cardinality(p.segs) - u.up AS level,
       sum(c.n)::bigint AS voters,
       coalesce(sum(c.n) FILTER (WHERE c.done), 0)::bigint AS dicoklit,
       coalesce(sum(c.n) FILTER (WHERE NOT c.done), 0)::bigint AS belum,
       coalesce(sum(c.n) FILTER (WHERE c.done AND c.label = 'MS'), 0)::bigint AS ms,
       coalesce(sum(c.n) FILTER (WHERE c.done AND c.label = 'TMS'), 0)::bigint AS tms,
       coalesce(sum(c.n) FILTER (WHERE c.done AND c.label = 'ubah'), 0)::bigint AS ubah,
       coalesce(sum(c.n) FILTER (WHERE c.done AND c.label = 'baru'), 0)::bigint AS baru,
       coalesce(sum(c.n) FILTER (WHERE c.conflict), 0)::bigint AS conflicts,
       max(c.last_done_at) AS last_result_at
FROM meshsync_progress_counts c
CROSS JOIN LATERAL (SELECT string_to_array(c.partition, '/') AS segs) p
CROSS JOIN LATERAL generate_series(0, cardinality(p.segs) - 1) AS u(up)
WHERE c.collection = 'voters' AND NOT c.deleted
GROUP BY 1, 2, 3""",
)

#: Fold the tally when it holds more than this many rows per group (plus a margin).
FOLD_RATIO = 2
FOLD_MARGIN = 256


class PgProgress(Store):
    """The progress part of the PostgreSQL store; the store supplies the queries."""

    @abc.abstractmethod
    def _all(self, sql: str, args: Any = None) -> list[TupleRow]:
        """Run a query and fetch every row."""

    @abc.abstractmethod
    def _write(self, sql: str, args: Any) -> int:
        """Run a statement inside the open transaction; the row count."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Send buffered writes of the open transaction."""

    def progress_counts(self, collection: str, partition_prefix: str = ""
                        ) -> list[ProgressCount]:
        """See :meth:`Store.progress_counts`: the tally summed per group (folded first
        when it has grown past :data:`FOLD_RATIO` rows per group)."""
        self.flush()
        where, args = "collection = %s", [escape(collection)]
        if partition_prefix:
            where += " AND (partition = %s OR (partition >= %s AND partition < %s))"
            prefix = escape(partition_prefix)
            args += [prefix, prefix + "/", prefix + "0"]
        rows = self._all(
            "SELECT partition, label, done, deleted, conflict, sum(n), max(last_done_ms), "
            f"count(*) FROM meshsync_progress_tally WHERE {where} "
            "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5", args)
        if sum(r[7] for r in rows) > FOLD_RATIO * len(rows) + FOLD_MARGIN:
            self._all(f"{_FOLD} RETURNING 1")
        return [ProgressCount(unescape(r[0]), unescape(r[1]), r[2], r[3], r[4], int(r[5]),
                              None if r[6] is None else int(r[6]))
                for r in rows if r[5] != 0]

    def set_record_labels(self, rows: list[RecordRow]) -> None:
        """See :meth:`Store.set_record_labels`: one ``UPDATE`` that checks the state."""
        if not rows:
            return
        self.flush()
        cols: list[list[Any]] = [[], [], [], [], [], [], []]
        for r in rows:
            for col, value in zip(cols, (escape(r.collection), escape(r.key),
                                         escape(r.partition), r.state,
                                         None if r.label is None else escape(r.label),
                                         r.done, r.done_ms), strict=True):
                col.append(value)
        self._write(
            "UPDATE meshsync_records r SET label = u.label, done = u.done, "
            "done_ms = u.done_ms FROM unnest(%b::text[], %b::text[], %b::text[], "
            "%b::bytea[], %b::text[], %b::bool[], %b::int8[]) "
            "AS u(c, k, p, state, label, done, done_ms) WHERE r.collection = u.c "
            "AND r.key = u.k AND r.partition = u.p AND r.state = u.state", cols)

    def rebuild_progress_counts(self) -> None:
        """See :meth:`Store.rebuild_progress_counts`: under an advisory lock (one
        recount at a time), one statement that empties the tally and counts the
        records, so a writer's tally rows and its records are both in or both out."""
        self.flush()
        self._write("SELECT pg_advisory_xact_lock(%s)", [RECOUNT_LOCK])
        self._write(_RECOUNT, None)
