"""Progress per TPS, per village and per district: record counts by ``status`` value.

Partitions are ``.../<district>/<village>/<tps>``; a village's figures are the sum
of its TPS (the partition without its last segment), a district's the sum of its
villages. Generic: any collection whose records carry a ``status`` field works.

A collection may register a classifier (:func:`register_classifier`; the coklit
example registers one for ``voters``, :mod:`meshsync.coklit.visits`): each record's
label is then the classifier's (e.g. ``MS``, ``TMS``, ``belum dicoklit``), and a
row also counts the records that are ``done`` (dicoklit) and the time of the
newest one. At central the same figures are SQL views (``meshsync_progress`` and
``meshsync_coklit_progress``, docs/central-sql.md).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from meshsync.replica.crdt import RecordState
from meshsync.store.base import Store


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
    return Outcome(str(state.visible().get("status", "")) or "-", False, None)


def progress(store: Store, collection: str = "voters", prefix: str = "") -> dict[str, Any]:
    """``{"tps": {partition: row}, "village": {prefix: row}, "district": {prefix: row}}``
    where a row is ``{"records": n, "deleted": n, "conflicts": n, "status": {label: n},
    "done": n, "last_done_ms": ms or None}`` (``records`` counts live records;
    ``done`` and ``last_done_ms`` stay 0 and None without a classifier)."""
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
    village = _roll_up(tps)
    return {"tps": _plain(tps), "village": _plain(village),
            "district": _plain(_roll_up(village))}


def _count(row: dict[str, Any], outcome: Outcome) -> None:
    row["status"][outcome.label] += 1
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
