"""Build the discovery cascade a daemon's configuration asks for (docs/architecture.md §7),
with the host app's platform hooks where it gave them (docs/android.md)."""

from __future__ import annotations

from typing import Any

import trio
from meshsync.daemon.config import DaemonConfig
from meshsync.daemon.platform import PlatformHooks

from meshsync.net.discovery.model import AdvertSource, FoundCallback


def build_methods(config: DaemonConfig, sync_port: int,
                  hooks: PlatformHooks | None = None) -> list[Any]:
    """Discovery method objects in cascade order: mDNS, broadcast beacon, default
    gateway, static peers (only those named in ``config.discovery``).

    ``hooks`` (an embedding app's): the interfaces for mDNS (read here, once), the
    multicast lock held around mDNS, and the gateway (or none while a hotspot) in
    place of ``/proc/net/route``. Hooks are not called here except ``interfaces``.
    """
    from meshsync.net.discovery import (
        BeaconDiscovery,
        GatewayProbe,
        MdnsDiscovery,
        StaticPeers,
    )

    hooks = hooks or PlatformHooks()
    methods: list[Any] = []
    if "mdns" in config.discovery:
        wanted = list(hooks.interfaces()) if hooks.interfaces else list(config.interfaces)
        mdns = MdnsDiscovery(interfaces=wanted or None)
        methods.append(mdns if hooks.acquire_multicast is None else MulticastLocked(mdns, hooks))
    if "broadcast" in config.discovery:
        methods.append(BeaconDiscovery(port=config.beacon_port,
                                       interval_s=config.beacon_interval_s))
    if "gateway" in config.discovery:
        methods.append(GatewayProbe(port=config.listen[1] or sync_port,
                                    interval_s=config.anti_entropy_s,
                                    gateway=gateway_lookup(hooks)))
    if "static" in config.discovery and config.static_peers:
        methods.append(StaticPeers(list(config.static_peers),
                                   interval_s=config.anti_entropy_s))
    return methods


def gateway_lookup(hooks: PlatformHooks,
                   route_file: str = "/proc/net/route") -> Any:
    """A blocking ``() -> address | None`` for :class:`GatewayProbe` from the hooks, or
    ``None`` (read ``route_file`` as usual) when the host gave neither hook.

    While ``is_hotspot()`` is true the phone is the gateway itself (B01): ``None``.
    """
    if hooks.default_gateway is None and hooks.is_hotspot is None:
        return None

    def lookup() -> str | None:
        from pathlib import Path

        from meshsync.net.discovery.gateway import parse_default_gateway

        if hooks.is_hotspot is not None and hooks.is_hotspot():
            return None
        if hooks.default_gateway is not None:
            return hooks.default_gateway()
        route = parse_default_gateway(Path(route_file).read_text())
        return None if route is None else route.address

    return lookup


class MulticastLocked:
    """A discovery method run while the host's multicast lock is held (B03).

    ``acquire_multicast`` runs (in a worker thread) before the method starts,
    ``release_multicast`` after it stopped, however it stopped (cancelled, failed),
    so acquires and releases always pair up across the cascade's restarts.
    """

    def __init__(self, method: Any, hooks: PlatformHooks) -> None:
        assert hooks.acquire_multicast is not None and hooks.release_multicast is not None
        self.method, self.name = method, method.name
        self._acquire, self._release = hooks.acquire_multicast, hooks.release_multicast

    def statistics(self) -> dict[str, object]:
        """The wrapped method's statistics."""
        own = getattr(self.method, "statistics", None)
        return dict(own()) if callable(own) else {}

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Acquire, run the method until cancelled or failed, release."""
        await trio.to_thread.run_sync(self._acquire)
        try:
            await self.method.run(advert, found, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._release)
