"""``meshsync daemon`` as real processes on 127.0.0.1 (docs/architecture.md §9, §10 level 4).

Every daemon here runs with ``discovery = ["static"]``: the default cascade would send
mDNS multicast and UDP broadcasts and dial the default gateway on the real network.
Peers are given as static peers, either directly or through a :class:`Link` (a TCP
relay on 127.0.0.1 the test can cut and restore, like a phone walking out of Wi-Fi
range). Ports are 0 (the kernel picks; the daemon records the bound ports in
``daemon.json``), so tests never race for a port.

Covers: three daemons converging after puts and a concurrent edit through the HTTP
API; the API's token, validation, OpenAPI description and ``POST /api/sync``;
``meshsync status`` and ``peers`` against a running and a stopped daemon; every
invalid configuration refused at start with one line; SIGINT and SIGTERM shutdown;
a receiving daemon SIGKILLed mid-sync resuming with only the remainder
(docs/failure-cases.md B11, B21).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from daemonfixtures import DaemonLab, DaemonProcess, http
from netfixtures import (
    DISTRICT,
    LOOPBACK,
    MESHSYNC,
    VILLAGE,
    ByteCountingRelay,
    District,
    Relay,
    count_changes,
    run,
    run_json,
    wait_until,
    write_many_changes,
)

from meshsync.host.local import open_node
from meshsync.protocol import frames as fr
from meshsync.protocol.session import SessionConfig

PHONES = {"phone-a": "tps-001", "phone-b": "tps-002", "phone-c": "tps-003"}

#: Fast retries so a restored link is used within about a second; anti-entropy left
#: long so that every sync a test sees was caused by what the test did.
FAST = {"backoff_min_s": 0.2, "backoff_max_s": 1.0, "anti_entropy_s": 3600.0}


# -- a link the test can cut -------------------------------------------------------------


class Link(Relay):
    """A TCP relay on 127.0.0.1 to one daemon's sync port that the test can cut.

    Down (and without a target) until the test sets ``target`` and calls ``up()``;
    ``down()`` closes every relayed connection and refuses new ones (accepts and
    closes at once, as a dead route looks to TLS). Daemons are given the relay's port
    as their static peer, so every byte between two daemons crosses a link.
    """

    def __init__(self) -> None:
        super().__init__(None, up=False)

    def up(self) -> None:
        """Relay new connections."""
        self.restore()

    def down(self) -> None:
        """Cut every relayed connection and refuse new ones."""
        self.cut()

    def close(self, timeout: float = 15) -> None:
        """Cut everything and stop listening."""
        self.cut()
        super().close(timeout)


# -- daemons ----------------------------------------------------------------------------


class Lab(DaemonLab):
    """This test's copy of the district, its daemons and links; all stopped at the end."""

    def daemon(self, name: str, static_peers: list[str] | None = None,
               **settings: Any) -> DaemonProcess:
        """A daemon on home ``name`` (not started), configured by ``logs/NAME.toml``
        (mesh "uji", :data:`FAST` retries, ``settings``), its log ``logs/NAME.log``."""
        return self.add(DaemonProcess(
            self.home(name), self.logs / f"{name}.log",
            {"mesh": "uji", **FAST, **settings, "static_peers": static_peers or []},
            config_path=self.logs / f"{name}.toml"))

    def link(self) -> Link:
        """A new link (down, no target), closed at the end."""
        made = Link()
        self.closers.append(made.close)
        return made


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrol once: a district laptop (gateway) and three phones in one village."""
    root = tmp_path_factory.mktemp("district")
    district = District(root)
    district.enrol("laptop", "gateway", DISTRICT)
    for name, tps in PHONES.items():
        district.enrol(name, scope=VILLAGE, partition=f"{VILLAGE}/{tps}")
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path) -> Iterator[Lab]:
    with Lab.copy_of(template, tmp_path, "district") as the_lab:
        yield the_lab


def pair(lab: Lab, **settings: Any) -> tuple[DaemonProcess, DaemonProcess]:
    """phone-b serving, phone-a with phone-b as its static peer; both started and
    synced once."""
    b = lab.daemon("phone-b", **settings).start()
    a = lab.daemon("phone-a", [f"{LOOPBACK}:{b.listen_port}"], **settings).start()
    wait_until(lambda: a.synced_with(b) and b.synced_with(a), 30, "a first sync",
               interval=0.1)
    return a, b


def wait_for(check: Callable[[], Any], timeout: float, what: str,
             state: Callable[[], Any] | None = None) -> Any:
    """``wait_until`` at API pace; on timeout the message includes ``state()``."""
    try:
        return wait_until(check, timeout, what, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; state: {state() if state else ''}") from None


# -- convergence ----------------------------------------------------------------------------


def test_three_daemons_converge_after_puts_and_a_concurrent_edit(lab: Lab) -> None:
    names = ["laptop", "phone-a", "phone-b"]
    links = {n: lab.link() for n in names}  # links[n] leads to n's sync port
    daemons = {n: lab.daemon(n, [links[o].address for o in names if o != n]).start()
               for n in names}
    for name, link in links.items():
        link.target = daemons[name].listen_port
        link.up()
    laptop, a, b = (daemons[n] for n in names)
    shared = f"{VILLAGE}/tps-001"

    def views() -> dict[str, Any]:
        return {n: (d.listing("/api/records/voters"), d.listing("/api/conflicts"))
                for n, d in daemons.items()}

    # Everyone sees one voter before the links go down, so the edits below share it.
    a.put("voters", "v-bersama", {"nama": "Contoh Bersama", "status": "MS"}, shared)
    wait_for(lambda: all(d.request("GET", f"/api/records/voters/v-bersama?partition="
                                   f"{shared}").status == 200 for d in daemons.values()),
             30, "v-bersama everywhere", views)

    for link in links.values():
        link.down()
    for name, daemon in daemons.items():
        for i in range(3):
            daemon.put("voters", f"v-{name}-{i}", {"nama": f"Contoh {name} {i}", "umur": 30 + i})
    a.put("voters", "v-bersama", {"status": "TMS", "catatan": "pindah"}, shared)
    b.put("voters", "v-bersama", {"status": "MS-ganda"}, shared)
    # Still apart: each holds only its own new voters.
    assert {r["key"] for r in b.listing("/api/records/voters")} == \
        {"v-bersama", *(f"v-phone-b-{i}" for i in range(3))}
    assert a.get(f"/api/records/voters/v-bersama?partition={shared}")["fields"]["status"] == \
        "TMS"

    for link in links.values():
        link.up()
    expected = {"v-bersama", *(f"v-{n}-{i}" for n in names for i in range(3))}
    wait_for(lambda: all({r["key"] for r in d.listing("/api/records/voters")} == expected
                         and d.listing("/api/conflicts") for d in daemons.values()),
             60, "every voter and the conflict everywhere", views)
    records, conflicts = laptop.listing("/api/records/voters"), laptop.listing("/api/conflicts")
    for daemon in (a, b):
        assert daemon.listing("/api/records/voters") == records
        assert daemon.listing("/api/conflicts") == conflicts
    [conflict] = conflicts
    assert (conflict["key"], conflict["partition"]) == ("v-bersama", shared)
    versions = conflict["conflicts"]["status"]
    assert sorted(v["value"] for v in versions) == ["MS-ganda", "TMS"]
    assert {v["author"] for v in versions} == {a.device_id, b.device_id}
    assert conflict["fields"]["status"] == versions[0]["value"]  # the winner is first
    assert conflict["fields"]["catatan"] == "pindah"  # edited on one side only: no conflict
    assert conflict["fields"]["nama"] == "Contoh Bersama"
    wait_for(lambda: all(d.get("/api/status")["conflicts"] == 1 for d in daemons.values()),
             10, "every status to count the conflict")


# -- the API -------------------------------------------------------------------------------


def _app_routes() -> list[tuple[str, str]]:
    """(path, method) of every route the daemon's Starlette app serves."""
    from meshsync.daemon.api import NodeService, build_app

    app = build_app(NodeService(), "not-used")
    # OpenAPI names a path parameter {path}; Starlette's converter suffix is dropped
    return sorted((route.path.replace(":path}", "}"), method) for route in app.routes
                  for method in (route.methods or ()) if method != "HEAD")


def _concrete(path: str) -> str:
    return (path.replace("{collection}", "voters").replace("{key}", "v-0001")
            .replace("{path}", "laptop/laptop.css").replace("{distrik}", "jila")
            .replace("{kampung}", "diloa"))


#: The one route without the token: the one-time login link (tests/test_api_guard.py).
PUBLIC = {"/login"}
#: Routes whose body is a file (the CLI's writes through the daemon), and the laptop
#: page's conflict form: past the guard, an empty body is bad input.
UPLOADS = {"/api/bundles", "/api/coklit/import", "/api/enroll", "/api/credentials",
           "/api/conflicts/resolve"}
#: Routes that answer with an endless stream: only the status and type are read.
STREAMS = {"/api/events"}
#: Central's KPU pages: past the guard, a phone answers 404 naming the role they need.
CENTRAL_ONLY = {"/kpu", "/kpu/export.csv", "/kpu/{distrik}", "/kpu/{distrik}/{kampung}"}


def _stream_status(daemon: DaemonProcess, path: str) -> tuple[int, str]:
    """Status and content type of a streaming GET with the token, then hang up."""
    import http.client

    host, port = daemon.runtime["api"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {daemon.token}"})
        reply = conn.getresponse()
        return reply.status, reply.headers.get("content-type", "")
    finally:
        conn.close()


def test_every_api_route_needs_the_token(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    daemon.put("voters", "v-0001", {"nama": "Contoh"})
    guarded = [(p, m) for p, m in _app_routes() if p not in PUBLIC]
    assert {p for p, _ in guarded} >= {"/api/status", "/api/peers", "/api/sync",
                                       "/api/conflicts", "/api/records/{collection}"}
    token = daemon.token
    wrong = [{}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {'x' * len(token)}"},
             {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": f"Bearer {token}x"},
             {"Authorization": f"Bearer {token.swapcase()}"},
             {"Authorization": f"Basic {token}"}, {"X-Api-Key": token}]
    for path, method in guarded:
        for headers in wrong:
            body = b'{"fields": {"nama": "Penyusup"}}' if method == "PUT" else None
            reply = http(method, daemon.api_url + _concrete(path), body=body, headers=headers)
            assert reply.status == 401, (method, path, headers, reply)
            assert reply.content_type.startswith("application/json")
            assert "token" in reply.body["error"]
    # None of the refused writes happened; the right token works for each route.
    assert daemon.get("/api/records/voters/v-0001")["fields"] == {"nama": "Contoh"}
    for path, method in guarded:
        if path in STREAMS:
            status, ctype = _stream_status(daemon, path)
            assert status == 200 and ctype.startswith("text/event-stream"), (path, status)
            continue
        body = {"fields": {"nama": "Contoh 2"}} if method == "PUT" else None
        reply = daemon.request(method, _concrete(path), body)
        if path in UPLOADS:  # past the guard, an empty upload is bad input
            assert reply.status == 400 and "token" not in reply.body["error"], (path, reply)
            continue
        if path in CENTRAL_ONLY:
            assert reply.status == 404 and "central" in reply.body["error"], (path, reply)
            continue
        assert reply.status in (200, 202), (method, path, reply)
        if method == "DELETE":
            daemon.put("voters", "v-0001", {"nama": "Contoh"})
    for path in PUBLIC:  # without a valid one-time link: refused, but not for the token
        reply = http("GET", daemon.api_url + path)
        assert reply.status == 403 and "meshsync login" in reply.body["error"], reply


def test_api_token_file_is_private(lab: Lab) -> None:
    assert not (lab.home("phone-a") / "api.token").exists()
    daemon = lab.daemon("phone-a").start()
    token_file = daemon.home / "api.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(daemon.token) >= 32
    # Restarting keeps the token (apps that read it once keep working).
    token = daemon.token
    assert daemon.stop() == 0
    again = lab.daemon("phone-a").start()
    assert again.token == token
    assert again.request("GET", "/api/status").status == 200


BAD_PUTS = {
    "not JSON": (b"nama=Contoh", "JSON"),
    "empty body": (b"", "JSON"),
    "a list": (b"[1, 2]", "fields"),
    "no fields": (b'{"partition": "mimika/jila/diloa/tps-001"}', "fields"),
    "fields not an object": (b'{"fields": "Contoh"}', "fields"),
    "no field at all": (b'{"fields": {}}', "field"),
    "empty field name": (b'{"fields": {"": 1}}', "field name"),
    "NaN": (b'{"fields": {"umur": NaN}}', "NaN"),
    "Infinity": (b'{"fields": {"umur": -Infinity}}', "Infinity"),
    "float overflow": (b'{"fields": {"umur": 1e999}}', "1e999"),
    "deep nesting": (b'{"fields": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
                     "nest"),
    "partition syntax": (b'{"fields": {"a": 1}, "partition": "Mimika//X"}', "partition"),
    "partition type": (b'{"fields": {"a": 1}, "partition": 7}', "partition"),
    "partition outside scope": (b'{"fields": {"a": 1}, "partition": "mimika/hoya/tps-001"}',
                                "scope"),
}


def test_put_validation_errors_are_400_with_a_message(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    daemon.put("voters", "v-0001", {"nama": "Contoh", "umur": 40})
    for case, (body, needle) in BAD_PUTS.items():
        reply = daemon.request("PUT", "/api/records/voters/v-0001", body)
        assert reply.status == 400, (case, reply)
        assert reply.content_type.startswith("application/json"), case
        message = reply.body["error"]
        assert needle.lower() in message.lower() and "\n" not in message, (case, message)
    oversized = json.dumps({"fields": {"catatan": "x" * (9 * 1024 * 1024)}}).encode()
    reply = daemon.request("PUT", "/api/records/voters/v-0002", oversized)
    assert reply.status == 400 and "limit" in reply.body["error"], reply.body
    # Nothing of the refused puts was stored, and the collection still reads as JSON.
    assert daemon.listing("/api/records/voters") == [daemon.get("/api/records/voters/v-0001")]
    assert daemon.get("/api/records/voters/v-0001")["fields"] == {"nama": "Contoh", "umur": 40}
    assert daemon.get("/api/status")["changes"] == 1
    missing = daemon.request("GET", "/api/records/voters/v-9999")
    assert missing.status == 404 and "v-9999" in missing.body["error"]


def test_openapi_is_valid_3_1_and_describes_every_route(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    assert http("GET", daemon.api_url + "/api/openapi.json").status == 401
    reply = http("GET", daemon.api_url + "/api/openapi.json", daemon.token)
    assert reply.status == 200
    spec = reply.body
    assert spec["openapi"].startswith("3.1.")
    try:
        from openapi_spec_validator import validate
    except ImportError:  # optional: the structural checks below still run
        pass
    else:
        validate(spec)
    described = sorted((path, method.upper()) for path, item in spec["paths"].items()
                       for method in item if method in
                       ("get", "put", "post", "delete", "patch", "head", "options"))
    assert described == _app_routes()
    security = spec["components"]["securitySchemes"]
    for path, method in described:
        operation = spec["paths"][path][method.lower()]
        needs_token = operation.get("security", spec.get("security")) not in (None, [])
        assert needs_token == (path not in PUBLIC), (path, method)
        for requirement in operation.get("security", spec.get("security")) or []:
            assert set(requirement) <= set(security)
        assert ("401" in operation["responses"]) == needs_token, (path, method)
        params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert params == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_post_sync_syncs_with_every_peer_now(lab: Lab) -> None:
    a, b = pair(lab)  # anti-entropy is an hour: nothing syncs unless asked
    before = a.peer(b)["sessions_ok"]  # type: ignore[index]
    # A record written beside the daemon by a program embedding the library (it takes
    # no lock): the daemon does not know it changed, so only POST /api/sync carries it.
    with open_node(a.home) as node:
        node.put("voters", "v-luar", {"nama": "Contoh Luar"})
    quiet_until = time.monotonic() + 2
    while time.monotonic() < quiet_until:  # the negative control: nothing moves by itself
        assert b.request("GET", "/api/records/voters/v-luar").status == 404
        time.sleep(0.2)
    reply = a.request("POST", "/api/sync")
    assert reply.status == 202 and reply.body == {"ok": True, "peers": 1, "unreachable": []}
    wait_for(lambda: b.request("GET", "/api/records/voters/v-luar").status == 200, 15,
             "v-luar at b")
    wait_for(lambda: a.peer(b)["sessions_ok"] > before, 15,  # type: ignore[index]
             "a new session at a")
    assert a.request("GET", "/api/sync").status == 405
    # `meshsync put` on a daemon's home goes through its API: b gets it with no POST.
    run("put", "--home", a.home, "voters", "v-cli", "nama=Contoh CLI")
    wait_for(lambda: b.request("GET", "/api/records/voters/v-cli").status == 200, 15,
             "v-cli at b")


def _port_free_on_two_loopbacks() -> int:
    """A port free on both 127.0.0.1 and 127.0.0.2 (two daemons may then share it)."""
    for _ in range(20):
        with closing(socket.create_server((LOOPBACK, 0))) as first:
            port = first.getsockname()[1]
            try:
                with closing(socket.create_server(("127.0.0.2", port))):
                    return port
            except OSError:
                continue
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def test_post_sync_on_a_gateway_reaches_a_phone_that_only_connected_to_it(lab: Lab) -> None:
    """The gateway knew the phone only from its inbound sessions: POST /api/sync said
    ok and synced nothing. It now dials the phone where it connected from, at the
    listen port of the mesh (both listen on one port, on 127.0.0.2 and 127.0.0.1)."""
    port = _port_free_on_two_loopbacks()
    gw = lab.daemon("laptop", listen=f"127.0.0.2:{port}").start()
    phone = lab.daemon("phone-a", [f"127.0.0.2:{port}"], listen=f"{LOOPBACK}:{port}").start()
    wait_for(lambda: gw.synced_with(phone) and phone.synced_with(gw), 30, "a first sync")
    with open_node(gw.home) as node:
        node.put("catatan", "c-gw", {"isi": "dari gateway"}, f"{VILLAGE}/tps-001")
    reply = gw.request("POST", "/api/sync")
    assert reply.status == 202 and reply.body["unreachable"] == [], reply.body
    assert reply.body["ok"] is True
    wait_for(lambda: phone.request("GET", "/api/records/catatan/c-gw").status == 200, 20,
             "c-gw at the phone", lambda: gw.get("/api/peers"))


# -- status and peers commands ---------------------------------------------------------------


def test_status_and_peers_use_the_running_daemon_then_fall_back(lab: Lab) -> None:
    a, b = pair(lab)
    a.put("voters", "v-0001", {"nama": "Contoh"})
    wait_for(lambda: b.request("GET", "/api/records/voters/v-0001").status == 200, 15,
             "v-0001 at b")
    status = run_json("status", "--home", a.home)
    assert status["device_id"] == a.device_id and "daemon" not in status
    assert status["listen"] == a.runtime["listen"]  # only the running daemon knows this
    assert status["peers"] == 1 and status["diagnosis"] in ("ok", "syncing")
    assert status["changes"] == 1
    peers = run_json("peers", "--home", a.home)
    assert [p["device_id"] for p in peers] == [b.device_id]
    assert peers[0]["addresses"] == [{"host": LOOPBACK, "port": b.listen_port,
                                      "via": "static"}]
    assert peers[0]["sessions_ok"] >= 1 and peers[0]["last_error"] is None
    assert peers[0]["last_seen_ms"] is not None  # seen (static) before the first sync
    text = run("peers", "--home", a.home).stdout
    assert b.device_id[:16] in text

    assert a.stop(signal.SIGTERM) == 0
    assert not (a.home / "daemon.json").exists(), "daemon.json left behind after SIGTERM"
    offline = run_json("status", "--home", a.home)
    assert offline["daemon"] == "not running"
    assert offline["device_id"] == a.device_id and offline["changes"] == 1
    gone = run("peers", "--home", a.home, "--json", check=False)
    assert gone.returncode != 0 and gone.stderr.startswith("meshsync: error: ")
    assert "no daemon" in gone.stderr and gone.stderr.count("\n") == 1
    assert b.stop(signal.SIGTERM) == 0
    assert "Traceback" not in a.log() + b.log()


def test_status_never_sends_the_token_through_a_proxy(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    with closing(socket.create_server((LOOPBACK, 0))) as proxy:
        proxy.settimeout(0.5)
        env = {**os.environ, "http_proxy": f"http://{LOOPBACK}:{proxy.getsockname()[1]}",
               "HTTP_PROXY": f"http://{LOOPBACK}:{proxy.getsockname()[1]}", "no_proxy": "",
               "NO_PROXY": ""}
        proc = subprocess.run([*MESHSYNC, "status", "--home", str(daemon.home), "--json"],
                              capture_output=True, text=True, timeout=30, env=env,
                              check=False)
        with pytest.raises(TimeoutError):  # nothing ever connected to the proxy
            proxy.accept()[0].close()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["listen"] == daemon.runtime["listen"]


def test_sigint_shuts_down_gracefully(lab: Lab) -> None:
    a, b = pair(lab)
    api_port = int(a.runtime["api"].rpartition(":")[2])
    assert a.stop(signal.SIGINT) == 0
    assert not (a.home / "daemon.json").exists()
    assert "Traceback" not in a.log() and "KeyboardInterrupt" not in a.log()
    with closing(socket.socket()) as probe:  # both ports are closed
        assert probe.connect_ex((LOOPBACK, api_port)) != 0
    with closing(socket.socket()) as probe:
        assert probe.connect_ex((LOOPBACK, a.listen_port)) != 0
    with closing(sqlite3.connect(f"file:{a.home / 'store.sqlite'}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The other daemon noticed nothing bad about itself and keeps serving.
    assert b.request("GET", "/api/status").status == 200
    assert b.stop(signal.SIGINT) == 0


def test_sigterm_right_after_start_still_shuts_down_cleanly(lab: Lab) -> None:
    # daemon.json says "up": from then on a signal must mean a clean shutdown (it
    # once arrived before the handler was installed: exit -15, daemon.json left).
    for _ in range(5):
        daemon = lab.daemon("phone-a").start(interval=0.001)
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
        assert not (daemon.home / "daemon.json").exists()


def test_api_port_0_is_recorded_as_the_bound_port(lab: Lab) -> None:
    daemon = lab.daemon("phone-a", api=f"{LOOPBACK}:0").start()
    host, _, port = daemon.runtime["api"].rpartition(":")
    assert host == LOOPBACK and int(port) > 0
    assert run_json("status", "--home", daemon.home)["listen"] == daemon.runtime["listen"]


# -- configuration -------------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown key": ("colour = \"merah\"\n", ["colour", "known keys", "listen"]),
    "listen without port": ('listen = "127.0.0.1"\n', ["listen", "HOST:PORT"]),
    "listen port too big": ('listen = "127.0.0.1:70000"\n', ["listen", "0-65535"]),
    "listen on an address this machine lacks": ('listen = "192.0.2.1:7420"\n',
                                                ["listen", "192.0.2.1:7420"]),
    "listen not a string": ("listen = 7420\n", ["listen", "HOST:PORT"]),
    "api on all interfaces": ('api = "0.0.0.0:7421"\n', ["api", "loopback"]),
    "api on the LAN": ('api = "192.168.43.1:7421"\n', ["api", "loopback"]),
    "unknown discovery": ('discovery = ["static", "merpati"]\n',
                          ["discovery", "merpati", "mdns, broadcast, gateway, static"]),
    "discovery not a list": ('discovery = "static"\n', ["discovery", "list"]),
    "negative anti-entropy": ("anti_entropy_s = -5\n", ["anti_entropy_s", "1 to 86400"]),
    "anti-entropy as text": ('anti_entropy_s = "60"\n', ["anti_entropy_s", "number"]),
    "negative backoff": ("backoff_min_s = -1\n", ["backoff_min_s", "0.1"]),
    "backoff min above max": ("backoff_min_s = 30\nbackoff_max_s = 5\n",
                              ["backoff_min_s", "backoff_max_s"]),
    "static peer without port": ('static_peers = ["192.168.43.1"]\n',
                                 ["static_peers", "HOST:PORT"]),
    "static peer port 0": ('static_peers = ["127.0.0.1:0"]\n', ["static_peers", "1-65535"]),
    "static peers not a list": ('static_peers = "127.0.0.1:7420"\n', ["static_peers", "list"]),
    "empty mesh": ('mesh = ""\n', ["mesh"]),
    "mesh with a space": ('mesh = "jila barat"\n', ["mesh", "letters"]),
    "beacon port 0": ("beacon_port = 0\n", ["beacon_port", "1-65535"]),
    "bad TOML": ("listen = \n", ["config", "line 1"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_invalid_config_is_refused_at_start_with_one_line(lab: Lab, case: str) -> None:
    text, needles = BAD_CONFIGS[case]
    # Every other value is valid and safe: static discovery, loopback, port 0. If the
    # bad value were accepted, the daemon would run (and be killed by the timeout).
    safe = {"discovery": '["static"]', "listen": '"127.0.0.1:0"', "api": '"127.0.0.1:0"'}
    given = {line.split("=")[0].strip() for line in text.splitlines()}
    config = lab.logs / "bad.toml"
    config.write_text(text + "".join(f"{k} = {v}\n" for k, v in safe.items()
                                     if k not in given))
    home = lab.home("phone-a")
    try:
        proc = subprocess.run([*MESHSYNC, "daemon", "--home", str(home), "--config",
                               str(config)], capture_output=True, text=True, timeout=20,
                              check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{case}: the daemon started with {text!r}") from None
    assert proc.returncode != 0
    assert proc.stderr.startswith("meshsync: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (case, needle, proc.stderr)
    assert not (home / "daemon.json").exists()


@pytest.mark.parametrize("which", ["listen", "api"])
def test_a_port_in_use_is_refused_with_one_line(lab: Lab, which: str) -> None:
    with closing(socket.create_server((LOOPBACK, 0))) as taken:
        port = taken.getsockname()[1]
        settings = {which: f"{LOOPBACK}:{port}"}
        daemon = lab.daemon("phone-a", **settings)
        proc = subprocess.run([*MESHSYNC, "daemon", "--home", str(daemon.home), "--config",
                               str(daemon.config_path)], capture_output=True, text=True,
                              timeout=30, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("meshsync: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr
    assert which in proc.stderr and str(port) in proc.stderr, proc.stderr
    assert not (daemon.home / "daemon.json").exists()


# -- killed mid-sync ------------------------------------------------------------------------------

BIG = 50_000


def _store_counts(home: Path) -> tuple[int, int]:
    """(changes, distinct (feed, seq)) in ``home``'s store, read-only."""
    uri = f"file:{home / 'store.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        total, distinct = db.execute(
            "SELECT count(*), count(DISTINCT feed || ':' || seq) FROM changes").fetchone()
    return int(total), int(distinct)


@pytest.mark.slow
def test_daemon_killed_mid_sync_restarts_and_resumes_with_the_remainder(lab: Lab) -> None:
    sender_home, receiver_home = lab.home("phone-a"), lab.home("phone-b")
    write_many_changes(sender_home, BIG)
    assert count_changes(sender_home) == BIG
    sender = lab.daemon("phone-a").start()
    relay = ByteCountingRelay(sender.listen_port)  # counts what the receiver is sent
    try:
        receiver = lab.daemon("phone-b", [relay.address]).start()
        wait_until(lambda: count_changes(receiver_home) >= BIG // 5, 120,
                   "a fifth of the changes at the receiver")
        receiver.kill()
        held = count_changes(receiver_home)
        assert BIG // 5 <= held < BIG, f"not killed midway: {held} of {BIG}"
        with closing(sqlite3.connect(f"file:{receiver_home / 'store.sqlite'}?mode=ro",
                                     uri=True)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert _store_counts(receiver_home) == (held, held)
        first_connections = len(relay.connections)
        first_bytes = sum(c["to_client"] for c in relay.connections)

        restarted = lab.daemon("phone-b", [relay.address]).start()
        wait_until(lambda: count_changes(receiver_home) == BIG, 120, "the remainder")
        wait_for(lambda: restarted.synced_with(sender) and sender.synced_with(restarted),
                 30, "the session to finish on both sides")
    finally:
        relay.close()
    remainder = BIG - held
    assert _store_counts(receiver_home) == (BIG, BIG)  # no change twice
    assert restarted.peer(sender)["changes_received"] == remainder  # type: ignore[index]
    # The sender counts only finished sessions: the killed one does not count.
    assert sender.peer(restarted)["changes_sent"] == remainder  # type: ignore[index]
    # Bytes: what the first run was sent covers `held` changes plus at most the window
    # in flight when it died, so it bounds the cost of one change from above.
    after = sum(c["to_client"] for c in relay.connections[first_connections:])
    per_change = first_bytes / held
    window = SessionConfig().window * fr.FRAME_TARGET_BYTES
    assert after <= remainder * per_change * 1.02 + window, (after, per_change, remainder)
    # The status counts are refreshed within a second after a session (daemon/runner.py
    # _refresher), not at its end: wait for them as for the digest below.
    wait_for(lambda: [d.get("/api/status")["changes"] for d in (sender, restarted)] ==
             [BIG, BIG], 10, "both status counts at BIG",
             lambda: [d.get("/api/status")["changes"] for d in (sender, restarted)])
    wait_for(lambda: sender.get("/api/status")["digest"] ==
             restarted.get("/api/status")["digest"], 10, "the same digest")
    last = f"/api/records/kunjungan/k-{BIG:07d}?partition={VILLAGE}/tps-001"
    assert restarted.get(last) == sender.get(last)
    print(f"\nkilled at {held} of {BIG}; the restart carried {remainder} changes in "
          f"{after} bytes (first run {first_bytes} bytes)")
    assert sender.stop() == 0 and restarted.stop() == 0


def test_listen_must_be_an_ip_address_so_no_name_is_resolved_at_start() -> None:
    # In-process: a host name here would make the daemon resolve it (DNS) at start.
    from meshsync.daemon.config import DEFAULTS, validate

    from meshsync.model.errors import UsageError

    base = {**DEFAULTS, "discovery": ["static"]}
    for host in ("pc-kantor", "256.1.1.1", "laptop.local"):
        with pytest.raises(UsageError, match=r"config listen: .*IP address"):
            validate({**base, "listen": f"{host}:7420"})
    for ok in ("0.0.0.0:7420", "[::]:7420", "127.0.0.1:0", "localhost:7420"):
        validate({**base, "listen": ok})
