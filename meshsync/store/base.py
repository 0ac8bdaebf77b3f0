"""The storage interface every store implements (SQLite, memory, PostgreSQL).

Stores hold bytes and small rows; they know nothing of signatures or merge rules.
All writes happen inside :meth:`Store.transaction`: either everything in the block
is durable when it returns, or (on any exception) nothing of it is. The storage
conformance suite (``tests/store_conformance.py``) states the contract as tests.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

from meshsync.model import codec
from meshsync.model.change import FeedId
from meshsync.model.identity import sha256

RECEIPTS_META = "receipts"


@dataclass(frozen=True, slots=True)
class StoredChange:
    """A change as stored: canonical ``body``, ``sig`` and, if the change failed its
    collection's validator, the reason (``invalid``); invalid changes are kept and
    forwarded but not applied to records."""

    seq: int
    hash: bytes
    body: bytes
    sig: bytes
    invalid: str | None = None


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """One feed's head: highest contiguous ``seq`` held and that change's hash."""

    author: bytes
    partition: str
    head_seq: int
    head_hash: bytes

    @property
    def feed(self) -> FeedId:
        """``(author, partition)``."""
        return (self.author, self.partition)


class RecordRow(NamedTuple):
    """A record's encoded :class:`~meshsync.replica.crdt.RecordState` plus summary flags.

    A named tuple (not a dataclass): an import builds one per record, and the tuple
    is already the parameter row stores bind.
    """

    partition: str
    collection: str
    key: str
    state: bytes
    deleted: bool
    conflict: bool
    #: The progress classifier's verdict (:mod:`meshsync.replica.progress`): the
    #: record's ``label`` (None: not classified; deleted records have ``""``),
    #: whether it is ``done`` and when (``done_ms``, Unix ms). Stores count rows by
    #: them on write (:meth:`Store.progress_counts`).
    label: str | None = None
    done: bool = False
    done_ms: int | None = None


class ProgressCount(NamedTuple):
    """``n`` records of one ``partition`` with one (``label``, ``done``, ``deleted``,
    ``conflict``); ``last_done_ms``: the newest ``done_ms`` counted in the group (Unix
    ms, or None; it does not go back when that record later changes). ``label`` is
    ``""`` for deleted records and for records stored without a label."""

    partition: str
    label: str
    done: bool
    deleted: bool
    conflict: bool
    n: int
    last_done_ms: int | None


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two different changes signed for one ``(author, partition, seq)``.

    ``held_hash`` is the change this store kept; ``other_body``/``other_sig`` the
    refused one (if a later change revealed the fork, ``other_body`` is that change).
    """

    author: bytes
    partition: str
    seq: int
    held_hash: bytes
    other_body: bytes
    other_sig: bytes
    note: str


@dataclass(frozen=True, slots=True)
class QuarantinedChange:
    """A change taken back after it was stored: its author was revoked at a seq
    below it (see :mod:`meshsync.replica.quarantine`). Kept as evidence of what the key did:
    ``body`` and ``sig`` are the change as its author signed it, ``hash`` its SHA-256."""

    author: bytes
    partition: str
    seq: int
    hash: bytes
    body: bytes
    sig: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A received change that was not stored, and why (``stage`` of the pipeline).

    ``hash`` is the refused change's hash (empty in rows kept before it was recorded).
    A store keeps the same refusal (author, partition, seq, hash, stage) once: the same
    bundle imported twice, or a peer offering the same change again, adds no row.
    """

    author: bytes
    partition: str
    seq: int
    stage: str
    reason: str
    source: str
    hash: bytes = b""


@dataclass(frozen=True, slots=True)
class EvidenceLimits:
    """How much fork evidence and how many refusals a store keeps (issue 14).

    One enrolled device can sign forks and changes no one will accept as fast as it can
    send them, so evidence is capped per author and in total; past a cap only counts are
    kept (:meth:`Store.evidence_counts`). Evidence arrives in received frames, which
    count against the storage reserve before anything of them is stored
    (docs/architecture.md §3.4, §9). Rows, not bytes: a fork row holds one change body,
    at most 8 MiB + 256 KiB, so an author's forks take at most ``forks_per_author`` times
    that.
    """

    forks_per_author: int = 4
    forks_total: int = 256
    refusals_per_author: int = 256
    refusals_total: int = 4096


@dataclass(frozen=True, slots=True)
class EvidenceCount:
    """Evidence not kept: ``count`` forks or refusals (``kind``) of ``author``.

    ``author`` is ``b""`` for those of authors with nothing kept at all (the store's
    total was reached first), so this list stays as short as the evidence kept.
    """

    kind: str
    author: bytes
    count: int


#: The kinds of :class:`EvidenceCount`.
FORK, REFUSAL = "fork", "refusal"


class Store(abc.ABC):
    """Abstract store. Methods other than reads must be called inside :meth:`transaction`.

    :attr:`evidence_limits` caps fork evidence and refusals; a store may be given
    smaller limits (tests) by setting the attribute on the instance.
    """

    evidence_limits: EvidenceLimits = EvidenceLimits()

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Context manager: commit durably on normal exit, roll back on exception.

        Raises :class:`~meshsync.model.errors.StorageError` if the commit fails (disk full).
        """

    def group_commit(self) -> AbstractContextManager[None]:
        """Context manager for many transactions in a row (a sync's frames): those
        committed inside may be made durable together, when the block ends, instead
        of one by one. Once it has ended without error, every one of them is durable;
        so acknowledge them to a peer only after it ends (field failure B21).

        This default does nothing: every commit of this store is durable by itself.
        Raises :class:`~meshsync.model.errors.StorageError` if the final sync fails.
        """
        return nullcontext()

    # feeds and changes
    @abc.abstractmethod
    def feed_head(self, feed: FeedId) -> FeedInfo | None:
        """The head of ``feed``, or None if no change of it is held."""

    @abc.abstractmethod
    def feeds(self) -> list[FeedInfo]:
        """Every feed held, sorted by ``(author, partition)``."""

    @abc.abstractmethod
    def append_change(self, feed: FeedId, change: StoredChange, hlc: int) -> None:
        """Store the next change of ``feed`` (``change.seq`` must be head + 1)."""

    @abc.abstractmethod
    def change_at(self, feed: FeedId, seq: int) -> StoredChange | None:
        """The change at ``seq`` of ``feed``, or None."""

    @abc.abstractmethod
    def iter_changes(self, feed: FeedId, after_seq: int = 0) -> Iterator[StoredChange]:
        """Changes of ``feed`` with seq > ``after_seq``, in seq order."""

    @abc.abstractmethod
    def count_changes(self) -> int:
        """Total number of changes held."""

    @abc.abstractmethod
    def truncate_feed(self, feed: FeedId, after_seq: int) -> list[StoredChange]:
        """Remove the changes of ``feed`` with seq > ``after_seq``; return them in seq
        order. The head becomes the change at ``after_seq`` (its seq and hash); with
        ``after_seq`` 0 the feed is no longer held. Nothing held past it: no-op."""

    # records
    @abc.abstractmethod
    def load_record(self, partition: str, collection: str, key: str) -> RecordRow | None:
        """The row of one record, or None."""

    @abc.abstractmethod
    def save_record(self, row: RecordRow) -> None:
        """Insert or replace the row of one record."""

    def load_records(self, keys: list[tuple[str, str, str]]
                     ) -> dict[tuple[str, str, str], RecordRow]:
        """Rows of several records by ``(partition, collection, key)``; absent ones are
        left out. Stores may override this with one query."""
        rows = {}
        for rkey in keys:
            row = self.load_record(*rkey)
            if row is not None:
                rows[rkey] = row
        return rows

    @abc.abstractmethod
    def delete_record(self, partition: str, collection: str, key: str) -> None:
        """Remove the row of one record (no-op if absent): for a record no held op
        touches any more (see :mod:`meshsync.replica.quarantine`)."""

    def save_records(self, rows: list[RecordRow]) -> None:
        """Insert or replace several record rows. Stores may override with one batch."""
        for row in rows:
            self.save_record(row)

    def progress_counts(self, collection: str, partition_prefix: str = ""
                        ) -> list[ProgressCount]:
        """Record counts of ``collection`` by partition and classification (the
        :class:`RecordRow` label columns), sorted by partition then label, for the
        partitions under ``partition_prefix`` (whole segments). Stores that keep the
        counts up to date on write override this; this default counts every row."""
        groups: dict[tuple[str, str, bool, bool, bool], list[Any]] = {}
        for row in self.iter_records(collection, partition_prefix):
            label = "" if row.deleted else row.label or ""
            group = groups.setdefault(
                (row.partition, label, row.done, row.deleted, row.conflict), [0, None])
            group[0] += 1
            if row.done_ms is not None:
                group[1] = max(group[1] or 0, row.done_ms)
        return [ProgressCount(*k, n, last) for k, (n, last) in sorted(groups.items())]

    def set_record_labels(self, rows: list[RecordRow]) -> None:
        """Store the classification columns of ``rows`` (label, done, done_ms) for the
        records whose state is still ``row.state``; other records are left alone (their
        writer labelled them). Inside :meth:`transaction`. Stores may override this
        with one statement."""
        for row in rows:
            held = self.load_record(row.partition, row.collection, row.key)
            if held is not None and held.state == row.state:
                self.save_record(row)

    def rebuild_progress_counts(self) -> None:
        """Count every record row again (stores that keep counts; idempotent). Call
        inside :meth:`transaction`. This default keeps no counts: nothing to do."""
        return None

    @abc.abstractmethod
    def iter_records(self, collection: str | None = None, partition_prefix: str = "",
                     *, conflicts_only: bool = False) -> Iterator[RecordRow]:
        """Records, sorted by (collection, key, partition); filter by collection, by
        partition prefix (whole path segments) and to those with conflicts."""

    def records_page(self, collection: str | None, partition_prefix: str = "",
                     after: RecordPos | None = None, limit: int = 500, *,
                     live_only: bool = False, conflicts_only: bool = False
                     ) -> list[RecordRow]:
        """At most ``limit`` records past ``after`` in the order of :meth:`iter_records`
        (keyset paging: ``(collection, key, partition) > after``), with its filters,
        and without deleted records if ``live_only``. The last row's
        :func:`record_pos` is the next page's ``after``; a short page is the last.

        Stores override this with one bounded query; this default scans.
        """
        page: list[RecordRow] = []
        for row in self.iter_records(collection, partition_prefix,
                                     conflicts_only=conflicts_only):
            if (after is not None and record_pos(row) <= after) or \
                    (live_only and row.deleted):
                continue
            page.append(row)
            if len(page) >= limit:
                break
        return page

    @abc.abstractmethod
    def find_record(self, collection: str, key: str) -> list[RecordRow]:
        """Every partition's row for ``(collection, key)``."""

    # evidence, refusals, metadata, credentials
    def add_fork(self, evidence: ForkEvidence) -> bool:
        """Keep fork evidence within :attr:`evidence_limits`; True if a row was added.

        The first evidence of each fork ``(author, partition, seq)`` is kept and the
        same evidence again ignored; another body at that seq, or a fork past the
        author's or the store's limit, is only counted (:meth:`evidence_counts`).
        """
        e, limits = evidence, self.evidence_limits
        held = self._fork_hashes(e.author, e.partition, e.seq)
        if sha256(e.other_body) in held:
            return False
        mine = self._evidence_rows(FORK, e.author, limits.forks_per_author)
        if not held and mine < limits.forks_per_author and \
                self._evidence_rows(FORK, None, limits.forks_total) < limits.forks_total:
            self._insert_fork(e)
            return True
        self._count_evidence(FORK, e.author if mine or held else b"")
        return False

    @abc.abstractmethod
    def forks(self) -> list[ForkEvidence]:
        """All fork evidence, sorted by (author, partition, seq)."""

    def add_refusal(self, refusal: Refusal) -> bool:
        """Log a refused change within :attr:`evidence_limits`; True if a row was added,
        False if it was only counted (:meth:`evidence_counts`) or is already kept (the
        same author, partition, seq, hash and stage)."""
        r, limits = refusal, self.evidence_limits
        if self._has_refusal(r):
            return False
        mine = self._evidence_rows(REFUSAL, r.author, limits.refusals_per_author)
        if mine < limits.refusals_per_author and \
                self._evidence_rows(REFUSAL, None, limits.refusals_total) < limits.refusals_total:
            self._insert_refusal(r)
            return True
        self._count_evidence(REFUSAL, r.author if mine else b"")
        return False

    @abc.abstractmethod
    def evidence_counts(self) -> list[EvidenceCount]:
        """Forks and refusals counted but not kept, sorted by (kind, author)."""

    @abc.abstractmethod
    def _fork_hashes(self, author: bytes, partition: str, seq: int) -> set[bytes]:
        """SHA-256 of each refused body kept as evidence at ``(author, partition, seq)``."""

    @abc.abstractmethod
    def _evidence_rows(self, kind: str, author: bytes | None, cap: int) -> int:
        """Rows of ``kind`` kept for ``author`` (None: all authors), counted up to
        ``cap`` only (the answer is ``min(rows, cap)``, so it costs at most ``cap``)."""

    @abc.abstractmethod
    def _insert_fork(self, evidence: ForkEvidence) -> None:
        """Add a fork evidence row (inside a transaction)."""

    @abc.abstractmethod
    def _has_refusal(self, refusal: Refusal) -> bool:
        """True if a refusal with ``refusal``'s author, partition, seq, hash and stage
        is kept."""

    @abc.abstractmethod
    def _insert_refusal(self, refusal: Refusal) -> None:
        """Add a refusal row (inside a transaction)."""

    @abc.abstractmethod
    def _count_evidence(self, kind: str, author: bytes) -> None:
        """Add one to the count of ``kind`` not kept for ``author`` (inside a transaction)."""

    @abc.abstractmethod
    def refusals(self, limit: int = 1000) -> list[Refusal]:
        """The most recent refusals, oldest first."""

    @abc.abstractmethod
    def add_quarantined(self, change: QuarantinedChange) -> None:
        """Keep a quarantined change (the same ``(author, partition, seq, hash)``
        again is ignored)."""

    @abc.abstractmethod
    def quarantined(self) -> list[QuarantinedChange]:
        """Every quarantined change, sorted by (author, partition, seq, hash)."""

    @abc.abstractmethod
    def get_meta(self, name: str) -> bytes | None:
        """A metadata value (e.g. the HLC), or None."""

    @abc.abstractmethod
    def set_meta(self, name: str, value: bytes) -> None:
        """Set a metadata value."""

    @abc.abstractmethod
    def add_credential(self, digest: bytes, blob: bytes) -> bool:
        """Keep a certificate or revocation blob under its SHA-256; True if new."""

    @abc.abstractmethod
    def credentials(self) -> list[bytes]:
        """Every credential blob, in insertion order."""

    # custody receipts: the newest per (issuer, scope), kept in one metadata value
    # (a node holds a few dozen at most), so every store has them without a schema change.
    def put_receipt(self, issuer: bytes, scope: str, at_ms: int, blob: bytes) -> bool:
        """Keep ``blob`` unless a receipt of ``(issuer, scope)`` at least as new is held.

        Returns True if it was stored. Must be called inside a transaction.
        """
        held = self._receipt_map()
        key = issuer.hex() + "/" + scope
        if key in held and held[key][0] >= at_ms:
            return False
        held[key] = [at_ms, blob]
        self.set_meta(RECEIPTS_META, codec.pack(dict(sorted(held.items()))))
        return True

    def receipts(self) -> list[bytes]:
        """Every receipt held, ordered by issuer and scope."""
        return [blob for _, blob in self._receipt_map().values()]

    def _receipt_map(self) -> dict[str, list[Any]]:
        raw = self.get_meta(RECEIPTS_META)
        return dict(codec.unpack(raw, max_bytes=1 << 28)) if raw else {}

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources. Using the store afterwards is an error."""


#: Where a record sits in the order of :meth:`Store.iter_records`:
#: ``(collection, key, partition)``.
RecordPos = tuple[str, str, str]


def record_pos(row: RecordRow) -> RecordPos:
    """``row``'s :data:`RecordPos` (a page's ``after``)."""
    return (row.collection, row.key, row.partition)


def in_prefix(partition: str, prefix: str) -> bool:
    """True if ``partition`` is ``prefix`` or below it, by whole path segments."""
    return not prefix or partition == prefix or partition.startswith(prefix + "/")
