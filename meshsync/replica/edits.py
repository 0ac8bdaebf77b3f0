"""This device's own recent edits, each with where it is safe (docs/app.md).

The officer's app shows, for every edit, one truthful step: ``phone`` (saved on this
device only), ``gateway`` (the PPK laptop's receipt holds it), ``central`` (KPU's
receipt holds it) or ``refused`` (a gateway or central refused the change, with the
reason). The steps come from the custody receipts this device holds, counted exactly
as :func:`meshsync.replica.custody.custody` counts them: a receipt covers a change only
if its head check is this device's own change at that seq, from an issuer whose
verified certificate is a gateway's or central's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshsync.model.change import FeedId, Put, decode_stored
from meshsync.model.errors import DecodeError
from meshsync.model.hlc import wall_ms
from meshsync.replica.custody import (
    ISSUER_ROLES,
    held_by,
    held_receipts,
    ignored_reason,
    issuer_role,
)
from meshsync.replica.node import Node
from meshsync.replica.receipt import Receipt
from meshsync.replica.refusals import refused_own

#: The steps of an edit, from least to most safe (``refused`` stands apart).
STEPS = ("phone", "gateway", "central")


@dataclass(frozen=True)
class Edit:
    """One op of this device's change ``(partition, seq)``: ``collection``, ``key``,
    the ``fields`` it set (names and values; empty for a delete), its time ``at_ms``
    (the change's hybrid clock, Unix milliseconds), its ``step`` (see the module
    docstring) and, when refused, ``refused_at`` (``gateway``/``central``) and
    ``reason``."""

    partition: str
    seq: int
    collection: str
    key: str
    at_ms: int
    step: str
    fields: dict[str, Any] = field(default_factory=dict)
    refused_at: str | None = None
    reason: str | None = None


def _counted(node: Node) -> list[tuple[str, Receipt]]:
    """The receipts that count: (role, receipt) of verified gateways and central."""
    out = []
    for receipt in held_receipts(node):
        role = issuer_role(node, receipt.issuer)
        if role in ISSUER_ROLES and ignored_reason(node, receipt.issuer, role) is None:
            out.append((str(role), receipt))
    return out


def _step(seq: int, covers: dict[str, int]) -> str:
    if covers.get("central", 0) >= seq:
        return "central"
    return "gateway" if covers.get("gateway", 0) >= seq else "phone"


def recent_edits(node: Node, collection: str | None = None, key: str | None = None,
                 limit: int = 50) -> list[Edit]:
    """This device's newest edits (of ``collection`` and record ``key`` when given),
    newest first, at most ``limit``; each change of the last ``4 * limit`` of every
    own feed is read."""
    own = node.key.public_key
    counted = _counted(node)
    refused = {(r["partition"], r["seq"]): r for r in refused_own(node, counted)}
    edits: list[Edit] = []
    for info in node.store.feeds():
        if info.author != own:
            continue
        feed: FeedId = info.feed
        covers: dict[str, int] = {}
        for role, receipt in counted:
            covers[role] = max(covers.get(role, 0), held_by(node, feed, role, receipt)[0])
        start = max(0, info.head_seq - 4 * limit)
        for stored in node.store.iter_changes(feed, start):
            edits += _edits_of(stored.body, stored.sig, stored.hash, feed, covers,
                               refused.get((feed[1], stored.seq)), collection, key)
    edits.sort(key=lambda e: (e.at_ms, e.seq), reverse=True)
    return edits[:limit]


def _edits_of(body: bytes, sig: bytes, digest: bytes, feed: FeedId, covers: dict[str, int],
              refusal: dict[str, Any] | None, collection: str | None, key: str | None
              ) -> list[Edit]:
    try:
        change = decode_stored(body, sig, digest)
    except DecodeError:
        return []
    step = "refused" if refusal else _step(change.seq, covers)
    return [Edit(feed[1], change.seq, op.collection, op.key, wall_ms(change.hlc), step,
                 dict(op.fields) if isinstance(op, Put) else {},
                 refusal["at"] if refusal else None, refusal["reason"] if refusal else None)
            for op in change.ops
            if (collection is None or op.collection == collection)
            and (key is None or op.key == key)]


__all__ = ["STEPS", "Edit", "recent_edits"]
