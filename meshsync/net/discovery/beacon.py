"""UDP broadcast beacon: discovery where multicast is blocked but broadcast is not
(docs/architecture.md §7, the second step of the cascade).

Every ``interval_s`` (± jitter), and at once (at most once per ``min_gap_s``) when the
advert changes or a peer of the mesh is heard for the first time, a beacon
(:func:`~meshsync.net.discovery.codec.encode_beacon`, ≤ 512 bytes) goes to the
directed-broadcast address of each IPv4 interface, or to the configured ``targets``.
The same socket, bound to the beacon port, listens: a beacon of this mesh from another
device becomes a :class:`Candidate` whose host is the datagram's *source* address (the
address that actually reached us), not anything in the payload. Own beacons, other
meshes and malformed datagrams are counted, never reported. IPv4 only: IPv6 has no
broadcast (RFC 4291 §2.7).

Sharing a port: the socket sets ``SO_REUSEADDR`` and ``SO_REUSEPORT``, so several
nodes on one host (tests, a laptop running two daemons) can listen on one port. Every
such socket receives each *broadcast*, but a *unicast* datagram reaches only one of
them, so co-located nodes should beacon to a broadcast address (tests use
``bind_host="127.255.255.255"`` and that target: nothing leaves ``lo``).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket

import trio

from meshsync.model.errors import DecodeError, UsageError
from meshsync.net.discovery.budget import AdvertBudget
from meshsync.net.discovery.codec import MAX_BEACON_BYTES, decode_beacon, encode_beacon
from meshsync.net.discovery.interfaces import broadcast_targets, read_links
from meshsync.net.discovery.model import Advert, AdvertSource, Candidate, FoundCallback

log = logging.getLogger("meshsync.discovery")

_MAX_REMEMBERED = 1024  # peers remembered for newcomer detection before pruning

#: Beacons decoded a second at most (a district's phones send a few); the rest of a
#: flood is counted as ``over_budget`` and dropped undecoded (issue 14).
MAX_BEACONS_PER_S = 200.0


class BeaconDiscovery:
    """Send and hear UDP broadcast beacons.

    Args:
        port: UDP port beacons are sent to and heard on (not the sync port).
        interval_s: seconds between periodic beacons (before jitter).
        targets: IPv4 literals ``"a.b.c.d"`` or ``"a.b.c.d:port"`` to send to instead
            of every interface's broadcast address.
        bind_host: address the listening socket binds to; ``""`` hears every interface.
        jitter: fraction of ``interval_s`` each wait varies by, so phones started
            together do not beacon in lockstep.
        min_gap_s: least time between two beacons sent because the advert changed.
        rng: randomness for the jitter (seed it in tests).

    Raises:
        UsageError: a target is not an IPv4 literal, or a number is out of range.
    """

    name = "broadcast"

    def __init__(self, port: int = 7421, interval_s: float = 5.0,
                 targets: list[str] | None = None, *, bind_host: str = "",
                 jitter: float = 0.2, min_gap_s: float = 1.0,
                 rng: random.Random | None = None) -> None:
        if not 1 <= port <= 65535 or interval_s <= 0 or not 0 <= jitter < 1 or min_gap_s < 0:
            raise UsageError("beacon: port 1-65535, interval_s > 0, 0 <= jitter < 1, "
                             "min_gap_s >= 0")
        self.port, self.interval_s, self.bind_host = port, interval_s, bind_host
        self.jitter, self.min_gap_s = jitter, min_gap_s
        self.targets = None if targets is None else [_target(t, port) for t in targets]
        self._rng = rng or random.Random()
        self._counts = dict.fromkeys(("sent", "send_errors", "received", "reported", "own",
                                      "other_mesh", "malformed", "over_budget"), 0)
        self._budget = AdvertBudget(MAX_BEACONS_PER_S)
        self._last: dict[str, str | None] = {"send_error": None, "malformed": None}
        self._poke = trio.Event()  # set: beacon now (advert changed, or a newcomer)
        self._heard_at: dict[str, float] = {}  # device id -> when last heard

    def statistics(self) -> dict[str, object]:
        """Counters, the last send error and the last malformed datagram's reason."""
        return {**self._counts, "last_send_error": self._last["send_error"],
                "last_malformed": self._last["malformed"]}

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beacon and listen until cancelled; ``started()`` once the socket is bound.

        Raises ``OSError`` if the socket cannot be bound (port taken without
        ``SO_REUSEPORT``). Failed sends (no route, broadcast refused) are counted and
        do not stop the method; with no broadcast-capable interface it only listens.
        """
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            await sock.bind((self.bind_host, self.port))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, sock, advert, found)
                nursery.start_soon(self._watch, advert)
                task_status.started()
                await self._beacon(sock, advert)

    async def _beacon(self, sock: trio.socket.SocketType, advert: AdvertSource) -> None:
        while True:
            self._poke = trio.Event()
            await self._send(sock, advert.current())
            sent_at = trio.current_time()
            wait = self.interval_s * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
            with trio.move_on_after(wait):
                await self._poke.wait()
                await trio.sleep_until(sent_at + self.min_gap_s)

    async def _watch(self, advert: AdvertSource) -> None:
        seen = advert.current()
        while True:
            seen = await advert.wait_changed(seen)
            self._poke.set()

    async def _send(self, sock: trio.socket.SocketType, advert: Advert) -> None:
        data = encode_beacon(advert)
        targets = self.targets
        if targets is None:
            targets = [(address, self.port) for address in broadcast_targets(read_links())]
        for target in targets:
            try:
                await sock.sendto(data, target)
                self._counts["sent"] += 1
            except OSError as exc:
                self._counts["send_errors"] += 1
                self._last["send_error"] = f"{target[0]}: {exc}"
                log.debug("beacon: sending to %s failed: %s", target[0], exc)

    async def _listen(self, sock: trio.socket.SocketType, advert: AdvertSource,
                      found: FoundCallback) -> None:
        while True:
            try:
                data, source = await sock.recvfrom(MAX_BEACON_BYTES + 1)
            except (ConnectionRefusedError, ConnectionResetError):
                continue  # an ICMP error for an earlier send, on some platforms
            self._heard(data, source[0], advert.current(), found)

    def _heard(self, data: bytes, host: str, own: Advert, found: FoundCallback) -> None:
        self._counts["received"] += 1
        if not self._budget.take(trio.current_time()):
            self._counts["over_budget"] += 1
            return
        try:
            peer = decode_beacon(data)
        except DecodeError as exc:
            self._counts["malformed"] += 1
            self._last["malformed"] = f"{host}: {exc.detail}"
            return
        if peer.device_id == own.device_id:
            self._counts["own"] += 1
        elif peer.mesh != own.mesh:
            self._counts["other_mesh"] += 1
        else:
            self._counts["reported"] += 1
            self._note_peer(peer.device_id)
            found(Candidate(host, peer.port, "broadcast", peer.device_id, peer.mesh,
                            peer.role, peer.digest, None, peer.proto))


    def _note_peer(self, device_id: str) -> None:
        """A newcomer (not heard for 3 intervals) gets our beacon at once rather than
        up to ``interval_s`` later: its first beacon may have reached us before it
        heard ours."""
        now, forget = trio.current_time(), 3 * self.interval_s * (1 + self.jitter)
        if now - self._heard_at.get(device_id, -forget) >= forget:
            self._poke.set()
        self._heard_at[device_id] = now
        if len(self._heard_at) > _MAX_REMEMBERED:
            self._heard_at = {k: t for k, t in self._heard_at.items() if now - t < forget}


def _target(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":") if text.count(":") == 1 else ("", "", "")
    host, port_text = (host, port) if sep else (text, str(default_port))
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise UsageError(f"beacon target must be an IPv4 literal (got {text!r})") from exc
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"beacon target port must be 1-65535 (got {text!r})")
    return str(address), int(port_text)
