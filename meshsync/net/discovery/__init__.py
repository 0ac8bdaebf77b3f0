"""Peer discovery: the cascade of docs/architecture.md §7, as a library for the daemon.

Four methods, each a :class:`DiscoveryMethod` that announces the node's
:class:`Advert` (read from an :class:`AdvertSource`, e.g. an :class:`AdvertBoard`)
and reports :class:`Candidate` peers through a synchronous callback on the trio
thread:

* :class:`MdnsDiscovery`: DNS-SD over mDNS (RFC 6762/6763), one python-zeroconf
  instance per link;
* :class:`BeaconDiscovery`: a UDP broadcast beacon, for networks that drop multicast;
* :class:`GatewayProbe`: the default-route gateway (often the hotspot laptop, B01);
* :class:`StaticPeers`: configured addresses.

:func:`run_cascade` runs them all, restarting any that fails, and hands back a
:class:`DiscoveryCascade` whose ``statistics()`` the status page shows::

    board = AdvertBoard(Advert(device_id, mesh, role, port, proto, digest))
    methods = [MdnsDiscovery(), BeaconDiscovery(7422), GatewayProbe(port),
               StaticPeers(peers)]
    cascade = await nursery.start(run_cascade, methods, board, peer_manager.found)
    ...
    board.set(dataclasses.replace(board.current(), digest=new_digest))
"""

from meshsync.net.discovery.beacon import BeaconDiscovery
from meshsync.net.discovery.cascade import DiscoveryCascade, MethodStatistics, run_cascade
from meshsync.net.discovery.codec import (
    advert_from_txt,
    advert_txt,
    decode_beacon,
    encode_beacon,
    parse_txt_rdata,
)
from meshsync.net.discovery.gateway import (
    GatewayProbe,
    GatewayRoute,
    StaticPeers,
    parse_default_gateway,
)
from meshsync.net.discovery.mdns import MdnsDiscovery
from meshsync.net.discovery.model import (
    SERVICE_TYPE,
    VIAS,
    Advert,
    AdvertBoard,
    AdvertSource,
    Candidate,
    DiscoveryMethod,
    FoundCallback,
)

__all__ = [
    "SERVICE_TYPE",
    "VIAS",
    "Advert",
    "AdvertBoard",
    "AdvertSource",
    "BeaconDiscovery",
    "Candidate",
    "DiscoveryCascade",
    "DiscoveryMethod",
    "FoundCallback",
    "GatewayProbe",
    "GatewayRoute",
    "MdnsDiscovery",
    "MethodStatistics",
    "StaticPeers",
    "advert_from_txt",
    "advert_txt",
    "decode_beacon",
    "encode_beacon",
    "parse_default_gateway",
    "parse_txt_rdata",
    "run_cascade",
]
