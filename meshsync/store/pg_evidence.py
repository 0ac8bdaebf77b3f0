"""Evidence tables of :class:`~meshsync.store.postgres.PostgresStore`: fork evidence,
refusals, quarantined changes and credentials (plain inserts and reads; nothing here
goes through the write-behind buffer of :mod:`meshsync.store.pg_write`).

Text values go through :func:`meshsync.store.pg_text.escape` as everywhere in the
PostgreSQL store.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from meshsync.model.identity import sha256
from meshsync.store.base import (
    FORK,
    EvidenceCount,
    ForkEvidence,
    QuarantinedChange,
    Refusal,
    Store,
)
from meshsync.store.pg_text import escape, unescape

if TYPE_CHECKING:
    from psycopg.rows import TupleRow


class PgEvidence(Store):
    """The evidence part of the PostgreSQL store; the store supplies the queries."""

    @abc.abstractmethod
    def _all(self, sql: str, args: Any = None) -> list[TupleRow]:
        """Run a query and fetch every row."""

    @abc.abstractmethod
    def _write(self, sql: str, args: Any) -> int:
        """Run a statement inside the open transaction; the row count."""

    def _insert_fork(self, evidence: ForkEvidence) -> None:
        """Evidence is unique on the refused body's SHA-256 (``other_hash``)."""
        e = evidence
        self._write(
            "INSERT INTO meshsync_forks (author, partition, seq, held_hash, other_body, "
            "other_hash, other_sig, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (author, partition, seq, other_hash) DO NOTHING",
            [e.author, escape(e.partition), e.seq, e.held_hash, e.other_body,
             sha256(e.other_body), e.other_sig, escape(e.note)])

    def forks(self) -> list[ForkEvidence]:
        """See :meth:`Store.forks`."""
        rows = self._all(
            "SELECT author, partition, seq, held_hash, other_body, other_sig, note "
            "FROM meshsync_forks ORDER BY author, partition, seq, other_body")
        return [ForkEvidence(r[0], unescape(r[1]), r[2], r[3], r[4], r[5], unescape(r[6]))
                for r in rows]

    def _fork_hashes(self, author: bytes, partition: str, seq: int) -> set[bytes]:
        rows = self._all("SELECT other_hash FROM meshsync_forks WHERE author = %s AND "
                         "partition = %s AND seq = %s", [author, escape(partition), seq])
        return {bytes(r[0]) for r in rows}

    def _evidence_rows(self, kind: str, author: bytes | None, cap: int) -> int:
        table = "meshsync_forks" if kind == FORK else "meshsync_refusals"
        where, args = ("WHERE author = %s", [author, cap]) if author is not None \
            else ("", [cap])
        rows = self._all(  # LIMIT: never more than `cap` rows are counted
            f"SELECT count(*) FROM (SELECT 1 FROM {table} {where} LIMIT %s) AS kept", args)
        return int(rows[0][0])

    def _count_evidence(self, kind: str, author: bytes) -> None:
        self._write("INSERT INTO meshsync_evidence_counts (kind, author, count) "
                    "VALUES (%s, %s, 1) ON CONFLICT (kind, author) "
                    "DO UPDATE SET count = meshsync_evidence_counts.count + 1",
                    [kind, author])

    def evidence_counts(self) -> list[EvidenceCount]:
        """See :meth:`Store.evidence_counts`."""
        rows = self._all("SELECT kind, author, count FROM meshsync_evidence_counts "
                         "ORDER BY kind, author")
        return [EvidenceCount(r[0], bytes(r[1]), int(r[2])) for r in rows]

    def _has_refusal(self, refusal: Refusal) -> bool:
        r = refusal
        return bool(self._all(
            "SELECT 1 FROM meshsync_refusals WHERE author = %s AND partition = %s "
            "AND seq = %s AND hash = %s AND stage = %s LIMIT 1",
            [r.author, escape(r.partition), r.seq, r.hash, escape(r.stage)]))

    def _insert_refusal(self, refusal: Refusal) -> None:
        r = refusal
        self._write(
            "INSERT INTO meshsync_refusals (author, partition, seq, stage, reason, source, "
            "hash) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [r.author, escape(r.partition), r.seq, escape(r.stage), escape(r.reason),
             escape(r.source), r.hash])

    def refusals(self, limit: int = 1000) -> list[Refusal]:
        """See :meth:`Store.refusals`."""
        if limit <= 0:
            return []
        rows = self._all(
            "SELECT author, partition, seq, stage, reason, source, hash FROM "
            "(SELECT * FROM meshsync_refusals ORDER BY id DESC LIMIT %s) AS recent "
            "ORDER BY id", [limit])
        return [Refusal(r[0], unescape(r[1]), r[2], unescape(r[3]), unescape(r[4]),
                        unescape(r[5]), bytes(r[6])) for r in rows]

    def add_quarantined(self, change: QuarantinedChange) -> None:
        """See :meth:`Store.add_quarantined`."""
        c = change
        self._write(
            "INSERT INTO meshsync_quarantine (author, partition, seq, hash, body, sig, "
            "reason) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (author, partition, seq, hash) DO NOTHING",
            [c.author, escape(c.partition), c.seq, c.hash, c.body, c.sig, escape(c.reason)])

    def quarantined(self) -> list[QuarantinedChange]:
        """See :meth:`Store.quarantined`."""
        rows = self._all(
            "SELECT author, partition, seq, hash, body, sig, reason FROM meshsync_quarantine "
            "ORDER BY author, partition, seq, hash")
        return [QuarantinedChange(r[0], unescape(r[1]), r[2], r[3], r[4], r[5],
                                  unescape(r[6])) for r in rows]

    def add_credential(self, digest: bytes, blob: bytes) -> bool:
        """See :meth:`Store.add_credential`. If another process adds the same
        credential at the same time, this waits for it and returns False."""
        return self._write("INSERT INTO meshsync_credentials (digest, blob) VALUES (%s, %s) "
                           "ON CONFLICT (digest) DO NOTHING", [digest, blob]) == 1

    def credentials(self) -> list[bytes]:
        """See :meth:`Store.credentials`."""
        return [r[0] for r in self._all("SELECT blob FROM meshsync_credentials ORDER BY id")]
