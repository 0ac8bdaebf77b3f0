"""Finding records by name or number, fast on a district's voters (docs/app.md).

A collection registers how its records are searched (:func:`register_search`; the
coklit example registers ``voters``: the name key of ``coklit find``, which folds
case, accents, NFC/NFD and apostrophe variants, and the NIK and NKK as numbers).
:class:`SearchIndex` keeps one small entry per live record in memory (the folded name,
the numbers, the progress label) so a query is a scan of short strings, not of the
store. It is built once from the store, then kept up to date from the change stream:
each :meth:`SearchIndex.refresh` reads the feeds' heads and reloads only the records
that changes past the last heads touched (a feed that shrank, as after a quarantine,
rebuilds it whole).

Pure logic over a :class:`~meshsync.store.base.Store`: no clock, no files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshsync.model.change import FeedId, decode_stored
from meshsync.model.errors import DecodeError
from meshsync.replica.crdt import RecordState
from meshsync.replica.progress import classifier
from meshsync.store.base import RecordRow, Store


def plain_key(text: str) -> str:
    """A name key for collections that register none: NFKD, combining marks dropped,
    case folded, white space collapsed."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


@dataclass(frozen=True)
class SearchSpec:
    """How a collection is searched: ``name_field`` folded by ``key`` (text -> key),
    and ``number_fields`` matched by their digits."""

    name_field: str = "nama"
    number_fields: tuple[str, ...] = ()
    key: Callable[[str], str] = plain_key


_SPECS: dict[str, SearchSpec] = {}
_NUMBER_QUERY = re.compile(r"[\d\s.\-]*\d[\d\s.\-]*")


def register_search(collection: str, spec: SearchSpec) -> None:
    """Search ``collection`` by ``spec`` (process-wide; idempotent)."""
    _SPECS[collection] = spec


def search_spec(collection: str) -> SearchSpec:
    """The registered spec of ``collection``, else the default (:func:`plain_key` on
    ``nama``, no numbers)."""
    return _SPECS.get(collection, SearchSpec())


def number_query(query: str) -> str | None:
    """The digits of ``query`` if it is a number (with or without spaces, dots or
    hyphens), else None."""
    return re.sub(r"\D", "", query) if _NUMBER_QUERY.fullmatch(query.strip()) else None


@dataclass(frozen=True, slots=True)
class Entry:
    """One live record in the index: where it is, its name as stored and folded, its
    numbers (digits joined by spaces) and its progress ``label`` and ``done``."""

    partition: str
    key: str
    name: str
    folded: str
    numbers: str
    label: str
    done: bool


class SearchIndex:
    """The in-memory index of one collection (see the module docstring). Not
    thread-safe: call it from one thread at a time (the daemon's node limiter)."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.entries: dict[tuple[str, str], Entry] = {}  # (partition, key) -> entry
        self._heads: dict[FeedId, int] | None = None

    def refresh(self, store: Store) -> int:
        """Bring the index up to date with ``store``; the number of records reloaded
        (every live one on the first call or a rebuild)."""
        heads = {f.feed: f.head_seq for f in store.feeds()}
        old = self._heads
        if old is None or any(heads.get(feed, 0) < seq for feed, seq in old.items()):
            self._heads = heads
            self.entries.clear()
            return self._load(store.iter_records(self.collection))
        touched = self._touched(store, old, heads)
        self._heads = heads
        rows = store.load_records(sorted(touched))
        for pkey in touched:
            self.entries.pop((pkey[0], pkey[2]), None)
        return self._load(rows.values())

    def _touched(self, store: Store, old: dict[FeedId, int], heads: dict[FeedId, int]
                 ) -> set[tuple[str, str, str]]:
        touched: set[tuple[str, str, str]] = set()
        for feed, head in heads.items():
            if head <= old.get(feed, 0):
                continue
            for stored in store.iter_changes(feed, old.get(feed, 0)):
                try:
                    change = decode_stored(stored.body, stored.sig, stored.hash)
                except DecodeError:
                    continue
                touched.update((feed[1], op.collection, op.key) for op in change.ops
                               if op.collection == self.collection)
        return touched

    def _load(self, rows: Iterable[RecordRow]) -> int:
        spec, classify = search_spec(self.collection), classifier(self.collection)
        n = 0
        for row in rows:
            if row.deleted or row.collection != self.collection:
                continue
            state = RecordState.decode(row.state)
            fields = state.visible()
            name = str(fields.get(spec.name_field) or "")
            numbers = " ".join(str(fields.get(f) or "") for f in spec.number_fields)
            outcome = classify(state)
            self.entries[(row.partition, row.key)] = Entry(
                row.partition, row.key, name, spec.key(name), numbers, outcome.label,
                outcome.done)
            n += 1
        return n

    def search(self, query: str, prefix: str = "", limit: int = 50) -> list[Entry]:
        """Entries under partition ``prefix`` whose folded name contains the folded
        ``query``, or, for a query of digits, whose numbers contain them; at most
        ``limit``, by name. An empty query finds nothing."""
        spec = search_spec(self.collection)
        digits = number_query(query)
        wanted = spec.key(query) if digits is None else None
        if not digits and not wanted:
            return []
        if digits:
            found = [e for e in self.entries.values()
                     if digits in e.numbers and e.partition.startswith(prefix)]
        else:
            assert wanted is not None
            found = [e for e in self.entries.values()
                     if wanted in e.folded and e.partition.startswith(prefix)]
        found.sort(key=lambda e: (e.folded, e.partition, e.key))
        return found[:limit]

    def find_key(self, key: str) -> list[Entry]:
        """Entries of record ``key`` (one per partition holding it)."""
        return [e for (_p, k), e in self.entries.items() if k == key]

    def in_partition(self, partition: str) -> list[Entry]:
        """Entries of one partition: not done first, then by name."""
        found = [e for e in self.entries.values() if e.partition == partition]
        found.sort(key=lambda e: (e.done, e.folded, e.key))
        return found

    def counts(self, prefix: str = "") -> dict[str, tuple[int, int]]:
        """``partition -> (done, records)`` of the partitions under ``prefix``."""
        out: dict[str, list[int]] = {}
        for e in self.entries.values():
            if e.partition.startswith(prefix):
                row = out.setdefault(e.partition, [0, 0])
                row[0] += e.done
                row[1] += 1
        return {p: (d, n) for p, (d, n) in sorted(out.items())}

    def with_number(self, field_digits: str) -> list[Entry]:
        """Entries whose numbers include exactly ``field_digits`` as one number."""
        return [e for e in self.entries.values() if field_digits in e.numbers.split()]


__all__ = ["Entry", "SearchIndex", "SearchSpec", "number_query", "plain_key",
           "register_search", "search_spec"]
