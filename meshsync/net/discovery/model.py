"""What discovery announces (:class:`Advert`), what it reports (:class:`Candidate`), and
the contract every discovery method keeps (:class:`DiscoveryMethod`).

Everything here is plain data checked on construction (as h11's and wsproto's events
are): a bad value made
locally raises :class:`~meshsync.model.errors.UsageError`; the decoders in
:mod:`meshsync.net.discovery.codec` turn the same checks on received data into
:class:`~meshsync.model.errors.DecodeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from meshsync.model.errors import UsageError

#: DNS-SD service type (RFC 6763 §7: ``_service._proto``; §7.2: name ≤ 15 characters).
SERVICE_TYPE = "_meshsync._tcp.local."

#: How a candidate was learned, in cascade order (docs/architecture.md §7).
#: How a candidate was found; "uplink" is a central server from the daemon's own
#: configuration (``uplink``), offered to its peer manager like a static peer.
VIAS = ("mdns", "broadcast", "gateway", "static", "uplink")

# Device ids are base32 (identity.device_id); mesh ids come from the config file.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_DIGEST = re.compile(r"[0-9a-f]{0,64}")


def advert_problem(device_id: object, mesh: object, role: object, port: object,
                   proto: object, digest: object) -> str | None:
    """Why these advert fields are not acceptable, or ``None`` when they are.

    Shared by :class:`Advert` (local values) and the decoders (received values), so
    both sides agree on what a valid advert is. Bounds keep every advert well inside
    one TXT record (RFC 6763 §6.2: ≤ 200 bytes is typical) and one beacon datagram.
    """
    checks: list[tuple[bool, str]] = [
        (isinstance(device_id, str) and _NAME.fullmatch(device_id) is not None,
         f"device id must be 1-64 letters, digits or ._:/- (got {device_id!r})"),
        (isinstance(mesh, str) and _NAME.fullmatch(mesh) is not None,
         f"mesh id must be 1-64 letters, digits or ._:/- (got {mesh!r})"),
        (isinstance(role, str) and _ROLE.fullmatch(role) is not None,
         f"role must be 1-32 lower-case letters, digits, _ or - (got {role!r})"),
        (_is_int(port) and 1 <= port <= 65535,  # type: ignore[operator]
         f"port must be 1-65535 (got {port!r})"),
        (_is_int(proto) and 0 <= proto <= 65535,  # type: ignore[operator]
         f"proto must be 0-65535 (got {proto!r})"),
        (isinstance(digest, str) and _DIGEST.fullmatch(digest) is not None,
         f"digest must be 0-64 lower-case hex digits (got {digest!r})"),
    ]
    return next((message for ok, message in checks if not ok), None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Advert:
    """What this node announces: identity, mesh, role, sync port and state digest.

    Attributes:
        device_id: this device's id (:func:`meshsync.model.identity.device_id`).
        mesh: the mesh id; nodes only report peers of their own mesh.
        role: the certificate role, e.g. ``"pantarlih"`` or ``"gateway"``.
        port: TCP port of the sync listener (1-65535).
        proto: sync protocol version.
        digest: short lower-case hex digest of the version vector ("" if unknown);
            a peer whose digest changed has something new.

    Raises:
        UsageError: a field is out of the bounds given by :func:`advert_problem`.
    """

    device_id: str
    mesh: str
    role: str
    port: int
    proto: int
    digest: str

    def __post_init__(self) -> None:
        problem = advert_problem(self.device_id, self.mesh, self.role, self.port,
                                 self.proto, self.digest)
        if problem is not None:
            raise UsageError(f"advert: {problem}")


@dataclass(frozen=True)
class Candidate:
    """A possible peer to dial: an address and whatever the method learned about it.

    Attributes:
        host: an IP literal to dial; an IPv6 link-local address carries its scope as
            ``fe80::1%wlan0`` (getaddrinfo accepts that form), never without one (B04).
        port: the peer's sync port (1-65535).
        via: one of :data:`VIAS`.
        device_id, mesh, role, digest, proto: from the peer's advert when the method
            carries one (mDNS, beacon); ``None`` for gateway and static candidates.
        interface: the local interface the candidate was learned on, when known.

    Raises:
        UsageError: empty host, port out of range or unknown ``via``.
    """

    host: str
    port: int
    via: str
    device_id: str | None = None
    mesh: str | None = None
    role: str | None = None
    digest: str | None = None
    interface: str | None = None
    proto: int | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise UsageError("candidate: empty host")
        if not (_is_int(self.port) and 1 <= self.port <= 65535):
            raise UsageError(f"candidate: port must be 1-65535 (got {self.port!r})")
        if self.via not in VIAS:
            raise UsageError(f"candidate: via must be one of {VIAS} (got {self.via!r})")


FoundCallback = Callable[[Candidate], None]
"""The daemon's synchronous callback; methods call it on the trio thread only."""


class AdvertSource(Protocol):
    """Where methods read the current advert and wait for it to change."""

    def current(self) -> Advert:
        """The advert to announce now."""
        ...

    async def wait_changed(self, seen: Advert | None = None) -> Advert:
        """Return the current advert once it differs from ``seen`` (at once if it does)."""
        ...


class AdvertBoard:
    """The :class:`AdvertSource` the daemon owns: ``set()`` wakes every waiter.

    Use from the trio thread only. Passing the advert a waiter last acted on to
    :meth:`wait_changed` closes the race where ``set()`` runs while the waiter is busy.
    """

    def __init__(self, advert: Advert) -> None:
        self._advert = advert
        self._changed = trio.Event()

    def current(self) -> Advert:
        """The advert to announce now."""
        return self._advert

    def set(self, advert: Advert) -> None:
        """Replace the advert; wakes waiters only if it differs from the current one."""
        if advert == self._advert:
            return
        self._advert = advert
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, seen: Advert | None = None) -> Advert:
        """Wait until the advert differs from ``seen`` (default: the current one).

        Returns the new advert. Returns at once when ``seen`` is given and is already
        out of date.
        """
        target = self._advert if seen is None else seen
        while self._advert == target:
            await self._changed.wait()
        return self._advert


class DiscoveryMethod(Protocol):
    """One way of finding peers. ``name`` keys its statistics in the cascade.

    ``run`` announces ``advert`` (re-announcing when it changes), reports candidates
    through ``found`` on the trio thread, calls ``task_status.started()`` once its
    sockets are open, and runs until cancelled. It raises (``OSError`` and the like)
    when it cannot work at all; :func:`~meshsync.net.discovery.cascade.run_cascade`
    then retries it with backoff. Methods may also offer ``statistics() ->
    dict[str, object]`` with counters of their own.
    """

    name: str

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = ...) -> None:
        """Run until cancelled (see the class docstring)."""
        ...
