"""In-memory store: for tests, the simulator and short-lived tools.

Transactions copy the tables' top-level containers on entry and restore them on
rollback, so cost grows with the store's size: fine for the thousands of records
of a test, not for a district's data.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from meshsync.model.change import FeedId
from meshsync.model.errors import UsageError
from meshsync.model.identity import sha256
from meshsync.store.base import (
    FORK,
    EvidenceCount,
    FeedInfo,
    ForkEvidence,
    QuarantinedChange,
    RecordPos,
    RecordRow,
    Refusal,
    Store,
    StoredChange,
    in_prefix,
)


class MemoryStore(Store):
    """A :class:`Store` kept in Python dicts."""

    def __init__(self) -> None:
        self._changes: dict[FeedId, list[StoredChange]] = {}
        self._records: dict[tuple[str, str, str], RecordRow] = {}
        self._forks: dict[tuple[bytes, str, int, bytes], ForkEvidence] = {}
        self._refusals: list[Refusal] = []
        self._meta: dict[str, bytes] = {}
        self._credentials: dict[bytes, bytes] = {}
        self._quarantine: dict[tuple[bytes, str, int, bytes], QuarantinedChange] = {}
        self._not_kept: dict[tuple[str, bytes], int] = {}
        self._in_tx = False
        self._closed = False

    def _tables(self) -> list[Any]:
        return [self._changes, self._records, self._forks, self._refusals, self._meta,
                self._credentials, self._quarantine, self._not_kept]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Store.transaction`. Not re-entrant."""
        if self._in_tx:
            raise UsageError("transaction already open")
        saved = [copy.copy(t) for t in self._tables()]
        saved[0] = {k: list(v) for k, v in self._changes.items()}
        self._in_tx = True
        try:
            yield
        except BaseException:
            (self._changes, self._records, self._forks, self._refusals, self._meta,
             self._credentials, self._quarantine, self._not_kept) = saved
            raise
        finally:
            self._in_tx = False

    def _check_tx(self) -> None:
        if not self._in_tx:
            raise UsageError("write outside a transaction")

    def feed_head(self, feed: FeedId) -> FeedInfo | None:
        """See :meth:`Store.feed_head`."""
        chain = self._changes.get(feed)
        if not chain:
            return None
        return FeedInfo(feed[0], feed[1], chain[-1].seq, chain[-1].hash)

    def feeds(self) -> list[FeedInfo]:
        """See :meth:`Store.feeds`."""
        heads = (self.feed_head(f) for f in sorted(self._changes))
        return [h for h in heads if h is not None]

    def append_change(self, feed: FeedId, change: StoredChange, hlc: int) -> None:
        """See :meth:`Store.append_change`."""
        self._check_tx()
        chain = self._changes.setdefault(feed, [])
        if change.seq != len(chain) + 1:
            raise UsageError(f"append at seq {change.seq}, head is {len(chain)}")
        chain.append(change)

    def change_at(self, feed: FeedId, seq: int) -> StoredChange | None:
        """See :meth:`Store.change_at`."""
        chain = self._changes.get(feed, [])
        return chain[seq - 1] if 1 <= seq <= len(chain) else None

    def iter_changes(self, feed: FeedId, after_seq: int = 0) -> Iterator[StoredChange]:
        """See :meth:`Store.iter_changes`."""
        yield from self._changes.get(feed, [])[after_seq:]

    def count_changes(self) -> int:
        """See :meth:`Store.count_changes`."""
        return sum(len(c) for c in self._changes.values())

    def truncate_feed(self, feed: FeedId, after_seq: int) -> list[StoredChange]:
        """See :meth:`Store.truncate_feed`."""
        self._check_tx()
        chain = self._changes.get(feed, [])
        removed = chain[max(after_seq, 0):]
        if removed:
            del chain[max(after_seq, 0):]
            if not chain:
                del self._changes[feed]
        return removed

    def load_record(self, partition: str, collection: str, key: str) -> RecordRow | None:
        """See :meth:`Store.load_record`."""
        return self._records.get((collection, key, partition))

    def save_record(self, row: RecordRow) -> None:
        """See :meth:`Store.save_record`."""
        self._check_tx()
        self._records[(row.collection, row.key, row.partition)] = row

    def delete_record(self, partition: str, collection: str, key: str) -> None:
        """See :meth:`Store.delete_record`."""
        self._check_tx()
        self._records.pop((collection, key, partition), None)

    def iter_records(self, collection: str | None = None, partition_prefix: str = "",
                     *, conflicts_only: bool = False) -> Iterator[RecordRow]:
        """See :meth:`Store.iter_records`."""
        for k in sorted(self._records):
            row = self._records[k]
            if collection is not None and row.collection != collection:
                continue
            if conflicts_only and not row.conflict:
                continue
            if in_prefix(row.partition, partition_prefix):
                yield row

    def records_page(self, collection: str | None, partition_prefix: str = "",
                     after: RecordPos | None = None, limit: int = 500, *,
                     live_only: bool = False, conflicts_only: bool = False
                     ) -> list[RecordRow]:
        """See :meth:`Store.records_page` (one pass, holding ``limit`` keys)."""
        def wanted(k: RecordPos) -> bool:
            row = self._records[k]
            return ((after is None or k > after)
                    and (collection is None or k[0] == collection)
                    and not (live_only and row.deleted)
                    and not (conflicts_only and not row.conflict)
                    and in_prefix(row.partition, partition_prefix))
        return [self._records[k] for k in heapq.nsmallest(limit, filter(wanted,
                                                                        self._records))]

    def find_record(self, collection: str, key: str) -> list[RecordRow]:
        """See :meth:`Store.find_record`."""
        return [r for (c, k, _), r in sorted(self._records.items())
                if c == collection and k == key]

    def _insert_fork(self, evidence: ForkEvidence) -> None:
        self._check_tx()
        key = (evidence.author, evidence.partition, evidence.seq, evidence.other_body)
        self._forks.setdefault(key, evidence)

    def _fork_hashes(self, author: bytes, partition: str, seq: int) -> set[bytes]:
        return {sha256(body) for (a, p, s, body) in self._forks
                if (a, p, s) == (author, partition, seq)}

    def _evidence_rows(self, kind: str, author: bytes | None, cap: int) -> int:
        rows: list[Any] = list(self._forks.values()) if kind == FORK else self._refusals
        if author is None:
            return min(cap, len(rows))
        return min(cap, sum(1 for r in rows if r.author == author))

    def _count_evidence(self, kind: str, author: bytes) -> None:
        self._check_tx()
        self._not_kept[(kind, author)] = self._not_kept.get((kind, author), 0) + 1

    def evidence_counts(self) -> list[EvidenceCount]:
        """See :meth:`Store.evidence_counts`."""
        return [EvidenceCount(kind, author, n)
                for (kind, author), n in sorted(self._not_kept.items())]

    def forks(self) -> list[ForkEvidence]:
        """See :meth:`Store.forks`."""
        return [self._forks[k] for k in sorted(self._forks)]

    def _has_refusal(self, refusal: Refusal) -> bool:
        key = _refusal_key(refusal)
        return any(_refusal_key(r) == key for r in self._refusals)

    def _insert_refusal(self, refusal: Refusal) -> None:
        self._check_tx()
        self._refusals.append(refusal)

    def refusals(self, limit: int = 1000) -> list[Refusal]:
        """See :meth:`Store.refusals`."""
        return self._refusals[-limit:] if limit > 0 else []

    def add_quarantined(self, change: QuarantinedChange) -> None:
        """See :meth:`Store.add_quarantined`."""
        self._check_tx()
        c = change
        self._quarantine.setdefault((c.author, c.partition, c.seq, c.hash), c)

    def quarantined(self) -> list[QuarantinedChange]:
        """See :meth:`Store.quarantined`."""
        return [self._quarantine[k] for k in sorted(self._quarantine)]

    def get_meta(self, name: str) -> bytes | None:
        """See :meth:`Store.get_meta`."""
        return self._meta.get(name)

    def set_meta(self, name: str, value: bytes) -> None:
        """See :meth:`Store.set_meta`."""
        self._check_tx()
        self._meta[name] = value

    def add_credential(self, digest: bytes, blob: bytes) -> bool:
        """See :meth:`Store.add_credential`."""
        self._check_tx()
        if digest in self._credentials:
            return False
        self._credentials[digest] = blob
        return True

    def credentials(self) -> list[bytes]:
        """See :meth:`Store.credentials`."""
        return list(self._credentials.values())

    def close(self) -> None:
        """See :meth:`Store.close`."""
        self._closed = True


def _refusal_key(r: Refusal) -> tuple[bytes, str, int, bytes, str]:
    """What makes two refusals the same (:meth:`Store.add_refusal`)."""
    return r.author, r.partition, r.seq, r.hash, r.stage
