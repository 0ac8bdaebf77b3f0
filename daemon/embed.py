"""Run a node inside a host app, on a thread of its own (docs/android.md).

An Android app (Chaquopy, Briefcase, python-for-android) cannot run ``meshsync daemon``
as a process and must not block its UI thread; it calls :func:`start` from any
thread and gets a :class:`RunningNode`: the local API's URL and token for its web
view, the node's events, and :meth:`RunningNode.stop`. The node runs
:func:`~meshsync.daemon.runner.serve_daemon` in ``trio.run`` on a new thread, with no
signal handlers (Python only allows them on the main thread)::

    node = start(home, config_overrides={"mesh": "mimika-jila"},
                 platform=PlatformHooks(default_gateway=wifi_gateway))
    webview.load(node.api_url + "/?token=" + node.token)
    ...
    node.stop()
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from meshsync.daemon.config import load_config
from meshsync.daemon.platform import PlatformHooks
from meshsync.daemon.runner import Daemon, api_token, serve_daemon

from meshsync.host import atrest
from meshsync.host.home import Home
from meshsync.protocol.events import SessionSummary

__all__ = ["NodeEvent", "PlatformHooks", "RunningNode", "start"]

log = logging.getLogger("meshsync.embed")

#: Events kept for :meth:`RunningNode.events` while nobody reads them (oldest dropped).
EVENT_BACKLOG = 1000


@dataclass(frozen=True)
class NodeEvent:
    """Something the node did.

    Attributes:
        kind: ``started`` (data: ``api_url``, ``device_id``), ``session`` (a sync
            session ended; data: ``direction``, ``address``, and the session summary's
            JSON: ``peer``, ``changes_sent``, ``changes_received``, ``error``, ...) or
            ``stopped`` (always the last; data: ``error``, ``None`` after a clean stop).
        data: JSON-ready details.
    """

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


class RunningNode:
    """A node started by :func:`start`. Its methods may be called from any thread
    except the node's own (that is, not from an ``on_event`` callback)."""

    def __init__(self, home: Path, on_event: Callable[[NodeEvent], None] | None) -> None:
        self.home = home
        self._on_event = on_event
        self._events: queue.Queue[NodeEvent] = queue.Queue(EVENT_BACKLOG)
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._daemon: Daemon | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"meshsync-node-{home.name}",
                                        daemon=True)
        self._config: Any = None
        self._platform: PlatformHooks | None = None

    # -- what the app reads ----------------------------------------------------------

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the local API (the port bound at start)."""
        assert self._daemon is not None
        return f"http://{self._daemon.api_address}"

    @property
    def token(self) -> str:
        """The local API's bearer token (``api.token`` in the home)."""
        assert self._daemon is not None
        return api_token(self._daemon.home)

    @property
    def device_id(self) -> str:
        """This node's device id."""
        assert self._daemon is not None
        return self._daemon.node.key.device_id

    @property
    def running(self) -> bool:
        """Whether the node's thread is still running."""
        return self._thread.is_alive()

    def events(self, timeout: float | None = None) -> Iterator[NodeEvent]:
        """Iterate over the node's events as they come, ending after ``stopped``.

        Blocks the calling thread; ``timeout`` (seconds) ends the iteration early when
        no event arrives in time. One reader at a time: events are consumed. Events the
        app did not read are kept up to :data:`EVENT_BACKLOG`, older ones dropped.
        Thread-safe.
        """
        while True:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                return
            yield event
            if event.kind == "stopped":
                return

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the node down the way SIGTERM does and wait for it: sessions end, the
        listener and API close, the store is closed and the home's lock released.

        Idempotent; a node that already stopped returns at once. Thread-safe.

        Raises:
            RuntimeError: called from the node's own thread (an ``on_event``
                callback), or the node did not stop within ``timeout`` seconds.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("RunningNode.stop() cannot be called from the node's thread")
        with self._lock:
            if self._token is not None and self._scope is not None and self.running:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"meshsync node {self.home} did not stop within {timeout} s")

    # -- the node's thread --------------------------------------------------------------

    def _start(self, config: Any, platform: PlatformHooks | None, timeout: float) -> None:
        self._config, self._platform = config, platform
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"meshsync node {self.home} did not start within {timeout} s")
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self._error = _leaf(exc)
            # A string, not the error: log handlers may keep records (and so the
            # error's frames) for long.
            log.error("meshsync node %s stopped: %s", self.home, _describe(self._error))
        finally:
            self._ready.set()
            self._emit(NodeEvent("stopped", {"error": None if self._error is None
                                             else _describe(self._error)}))

    async def _serve(self) -> None:
        with trio.CancelScope() as scope:
            self._scope, self._token = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._daemon = await nursery.start(
                    _serve_daemon, self.home, self._config, self._platform, self._hook)
                self._emit(NodeEvent("started", {"api_url": self.api_url,
                                                 "device_id": self.device_id}))
                self._ready.set()  # after "started": start() returns after the event

    def _hook(self, daemon: Daemon) -> None:
        """Forward every finished session as a ``session`` event."""
        inner = daemon.endpoint.on_summary

        def on_summary(direction: str, address: tuple[str, int],
                       summary: SessionSummary) -> None:
            if inner is not None:
                inner(direction, address, summary)
            self._emit(NodeEvent("session", {"direction": direction,
                                             "address": f"{address[0]}:{address[1]}",
                                             **summary.to_json()}))

        daemon.endpoint.on_summary = on_summary

    def _emit(self, event: NodeEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("meshsync on_event callback failed on %s", event.kind)
        while True:
            try:
                self._events.put_nowait(event)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._events.get_nowait()


async def _serve_daemon(home: Path, config: Any, platform: PlatformHooks | None,
                        prepare: Callable[[Daemon], None], *,
                        task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
                        ) -> None:
    await serve_daemon(home, config, platform=platform, prepare=prepare,
                       task_status=task_status)


def start(home: str | Path, *, config_overrides: Mapping[str, Any] | None = None,
          on_event: Callable[[NodeEvent], None] | None = None,
          platform: PlatformHooks | None = None, timeout: float = 60.0,
          home_key: bytes | None = None) -> RunningNode:
    """Start the node of an enrolled ``home`` on a new thread; return once its sync
    listener and local API are up. Callable from any thread.

    Args:
        home: the home folder (``meshsync init`` + ``enroll``; an app keeps it in its
            private storage, docs/android.md).
        config_overrides: config keys over the home's ``config.toml`` (``mesh``,
            ``api`` as ``"127.0.0.1:0"`` for any free port, ``discovery``, ...).
        on_event: called with each :class:`NodeEvent` on the node's thread; keep it
            short, never block, never call :meth:`RunningNode.stop` from it.
            Exceptions it raises are logged and ignored.
        platform: the host's :class:`PlatformHooks` (gateway, interfaces, hotspot,
            multicast lock).
        timeout: seconds to wait for the start.
        home_key: for a home encrypted with a key the app keeps (32 bytes, e.g. in the
            Android Keystore; made with :func:`meshsync.host.atrest.create`), that
            key; the node's store opens with the data key it unwraps. A home
            encrypted with a passphrase takes it from ``MESHSYNC_PASSPHRASE``.

    Raises:
        UsageError: an invalid config value, a port that cannot be bound, a home that
            is not enrolled, a ``home_key`` that does not open the home
            (:class:`~meshsync.host.atrest.WrongKeyError`).
        HomeBusyError: another daemon (or node) holds the home.
        RuntimeError: the start took longer than ``timeout``.
    """
    path = Path(home)
    if home_key is not None:
        atrest.unlock(path, home_key=home_key)
    config = load_config(Home.open(path), None, dict(config_overrides or {}), from_flags=False)
    node = RunningNode(path, on_event)
    node._start(config, platform, timeout)
    return node


def _leaf(exc: BaseException) -> BaseException:
    """The single error inside trio's nursery groups (a refusal at start)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
