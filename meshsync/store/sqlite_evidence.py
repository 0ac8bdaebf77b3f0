"""Evidence tables of :class:`~meshsync.store.sqlite.SQLiteStore`: fork evidence,
refusals (both capped: :class:`~meshsync.store.base.EvidenceLimits`), the counts of
what was past the caps, and quarantined changes. Plain inserts and reads.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from meshsync.model.identity import sha256
from meshsync.store.base import (
    FORK,
    EvidenceCount,
    ForkEvidence,
    QuarantinedChange,
    Refusal,
)


class SQLiteEvidence:
    """Mixin for :class:`~meshsync.store.sqlite.SQLiteStore` (which provides ``_db``
    and ``_write``); the public methods are documented on :class:`~meshsync.store.Store`."""

    _db: sqlite3.Connection

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        raise NotImplementedError  # SQLiteStore's

    def _insert_fork(self, evidence: ForkEvidence) -> None:
        e = evidence
        self._write(
            "INSERT INTO forks (author, partition, seq, held_hash, other_body, "
            "other_sig, note) VALUES (?,?,?,?,?,?,?)",
            (e.author, e.partition, e.seq, e.held_hash, e.other_body, e.other_sig, e.note))

    def _fork_hashes(self, author: bytes, partition: str, seq: int) -> set[bytes]:
        rows = self._db.execute(
            "SELECT other_body FROM forks WHERE author=? AND partition=? AND seq=?",
            (author, partition, seq))
        return {sha256(r[0]) for r in rows}

    def _evidence_rows(self, kind: str, author: bytes | None, cap: int) -> int:
        table = "forks" if kind == FORK else "refusals"
        where, args = ("WHERE author=?", (author, cap)) if author is not None else ("", (cap,))
        row = self._db.execute(  # LIMIT: never more than `cap` rows are counted
            f"SELECT count(*) FROM (SELECT 1 FROM {table} {where} LIMIT ?)", args).fetchone()
        return int(row[0])

    def _count_evidence(self, kind: str, author: bytes) -> None:
        self._write("INSERT INTO evidence_counts (kind, author, count) VALUES (?, ?, 1) "
                    "ON CONFLICT (kind, author) DO UPDATE SET count = count + 1",
                    (kind, author))

    def evidence_counts(self) -> list[EvidenceCount]:
        """See :meth:`Store.evidence_counts`."""
        rows = self._db.execute(
            "SELECT kind, author, count FROM evidence_counts ORDER BY kind, author")
        return [EvidenceCount(r[0], bytes(r[1]), int(r[2])) for r in rows]

    def forks(self) -> list[ForkEvidence]:
        """See :meth:`Store.forks`."""
        rows = self._db.execute(
            "SELECT author, partition, seq, held_hash, other_body, other_sig, note "
            "FROM forks ORDER BY author, partition, seq, other_body")
        return [ForkEvidence(*r) for r in rows]

    def _has_refusal(self, refusal: Refusal) -> bool:
        r = refusal
        return self._db.execute(
            "SELECT 1 FROM refusals WHERE author = ? AND partition = ? AND seq = ? "
            "AND hash = ? AND stage = ?",
            (r.author, r.partition, r.seq, r.hash, r.stage)).fetchone() is not None

    def _insert_refusal(self, refusal: Refusal) -> None:
        r = refusal
        self._write(
            "INSERT OR IGNORE INTO refusals (author, partition, seq, stage, reason, source, "
            "hash) VALUES (?,?,?,?,?,?,?)",
            (r.author, r.partition, r.seq, r.stage, r.reason, r.source, r.hash))

    def refusals(self, limit: int = 1000) -> list[Refusal]:
        """See :meth:`Store.refusals`."""
        rows = self._db.execute(
            "SELECT author, partition, seq, stage, reason, source, hash FROM "
            "(SELECT * FROM refusals ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,))
        return [Refusal(*r) for r in rows]

    def add_quarantined(self, change: QuarantinedChange) -> None:
        """See :meth:`Store.add_quarantined`."""
        c = change
        self._write(
            "INSERT OR IGNORE INTO quarantine (author, partition, seq, hash, body, sig, "
            "reason) VALUES (?,?,?,?,?,?,?)",
            (c.author, c.partition, c.seq, c.hash, c.body, c.sig, c.reason))

    def quarantined(self) -> list[QuarantinedChange]:
        """See :meth:`Store.quarantined`."""
        rows = self._db.execute(
            "SELECT author, partition, seq, hash, body, sig, reason FROM quarantine "
            "ORDER BY author, partition, seq, hash")
        return [QuarantinedChange(*r) for r in rows]
