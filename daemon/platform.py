"""What only the host app knows about the phone (docs/android.md, docs/failure-cases.md B01, B03).

An Android app cannot read ``/proc/net/route``, cannot tell from Python whether the
phone is running a hotspot, and must hold a ``WifiManager.MulticastLock`` or the Wi-Fi
chip drops the mDNS packets (B03). :class:`PlatformHooks` lets the host answer those
questions; :func:`meshsync.daemon.embed.start` passes it to the daemon, which uses it
when it builds its discovery methods (:mod:`meshsync.daemon.discovery_setup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformHooks:
    """Host callbacks; every one is optional (``None``: the daemon's own default).

    The daemon calls them from a worker thread of its own (never the host's UI
    thread), so they may block briefly (a JNI call) but should return within a second
    or so. An exception raised by a hook counts as a failure of the discovery method
    that called it, which is retried with backoff.

    Attributes:
        default_gateway: ``() -> "192.168.43.1" | None``, the IPv4 address of the
            Wi-Fi network's default gateway (``DhcpInfo.gateway`` or
            ``LinkProperties.getRoutes()`` on Android), ``None`` when not on Wi-Fi.
            Replaces reading ``/proc/net/route``.
        interfaces: ``() -> ["wlan0"]`` or addresses (``["192.168.43.20"]``), the
            interfaces mDNS should use (the same entries as config ``interfaces``);
            read once at start. Replaces config ``interfaces`` when given.
        is_hotspot: ``() -> bool``, whether this phone runs the hotspot: it is then
            the gateway itself (B01), so the gateway probe reports nothing (it would
            dial itself) and the other phones find it through theirs.
        acquire_multicast, release_multicast: called around mDNS (B03): acquire
            before the first socket opens, release after the last one closed
            (``WifiManager.createMulticastLock(...).acquire()`` / ``.release()``).
            Give both or neither; each acquire is matched by exactly one release,
            also when mDNS fails and is restarted.
    """

    default_gateway: Callable[[], str | None] | None = None
    interfaces: Callable[[], Sequence[str]] | None = None
    is_hotspot: Callable[[], bool] | None = None
    acquire_multicast: Callable[[], None] | None = None
    release_multicast: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if (self.acquire_multicast is None) != (self.release_multicast is None):
            raise ValueError("PlatformHooks: give acquire_multicast and release_multicast "
                             "together, or neither")
