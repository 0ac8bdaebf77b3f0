"""What the laptop page reads from the node besides the status document: custody
towards KPU for every feed the laptop holds, the names devices were enrolled under,
and the open conflicts (docs/architecture.md §9, "The laptop page").

Runs in a worker thread under the node's limiter (it reads the store). Custody here is
the laptop's view of everything it carries, not only its own feeds (``meshsync status``
shows those, :func:`meshsync.replica.custody.custody`): a change counts as confirmed by
KPU when a receipt of a verified ``central`` device covers its seq with the head check
of the change the laptop holds there (:func:`meshsync.replica.custody.held_by`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, parse_device_id
from meshsync.replica.custody import held_by, held_receipts, ignored_reason, issuer_role
from meshsync.replica.node import Node
from meshsync.replica.receipt import Receipt

#: Most open conflicts the page lists (the API pages through all of them).
MAX_CONFLICTS = 50


def central_receipts(node: Node) -> list[Receipt]:
    """Receipts held from verified central devices (KPU) that count for custody."""
    out = []
    for receipt in held_receipts(node):
        role = issuer_role(node, receipt.issuer)
        if role == "central" and ignored_reason(node, receipt.issuer, role) is None:
            out.append(receipt)
    return out


def upstream_custody(node: Node) -> dict[str, Any]:
    """Changes held here that KPU has not confirmed.

    Returns ``{"feeds": [{"author": device id, "partition", "held": seq,
    "confirmed": seq, "waiting": n}], "waiting": total, "confirmed_ms": newest central
    receipt's signing time or None, "refused": [{"author", "partition", "seq", "stage",
    "reason"}]}``.
    """
    receipts = central_receipts(node)
    feeds = []
    for feed, seq in sorted(node.version_vector().items()):
        confirmed = max((held_by(node, feed, "central", r)[0] for r in receipts), default=0)
        confirmed = min(confirmed, seq)
        feeds.append({"author": device_id(feed[0]), "partition": feed[1], "held": seq,
                      "confirmed": confirmed, "waiting": seq - confirmed})
    refused: dict[tuple[str, str, int], dict[str, Any]] = {}
    for receipt in receipts:
        for r in receipt.refused:
            refused.setdefault((device_id(r.author), r.partition, r.seq), {
                "author": device_id(r.author), "partition": r.partition, "seq": r.seq,
                "stage": r.stage, "reason": r.reason})
    return {"feeds": feeds, "waiting": sum(f["waiting"] for f in feeds),
            "confirmed_ms": max((r.at_ms for r in receipts), default=None),
            "refused": [refused[k] for k in sorted(refused)]}


def enrolled_names(node: Node, devices: set[str]) -> dict[str, dict[str, str]]:
    """``device id -> {"name", "scope", "role"}`` from each device's verified
    certificate (the name given at enrolment: the certificate's CN); devices this node
    holds no verified certificate of are left out."""
    info = getattr(node.trust, "device_info", None)
    out: dict[str, dict[str, str]] = {}
    if info is None:
        return out
    for dev in devices:
        try:
            rows = [r for r in info(parse_device_id(dev)) if r.get("status") == "verified"]
        except UsageError:  # a malformed id is simply not named
            continue
        if rows:
            row = rows[-1]  # the newest certificate
            out[dev] = {"name": str(row.get("name") or ""), "scope": str(row.get("scope") or ""),
                        "role": str(row.get("role") or "")}
    return out


def open_conflicts(node: Node, limit: int = MAX_CONFLICTS) -> list[dict[str, Any]]:
    """At most ``limit`` records with open conflicts, one entry per conflicting field:
    ``{"collection", "key", "partition", "field", "versions": [{"value", "author",
    "hlc", "wall_ms"}]}`` (winner first; values in the library's form)."""
    from itertools import islice

    from meshsync.replica.records import Record

    out: list[dict[str, Any]] = []
    rows = islice(node.store.iter_records(conflicts_only=True), limit)
    for record in map(Record.from_row, rows):
        for name, versions in sorted(record.conflicts.items()):
            out.append({"collection": record.collection, "key": record.key,
                        "partition": record.partition, "field": name,
                        "versions": [v.to_json() for v in versions]})
    return out


def per_group(feeds: list[dict[str, Any]], member: str) -> dict[str, dict[str, int]]:
    """``feeds`` (of :func:`upstream_custody`) summed by ``member`` (``partition`` or
    ``author``): ``{value: {"held": n, "waiting": n}}``."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"held": 0, "waiting": 0})
    for f in feeds:
        out[f[member]]["held"] += f["held"]
        out[f[member]]["waiting"] += f["waiting"]
    return dict(sorted(out.items()))
