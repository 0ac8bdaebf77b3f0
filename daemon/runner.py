"""The long-running node: sync listener, discovery, peer manager, local API, signals.

Process wiring only; the protocol lives in :mod:`meshsync.protocol.session`, the network in
:mod:`meshsync.net`. ``Daemon.run`` never returns until cancelled (SIGINT/SIGTERM in
``run_daemon``), and on the way out it closes listeners, finishes or aborts sessions
and removes its runtime file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
from meshsync.daemon.api import NodeService, build_app, serve_api
from meshsync.daemon.config import DaemonConfig
from meshsync.daemon.peers import PeerManager

from meshsync.host.clock import clock_json
from meshsync.host.files import write_private
from meshsync.host.home import Home
from meshsync.host.local import storage_status
from meshsync.model.errors import NotFoundError
from meshsync.model.identity import device_id
from meshsync.net.endpoints import Endpoint, serve_sync
from meshsync.net.registry import SessionRegistry
from meshsync.protocol.events import SessionSummary

log = logging.getLogger("meshsync.daemon")

TOKEN_FILE = "api.token"  # noqa: S105 - a file name, not a secret
RUNTIME_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
UPLINK_POLL_S = 5.0


def api_token(home: Home) -> str:
    """The home's API token, created (mode 0600) on first use."""
    path = home.path / TOKEN_FILE
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path.read_text().strip()


class Daemon(NodeService):
    """One running node. Build with :func:`meshsync.net.setup.open_endpoint`'s endpoint."""

    def __init__(self, home: Home, config: DaemonConfig, endpoint: Endpoint) -> None:
        self.home, self.config, self.endpoint = home, config, endpoint
        self.node = endpoint.node
        self.limiter = endpoint.limiter
        endpoint.registry = SessionRegistry(self.node.key.public_key)
        endpoint.on_summary = self._on_summary
        endpoint.limits = config.limits()
        self.manager = PeerManager(endpoint, config.mesh, anti_entropy_s=config.anti_entropy_s,
                                   backoff_min_s=config.backoff_min_s,
                                   backoff_max_s=config.backoff_max_s)
        self.clock_warnings: list[str] = []
        self.peer_vvs: dict[str, dict[tuple[bytes, str], int]] = {}
        self.listen_address: tuple[str, int] | None = None
        self.api_address = ""  # "HOST:PORT" once the API is bound
        self._cascade: Any = None
        self._custody: dict[str, Any] = {"feeds": [], "receipts": []}
        self._counts: dict[str, Any] = {"changes": 0, "conflicts": 0, "per_partition": {},
                                        "digest": ""}
        self._board: Any = None

    # -- events ------------------------------------------------------------------

    def _on_summary(self, direction: str, address: tuple[str, int],
                    summary: SessionSummary) -> None:
        self.manager.session_finished(direction, address, summary)
        self._after_session(summary)

    def _after_session(self, summary: SessionSummary) -> None:
        if summary.peer and summary.peer_vv:
            self.peer_vvs[device_id(summary.peer)] = summary.peer_vv
        for warning in summary.clock_warnings:
            if warning not in self.clock_warnings:
                self.clock_warnings = [*self.clock_warnings[-19:], warning]

    def sync_now(self) -> None:
        """See :meth:`NodeService.sync_now`."""
        self.manager.local_change()

    # -- node calls (worker thread, under the limiter) ------------------------------

    def node_call(self, name: str, *args: Any) -> Any:
        """See :meth:`NodeService.node_call`."""
        method = getattr(self, f"_call_{name}", None)
        if method is None:
            raise NotFoundError(f"no node call {name!r}")
        return method(*args)

    def _call_list_json(self, collection: str, prefix: str) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.node.records(collection, prefix)]

    def _call_get_json(self, collection: str, key: str, partition: str | None) -> Any:
        record = self.node.get(collection, key, partition)
        return record.to_json() if record else None

    def _call_put_json(self, collection: str, key: str, fields: dict[str, Any],
                       partition: str | None) -> dict[str, Any]:
        change = self.node.put(collection, key, fields, partition)
        self._call_refresh()
        record = self.node.get(collection, key, change.partition)
        return {"seq": change.seq, "partition": change.partition, "hash": change.hash.hex(),
                "record": record.to_json() if record else None}

    def _call_delete_json(self, collection: str, key: str, partition: str | None
                          ) -> dict[str, Any]:
        change = self.node.delete(collection, key, partition)
        self._call_refresh()
        return {"seq": change.seq, "partition": change.partition, "hash": change.hash.hex()}

    def _call_progress_json(self, collection: str) -> dict[str, Any]:
        from meshsync.replica.progress import progress

        return progress(self.node.store, collection)

    def _call_conflicts_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.node.conflicts()]

    def _call_refresh(self) -> None:
        """Recount what the status shows (cheap counts) and the advertised digest."""
        store = self.node.store
        feeds = store.feeds()
        per_partition = Counter(r.partition for r in store.iter_records() if not r.deleted)
        digest = hashlib.sha256(repr([(f.author, f.partition, f.head_seq)
                                      for f in feeds]).encode()).hexdigest()[:16]
        from meshsync.replica.custody import custody

        self._custody = custody(self.node)
        self._counts = {"changes": sum(f.head_seq for f in feeds),
                        "conflicts": sum(1 for _ in store.iter_records(conflicts_only=True)),
                        "per_partition": dict(per_partition), "digest": digest,
                        "vv": {f.feed: f.head_seq for f in feeds}}

    # -- reading ------------------------------------------------------------------

    def _pending(self, dev: str | None) -> int | None:
        vv = self.peer_vvs.get(dev or "")
        if vv is None:
            return None
        mine: dict[tuple[bytes, str], int] = self._counts.get("vv", {})
        return sum(max(0, seq - vv.get(feed, 0)) for feed, seq in mine.items()
                   if feed in vv or any(feed[1].startswith(p) for _, p in vv))

    def peers(self) -> list[dict[str, Any]]:
        """See :meth:`NodeService.peers`."""
        rows = self.manager.snapshot()
        for row in rows:
            row["pending"] = self._pending(row["device_id"])
        return rows

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
        from types import SimpleNamespace

        from meshsync.net.discovery.interfaces import read_links

        links = read_links()
        next_offer = 0.0
        while True:
            if trio.current_time() >= next_offer:
                for host, port in self.config.uplink:
                    self.manager.found(SimpleNamespace(host=host, port=port, via="uplink",
                                                       device_id=None, mesh=None, digest=None))
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
        c = self._counts
        return {
            "device_id": self.node.key.device_id, "role": self.endpoint.config.role,
            "mesh": self.config.mesh, "share": self.endpoint.config.share_scope,
            "diagnosis": self.manager.diagnosis(), "peers": len(self.manager.peers),
            "sessions": self.manager.sessions_total, "changes": c["changes"],
            "conflicts": c["conflicts"], "records_per_partition": c["per_partition"],
            "digest": c["digest"], "clock_warnings": self.clock_warnings,
            "listen": f"{self.listen_address[0]}:{self.listen_address[1]}"
            if self.listen_address else None,
            "uplink": self._uplink_status(), "discovery": self._discovery_stats(),
            "custody": self._custody, "storage": storage_status(self.node),
            "clock": clock_json(self.node),
        }

    # -- running ------------------------------------------------------------------

    async def _refresh(self) -> None:
        await trio.to_thread.run_sync(self._call_refresh, limiter=self.limiter)
        if self._board is not None and self._board.current().digest != self._counts["digest"]:
            self._board.set(self._advert())

    def _advert(self) -> Any:
        from meshsync.net.discovery import Advert
        from meshsync.protocol.frames import PROTOCOL_VERSION

        assert self.listen_address is not None
        return Advert(device_id=self.node.key.device_id, mesh=self.config.mesh,
                      role=self.endpoint.config.role, port=self.listen_address[1],
                      proto=PROTOCOL_VERSION, digest=self._counts["digest"])

    async def _discovery(self) -> None:
        from meshsync.daemon.discovery_setup import build_methods

        from meshsync.net.discovery import AdvertBoard, run_cascade

        assert self.listen_address is not None
        methods = build_methods(self.config, self.listen_address[1])
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
            self._write_runtime()
            log.info("daemon %s listening on %s:%s, API on %s", self.node.key.device_id[:8],
                     *self.listen_address, self.api_address)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                (self.home.path / RUNTIME_FILE).unlink(missing_ok=True)

    async def _refresher(self) -> None:
        """Keep counts and the advertised digest current after sessions (cheap)."""
        seen = -1
        while True:
            if self.manager.sessions_total != seen:
                seen = self.manager.sessions_total
                await self._refresh()
            await trio.sleep(1.0)

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


@contextlib.contextmanager
def home_lock(path: Path) -> Iterator[None]:
    """Hold ``HOME/daemon.lock`` (an advisory ``flock``) while a daemon runs, so a
    second daemon on the same home is refused instead of taking over its files."""
    from meshsync.model.errors import UsageError

    with (path / LOCK_FILE).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UsageError(f"another daemon is already running on {path} "
                             f"(see {path / RUNTIME_FILE})") from exc
        yield


async def run_daemon(path: Path, config: DaemonConfig, *, store: str | None = None,
                     role: str | None = None) -> None:
    """Open the home, run the daemon until SIGINT or SIGTERM, then shut down cleanly.

    ``store``: a PostgreSQL DSN (central). ``role``: the role the operator expects;
    refused if the home's certificate says otherwise.
    """
    from meshsync.model.errors import UsageError
    from meshsync.net.setup import open_endpoint

    with home_lock(path), \
            open_endpoint(path, share=config.share, mesh=config.mesh, store=store) as endpoint:
        if role is not None and role != endpoint.config.role:
            raise UsageError(f"--role {role}: this home's certificate has role "
                             f"{endpoint.config.role!r}")
        daemon = Daemon(Home.open(path), config, endpoint)
        # Catch the signals before starting: daemon.json tells clients the daemon is
        # up, and a SIGTERM right after it appears must still shut down cleanly.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
