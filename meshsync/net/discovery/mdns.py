"""DNS-SD over mDNS (docs/architecture.md §7): announce this node and find peers, one
python-zeroconf instance per link (see :mod:`~meshsync.net.discovery.responder` for why
and for threads).

The trio side never blocks: registration, updates and shutdown run in worker threads
(calling ``register_service`` on the trio thread froze trio for 1.5 s, docs/architecture.md §11),
and browser results come back through a :class:`trio.lowlevel.TrioToken` captured in
:meth:`MdnsDiscovery.run` into a bounded channel drained by a task, so the daemon's
``found`` runs in a task on the trio thread, never on a zeroconf thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass, field
from functools import partial

import trio

from meshsync.model.errors import DecodeError, UsageError
from meshsync.net.discovery.budget import AdvertBudget
from meshsync.net.discovery.codec import advert_from_txt
from meshsync.net.discovery.interfaces import (
    Link,
    advertised_addresses,
    dial_hosts,
    read_links,
    select_links,
)
from meshsync.net.discovery.model import (
    SERVICE_TYPE,
    Advert,
    AdvertSource,
    Candidate,
    FoundCallback,
)
from meshsync.net.discovery.responder import LinkResponder, NameClash, ServiceRecord

log = logging.getLogger("meshsync.discovery")

#: Browser results waiting for the trio task; more are dropped (and counted).
QUEUE_MAX = 256
#: RFC 6762 §6.2: a record is multicast at most once per second on a link.
MIN_UPDATE_GAP_S = 1.0
#: After keeping a contested name, re-announce once the loser's goodbyes are out
#: (they also withdraw the shared PTR record, RFC 6762 §10.1).
REANNOUNCE_AFTER_CLASH_S = 2.0
_MAX_INSTANCE_BYTES = 50  # RFC 6763 §4.1.1 allows 63; leave room for a rename suffix


@dataclass
class _LinkState:
    link: Link
    responder: LinkResponder
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    closed: trio.Event = field(default_factory=trio.Event)
    instance: str | None = None
    clash: frozenset[str] = frozenset()
    clashes_answered: frozenset[str] = frozenset()
    renames: int = 0
    last_update: float = float("-inf")


#: Resolved service records decoded a second at most; the rest of a flood is dropped.
MAX_RECORDS_PER_S = 200.0


class MdnsDiscovery:
    """Announce ``_meshsync._tcp.local.`` and report same-mesh peers (RFC 6762, 6763).

    Args:
        interfaces: interface names and/or addresses to use (see
            :func:`~meshsync.net.discovery.interfaces.select_links`); ``None`` or empty:
            every non-loopback interface with IPv4. Interfaces without IPv4 are not used.
        instance_name: DNS-SD instance name (RFC 6763 §4.1.1), 1-50 UTF-8 bytes, no
            dots or control characters; default ``meshsync-<device id prefix>``.
        poll_s: seconds between interface polls and name-conflict checks.
        probe: ``False`` skips RFC 6762 §8.1 probing (tests use it to play a device
            whose probes were lost, B06).
        retry_max_s: longest wait before retrying a link that failed.

    Names (B06): probing renames on a conflict it sees (zeroconf's
    ``allow_name_change``: ``x`` -> ``x-2``). A conflict that appears later (a device
    that registered while its Wi-Fi was down) is found in the TXT records that reach
    the cache (RFC 6762 §9); the device with the greater device id renames to
    ``<name>-<id prefix>``, the other keeps its name and re-announces once. A link
    whose addresses or carrier changed is re-probed from scratch (§8.1).

    Limits: Linux delivers multicast to every socket of the group regardless of
    interface (``IP_MULTICAST_ALL``), so on a multi-homed host each link's responder
    also hears the others; answers still leave on their own link only, with that
    link's addresses, but instance names may differ per link. IPv6-only links are
    not served; link-local IPv6 is never announced.

    Floods (issue 14): at most :data:`MAX_RECORDS_PER_S` resolved records a second
    are decoded and reported; the rest are counted (``over_budget``) and dropped, as
    are records past the bounded channel from zeroconf's threads (``dropped``).
    """

    name = "mdns"

    def __init__(self, interfaces: list[str] | None = None, *, instance_name: str | None = None,
                 poll_s: float = 5.0, probe: bool = True, retry_max_s: float = 300.0) -> None:
        if instance_name is not None:
            _check_instance(instance_name)
        self.interfaces = list(interfaces) if interfaces else None
        self.instance_name, self.poll_s, self.probe = instance_name, poll_s, probe
        self.retry_max_s = retry_max_s
        self._links: dict[str, _LinkState] = {}
        self._failures: dict[str, tuple[int, float]] = {}  # link -> (count, retry at)
        self._counts = dict.fromkeys(("registrations", "resolved", "reported", "own",
                                      "other_mesh", "malformed", "dropped", "updates",
                                      "renames", "link_errors", "over_budget"), 0)
        self._last_link_error: str | None = None
        self._budget = AdvertBudget(MAX_RECORDS_PER_S)

    def statistics(self) -> dict[str, object]:
        """Counters, last link error and, per link, the registered instance name."""
        links = {name: {"instance": st.instance, "addresses": advertised_addresses(st.link)}
                 for name, st in self._links.items()}
        return {**self._counts, "links": links, "last_link_error": self._last_link_error}

    async def run(self, advert: AdvertSource, found: FoundCallback, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve every selected link until cancelled; ``started()`` once the links
        present at start are open (browsing; registration continues in the background).

        A link that fails is logged and retried with backoff, and never stops the
        others. On cancellation every responder sends its goodbyes and its threads stop
        before this returns.
        """
        token = trio.lowlevel.current_trio_token()
        send, recv = trio.open_memory_channel[object](QUEUE_MAX)
        post = partial(self._post_from_thread, token, send)
        with send, recv:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume, recv, advert, found)
                await self._reconcile(nursery, advert, post)
                task_status.started()
                while True:
                    await trio.sleep(self.poll_s)
                    await self._reconcile(nursery, advert, post)

    # -- links ------------------------------------------------------------------------

    async def _reconcile(self, nursery: trio.Nursery, advert: AdvertSource,
                         post: partial[None]) -> None:
        wanted = {link.name: link for link in select_links(read_links(), self.interfaces)
                  if link.ipv4}
        for name, state in list(self._links.items()):
            if wanted.get(name) != state.link:
                log.info("mdns: %s changed (addresses or carrier); re-probing", name)
                del self._links[name]
                state.scope.cancel()
                await state.closed.wait()  # its goodbyes first, or we would clash with it
        now = trio.current_time()
        for name, link in wanted.items():
            if name in self._links or self._failures.get(name, (0, now))[1] > now:
                continue
            responder = LinkResponder(link, post)
            try:
                await trio.to_thread.run_sync(responder.open)
            except Exception as exc:
                self._link_failed(name, exc)
                continue
            state = _LinkState(link, responder)
            self._links[name] = state
            nursery.start_soon(self._serve_link, state, advert)

    async def _serve_link(self, state: _LinkState, advert: AdvertSource) -> None:
        try:
            with state.scope:
                await self._announce(state, advert)
        except Exception as exc:
            self._link_failed(state.link.name, exc)
        finally:
            if self._links.get(state.link.name) is state:
                del self._links[state.link.name]
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(state.responder.close)
            state.closed.set()

    async def _announce(self, state: _LinkState, advert: AdvertSource) -> None:
        announced = advert.current()
        base = self.instance_name or _default_instance(announced)
        register = partial(state.responder.register, announced, base, probe=self.probe)
        state.instance = await trio.to_thread.run_sync(register)
        self._counts["registrations"] += 1
        self._failures.pop(state.link.name, None)
        log.info("mdns: registered %r on %s", state.instance, state.link.name)
        while True:
            with trio.move_on_after(self.poll_s):
                await advert.wait_changed(announced)
            clash, state.clash = state.clash | state.responder.foreign_ids(), frozenset()
            if clash:
                await self._settle_clash(state, clash, announced, base)
            if advert.current() != announced:
                await trio.sleep_until(state.last_update + MIN_UPDATE_GAP_S)
                announced = advert.current()
                await self._update(state, announced)

    async def _update(self, state: _LinkState, advert: Advert) -> None:
        await trio.to_thread.run_sync(state.responder.update, advert)
        state.last_update = trio.current_time()
        self._counts["updates"] += 1

    async def _settle_clash(self, state: _LinkState, clash: frozenset[str], advert: Advert,
                            base: str) -> None:
        own = advert.device_id
        if min(clash) < own:  # the smallest device id keeps the name: exactly one side moves
            suffix = f"-{state.renames + 1}" if state.renames else ""
            new = f"{base}-{_label(own)[:6]}{suffix}"
            log.warning("mdns: %r on %s is also used by %s; renaming to %r", state.instance,
                        state.link.name, ", ".join(sorted(clash)), new)
            state.instance = await trio.to_thread.run_sync(state.responder.rename, advert, new)
            state.renames += 1
            self._counts["renames"] += 1
            log.info("mdns: registered %r on %s", state.instance, state.link.name)
        elif not clash <= state.clashes_answered:
            log.warning("mdns: %r on %s is also used by %s; keeping it", state.instance,
                        state.link.name, ", ".join(sorted(clash)))
            state.clashes_answered |= clash
            await trio.sleep(REANNOUNCE_AFTER_CLASH_S)
            await self._update(state, advert)

    def _link_failed(self, name: str, exc: Exception) -> None:
        count = self._failures.get(name, (0, 0.0))[0] + 1
        delay = min(self.retry_max_s, self.poll_s * 2.0 ** (count - 1))
        self._failures[name] = (count, trio.current_time() + delay)
        self._counts["link_errors"] += 1
        self._last_link_error = f"{name}: {exc!r}"
        log.warning("mdns: link %s failed (%r); retrying in %.0f s", name, exc, delay,
                    exc_info=not isinstance(exc, OSError))

    # -- browser results ----------------------------------------------------------------

    def _post_from_thread(self, token: trio.lowlevel.TrioToken,
                          send: trio.MemorySendChannel[object], event: object) -> None:
        """Called on a zeroconf thread: queue ``event`` for the trio task."""
        with contextlib.suppress(trio.RunFinishedError):  # trio is gone: nobody to tell
            token.run_sync_soon(self._deliver, send, event)

    def _deliver(self, send: trio.MemorySendChannel[object], event: object) -> None:
        """Runs on the trio thread outside any task: must never raise."""
        try:
            send.send_nowait(event)
        except trio.WouldBlock:
            self._counts["dropped"] += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _consume(self, recv: trio.MemoryReceiveChannel[object], advert: AdvertSource,
                       found: FoundCallback) -> None:
        async for event in recv:
            if isinstance(event, NameClash):
                state = self._links.get(event.link)
                if state is not None and state.instance is not None and (
                        event.name.lower() == f"{state.instance}.{SERVICE_TYPE}".lower()):
                    state.clash |= event.device_ids
            elif isinstance(event, ServiceRecord):
                if self._budget.take(trio.current_time()):
                    self._report(event, advert.current(), found)
                else:
                    self._counts["over_budget"] += 1

    def _report(self, record: ServiceRecord, own: Advert, found: FoundCallback) -> None:
        self._counts["resolved"] += 1
        try:
            peer = advert_from_txt(record.properties, record.port)
        except DecodeError as exc:
            self._counts["malformed"] += 1
            log.debug("mdns: ignoring %s: %s", record.name, exc)
            return
        if peer.device_id == own.device_id:
            self._counts["own"] += 1
            return
        if peer.mesh != own.mesh:
            self._counts["other_mesh"] += 1
            return
        names = _index_names() if any("%" in a for a in record.addresses) else {}
        for host, interface in dial_hosts(record.addresses, names):
            self._counts["reported"] += 1
            found(Candidate(host, peer.port, "mdns", peer.device_id, peer.mesh, peer.role,
                            peer.digest, interface or record.link, peer.proto))


def _index_names() -> dict[int, str]:
    return dict(socket.if_nameindex())


def _label(text: str) -> str:
    return text.replace(".", "-")


def _default_instance(advert: Advert) -> str:
    return f"meshsync-{_label(advert.device_id)[:12]}"


def _check_instance(name: str) -> None:
    if not name or len(name.encode()) > _MAX_INSTANCE_BYTES or "." in name or any(
            ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UsageError(f"mdns instance name must be 1-{_MAX_INSTANCE_BYTES} UTF-8 bytes "
                         f"without dots or control characters (got {name!r})")
