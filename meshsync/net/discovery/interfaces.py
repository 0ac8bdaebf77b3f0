"""Which interfaces and addresses this host has, and which of them discovery uses.

:func:`read_links` is the only I/O here (``getifaddrs`` through ``ifaddr``, which
python-zeroconf already depends on, plus one small sysfs read per interface; about
0.2 ms in all, cheap enough to poll every few seconds). Everything else is pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import ifaddr

IPv4If = ipaddress.IPv4Interface
IPv6If = ipaddress.IPv6Interface


@dataclass(frozen=True)
class Link:
    """One network interface and its addresses, as seen at one poll.

    Attributes:
        name: interface name (``wlan0``, ``lo``).
        index: interface index (the scope id of its IPv6 link-local addresses).
        ipv4: its IPv4 addresses with prefix length.
        ipv6: its IPv6 addresses with prefix length.
        carrier_changes: Linux's counter of carrier up/down events
            (``/sys/class/net/NAME/carrier_changes``), ``None`` if unreadable. A change
            means the link went down and up again (RFC 6762 §8.1: re-probe on any
            "link change"), even when the addresses stayed the same.
    """

    name: str
    index: int
    ipv4: tuple[IPv4If, ...]
    ipv6: tuple[IPv6If, ...]
    carrier_changes: int | None = None


def read_links(sysfs: Path = Path("/sys/class/net")) -> tuple[Link, ...]:
    """Every interface with at least one address, in index order. Never raises for a
    missing sysfs (``carrier_changes`` is then ``None``)."""
    links = []
    for adapter in ifaddr.get_adapters():
        v4 = tuple(IPv4If(f"{ip.ip}/{ip.network_prefix}") for ip in adapter.ips
                   if isinstance(ip.ip, str))
        v6 = tuple(IPv6If(f"{ip.ip[0]}/{ip.network_prefix}") for ip in adapter.ips
                   if isinstance(ip.ip, tuple))
        if v4 or v6:
            links.append(Link(adapter.nice_name, adapter.index or 0, v4, v6,
                              _carrier_changes(sysfs / adapter.nice_name)))
    return tuple(sorted(links, key=lambda link: link.index))


def _carrier_changes(path: Path) -> int | None:
    try:
        return int((path / "carrier_changes").read_text())
    except (OSError, ValueError):
        return None


def select_links(links: Sequence[Link], wanted: Sequence[str] | None) -> tuple[Link, ...]:
    """The links discovery should use.

    ``wanted=None``: every link with an IPv4 address that is not loopback.
    Otherwise each entry is an interface name (``"wlan0"``: all its addresses) or an
    IP address (``"192.168.8.2"``: only that address, on the link that holds it), so a
    laptop can keep its uplink out of field discovery (B04). Entries that match
    nothing now are skipped (the interface may come up later).
    """
    if wanted is None:
        return tuple(link for link in links
                     if any(not a.ip.is_loopback for a in link.ipv4))
    chosen: dict[str, Link] = {}
    for entry in wanted:
        for link in links:
            picked = _pick(link, entry)
            if picked is not None:
                old = chosen.get(link.name)
                chosen[link.name] = picked if old is None else _merge(old, picked)
    return tuple(chosen[link.name] for link in links if link.name in chosen)


def _pick(link: Link, entry: str) -> Link | None:
    if entry == link.name:
        return link
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return None
    v4 = tuple(a for a in link.ipv4 if a.ip == address)
    v6 = tuple(a for a in link.ipv6 if a.ip == address)
    return replace(link, ipv4=v4, ipv6=v6) if v4 or v6 else None


def _merge(a: Link, b: Link) -> Link:
    return replace(a, ipv4=tuple(dict.fromkeys(a.ipv4 + b.ipv4)),
                   ipv6=tuple(dict.fromkeys(a.ipv6 + b.ipv6)))


def advertised_addresses(link: Link) -> list[str]:
    """Addresses to put in this link's A/AAAA records: its IPv4 addresses first, then
    its routable IPv6 ones.

    IPv6 link-local addresses are left out: an address record carries no scope, a
    receiver on an IPv4 socket cannot attach one (python-zeroconf issue 1361, B04),
    and Android hotspots drop link-local traffic (B01). Only this link's addresses are
    listed, never another interface's (B04).
    """
    v6 = [str(a.ip) for a in link.ipv6 if not a.ip.is_link_local]
    return [str(a.ip) for a in link.ipv4] + v6


def broadcast_targets(links: Sequence[Link]) -> list[str]:
    """Directed-broadcast address of each non-loopback IPv4 subnet (RFC 919/922).

    /31 and /32 subnets (point-to-point links, cellular) have no broadcast address and
    are skipped. The limited broadcast 255.255.255.255 is not used: Linux sends it out
    of one interface only.
    """
    targets: list[str] = []
    for link in links:
        for a in link.ipv4:
            if not a.ip.is_loopback and a.network.prefixlen <= 30:
                targets.append(str(a.network.broadcast_address))
    return list(dict.fromkeys(targets))


def dial_hosts(addresses: Sequence[str],
               names_by_index: Mapping[int, str]) -> list[tuple[str, str | None]]:
    """Turn resolved addresses into ``(host, interface)`` pairs worth dialling.

    ``addresses`` are as python-zeroconf's ``parsed_scoped_addresses()`` gives them
    (``"192.168.8.2"``, ``"fd00::2"``, ``"fe80::1%3"``). IPv4 comes first (B01: IPv6
    link-local is often blocked on hotspots). A link-local IPv6 address is kept only
    with a scope that names a known interface, and is then written ``fe80::1%wlan0``;
    without one it is skipped rather than dialled into "invalid argument" (B04).
    Unparseable, unspecified and multicast addresses are skipped.
    """
    v4: list[tuple[str, str | None]] = []
    v6: list[tuple[str, str | None]] = []
    for text in addresses:
        bare, _, scope = text.partition("%")
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast:
            continue
        if ip.version == 4:
            v4.append((str(ip), None))
        elif not ip.is_link_local:
            v6.append((str(ip), None))
        else:
            name = names_by_index.get(int(scope)) if scope.isdigit() else None
            if name is None and scope in names_by_index.values():
                name = scope
            if name is not None:
                v6.append((f"{ip}%{name}", name))
    return list(dict.fromkeys(v4 + v6))
