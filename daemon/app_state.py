"""The sync state the officer's app shows on its first page (docs/app.md).

Built on the trio thread from the daemon's status document and peer table (the same
figures as ``GET /api/status`` and ``GET /api/peers``), plus this phone's edits with
their custody steps (:func:`meshsync.replica.edits.recent_edits`, read in a worker
thread by the caller).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from meshsync.daemon.service import LocalNode

from meshsync.replica.edits import Edit

#: A peer heard from within this many seconds counts as nearby.
NEARBY_S = 300


def _peer_row(peer: dict[str, Any], now_ms: int) -> dict[str, Any]:
    seen = peer.get("last_seen_ms") or peer.get("last_sync_ms") or 0
    return {"role": peer.get("role") or "", "id": str(peer.get("device_id") or "?")[:8],
            "last_sync_ms": peer.get("last_sync_ms"),
            "nearby": bool(seen) and now_ms - seen <= NEARBY_S * 1000,
            "failing": bool(peer.get("failures"))}


def sync_state(service: LocalNode, edits: list[Edit]) -> dict[str, Any]:
    """``{"peers": [{"role", "id", "last_sync_ms", "nearby", "failing"}],
    "last_sync_ms", "clock": {"wrong", "device_date", "network_date"} or None,
    "storage": {"low", "free_mb"} or None, "steps": {step: edits}}`` (times in Unix ms)."""
    status = service.status()
    now_ms = int(time.time() * 1000)
    peers = [_peer_row(p, now_ms) for p in service.peers() if p.get("device_id")]
    clock: dict[str, Any] = status.get("clock") or {}
    wrong = bool(clock) and not clock.get("plausible", True)
    storage = status.get("storage") or None
    return {
        "peers": peers,
        "last_sync_ms": max((p["last_sync_ms"] or 0 for p in peers), default=0) or None,
        "clock": {"wrong": wrong, "device_date": clock.get("device_date"),
                  "network_date": clock.get("network_date")} if clock else None,
        "clock_warnings": len(status.get("clock_warnings") or []),
        "storage": storage,
        "steps": dict(Counter(e.step for e in edits)),
    }
