"""Build the discovery cascade a daemon's configuration asks for (docs/architecture.md §7)."""

from __future__ import annotations

from typing import Any

from meshsync.daemon.config import DaemonConfig


def build_methods(config: DaemonConfig, sync_port: int) -> list[Any]:
    """Discovery method objects in cascade order: mDNS, broadcast beacon, default
    gateway, static peers (only those named in ``config.discovery``)."""
    from meshsync.net.discovery import (
        BeaconDiscovery,
        GatewayProbe,
        MdnsDiscovery,
        StaticPeers,
    )

    methods: list[Any] = []
    if "mdns" in config.discovery:
        methods.append(MdnsDiscovery(interfaces=list(config.interfaces) or None))
    if "broadcast" in config.discovery:
        methods.append(BeaconDiscovery(port=config.beacon_port,
                                       interval_s=config.beacon_interval_s))
    if "gateway" in config.discovery:
        methods.append(GatewayProbe(port=config.listen[1] or sync_port,
                                    interval_s=config.anti_entropy_s))
    if "static" in config.discovery and config.static_peers:
        methods.append(StaticPeers(list(config.static_peers),
                                   interval_s=config.anti_entropy_s))
    return methods
