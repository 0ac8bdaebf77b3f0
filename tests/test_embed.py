"""Embedding a node in an app (meshsync.daemon.embed, docs/android.md): started and
stopped from worker threads with no signal handlers, no leaked threads or file
descriptors, a consistent store; the platform hooks (gateway, hotspot B01, multicast
lock B03); the example program ``examples/embed_node.py``."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
import warnings
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from meshsync.daemon.discovery_setup import MulticastLocked, build_methods, gateway_lookup
from meshsync.daemon.embed import NodeEvent, PlatformHooks, RunningNode, start
from netfixtures import VILLAGE, District, wait_until

from meshsync.host.lock import HomeBusyError
from meshsync.model.errors import UsageError
from meshsync.net.discovery import GatewayProbe
from meshsync.net.discovery.model import Candidate

ROOT = Path(__file__).resolve().parent.parent
#: Never the real network (mDNS, broadcast, the gateway): see tests/daemonfixtures.py.
LOCAL = {"api": "127.0.0.1:0", "listen": "127.0.0.1:0", "discovery": ["static"]}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    district = District(tmp_path_factory.mktemp("district"))
    return district.enrol("phone", partition=f"{VILLAGE}/tps-001")


def call(node: RunningNode, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(node.api_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {node.token}"})
    with NO_PROXY.open(request, timeout=15) as reply:
        return json.loads(reply.read())


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a new (non-main) thread; return its result or raise its error."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> set[str]:
    return {f"{t.name}:{t.ident}" for t in threading.enumerate()}


def test_twenty_starts_and_stops_from_a_worker_thread_leak_nothing(template: Path) -> None:
    """20 start/put/stop cycles in one process: threads and descriptors back to
    baseline (trio keeps idle worker threads for 10 s), every put stored, store ok."""
    thread_base, fd_base = threads(), fd_count()
    seen: list[str] = []

    def cycle(i: int) -> None:
        node = start(template, config_overrides=LOCAL, on_event=lambda e: seen.append(e.kind))
        call(node, "PUT", f"/api/records/notes/n{i}", {"fields": {"i": i}})
        node.stop(timeout=30)
        assert not node.running

    for i in range(20):
        in_thread(lambda i=i: cycle(i))
    assert seen.count("started") == seen.count("stopped") == 20
    fds = wait_until(lambda: ((n := fd_count()) <= fd_base + 2 and n) or None, 30, "fds")
    left = wait_until(lambda: threads() <= thread_base or None, 30, "threads to end")
    print(f"baseline fds {fd_base}, after {fds}; threads back to baseline: {left}")
    with closing(sqlite3.connect(f"file:{template / 'store.sqlite'}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    node = in_thread(lambda: start(template, config_overrides=LOCAL))
    try:
        for i in range(20):
            assert call(node, "GET", f"/api/records/notes/n{i}")["fields"]["i"] == i
    finally:
        node.stop()
    assert not (template / "daemon.json").exists()


def test_events_iterator_ends_with_stopped(template: Path) -> None:
    node = in_thread(lambda: start(template, config_overrides=LOCAL))
    in_thread(node.stop)
    node.stop()  # idempotent
    kinds = [e.kind for e in node.events(timeout=1)]
    assert kinds == ["started", "stopped"]


# hypercorn (config.create_sockets) does not close a socket whose bind failed: a refused
# start leaves one unbound socket to the garbage collector, collected here.
def test_refusals_at_start_raise_in_the_calling_thread(template: Path) -> None:
    with pytest.raises(UsageError, match="config mesh"):
        in_thread(lambda: start(template, config_overrides={**LOCAL, "mesh": "?"}))
    node = in_thread(lambda: start(template, config_overrides=LOCAL))
    try:
        with pytest.raises(HomeBusyError):
            in_thread(lambda: start(template, config_overrides=LOCAL))
        other = District(template.parent).enrol("phone2", partition=f"{VILLAGE}/tps-002")
        busy = {**LOCAL, "api": node.api_url.removeprefix("http://")}  # a port in use
        with pytest.raises(UsageError, match="config api"):
            in_thread(lambda: start(other, config_overrides=busy))
    finally:
        node.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_stop_from_the_nodes_own_thread_is_refused(template: Path) -> None:
    errors: list[BaseException] = []
    holder: list[RunningNode] = []

    def on_event(event: NodeEvent) -> None:
        if event.kind == "stopped":  # on the node's thread, holder filled by now
            try:
                holder[0].stop()
            except RuntimeError as exc:
                errors.append(exc)

    holder.append(start(template, config_overrides=LOCAL, on_event=on_event))
    holder[0].stop()
    assert len(errors) == 1 and "node's thread" in str(errors[0])


def test_example_program_runs(template: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "embed_node.py"),
                           str(template), "--seconds", "0.2"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("ok")
    assert "event: stopped {'error': None}" in done.stdout


# -- platform hooks ------------------------------------------------------------------


def test_platform_hooks_need_both_halves_of_the_multicast_lock() -> None:
    with pytest.raises(ValueError, match="together"):
        PlatformHooks(acquire_multicast=lambda: None)


def test_gateway_hook_replaces_proc_net_route_and_a_hotspot_reports_nothing() -> None:
    assert gateway_lookup(PlatformHooks()) is None  # /proc/net/route as before
    hotspot = [False]
    lookup = gateway_lookup(PlatformHooks(default_gateway=lambda: "192.168.43.1",
                                          is_hotspot=lambda: hotspot[0]))
    probe = GatewayProbe(7420, interval_s=0.01, route_file="/nonexistent", gateway=lookup)
    found: list[Candidate] = []

    async def main() -> None:
        with trio.move_on_after(0.1):
            await probe.run(None, found.append)  # type: ignore[arg-type]
        hotspot[0] = True
        before = len(found)
        with trio.move_on_after(0.1):
            await probe.run(None, found.append)  # type: ignore[arg-type]
        assert len(found) == before

    trio.run(main)
    assert found and found[0].host == "192.168.43.1" and found[0].port == 7420
    assert found[0].via == "gateway" and found[0].interface is None
    assert probe.statistics()["no_route"] > 0


def test_interfaces_hook_and_lock_wrap_mdns() -> None:
    from meshsync.daemon.config import DEFAULTS, validate

    config = validate({**DEFAULTS, "discovery": ["mdns", "gateway"]})
    hooks = PlatformHooks(interfaces=lambda: ["wlan0"], acquire_multicast=lambda: None,
                          release_multicast=lambda: None)
    mdns, gateway = build_methods(config, 7420, hooks)
    assert isinstance(mdns, MulticastLocked) and mdns.name == "mdns"
    assert mdns.method.interfaces == ["wlan0"]
    assert gateway.gateway is None  # no gateway hook: the route file


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
def test_multicast_lock_released_however_mdns_ends(ending: str) -> None:
    calls: list[str] = []

    class Fake:
        name = "mdns"

        async def run(self, advert: Any, found: Any, *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            calls.append("run")
            task_status.started()
            if ending == "failed":
                raise OSError("no multicast")
            await trio.sleep_forever()

    hooks = PlatformHooks(acquire_multicast=lambda: calls.append("acquire"),
                          release_multicast=lambda: calls.append("release"))
    locked = MulticastLocked(Fake(), hooks)

    async def main() -> None:
        with trio.move_on_after(0.05):
            await locked.run(None, lambda c: None)

    if ending == "failed":
        with pytest.raises(OSError):
            trio.run(main)
    else:
        trio.run(main)
    assert calls == ["acquire", "run", "release"]
    assert locked.statistics() == {}


def test_run_daemon_off_the_main_thread_installs_no_signal_handler(template: Path) -> None:
    """``trio.run(run_daemon, ...)`` on a thread used to fail in open_signal_receiver."""
    from meshsync.daemon.config import load_config
    from meshsync.daemon.runner import run_daemon

    from meshsync.host.home import Home

    config = load_config(Home.open(template), None, LOCAL)

    async def main() -> None:
        with trio.move_on_after(1.5):
            await run_daemon(template, config)

    in_thread(lambda: trio.run(main))
    assert not (template / "daemon.json").exists()
