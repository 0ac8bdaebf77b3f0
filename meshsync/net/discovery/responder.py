"""One python-zeroconf instance pinned to one link: register, update, browse (B04).

python-zeroconf answers every query with every address of a ``ServiceInfo`` on every
interface it serves, and treats separate links as one namespace (zeroconf issue 54).
So :class:`~meshsync.net.discovery.mdns.MdnsDiscovery` runs one :class:`LinkResponder`
per link, each bound to that link's IPv4 addresses (``interfaces=`` pinning) and
announcing only that link's addresses.

Threads: ``open``, ``register``, ``update``, ``rename`` and ``close`` block (probing
takes ≈ 1.2 s, docs/architecture.md §11) and must run in a worker thread
(``trio.to_thread.run_sync``). Each instance runs two threads of its own: zeroconf's
event loop and the ServiceBrowser thread, where :meth:`LinkResponder._on_change`
resolves a service (a blocking query of at most :data:`RESOLVE_TIMEOUT_MS`) and hands
a plain :class:`ServiceRecord` or :class:`NameClash` to ``post``, which must be
thread-safe. ``close`` stops both threads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)

from meshsync.model.errors import DecodeError, UsageError
from meshsync.net.discovery.codec import TXT_ID, advert_txt, parse_txt_rdata
from meshsync.net.discovery.interfaces import Link, advertised_addresses
from meshsync.net.discovery.model import SERVICE_TYPE, Advert

log = logging.getLogger("meshsync.discovery")

#: How long the browser thread waits for a service's SRV/TXT/A records.
RESOLVE_TIMEOUT_MS = 2000
_TYPE_TXT, _CLASS_IN = 16, 1  # RFC 1035 §3.2.2, §3.2.4


@dataclass(frozen=True)
class ServiceRecord:
    """A resolved DNS-SD instance (RFC 6763 §4-§6), copied off the zeroconf thread.

    ``addresses`` are as ``ServiceInfo.parsed_scoped_addresses()`` gives them;
    ``link`` is the interface whose responder heard it.
    """

    name: str
    port: int
    properties: Mapping[bytes, bytes | None]
    addresses: tuple[str, ...]
    link: str


@dataclass(frozen=True)
class NameClash:
    """Another device announces our instance ``name`` on ``link`` (RFC 6762 §9)."""

    link: str
    name: str
    device_ids: frozenset[str]


def host_name(device_id: str) -> str:
    """The mDNS host name of a device: unique per device, so two devices never share
    address records even when they share an instance name (B06)."""
    label = re.sub(r"[^a-z0-9-]", "-", device_id.lower())[:56]
    return f"ms-{label}.local."


def service_info(advert: Advert, instance: str, link: Link) -> ServiceInfo:
    """The DNS-SD records of ``advert`` on ``link``: PTR, SRV (port), TXT, A/AAAA."""
    return ServiceInfo(SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}", port=advert.port,
                       properties=advert_txt(advert), server=host_name(advert.device_id),
                       parsed_addresses=advertised_addresses(link))


def instance_of(service_name: str) -> str:
    """``"x._meshsync._tcp.local."`` -> ``"x"``."""
    return service_name.removesuffix(f".{SERVICE_TYPE}")


class LinkResponder:
    """Announce one advert on one link and browse that link for peers.

    Args:
        link: the link, with at least one IPv4 address (zeroconf is run IPv4-only:
            link-local IPv6 answers lose their scope, B04).
        post: thread-safe callable receiving :class:`ServiceRecord` and
            :class:`NameClash` objects from the browser thread.

    Raises:
        UsageError: the link has no IPv4 address.
    """

    def __init__(self, link: Link, post: Callable[[object], None]) -> None:
        if not link.ipv4:
            raise UsageError(f"link {link.name} has no IPv4 address")
        self.link = link
        self._post = post
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None

    @property
    def instance(self) -> str | None:
        """The registered instance name (after any rename), or ``None``."""
        info = self._info
        return None if info is None else instance_of(info.name)

    def open(self) -> None:
        """Open the sockets and start browsing. Raises ``OSError`` (and zeroconf's
        errors) when the link cannot do multicast."""
        self._zc = Zeroconf(interfaces=[str(a.ip) for a in self.link.ipv4],
                            ip_version=IPVersion.V4Only, use_asyncio=False)
        try:
            self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._on_change])
        except BaseException:
            self._zc.close()
            raise

    def register(self, advert: Advert, instance: str, *, probe: bool = True) -> str:
        """Probe for ``instance`` (RFC 6762 §8.1), then announce it (§8.3).

        With ``allow_name_change`` zeroconf renames on a conflict seen while probing
        (``x`` -> ``x-2``). ``probe=False`` skips probing (zeroconf's
        ``cooperating_responders``). Returns the instance name actually registered.
        """
        assert self._zc is not None
        info = service_info(advert, instance, self.link)
        self._zc.register_service(info, allow_name_change=True,
                                  cooperating_responders=not probe)
        self._info = info
        return instance_of(info.name)

    def update(self, advert: Advert) -> None:
        """Announce changed records under the registered name (RFC 6762 §8.4)."""
        assert self._zc is not None and self._info is not None
        info = service_info(advert, instance_of(self._info.name), self.link)
        self._zc.update_service(info)
        self._info = info

    def rename(self, advert: Advert, instance: str) -> str:
        """Withdraw the current name (goodbye, RFC 6762 §10.1), register ``instance``."""
        assert self._zc is not None
        if self._info is not None:
            self._zc.unregister_service(self._info)
            self._info = None
        return self.register(advert, instance)

    def foreign_ids(self) -> frozenset[str]:
        """Device ids of *other* devices whose live TXT records use our instance name.

        Reads zeroconf's cache (a copy under the GIL, no I/O): safe from any thread.
        """
        info, zc = self._info, self._zc
        if info is None or zc is None:
            return frozenset()
        own = advert_txt_id(info)
        now = current_time_millis()
        ids = set()
        for record in zc.cache.get_all_by_details(info.name, _TYPE_TXT, _CLASS_IN):
            text = getattr(record, "text", None)
            if record.is_expired(now) or not isinstance(text, bytes):
                continue
            try:
                value = parse_txt_rdata(text).get(TXT_ID.encode())
            except DecodeError:
                continue
            if value and value.decode("utf-8", "replace") != own:
                ids.add(value.decode("utf-8", "replace"))
        return frozenset(ids)

    def close(self) -> None:
        """Stop browsing, send goodbyes (RFC 6762 §10.1), stop zeroconf's threads."""
        if self._browser is not None:
            self._browser.cancel()
            self._browser = None
        if self._zc is not None:
            self._zc.close()
            self._zc = None

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        """ServiceBrowser handler (browser thread). Removals are not reported: silence
        on multicast never drops a peer (B03)."""
        if state_change is ServiceStateChange.Removed:
            return
        try:
            own = self._info
            if own is not None and name.lower() == own.name.lower():
                clash = self.foreign_ids()
                if clash:
                    self._post(NameClash(self.link.name, own.name, clash))
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
            if info is not None and info.port:
                self._post(ServiceRecord(name, info.port, dict(info.properties),
                                         tuple(info.parsed_scoped_addresses()),
                                         self.link.name))
        except Exception:  # a zeroconf thread must never die on our account
            log.warning("mdns: handling %s on %s failed", name, self.link.name,
                        exc_info=True)


def advert_txt_id(info: ServiceInfo) -> str:
    """The ``id`` TXT value of one of our own ServiceInfos."""
    value = info.properties.get(TXT_ID.encode())
    return "" if value is None else value.decode("utf-8", "replace")
