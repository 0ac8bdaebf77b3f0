"""Progress per TPS, per village and per district: record counts by ``status`` value.

Partitions are ``.../<district>/<village>/<tps>``; a village's figures are the sum
of its TPS (the partition without its last segment), a district's the sum of its
villages. Generic: any collection whose records carry a ``status`` field works.

A collection may register a classifier (:func:`register_classifier`; the coklit
example registers one for ``voters``, :mod:`meshsync.coklit.visits`): each record's
label is then the classifier's (e.g. ``MS``, ``TMS``, ``belum dicoklit``), and a
row also counts the records that are ``done`` (dicoklit) and the time of the
newest one. At central the same figures are SQL views (``meshsync_progress_counts``
and ``meshsync_kpu_progress`` read the counts below; docs/central-sql.md).

**Counted on write.** Every record row is stored with its classification
(:func:`record_row`: ``label``, ``done``, ``done_ms``), and the stores keep counts per
``(collection, partition, label, done, deleted, conflict)`` up to date in the same
transaction (:meth:`Store.progress_counts`), so :func:`progress` reads a few rows per
TPS instead of every record. A home written before the counts existed, or under
another classifier (the meta key ``progress.classifier.<collection>`` names the one
the labels were made with), is labelled again once, on the first read
(:func:`rebuild`, idempotent). The first reader of a labelled store without that key
records its own classifier: the labels are trusted to be by the classifier the
home's processes register (the coklit schema registers the coklit one in every
process that opens the home). :func:`recompute` is the full count, for checks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from meshsync.model.errors import StorageError
from meshsync.replica.crdt import RecordState
from meshsync.store.base import ProgressCount, RecordRow, Store, record_pos

RecordKey = tuple[str, str, str]
"""``(partition, collection, key)``."""

META_PREFIX = "progress.classifier."
"""Meta key prefix naming the classifier a collection's stored labels were made with."""

REBUILD_PAGE = 2000  #: records labelled again per transaction by :func:`rebuild`


class Outcome(NamedTuple):
    """A classifier's verdict on one record: its ``label``, whether it is ``done``,
    and when it was done (``at_ms``, Unix milliseconds, or None)."""

    label: str
    done: bool
    at_ms: int | None


Classifier = Callable[[RecordState], Outcome]
"""Judges one live record's state."""

_CLASSIFIERS: dict[str, Classifier] = {}


def register_classifier(collection: str, classify: Classifier) -> None:
    """Count ``collection``'s records with ``classify`` (process-wide; idempotent)."""
    _CLASSIFIERS[collection] = classify


def classifier(collection: str) -> Classifier:
    """The classifier registered for ``collection``, else one that reads ``status``."""
    return _CLASSIFIERS.get(collection, _by_status)


def _by_status(state: RecordState) -> Outcome:
    found = state.field_winner("status")
    return Outcome(str(found[1] if found else "") or "-", False, None)


def classifier_name(collection: str) -> str:
    """The name of ``collection``'s classifier (module and function), stored beside
    the labels it made."""
    classify = _CLASSIFIERS.get(collection, _by_status)
    return f"{classify.__module__}.{classify.__qualname__}"


def record_row(rkey: RecordKey, state: RecordState) -> RecordRow:
    """The stored row of a record state, with its classification (deleted records:
    label ``""``)."""
    encoded, deleted, conflict = state.encode_with_flags()
    if deleted:
        return RecordRow(*rkey, encoded, deleted, conflict, "", False, None)
    outcome = _CLASSIFIERS.get(rkey[1], _by_status)(state)
    return RecordRow(*rkey, encoded, deleted, conflict, outcome.label or "-",
                     outcome.done, outcome.at_ms if outcome.done else None)


def progress(store: Store, collection: str = "voters", prefix: str = "") -> dict[str, Any]:
    """``{"tps": {partition: row}, "village": {prefix: row}, "district": {prefix: row}}``
    where a row is ``{"records": n, "deleted": n, "conflicts": n, "status": {label: n},
    "done": n, "last_done_ms": ms or None}`` (``records`` counts live records;
    ``done`` and ``last_done_ms`` stay 0 and None without a classifier).

    Read from the store's counts (see the module docs); ``last_done_ms`` is the newest
    result time ever counted in the TPS, which does not go back if that result is
    later removed. A store that cannot be labelled again (read-only) is counted in
    full (:func:`recompute`)."""
    counts = current_counts(store, collection, prefix)
    if counts is None:
        return recompute(store, collection, prefix)
    tps: dict[str, dict[str, Any]] = defaultdict(_row)
    for count in counts:
        row = tps[count.partition]
        if count.deleted:
            row["deleted"] += count.n
            continue
        row["records"] += count.n
        row["conflicts"] += count.n if count.conflict else 0
        row["status"][count.label] += count.n
        if count.done:
            row["done"] += count.n
            if count.last_done_ms is not None:
                row["last_done_ms"] = max(row["last_done_ms"] or 0, count.last_done_ms)
    return _levels(tps)


def current_counts(store: Store, collection: str, prefix: str = ""
                   ) -> list[ProgressCount] | None:
    """The store's counts for ``collection`` under ``prefix``, after labelling the
    collection again if its labels are missing or were made by another classifier;
    None if that was needed and the store refused the writes."""
    counts = store.progress_counts(collection, prefix)
    name = classifier_name(collection).encode()
    unlabelled = any(c.label == "" and not c.deleted for c in counts)
    held = store.get_meta(META_PREFIX + collection)
    try:
        if unlabelled or (held is not None and held != name):
            rebuild(store, collection)
            return store.progress_counts(collection, prefix)
        if held is None:  # labelled as they were written, by this classifier: trusted
            with store.transaction():
                store.set_meta(META_PREFIX + collection, name)
    except StorageError:
        return None
    return counts


def rebuild(store: Store, collection: str) -> int:
    """Label every record of ``collection`` by the current classifier, count the
    store's progress again and record the classifier's name; idempotent. Pages of
    :data:`REBUILD_PAGE` records, each in its own transaction; a label is written
    only while the record's state is still the one read
    (:meth:`Store.set_record_labels`), since a concurrent writer labels its own.
    Returns the records labelled again. Raises :class:`StorageError` (e.g. a store
    opened read-only)."""
    changed = 0
    after = None
    while True:
        page = store.records_page(collection, "", after, REBUILD_PAGE)
        labelled = [record_row(record_pos_key(row), RecordState.decode(row.state))
                    for row in page]
        with store.transaction():
            store.set_record_labels(labelled)
        changed += len(labelled)
        if len(page) < REBUILD_PAGE:
            break
        after = record_pos(page[-1])
    with store.transaction():
        store.rebuild_progress_counts()
        store.set_meta(META_PREFIX + collection, classifier_name(collection).encode())
    return changed


def record_pos_key(row: RecordRow) -> RecordKey:
    """``(partition, collection, key)`` of a stored row."""
    return (row.partition, row.collection, row.key)


def recompute(store: Store, collection: str = "voters", prefix: str = "") -> dict[str, Any]:
    """:func:`progress` counted from every record (no stored counts): the reference
    the counts are checked against, and the fallback of a read-only store."""
    classify = _CLASSIFIERS.get(collection, _by_status)
    tps: dict[str, dict[str, Any]] = defaultdict(_row)
    for record in store.iter_records(collection, prefix):
        row = tps[record.partition]
        if record.deleted:
            row["deleted"] += 1
            continue
        row["records"] += 1
        row["conflicts"] += int(record.conflict)
        _count(row, classify(RecordState.decode(record.state)))
    return _levels(tps)


def _levels(tps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    village = _roll_up(tps)
    return {"tps": _plain(tps), "village": _plain(village),
            "district": _plain(_roll_up(village))}


def _count(row: dict[str, Any], outcome: Outcome) -> None:
    row["status"][outcome.label or "-"] += 1
    if outcome.done:
        row["done"] += 1
        if outcome.at_ms is not None:
            row["last_done_ms"] = max(row["last_done_ms"] or 0, outcome.at_ms)


def _roll_up(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum rows into their parent prefix (the key without its last segment)."""
    parents: dict[str, dict[str, Any]] = defaultdict(_row)
    for key, row in rows.items():
        total = parents[key.rpartition("/")[0] or key]
        for name in ("records", "deleted", "conflicts", "done"):
            total[name] += row[name]
        total["status"].update(row["status"])
        if row["last_done_ms"] is not None:
            total["last_done_ms"] = max(total["last_done_ms"] or 0, row["last_done_ms"])
    return parents


def _row() -> dict[str, Any]:
    return {"records": 0, "deleted": 0, "conflicts": 0, "status": Counter(), "done": 0,
            "last_done_ms": None}


def _plain(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {**v, "status": dict(sorted(v["status"].items()))} for k, v in sorted(rows.items())}
