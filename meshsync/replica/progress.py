"""Progress per TPS and per village: record counts by ``status`` value.

Partitions are ``.../<village>/<tps>``; a village's figures are the sum of its TPS
(the partition without its last segment). Generic: any collection whose records
carry a ``status`` field works (the coklit ``voters`` collection does). At central
the same figures are a SQL view (``meshsync_progress``, docs/central-sql.md).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from meshsync.replica.crdt import RecordState
from meshsync.store.base import Store


def progress(store: Store, collection: str = "voters", prefix: str = "") -> dict[str, Any]:
    """``{"tps": {partition: row}, "village": {prefix: row}}`` where a row is
    ``{"records": n, "deleted": n, "conflicts": n, "status": {value: n}}``."""
    tps: dict[str, dict[str, Any]] = defaultdict(_row)
    for record in store.iter_records(collection, prefix):
        row = tps[record.partition]
        if record.deleted:
            row["deleted"] += 1
            continue
        row["records"] += 1
        row["conflicts"] += int(record.conflict)
        fields = RecordState.decode(record.state).visible()
        row["status"][str(fields.get("status", "")) or "-"] += 1
    village: dict[str, dict[str, Any]] = defaultdict(_row)
    for partition, row in tps.items():
        total = village[partition.rpartition("/")[0] or partition]
        for key in ("records", "deleted", "conflicts"):
            total[key] += row[key]
        total["status"].update(row["status"])
    return {"tps": _plain(tps), "village": _plain(village)}


def _row() -> dict[str, Any]:
    return {"records": 0, "deleted": 0, "conflicts": 0, "status": Counter()}


def _plain(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {**v, "status": dict(sorted(v["status"].items()))} for k, v in sorted(rows.items())}
