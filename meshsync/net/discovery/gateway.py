"""The last two steps of the cascade (docs/architecture.md §7): the default-route gateway, which is
often the laptop running the hotspot (B01), and statically configured peers.

Both report bare addresses (no device id): the daemon learns who answers there from the
first session's certificate.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio

from meshsync.model.errors import UsageError
from meshsync.net.discovery.model import AdvertSource, Candidate, FoundCallback

_RTF_UP, _RTF_GATEWAY = 0x1, 0x2  # linux/route.h


@dataclass(frozen=True)
class GatewayRoute:
    """A default route: gateway IPv4 address, outgoing interface, metric."""

    address: str
    interface: str
    metric: int


def parse_default_gateway(text: str, byteorder: Literal["little", "big"] = sys.byteorder,
                          ) -> GatewayRoute | None:
    """The default route with the lowest metric in ``/proc/net/route`` text, or ``None``.

    The file has a header line, then one route per line: ``Iface Destination Gateway
    Flags RefCnt Use Metric Mask ...``, addresses as 8 hex digits of the kernel's
    network-order 32-bit value printed as a native integer, so on little-endian hosts
    ``010200C0`` is 192.0.2.1 (``byteorder`` is the host's). A default route has
    destination and mask 0, flags UP and GATEWAY, and a non-zero gateway. Malformed
    lines are skipped; never raises.
    """
    best: GatewayRoute | None = None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest, gateway, flags, mask = (int(fields[i], 16) for i in (1, 2, 3, 7))
            metric = int(fields[6])  # decimal, unlike the others
        except ValueError:
            continue
        up_gateway = flags & (_RTF_UP | _RTF_GATEWAY) == _RTF_UP | _RTF_GATEWAY
        if dest or mask or not up_gateway or not 0 < gateway < 2**32:
            continue
        address = str(ipaddress.IPv4Address(gateway.to_bytes(4, byteorder)))
        if best is None or metric < best.metric:
            best = GatewayRoute(address, fields[0], metric)
    return best


class GatewayProbe:
    """Report the default gateway, on the sync ``port``, every ``interval_s`` seconds.

    ``route_file`` is read each time, so a hotspot joined later is picked up; with no
    default route nothing is reported. Raises ``OSError`` when the file cannot be read
    (not Linux, or an Android app without access to ``/proc/net``), which the cascade
    retries with backoff.

    ``gateway``, if given, replaces the file: a blocking ``() -> address | None`` (an
    app's platform hook, docs/android.md), called in a worker thread each time; what
    it raises fails the probe like an unreadable file.
    """

    name = "gateway"

    def __init__(self, port: int, interval_s: float = 30.0,
                 route_file: str = "/proc/net/route", *,
                 gateway: Callable[[], str | None] | None = None) -> None:
        if not 1 <= port <= 65535 or interval_s <= 0:
            raise UsageError("gateway probe: port must be 1-65535 and interval_s > 0")
        self.port, self.interval_s, self.route_file = port, interval_s, route_file
        self.gateway = gateway
        self._counts = {"reported": 0, "no_route": 0}

    def statistics(self) -> dict[str, object]:
        """How often a gateway was reported, and how often there was none."""
        return dict(self._counts)

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Report until cancelled; ``started()`` after the first successful read."""
        started = False
        while True:
            route = await self._route()
            if route is None:
                self._counts["no_route"] += 1
            else:
                self._counts["reported"] += 1
                found(Candidate(route.address, self.port, "gateway",
                                interface=route.interface or None))
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self.interval_s)

    async def _route(self) -> GatewayRoute | None:
        if self.gateway is None:
            return parse_default_gateway(await trio.Path(self.route_file).read_text())
        address = await trio.to_thread.run_sync(self.gateway)
        if address is None:
            return None
        return GatewayRoute(str(ipaddress.IPv4Address(address)), "", 0)


class StaticPeers:
    """Report each configured ``(host, port)`` every ``interval_s`` seconds.

    Raises:
        UsageError: an empty host, a port outside 1-65535, or ``interval_s`` <= 0.
    """

    name = "static"

    def __init__(self, peers: list[tuple[str, int]], interval_s: float = 30.0) -> None:
        if interval_s <= 0:
            raise UsageError("static peers: interval_s must be > 0")
        self.candidates = [Candidate(host, port, "static") for host, port in peers]
        self.interval_s = interval_s

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Report until cancelled; ``started()`` at once."""
        task_status.started()
        if not self.candidates:
            await trio.sleep_forever()
        while True:
            for candidate in self.candidates:
                found(candidate)
            await trio.sleep(self.interval_s)
