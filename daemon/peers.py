"""The peer manager: which peers exist, when to sync with each, and how it went.

Candidates come from discovery (mDNS, beacon, default gateway, static peers) as
``(host, port, via, device id?)``. Peers are identified by device key, never by name
or address (B06): an address learned without a device id (static, gateway) is tied
to a device after the first session with it. A peer is synced when it is new, when
its advertised version-vector digest changed, when this node has new changes (a
local edit, or changes received from another peer: gossip), and at least every
``anti_entropy_s``. Failures back off exponentially with jitter. Silence on
multicast never drops a peer (B03): it stays listed and is dialled by unicast.

An advert is a hint (issue 14; docs/architecture.md §7): anyone on the Wi-Fi can send a
beacon or an mDNS record naming any device id and port. Until a session has verified
the device it names (its TLS certificate), an entry is a *hint*: at most
``MAX_HINTS`` are kept (the one heard least recently goes first), one not heard for
``hint_ttl_s`` expires, and dialling hints is rate-limited with backoff that follows
both the address and the claimed id (:mod:`meshsync.daemon.dial_policy`). A session
that verifies another device than the advert claimed closes the advertised entry; its
result is recorded under the verified device. An advert naming a device a session has
verified, from an address where none did, adds at most an address to try (a peer keeps
at most ``MAX_ADDRESSES``), never a say over the peer's role or a reason to sync now.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from meshsync.daemon.dial_policy import Address, DialPolicy

from meshsync.model.errors import UsageError
from meshsync.model.identity import device_id, parse_device_id, short_id
from meshsync.net.discovery.model import Candidate
from meshsync.net.driver import now_ms
from meshsync.net.endpoints import Endpoint, sync_with
from meshsync.net.errors import TransportError
from meshsync.protocol.events import SessionSummary

log = logging.getLogger("meshsync.peers")

GATEWAY_ROLES = ("gateway", "central")

#: Most peer entries no session has verified (adverts, static and gateway addresses).
MAX_HINTS = 64

#: Most addresses kept for one peer (adverts may claim a known device at any address).
MAX_ADDRESSES = 8

#: How soon a peer held back by the dial limits is looked at again (milliseconds).
HELD_RECHECK_MS = 500

#: The sync port a peer that has only ever connected to this node is dialled at, on the
#: address it connected from (it advertised none): the default ``listen`` port of every
#: meshsync daemon. The daemon sets :attr:`PeerManager.inbound_port` to its own listen
#: port, as the devices of one mesh share their settings.
INBOUND_PORT = 7420

#: Least time between two looks at the peer table (seconds): a flood of adverts wakes
#: the loop at every new entry, and each look costs a pass over the table.
LOOP_MIN_S = 0.1


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
    proven: bool = False  # a session verified this device's certificate
    verified: set[Address] = field(default_factory=set)  # where our dials reached it

    @property
    def hint(self) -> bool:
        """True until a session has verified this device (an advert is only a claim)."""
        return not self.proven

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
        hint_ttl_s: an unverified entry not heard for this long is forgotten
            (default: three ``anti_entropy_s``, at least two minutes).
        policy: the dial limits (default: :class:`DialPolicy` with the backoff above).
    """

    def __init__(self, endpoint: Endpoint, mesh: str, *, anti_entropy_s: float,
                 backoff_min_s: float, backoff_max_s: float,
                 clock: Callable[[], int] = now_ms, rng: random.Random | None = None,
                 hint_ttl_s: float | None = None, policy: DialPolicy | None = None) -> None:
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
        self.hint_ttl_ms = int(1000 * (hint_ttl_s if hint_ttl_s is not None
                                       else max(3 * anti_entropy_s, 120.0)))
        self.policy = policy or DialPolicy(backoff_min_ms=self.backoff_min_ms,
                                           backoff_max_ms=self.backoff_max_ms, rng=self._rng)
        self.ignored = dict.fromkeys(("bad_id", "hints_evicted", "hints_expired"), 0)
        self.inbound_port = INBOUND_PORT
        #: Called as a dial starts: ``on_dial(device id or None, address)`` (events).
        self.on_dial: Callable[[str | None, Address], None] | None = None
        #: Called as any session ends (dialled or accepted): ``on_session(direction,
        #: summary)`` (events).
        self.on_session: Callable[[str, SessionSummary], None] | None = None
        #: Called when a dial fails before any session: ``(device id, address, error)``.
        self.on_dial_failed: Callable[[str | None, Address, str], None] | None = None

    # -- inputs ----------------------------------------------------------------

    def found(self, cand: Candidate) -> None:
        """A discovery method reported a candidate (synchronous; trio thread)."""
        if (cand.mesh is not None and cand.mesh != self.mesh) or cand.device_id == self.own_id:
            return
        if cand.device_id is not None and not _is_device_id(cand.device_id):
            self.ignored["bad_id"] += 1
            return
        address = (cand.host, cand.port)
        if address in self._self_addresses:
            return
        peer = self._hint_for(cand.device_id, address)
        if peer is None or not self._add_address(peer, address, cand.via):
            return
        peer.last_seen_ms = self._clock()
        if peer.proven and address not in peer.verified:
            return  # anyone can claim a known device's id: no say over its role or digest
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

    @staticmethod
    def _add_address(peer: PeerState, address: Address, via: str) -> bool:
        """Note ``address`` for ``peer``, keeping at most :data:`MAX_ADDRESSES` (an
        unverified one gives way); False if all it has are verified."""
        if address not in peer.addresses and len(peer.addresses) >= MAX_ADDRESSES:
            stale = next((a for a in peer.addresses if a not in peer.verified), None)
            if stale is None:
                return False
            del peer.addresses[stale]
        peer.addresses[address] = via
        return True

    def _hint_for(self, dev: str | None, address: Address) -> PeerState | None:
        """The entry a candidate updates: its claimed device's, else the device a
        session verified at that address, else one for the bare address. A new entry
        is a hint; None when the hint table is full of entries heard more recently."""
        key = dev or self._by_address.get(address) or _address_key(address)
        peer = self.peers.get(key)
        if peer is None:
            if not self._room_for_hint():
                return None
            peer = self.peers[key] = PeerState(key, device_id=dev)
            self.wake()
        return peer

    def _room_for_hint(self) -> bool:
        hints = [p for p in self.peers.values() if p.hint]
        if len(hints) < MAX_HINTS:
            return True
        oldest = min((p for p in hints if not p.syncing), key=lambda p: p.last_seen_ms,
                     default=None)
        if oldest is None:
            return False
        del self.peers[oldest.key]
        self.ignored["hints_evicted"] += 1
        return True

    def _verified_peer(self, dev: str, address: Address) -> PeerState:
        """The entry of ``dev``, which a session just verified at ``address``; an entry
        for the bare address (static, gateway) is merged into it."""
        peer = self.peers.get(dev)
        if peer is None:
            peer = self.peers[dev] = PeerState(dev, device_id=dev)
        peer.proven = True
        peer.verified.add(address)
        self._by_address[address] = dev
        self.policy.verified(address, dev)
        stale = self.peers.get(_address_key(address))
        if stale is not None and stale is not peer:
            self._merge(stale, peer)
        return peer

    def _expire_hints(self, now: int) -> None:
        for peer in [p for p in self.peers.values() if p.hint and not p.syncing
                     and now - p.last_seen_ms > self.hint_ttl_ms]:
            del self.peers[peer.key]
            self.ignored["hints_expired"] += 1

    def _merge(self, old: PeerState, into: PeerState) -> None:
        into.addresses.update(old.addresses)
        into.last_seen_ms = max(into.last_seen_ms, old.last_seen_ms)
        del self.peers[old.key]

    def sync_all(self) -> list[dict[str, Any]]:
        """Sync with every known peer now (those that only connected to this node too,
        at their listen port); returns the peers that cannot be reached, as
        ``{"device_id", "reason"}``: no address known, or the last dials failed."""
        self.local_change()
        for peer in self.peers.values():
            if not peer.syncing:
                peer.next_try_ms = 0
        return [{"device_id": p.device_id or p.key, "reason": _unreachable(p)}
                for p in sorted(self.peers.values(), key=lambda p: p.key)
                if p.device_id and (not p.addresses or p.failures)]

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
        for address in addresses:
            self.policy.forgive(address)
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
        if self.on_session is not None:
            self.on_session(direction, summary)
        if not summary.peer:
            return
        dev = device_id(summary.peer)
        if direction == "outgoing":
            peer = self._verified_peer(dev, address)
        else:
            peer = self.peers.setdefault(dev, PeerState(dev, device_id=dev))
            peer.proven = True
            if not peer.addresses and address[0] and self.inbound_port:
                # it connected to us and advertised nothing: dial its listen port there
                self._add_address(peer, (address[0], self.inbound_port), "inbound")
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

    def _wanted(self, peer: PeerState, now: int) -> bool:
        if peer.syncing or now < peer.next_try_ms or not peer.addresses:
            return False
        if peer.device_id and self.endpoint.registry and \
                self.endpoint.registry.busy(parse_device_id(peer.device_id)):
            return False
        return peer.dirty or now - peer.last_ok_ms >= self.anti_entropy_ms

    def _address_for(self, peer: PeerState, now: int) -> Address | None:
        """The address to dial ``peer`` at now (verified ones first), or None while the
        dial limits hold every one of them back."""
        order = {"uplink": 0, "mdns": 1, "broadcast": 2, "static": 3, "gateway": 4,
                 "inbound": 5}
        for address in sorted(peer.addresses, key=lambda a: (
                a not in peer.verified, order.get(peer.addresses[a], 9), a)):
            if self.policy.may_dial(address, peer.device_id, hint=address not in peer.verified,
                                    now=now):
                return address
        return None

    def _next_deadline(self, now: int) -> int:
        times = [max(p.next_try_ms, p.last_ok_ms + self.anti_entropy_ms)
                 for p in self.peers.values() if not p.syncing and p.addresses]
        return min(times, default=now + self.anti_entropy_ms)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Dial due peers forever (``serve``-style; cancel to stop). Peers a session
        verified go first; a peer held back by the dial limits is looked at again
        within half a second."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                self._wake = trio.Event()
                now = self._clock()
                self._expire_hints(now)
                held = False
                hints_allowed = self.policy.hints_allowed(now)
                for peer in sorted(self.peers.values(), key=lambda p: p.hint):
                    if (peer.hint and not hints_allowed) or not self._wanted(peer, now):
                        held = held or peer.hint
                        continue
                    address = self._address_for(peer, now)
                    if address is None:
                        held = True
                        continue
                    peer.syncing = True
                    self.policy.dialled(address, hint=address not in peer.verified, now=now)
                    nursery.start_soon(self._dial, peer, address)
                deadline = self._next_deadline(now)
                if held:
                    deadline = min(deadline, now + HELD_RECHECK_MS)
                with trio.move_on_after(max(0.05, (deadline - self._clock()) / 1000)):
                    await self._wake.wait()
                await trio.sleep(LOOP_MIN_S)

    async def _dial(self, peer: PeerState, address: Address) -> None:
        peer.last_attempt_ms = self._clock()
        if self.on_dial is not None:
            self.on_dial(peer.device_id, address)
        try:
            summary = await sync_with(self.endpoint, *address)
        except TransportError as exc:
            if self.on_dial_failed is not None:
                self.on_dial_failed(peer.device_id, address, str(exc))
            self._failed(peer, address, exc)
        else:
            reached = device_id(summary.peer) if summary.peer else None
            self.session_finished("outgoing", address, summary)
            if peer.device_id is not None and reached not in (None, peer.device_id):
                self._wrong_device(peer, address, str(reached))
            if summary.error:
                self._backoff(self.peers.get(reached or peer.key, peer), summary.error)
        finally:
            peer.syncing = False
            self.wake()

    def _wrong_device(self, peer: PeerState, address: Address, reached: str) -> None:
        """The dial for ``peer``'s advert at ``address`` verified another device: the
        advert lied (or the address changed hands). Close that claim; hints at that
        address and for that id back off."""
        delay = self.policy.hint_failed(address, peer.device_id, self._clock(),
                                        wrong_device=True)
        peer.addresses.pop(address, None)
        peer.verified.discard(address)
        if not peer.addresses and not peer.proven:
            self.peers.pop(peer.key, None)
        log.info("advert for %s at %s:%s reached %s; claim dropped, adverts for that "
                 "address or id wait %.0f s", peer.key[:8], *address, reached[:8],
                 delay / 1000)

    def _failed(self, peer: PeerState, address: Address, exc: TransportError) -> None:
        if exc.stage == "self":
            self._self_addresses.add(address)
            peer.addresses.pop(address, None)
            if not peer.addresses:
                self.peers.pop(peer.key, None)
            return
        if exc.stage == "busy":
            peer.next_try_ms = self._clock() + self.backoff_min_ms
            return
        if address not in peer.verified:
            self.policy.hint_failed(address, peer.device_id, self._clock())
            if peer.proven and len(peer.addresses) > 1:
                peer.addresses.pop(address, None)  # a bad hint for a known peer: drop it
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


def _unreachable(peer: PeerState) -> str:
    """Why ``peer`` cannot be reached now, in one sentence."""
    if not peer.addresses:
        return ("It has only connected to this node, and no address where it listens "
                "is known.")
    return (f"The last {peer.failures} attempts to reach it failed: {peer.last_error}. "
            "It is tried again now.")


def _is_device_id(text: str) -> bool:
    try:
        parse_device_id(text)
    except UsageError:
        return False
    return True


def _address_key(address: Address) -> str:
    return f"addr:{address[0]}:{address[1]}"


__all__ = ["PeerManager", "PeerState", "short_id"]
