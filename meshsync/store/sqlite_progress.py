"""Progress counts of :class:`~meshsync.store.sqlite.SQLiteStore`, kept up to date on
every write of ``records``.

Every record row carries its progress classification (``label``, ``done``,
``done_ms``: :class:`~meshsync.store.base.RecordRow`, computed by
:mod:`meshsync.replica.progress`). The table ``progress`` holds, per ``(collection,
partition, label, done, deleted, conflict)``, how many rows have it (``n``) and the
newest ``done_ms`` counted there; every write of a record row changes it in the same
transaction (:class:`SQLiteProgress`), so it always equals a count of ``records``
(:meth:`SQLiteProgress.rebuild_progress_counts` recounts it, idempotently).
Reading progress is then a read of a few rows per TPS, whatever the voters' number.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from meshsync.store.base import ProgressCount, RecordRow

_RECOUNT = """
INSERT INTO progress
SELECT collection, partition, CASE WHEN deleted THEN '' ELSE coalesce(label, '') END,
       done, deleted, conflict, count(*), max(done_ms)
FROM records GROUP BY 1, 2, 3, 4, 5, 6
"""

#: Migration 5: the classification columns and the counts (counted once here).
MIGRATION = """
ALTER TABLE records ADD COLUMN label TEXT;
ALTER TABLE records ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN done_ms INTEGER;
CREATE TABLE progress (
    collection TEXT NOT NULL, partition TEXT NOT NULL, label TEXT NOT NULL,
    done INTEGER NOT NULL, deleted INTEGER NOT NULL, conflict INTEGER NOT NULL,
    n INTEGER NOT NULL, last_done_ms INTEGER,
    PRIMARY KEY (collection, partition, label, done, deleted, conflict)) WITHOUT ROWID;
""" + _RECOUNT.strip() + ";\n"

_ADD = ("INSERT INTO progress VALUES (?,?,?,?,?,?,?,?) "
        "ON CONFLICT (collection, partition, label, done, deleted, conflict) DO UPDATE "
        "SET n = n + excluded.n, last_done_ms = max("
        "coalesce(last_done_ms, excluded.last_done_ms), "
        "coalesce(excluded.last_done_ms, last_done_ms))")

RecordKey = tuple[str, str, str]
Group = tuple[str, str, str, int, int, int]
"""``(collection, partition, label, done, deleted, conflict)`` of a ``progress`` row."""


def group_of(collection: str, partition: str, label: str | None, done: object,
             deleted: object, conflict: object) -> Group:
    """The ``progress`` row a record row counts in (deleted and unlabelled: ``""``)."""
    return (collection, partition, "" if deleted else (label or ""), int(bool(done)),
            int(bool(deleted)), int(bool(conflict)))


def statements(script: str) -> list[str]:
    """``script``'s SQL statements, whole (a trigger's inner ``;`` does not split it)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip().strip(";").strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


class SQLiteProgress:
    """Mixin for :class:`~meshsync.store.sqlite.SQLiteStore` (which provides ``_db``
    and calls :meth:`_save_counted` and :meth:`_delete_counted` for every record write);
    the public methods are documented on :class:`~meshsync.store.Store`.

    A write reads the rows it replaces (their groups: one indexed query per 500 keys,
    as :meth:`Store.load_records`), writes, and adds the difference to ``progress``
    in one statement per changed group, inside the caller's transaction. (Row
    triggers did the same at about three times the cost of an import's inserts.)
    """

    _db: sqlite3.Connection

    def _held(self, keys: list[RecordKey]) -> dict[RecordKey, tuple[Group, bytes]]:
        """The group and state of the rows of ``keys`` that exist."""
        wanted = set(keys)
        by_collection: dict[str, list[str]] = {}
        for _, collection, key in wanted:
            by_collection.setdefault(collection, []).append(key)
        held: dict[RecordKey, tuple[Group, bytes]] = {}
        for collection, names in by_collection.items():
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                for p, c, k, label, done, deleted, conflict, state in self._db.execute(
                        "SELECT partition, collection, key, label, done, deleted, conflict, "
                        f"state FROM records WHERE collection = ? AND key IN "
                        f"({','.join('?' * len(chunk))})", [collection, *chunk]):
                    if (p, c, k) in wanted:
                        held[(p, c, k)] = (group_of(c, p, label, done, deleted, conflict),
                                           state)
        return held

    def _add(self, delta: dict[Group, list[Any]]) -> None:
        self._db.executemany(_ADD, [(*g, n, ms) for g, (n, ms) in delta.items()
                                    if n or ms is not None])

    def _save_counted(self, sql: str, rows: list[RecordRow]) -> None:
        """Run ``sql`` (the records upsert) over ``rows`` and count the change."""
        last = {(r.partition, r.collection, r.key): r for r in rows}
        delta: dict[Group, list[Any]] = {}
        for group, _ in self._held(list(last)).values():
            _bump(delta, group, -1, None)
        for r in last.values():
            _bump(delta, group_of(r.collection, r.partition, r.label, r.done, r.deleted,
                                  r.conflict), 1, r.done_ms if r.done else None)
        self._db.executemany(sql, rows)
        self._add(delta)

    def _delete_counted(self, partition: str, collection: str, key: str) -> None:
        """Delete one record row and count it out."""
        held = self._held([(partition, collection, key)])
        self._db.execute("DELETE FROM records WHERE collection=? AND key=? AND partition=?",
                         (collection, key, partition))
        delta: dict[Group, list[Any]] = {}
        for group, _ in held.values():
            _bump(delta, group, -1, None)
        self._add(delta)

    def progress_counts(self, collection: str, partition_prefix: str = ""
                        ) -> list[ProgressCount]:
        """See :meth:`Store.progress_counts`: a read of the ``progress`` table."""
        sql = ("SELECT partition, label, done, deleted, conflict, n, last_done_ms "
               "FROM progress WHERE collection = ? AND n <> 0")
        args: list[object] = [collection]
        if partition_prefix:
            sql += " AND (partition = ? OR (partition >= ? AND partition < ?))"
            args += [partition_prefix, partition_prefix + "/", partition_prefix + "0"]
        sql += " ORDER BY partition, label, done, deleted, conflict"
        return [ProgressCount(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6])
                for r in self._db.execute(sql, args)]

    def set_record_labels(self, rows: list[RecordRow]) -> None:
        """See :meth:`Store.set_record_labels` (counted like a save)."""
        held = self._held([(r.partition, r.collection, r.key) for r in rows])
        same = [r for r in rows if (h := held.get((r.partition, r.collection, r.key)))
                is not None and h[1] == r.state]
        delta: dict[Group, list[Any]] = {}
        for r in same:
            _bump(delta, held[(r.partition, r.collection, r.key)][0], -1, None)
            _bump(delta, group_of(r.collection, r.partition, r.label, r.done, r.deleted,
                                  r.conflict), 1, r.done_ms if r.done else None)
        self._db.executemany(
            "UPDATE records SET label = ?, done = ?, done_ms = ? WHERE collection = ? "
            "AND key = ? AND partition = ?",
            [(r.label, r.done, r.done_ms, r.collection, r.key, r.partition) for r in same])
        self._add(delta)

    def rebuild_progress_counts(self) -> None:
        """See :meth:`Store.rebuild_progress_counts`: the table counted again from
        ``records`` (inside the caller's transaction)."""
        self._db.execute("DELETE FROM progress")
        self._db.execute(_RECOUNT)


def _bump(delta: dict[Group, list[Any]], group: Group, n: int, ms: int | None) -> None:
    entry = delta.setdefault(group, [0, None])
    entry[0] += n
    if ms is not None:
        entry[1] = max(entry[1] or 0, ms)
