"""The peer manager: which peers exist, when to sync with each, and how it went.

Candidates come from discovery (mDNS, beacon, default gateway, static peers) as
``(host, port, via, device id?)``. Peers are identified by device key, never by name
or address (B06): an address learned without a device id (static, gateway) is tied
to a device after the first session with it. A peer is synced when it is new, when
its advertised version-vector digest changed, when this node has new changes (a
local edit, or changes received from another peer: gossip), and at least every
``anti_entropy_s``. Failures back off exponentially with jitter. Silence on
multicast never drops a peer (B03): it stays listed and is dialled by unicast.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from meshsync.model.identity import device_id, short_id
from meshsync.net.discovery.model import Candidate
from meshsync.net.driver import now_ms
from meshsync.net.endpoints import Endpoint, sync_with
from meshsync.net.errors import TransportError
from meshsync.protocol.events import SessionSummary

log = logging.getLogger("meshsync.peers")

GATEWAY_ROLES = ("gateway", "central")


@dataclass
class PeerState:
    """What this node knows of one peer. Times are epoch milliseconds."""

    key: str
    device_id: str | None = None
    role: str | None = None
    addresses: dict[tuple[str, int], str] = field(default_factory=dict)
    last_seen_ms: int = 0
    last_ok_ms: int = 0
    last_attempt_ms: int = 0
    last_error: str | None = None
    failures: int = 0
    next_try_ms: int = 0
    digest_seen: str | None = None
    digest_at_sync: str | None = None
    dirty: bool = True
    syncing: bool = False
    sessions_ok: int = 0
    changes_sent: int = 0
    changes_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    clock_skew_ms: int = 0
    claimed_peers: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view for the API and status page."""
        return {
            "device_id": self.device_id, "role": self.role,
            "addresses": [{"host": h, "port": p, "via": v}
                          for (h, p), v in sorted(self.addresses.items())],
            "last_seen_ms": self.last_seen_ms or None, "last_sync_ms": self.last_ok_ms or None,
            "last_error": self.last_error, "failures": self.failures,
            "syncing": self.syncing, "sessions_ok": self.sessions_ok,
            "changes_sent": self.changes_sent, "changes_received": self.changes_received,
            "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "clock_skew_ms": self.clock_skew_ms,
        }


class PeerManager:
    """Owns the peer table and dials peers. Runs on the trio thread.

    Args:
        endpoint: the node's sync endpoint (its registry enforces one session per pair).
        mesh: this node's mesh id; candidates of other meshes are ignored.
        anti_entropy_s, backoff_min_s, backoff_max_s: timing in seconds.
    """

    def __init__(self, endpoint: Endpoint, mesh: str, *, anti_entropy_s: float,
                 backoff_min_s: float, backoff_max_s: float,
                 clock: Callable[[], int] = now_ms, rng: random.Random | None = None) -> None:
        self.endpoint, self.mesh = endpoint, mesh
        self.anti_entropy_ms = int(anti_entropy_s * 1000)
        self.backoff_min_ms = int(backoff_min_s * 1000)
        self.backoff_max_ms = int(backoff_max_s * 1000)
        self._clock, self._rng = clock, rng or random.Random()
        self.own_id = endpoint.node.key.device_id
        self.peers: dict[str, PeerState] = {}
        self._by_address: dict[tuple[str, int], str] = {}
        self._self_addresses: set[tuple[str, int]] = set()
        self._wake = trio.Event()
        self.sessions_total = 0

    # -- inputs ----------------------------------------------------------------

    def found(self, cand: Candidate) -> None:
        """A discovery method reported a candidate (synchronous; trio thread)."""
        if (cand.mesh is not None and cand.mesh != self.mesh) or cand.device_id == self.own_id:
            return
        address = (cand.host, cand.port)
        if address in self._self_addresses:
            return
        peer = self._peer_for(cand.device_id, address)
        peer.addresses[address] = cand.via
        peer.last_seen_ms = self._clock()
        role = cand.role
        peer.role = role or peer.role
        claimed = getattr(cand, "peers", None)
        if isinstance(claimed, int):
            peer.claimed_peers = claimed
        if cand.digest is not None and cand.digest != peer.digest_seen:
            peer.digest_seen = cand.digest
            if cand.digest != peer.digest_at_sync:
                peer.dirty = True
                self.wake()

    def _peer_for(self, dev: str | None, address: tuple[str, int]) -> PeerState:
        key = dev or self._by_address.get(address) or f"addr:{address[0]}:{address[1]}"
        peer = self.peers.get(key)
        if peer is None:
            peer = self.peers[key] = PeerState(key, device_id=dev)
            self.wake()
        if dev is not None:
            self._by_address[address] = key
            stale = self.peers.get(f"addr:{address[0]}:{address[1]}")
            if stale is not None and stale is not peer:
                self._merge(stale, peer)
        return peer

    def _merge(self, old: PeerState, into: PeerState) -> None:
        into.addresses.update(old.addresses)
        into.last_seen_ms = max(into.last_seen_ms, old.last_seen_ms)
        del self.peers[old.key]

    def local_change(self) -> None:
        """This node has new changes: sync with everyone soon."""
        for peer in self.peers.values():
            peer.dirty = True
        self.wake()

    def clock(self) -> int:
        """The manager's clock (epoch milliseconds)."""
        return self._clock()

    def reprobe(self, addresses: set[tuple[str, int]]) -> None:
        """Forget the backoff of peers at ``addresses`` and dial them now."""
        for peer in self.peers.values():
            if addresses & set(peer.addresses):
                peer.next_try_ms = 0
                peer.dirty = True
        self.wake()

    def wake(self) -> None:
        """Re-evaluate which peers are due now."""
        self._wake.set()

    def session_finished(self, direction: str, address: tuple[str, int],
                         summary: SessionSummary) -> None:
        """Record a finished session (ours or one a peer started)."""
        self.sessions_total += 1
        if not summary.peer:
            return
        dev = device_id(summary.peer)
        peer = self._peer_for(dev, address) if direction == "outgoing" else \
            self.peers.setdefault(dev, PeerState(dev, device_id=dev))
        peer.role = summary.peer_role or peer.role
        peer.clock_skew_ms = summary.clock_skew_ms
        peer.bytes_sent += summary.bytes_sent
        peer.bytes_received += summary.bytes_received
        now = self._clock()
        if summary.error:
            peer.last_error = summary.error
            return
        peer.last_ok_ms, peer.last_error, peer.failures = now, None, 0
        peer.sessions_ok += 1
        peer.digest_at_sync = peer.digest_seen
        peer.changes_sent += summary.changes_sent
        peer.changes_received += summary.changes_received
        if direction == "outgoing" or summary.converged:
            peer.dirty = False
        if summary.changes_received or summary.receipts_received:
            for other in self.peers.values():
                if other is not peer:
                    other.dirty = True  # gossip what we just learned
            self.wake()

    # -- the loop --------------------------------------------------------------

    def _due(self, peer: PeerState, now: int) -> bool:
        if peer.syncing or now < peer.next_try_ms or not peer.addresses:
            return False
        if peer.device_id and self.endpoint.registry and \
                self.endpoint.registry.busy(_key_bytes(peer.device_id)):
            return False
        return peer.dirty or now - peer.last_ok_ms >= self.anti_entropy_ms

    def _next_deadline(self, now: int) -> int:
        times = [max(p.next_try_ms, p.last_ok_ms + self.anti_entropy_ms)
                 for p in self.peers.values() if not p.syncing and p.addresses]
        return min(times, default=now + self.anti_entropy_ms)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Dial due peers forever (``serve``-style; cancel to stop)."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                self._wake = trio.Event()
                now = self._clock()
                for peer in list(self.peers.values()):
                    if self._due(peer, now):
                        peer.syncing = True
                        nursery.start_soon(self._dial, peer)
                delay = max(0.05, (self._next_deadline(now) - self._clock()) / 1000)
                with trio.move_on_after(delay):
                    await self._wake.wait()

    def _pick_address(self, peer: PeerState) -> tuple[str, int]:
        order = {"uplink": 0, "mdns": 1, "broadcast": 2, "static": 3, "gateway": 4}
        return min(peer.addresses, key=lambda a: (order.get(peer.addresses[a], 9), a))

    async def _dial(self, peer: PeerState) -> None:
        address = self._pick_address(peer)
        peer.last_attempt_ms = self._clock()
        try:
            summary = await sync_with(self.endpoint, *address)
        except TransportError as exc:
            self._failed(peer, address, exc)
        else:
            if summary.error:
                self._backoff(peer, summary.error)
            self.session_finished("outgoing", address, summary)
        finally:
            peer.syncing = False
            self.wake()

    def _failed(self, peer: PeerState, address: tuple[str, int], exc: TransportError) -> None:
        if exc.stage == "self":
            self._self_addresses.add(address)
            peer.addresses.pop(address, None)
            if not peer.addresses:
                self.peers.pop(peer.key, None)
            return
        if exc.stage == "busy":
            peer.next_try_ms = self._clock() + self.backoff_min_ms
            return
        self._backoff(peer, str(exc))

    def _backoff(self, peer: PeerState, reason: str) -> None:
        peer.failures += 1
        peer.last_error = reason
        delay = min(self.backoff_max_ms, self.backoff_min_ms * 2 ** min(peer.failures - 1, 20))
        peer.next_try_ms = self._clock() + int(delay * self._rng.uniform(0.75, 1.25))
        log.info("sync with %s failed (%s); retry in %.1f s",
                 (peer.device_id and peer.device_id[:8]) or peer.key, reason, delay / 1000)

    # -- reading -----------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every known peer as JSON-ready dicts, sorted by key."""
        return [self.peers[k].to_json() for k in sorted(self.peers)]

    def diagnosis(self) -> str:
        """One word for the operator: ``ok``, ``syncing``, ``no_peers``,
        ``unreachable`` or ``isolation_suspected`` (B02: the access point isolates
        clients: gateways answer while the other peers this node knows do not)."""
        known = [p for p in self.peers.values() if p.device_id]
        reachable = [p for p in known if p.last_ok_ms and not p.failures]
        failing = [p for p in known if p.failures]
        if reachable and failing and all(p.role in GATEWAY_ROLES for p in reachable) \
                and any(p.role not in GATEWAY_ROLES for p in failing):
            return "isolation_suspected"
        if any(p.syncing for p in self.peers.values()):
            return "syncing"
        if reachable:
            return "ok"
        return "unreachable" if self.peers else "no_peers"


def _key_bytes(dev: str) -> bytes:
    from meshsync.model.identity import parse_device_id

    return parse_device_id(dev)


__all__ = ["PeerManager", "PeerState", "short_id"]
