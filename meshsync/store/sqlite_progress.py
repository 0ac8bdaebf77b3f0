"""Progress counts of :class:`~meshsync.store.sqlite.SQLiteStore`, kept up to date on
write by triggers on ``records``.

Every record row carries its progress classification (``label``, ``done``,
``done_ms``: :class:`~meshsync.store.base.RecordRow`, computed by
:mod:`meshsync.replica.progress`). The table ``progress`` holds, per ``(collection,
partition, label, done, deleted, conflict)``, how many rows have it (``n``) and the
newest ``done_ms`` counted there; the triggers below change it in the same
transaction as the record row, so it always equals a count of ``records``
(:meth:`SQLiteProgress.rebuild_progress_counts` recounts it, idempotently).
Reading progress is then a read of a few rows per TPS, whatever the voters' number.
"""

from __future__ import annotations

import sqlite3

from meshsync.store.base import ProgressCount, RecordRow

_RECOUNT = """
INSERT INTO progress
SELECT collection, partition, CASE WHEN deleted THEN '' ELSE coalesce(label, '') END,
       done, deleted, conflict, count(*), max(done_ms)
FROM records GROUP BY 1, 2, 3, 4, 5, 6
"""

#: Migration 5: the classification columns, the counts and their triggers.
#: Statements end with ``;`` at the end of a line (triggers hold inner ones).
MIGRATION = """
ALTER TABLE records ADD COLUMN label TEXT;
ALTER TABLE records ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN done_ms INTEGER;
CREATE TABLE progress (
    collection TEXT NOT NULL, partition TEXT NOT NULL, label TEXT NOT NULL,
    done INTEGER NOT NULL, deleted INTEGER NOT NULL, conflict INTEGER NOT NULL,
    n INTEGER NOT NULL, last_done_ms INTEGER,
    PRIMARY KEY (collection, partition, label, done, deleted, conflict)) WITHOUT ROWID;
CREATE TRIGGER records_progress_insert AFTER INSERT ON records BEGIN
    INSERT INTO progress VALUES (new.collection, new.partition,
        CASE WHEN new.deleted THEN '' ELSE coalesce(new.label, '') END,
        new.done, new.deleted, new.conflict, 1, new.done_ms)
    ON CONFLICT (collection, partition, label, done, deleted, conflict) DO UPDATE
    SET n = n + 1, last_done_ms = max(coalesce(last_done_ms, excluded.last_done_ms),
                                      coalesce(excluded.last_done_ms, last_done_ms));
END;
CREATE TRIGGER records_progress_delete AFTER DELETE ON records BEGIN
    UPDATE progress SET n = n - 1 WHERE collection = old.collection
        AND partition = old.partition AND done = old.done AND deleted = old.deleted
        AND conflict = old.conflict
        AND label = CASE WHEN old.deleted THEN '' ELSE coalesce(old.label, '') END;
END;
CREATE TRIGGER records_progress_update AFTER UPDATE ON records
WHEN old.label IS NOT new.label OR old.done IS NOT new.done
    OR old.deleted IS NOT new.deleted OR old.conflict IS NOT new.conflict
    OR old.done_ms IS NOT new.done_ms OR old.partition IS NOT new.partition
    OR old.collection IS NOT new.collection BEGIN
    UPDATE progress SET n = n - 1 WHERE collection = old.collection
        AND partition = old.partition AND done = old.done AND deleted = old.deleted
        AND conflict = old.conflict
        AND label = CASE WHEN old.deleted THEN '' ELSE coalesce(old.label, '') END;
    INSERT INTO progress VALUES (new.collection, new.partition,
        CASE WHEN new.deleted THEN '' ELSE coalesce(new.label, '') END,
        new.done, new.deleted, new.conflict, 1, new.done_ms)
    ON CONFLICT (collection, partition, label, done, deleted, conflict) DO UPDATE
    SET n = n + 1, last_done_ms = max(coalesce(last_done_ms, excluded.last_done_ms),
                                      coalesce(excluded.last_done_ms, last_done_ms));
END;
""" + _RECOUNT.strip() + ";\n"



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
    """Mixin for :class:`~meshsync.store.sqlite.SQLiteStore` (which provides ``_db``);
    the public methods are documented on :class:`~meshsync.store.Store`."""

    _db: sqlite3.Connection

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
        """See :meth:`Store.set_record_labels`: one ``executemany`` of an ``UPDATE``
        that checks the state."""
        self._db.executemany(
            "UPDATE records SET label = ?, done = ?, done_ms = ? WHERE collection = ? "
            "AND key = ? AND partition = ? AND state = ?",
            [(r.label, r.done, r.done_ms, r.collection, r.key, r.partition, r.state)
             for r in rows])

    def rebuild_progress_counts(self) -> None:
        """See :meth:`Store.rebuild_progress_counts`: the table counted again from
        ``records`` (inside the caller's transaction)."""
        self._db.execute("DELETE FROM progress")
        self._db.execute(_RECOUNT)
