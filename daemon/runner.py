"""The long-running node: sync listener, discovery, peer manager, local API, signals.

Process wiring only; the protocol lives in :mod:`meshsync.protocol.session`, the network in
:mod:`meshsync.net`. ``Daemon.run`` never returns until cancelled (SIGINT/SIGTERM in
``run_daemon`` on the main thread; :mod:`meshsync.daemon.embed` in an app), and on the
way out it closes listeners, finishes or aborts sessions and removes its runtime file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from meshsync.daemon.api import build_app, serve_api
from meshsync.daemon.config import DaemonConfig
from meshsync.daemon.event_sources import EventSources
from meshsync.daemon.peers import PeerManager
from meshsync.daemon.platform import PlatformHooks
from meshsync.daemon.service import LocalNode

from meshsync.host.clock import clock_json
from meshsync.host.enrol import Enrolment
from meshsync.host.files import write_private
from meshsync.host.home import Home
from meshsync.host.lock import hold_home
from meshsync.host.reserve import storage_status
from meshsync.host.wipe import Evidence, finish_wipe, revoked_self, write_evidence
from meshsync.model.change import FeedId
from meshsync.model.identity import device_id
from meshsync.net.discovery.cascade import DiscoveryCascade
from meshsync.net.discovery.model import Advert, AdvertBoard, Candidate
from meshsync.net.endpoints import Endpoint, serve_sync
from meshsync.net.registry import SessionRegistry
from meshsync.net.tls import client_context, server_context
from meshsync.protocol.events import SessionSummary
from meshsync.replica.share import pending_changes

log = logging.getLogger("meshsync.daemon")

TOKEN_FILE = "api.token"  # noqa: S105 - a file name, not a secret
RUNTIME_FILE = "daemon.json"
UPLINK_POLL_S = 5.0
#: Seconds between two looks at the sessions in flight (``sync.progress`` events).
PROGRESS_EVENT_S = 0.5


def api_token(home: Home) -> str:
    """The home's API token, created (mode 0600) on first use."""
    path = home.path / TOKEN_FILE
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path.read_text().strip()


class Daemon(LocalNode):
    """One running node. Build with :func:`meshsync.net.setup.open_endpoint`'s endpoint."""

    def __init__(self, home: Home, config: DaemonConfig, endpoint: Endpoint,
                 platform: PlatformHooks | None = None) -> None:
        super().__init__(home, endpoint.node, endpoint.limiter)
        self.config, self.endpoint, self.platform = config, endpoint, platform
        endpoint.registry = SessionRegistry(self.node.key.public_key)
        endpoint.on_summary = self._on_summary
        endpoint.limits = config.limits()
        self.manager = PeerManager(endpoint, config.mesh, anti_entropy_s=config.anti_entropy_s,
                                   backoff_min_s=config.backoff_min_s,
                                   backoff_max_s=config.backoff_max_s)
        # a peer that only connected to us is dialled at our own listen port (one mesh,
        # one setting; port 0 in tests: the default)
        self.manager.inbound_port = config.listen[1] or self.manager.inbound_port
        self.clock_warnings: list[str] = []
        #: The clock warnings of each peer's last session (device id -> lines).
        self.peer_warnings: dict[str, list[str]] = {}
        self.peer_vvs: dict[str, dict[FeedId, int]] = {}
        self.listen_address: tuple[str, int] | None = None
        self.api_address = ""  # "HOST:PORT" once the API is bound
        self._cascade: DiscoveryCascade | None = None
        self._board: AdvertBoard | None = None
        self.sources = EventSources(self.events)
        self.manager.on_dial = self.sources.dialled
        self.manager.on_session = self._session_ended
        self.manager.on_dial_failed = self.sources.dial_failed
        #: Set once this device learns its own revocation; serve_daemon then stops and
        #: wipes the home (meshsync.host.wipe), ``evidence`` being its own changes.
        self.revoked = trio.Event()
        self.evidence: Evidence | None = None

    # -- events ------------------------------------------------------------------

    def _on_summary(self, direction: str, address: tuple[str, int],
                    summary: SessionSummary) -> None:
        self.manager.session_finished(direction, address, summary)

    def _session_ended(self, direction: str, summary: SessionSummary) -> None:
        """Any session ended, dialled or accepted (the peer manager's ``on_session``)."""
        self._after_session(summary)
        self.sources.session(direction, summary)

    def _after_session(self, summary: SessionSummary) -> None:
        if summary.peer and summary.peer_vv:
            self.peer_vvs[device_id(summary.peer)] = summary.peer_vv
        if summary.peer and summary.error is None:
            self.peer_warnings[device_id(summary.peer)] = list(summary.clock_warnings)
        for warning in summary.clock_warnings:
            if warning not in self.clock_warnings:
                self.clock_warnings = [*self.clock_warnings[-19:], warning]

    def sync_now(self) -> list[dict[str, Any]]:
        """See :meth:`NodeService.sync_now`."""
        return self.manager.sync_all()

    def switch_key(self, done: Enrolment) -> None:
        """After an enrolment (worker thread): sign with the new key if the device
        switched keys, and present the installed certificate in new TLS sessions."""
        super().switch_key(done)
        self.endpoint.client_ctx = client_context(self.home)
        self.endpoint.server_ctx = server_context(self.home)
        if done.new_key is not None and self.endpoint.registry is not None:
            self.endpoint.registry.own_key = done.new_key.public_key
            self.manager.own_id = done.new_key.device_id

    # -- reading ------------------------------------------------------------------

    def _pending(self, dev: str | None) -> int | None:
        """Changes held here that peer ``dev`` lacked at its last session (None if it
        never synced): the share policy's count (whole partition segments)."""
        vv = self.peer_vvs.get(dev or "")
        return None if vv is None else pending_changes(self.counts.vv, vv)

    def peers(self) -> list[dict[str, Any]]:
        """See :meth:`NodeService.peers`."""
        rows = self.manager.snapshot()
        for row in rows:
            row["pending"] = self._pending(row["device_id"])
            row["to_receive"] = self._to_receive(row["device_id"])
            row["clock_warnings"] = self.peer_warnings.get(row["device_id"] or "", [])
        return rows

    def _to_receive(self, dev: str | None) -> int | None:
        """Changes peer ``dev`` held at its last session that this node still lacks
        (None if it never synced)."""
        vv = self.peer_vvs.get(dev or "")
        return None if vv is None else pending_changes(vv, self.counts.vv)

    def _uplink_status(self) -> dict[str, Any] | None:
        if not self.config.uplink:
            return None
        targets = set(self.config.uplink)
        peers = [p for p in self.manager.peers.values() if targets & set(p.addresses)]
        now = self.manager.clock()
        last_ok = max((p.last_ok_ms for p in peers), default=0)
        failing = [p for p in peers if p.failures]
        state = "down" if failing or not last_ok else "up"
        return {"targets": [f"{h}:{p}" for h, p in self.config.uplink], "state": state,
                "last_sync_ms": last_ok or None,
                "last_error": failing[0].last_error if failing else None,
                "retry_in_s": max(0, min(p.next_try_ms for p in failing) - now) / 1000
                if failing else None}

    async def _uplinks(self) -> None:
        """Offer the uplinks to the peer manager; re-probe at once when the network
        interfaces change (a modem plugged in, Wi-Fi joined: docs/architecture.md §8)."""
        from meshsync.net.discovery.interfaces import read_links

        links = read_links()
        next_offer = 0.0
        while True:
            if trio.current_time() >= next_offer:
                for host, port in self.config.uplink:
                    self.manager.found(Candidate(host=host, port=port, via="uplink"))
                next_offer = trio.current_time() + self.config.anti_entropy_s
            await trio.sleep(UPLINK_POLL_S)
            now_links = read_links()
            if now_links != links:
                links = now_links
                log.info("network interfaces changed; probing the uplink now")
                self.manager.reprobe(set(self.config.uplink))

    def _discovery_stats(self) -> list[dict[str, Any]]:
        if self._cascade is None:
            return []
        return [dataclasses.asdict(s) for s in self._cascade.statistics().values()]

    def status(self) -> dict[str, Any]:
        """See :meth:`NodeService.status`."""
        c = self.counts
        return {
            "device_id": self.node.key.device_id, "role": self.endpoint.config.role,
            "mesh": self.config.mesh, "share": self.endpoint.config.share_scope,
            "diagnosis": self.manager.diagnosis(), "peers": len(self.manager.peers),
            "sessions": self.manager.sessions_total, "changes": c.changes,
            "conflicts": c.conflicts, "records_per_partition": c.per_partition,
            "digest": c.digest, "clock_warnings": self.clock_warnings,
            "listen": f"{self.listen_address[0]}:{self.listen_address[1]}"
            if self.listen_address else None,
            "uplink": self._uplink_status(), "discovery": self._discovery_stats(),
            "custody": self.custody, "storage": storage_status(self.node),
            "clock": clock_json(self.node), "progress": self.in_flight(),
        }

    def in_flight(self) -> list[dict[str, Any]]:
        """The sessions running now, each :meth:`SessionSummary.progress
        <meshsync.protocol.events.SessionSummary.progress>` with its ``direction``."""
        return [{**summary.progress(), "direction": direction}
                for (_peer, direction), summary in list(self.endpoint.in_flight.items())]

    # -- running ------------------------------------------------------------------

    async def _refresh(self) -> None:
        await trio.to_thread.run_sync(self.refresh, limiter=self.limiter)
        self.sources.state(self.counts.conflicts, self._uplink_status(), self.custody)
        if self._board is not None and self._board.current() != self._advert():
            self._board.set(self._advert())

    def _advert(self) -> Advert:
        from meshsync.protocol.frames import PROTOCOL_VERSION

        assert self.listen_address is not None
        return Advert(device_id=self.node.key.device_id, mesh=self.config.mesh,
                      role=self.endpoint.config.role, port=self.listen_address[1],
                      proto=PROTOCOL_VERSION, digest=self.counts.digest)

    async def _discovery(self) -> None:
        from meshsync.daemon.discovery_setup import build_methods

        from meshsync.net.discovery import run_cascade

        assert self.listen_address is not None
        methods = build_methods(self.config, self.listen_address[1], self.platform)
        if not methods:
            return
        self._board = AdvertBoard(self._advert())
        async with trio.open_nursery() as nursery:
            self._cascade = await nursery.start(run_cascade, methods, self._board,
                                                self.manager.found)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start everything, call ``task_status.started()``, run until cancelled."""
        token = api_token(self.home)
        async with trio.open_nursery() as nursery:
            host, port = self.config.listen
            try:
                listeners = await nursery.start(serve_sync, self.endpoint, host, port)
            except (OSError, ExceptionGroup) as exc:
                _refuse_bind("listen", host, port, exc)
                raise
            bound = listeners[0].socket.getsockname()
            self.listen_address = (bound[0], bound[1])
            await self._refresh()
            api_host, api_port = self.config.api
            try:
                binds = await nursery.start(serve_api, build_app(self, token), api_host,
                                            api_port)
            except (OSError, ExceptionGroup) as exc:
                _refuse_bind("api", api_host, api_port, exc)
                raise
            # The bound address (port 0 picks one), as clients must dial it.
            self.api_address = binds[0].split("://", 1)[-1]
            await nursery.start(self.manager.run)
            nursery.start_soon(self._discovery)
            if self.config.uplink:
                nursery.start_soon(self._uplinks)
            nursery.start_soon(self._refresher)
            nursery.start_soon(self._progress_events)
            self._write_runtime()
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                (self.home.path / RUNTIME_FILE).unlink(missing_ok=True)

    def start_line(self) -> str:
        """The one line the daemon says when it has started: its device id, the address
        it listens on for sync, the URL of its local API."""
        host, port = self.listen_address or self.config.listen
        device, api = self.node.key.device_id, self.api_address
        return (f"meshsync daemon {device} started: sync on {host}:{port}, "
                f"local API and status page at http://{api}/")

    async def _refresher(self) -> None:
        """Keep counts and the advertised digest current after sessions (cheap)."""
        seen = -1
        while True:
            if not self.revoked.is_set() and revoked_self(self.node, self.home):
                await self._wipe_soon()
            if self.manager.sessions_total != seen:
                seen = self.manager.sessions_total
                await self._refresh()
            else:  # an uplink that fails has no session: its state is read each second
                self.sources.state(self.counts.conflicts, self._uplink_status(), self.custody)
            await trio.sleep(1.0)

    async def _wipe_soon(self) -> None:
        """This device is revoked: seal its own changes for the authority, then let
        :func:`serve_daemon` stop and wipe the home."""
        import time

        self.evidence = await trio.to_thread.run_sync(
            write_evidence, self.node, self.home, int(time.time() * 1000),
            limiter=self.endpoint.limiter)
        log.warning("this device has been revoked: stopping, then deleting its copy of "
                    "others' data; own changes: %s", self.evidence.path or self.evidence.reason)
        self.revoked.set()

    async def _progress_events(self) -> None:
        """A ``sync.progress`` event per session in flight whose figures moved, at most
        every :data:`PROGRESS_EVENT_S` seconds."""
        while True:
            self.sources.progress(self.in_flight())
            await trio.sleep(PROGRESS_EVENT_S)

    def _write_runtime(self) -> None:
        assert self.listen_address is not None
        data = {"pid": os.getpid(), "api": self.api_address,
                "listen": f"{self.listen_address[0]}:{self.listen_address[1]}"}
        tmp = self.home.path / (RUNTIME_FILE + ".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(self.home.path / RUNTIME_FILE)


def _refuse_bind(key: str, host: str, port: int, exc: BaseException) -> None:
    """Raise a start-up bind failure (port in use, address not on this machine) as a
    one-line error naming the config key; return for anything else."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]  # hypercorn binds inside its own nursery
    if isinstance(leaf, OSError):
        from meshsync.model.errors import UsageError

        raise UsageError(f"config {key}: cannot listen on {host}:{port}: "
                         f"{leaf.strerror or leaf}") from exc


async def serve_daemon(path: Path, config: DaemonConfig, *, store: str | None = None,
                       role: str | None = None, platform: PlatformHooks | None = None,
                       prepare: Callable[[Daemon], None] | None = None,
                       task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
                       ) -> None:
    """Open the home, run the daemon until cancelled, then shut down cleanly (sessions
    ended, runtime file removed, store closed, home lock released) before returning.

    No signal handling: for ``nursery.start`` from any thread's ``trio.run``;
    ``task_status.started(daemon)`` once the listener and API are up. ``prepare`` is
    called with the daemon before anything starts (to hook its events). ``store``: a
    PostgreSQL DSN (central). ``role``: the role the operator expects.

    Raises:
        UsageError: the role differs from the certificate's, or a port cannot be bound.
        HomeBusyError: another daemon holds the home.
    """
    from meshsync.model.errors import UsageError
    from meshsync.net.setup import open_endpoint

    with hold_home(path, "daemon"):
        with open_endpoint(path, share=config.share, mesh=config.mesh,
                           store=store) as endpoint:
            if role is not None and role != endpoint.config.role:
                raise UsageError(f"--role {role}: this home's certificate has role "
                                 f"{endpoint.config.role!r}")
            daemon = Daemon(Home.open(path), config, endpoint, platform)
            if prepare is not None:
                prepare(daemon)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                task_status.started(daemon)
                await daemon.revoked.wait()
                nursery.cancel_scope.cancel()
        if daemon.evidence is not None and store is None:  # the store is closed now
            import time

            finish_wipe(daemon.home, daemon.evidence,
                        "this device's revocation arrived (daemon)", int(time.time() * 1000))


async def run_daemon(path: Path, config: DaemonConfig, *, store: str | None = None,
                     role: str | None = None,
                     announce: Callable[[str], object] = log.info) -> None:
    """Open the home, run the daemon until SIGINT or SIGTERM, then shut down cleanly.

    Signal handlers are installed only on the main thread (``meshsync daemon``); on
    any other thread this runs until cancelled, like :func:`serve_daemon` (an app
    uses :func:`meshsync.daemon.embed.start`). ``store``: a PostgreSQL DSN (central).
    ``role``: the role the operator expects; refused if the home's certificate says
    otherwise. ``announce`` is given the start line (:meth:`Daemon.start_line`) once
    everything listens.
    """
    serve = functools.partial(serve_daemon, path, config, store=store, role=role)

    async def run(task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(task_status=task_status)  # returns by itself only after a wipe
        nursery.cancel_scope.cancel()

    if threading.current_thread() is not threading.main_thread():
        async with trio.open_nursery() as nursery:
            announce((await nursery.start(run)).start_line())
        return
    # Catch the signals before starting: daemon.json tells clients the daemon is
    # up, and a SIGTERM right after it appears must still shut down cleanly.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(run)
            announce(daemon.start_line())
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
