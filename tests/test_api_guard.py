"""The local API is closed to web pages (issue 14, item 4; docs/architecture.md §9).

A web page the laptop visits must not read the status page or drive the API: every
page and route needs the token (or a browser session from a one-time login link), the
``Host`` header must be the API's own address (DNS rebinding), and a write must come
from the API's own origin (or, with no ``Origin`` at all, carry the token as a
non-browser client does). Real ``meshsync daemon`` processes on 127.0.0.1, driven
with :mod:`http.client` so the tests set ``Host``, ``Origin`` and ``Cookie`` themselves
and see redirects and ``Set-Cookie`` as they are.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

import pytest
import test_daemon
from netfixtures import LOOPBACK, run, run_json
from test_daemon import Lab

template, lab = test_daemon.template, test_daemon.lab

EVIL = "http://evil.example"


@dataclass
class Raw:
    """A reply as it came: status, headers (lower-case names; Set-Cookie joined), body."""

    status: int
    headers: dict[str, str]
    body: Any


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> Raw:
    """One request to 127.0.0.1:``port``; ``Host`` is the API's own unless given."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=15)
    try:
        conn.request(method, path, body=body,
                     headers={"Host": f"{LOOPBACK}:{port}", **(headers or {})})
        reply = conn.getresponse()
        data = reply.read()
        found = {k.lower(): v for k, v in reply.getheaders()}
        found["set-cookie"] = "\n".join(reply.headers.get_all("set-cookie") or [])
    finally:
        conn.close()
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return Raw(reply.status, found, parsed)


def port_of(daemon: test_daemon.DaemonProcess) -> int:
    return int(daemon.api_url.rpartition(":")[2])


def login(daemon: test_daemon.DaemonProcess) -> tuple[str, str]:
    """Follow a fresh login link; (the link's path, the ``Cookie`` header to send)."""
    link = run_json("login", "--home", daemon.home)
    assert link["expires_in_s"] == 120
    url = link["url"]
    assert url.startswith(daemon.api_url + "/login?once="), url
    path = url[len(daemon.api_url):]
    reply = raw(port_of(daemon), "GET", path)
    assert reply.status == 303 and reply.headers["location"] == "/", reply
    cookie = reply.headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes, cookie
    return path, cookie.split(";")[0]


def test_every_page_needs_the_token(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = port_of(daemon)
    for path in ("/", "/api/openapi.json", "/api/status"):
        refused = raw(port, "GET", path)
        assert refused.status == 401, (path, refused)
        assert refused.headers["content-type"].startswith("application/json")
        assert "token" in refused.body["error"] and "meshsync login" in refused.body["error"]
        assert daemon.device_id[:16] not in json.dumps(refused.body)
        allowed = raw(port, "GET", path, {"Authorization": f"Bearer {daemon.token}"})
        assert allowed.status == 200, (path, allowed)
    spec = raw(port, "GET", "/api/openapi.json", {"Authorization": f"Bearer {daemon.token}"})
    assert spec.body["components"]["securitySchemes"]["session"]["name"] == \
        f"meshsync_session_{port}"
    # An unknown session cookie is no better than none.
    forged = raw(port, "GET", "/", {"Cookie": f"meshsync_session_{port}=forged"})
    assert forged.status == 401, forged


def test_a_foreign_host_is_refused_even_with_the_token(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = port_of(daemon)
    bearer = {"Authorization": f"Bearer {daemon.token}"}
    for host in (f"evil.example:{port}", f"{LOOPBACK}:{port + 1}", LOOPBACK,
                 f"localhost.evil.example:{port}", f"127.0.0.1.nip.io:{port}", ""):
        for method, path in (("GET", "/"), ("GET", "/api/status"), ("POST", "/api/sync"),
                             ("GET", "/login?once=x"), ("GET", "/no/such/path")):
            reply = raw(port, method, path, {**bearer, "Host": host})
            assert reply.status == 421, (host, path, reply)
            assert reply.headers["content-type"].startswith("application/json")
            assert reply.body["host"] == host and repr(host) in reply.body["error"], reply
            assert daemon.device_id[:16] not in json.dumps(reply.body)
    for host in (f"{LOOPBACK}:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                 f"[::1]:{port}"):
        assert raw(port, "GET", "/api/status", {**bearer, "Host": host}).status == 200, host


def test_cross_origin_writes_are_refused(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = port_of(daemon)
    _, cookie = login(daemon)
    put = json.dumps({"fields": {"nama": "Penyusup"}}).encode()
    credentials = {"token": {"Authorization": f"Bearer {daemon.token}"},
                   "cookie": {"Cookie": cookie}}
    for how, headers in credentials.items():
        for origin in (EVIL, f"{EVIL}:{port}", "null", f"http://{LOOPBACK}:{port + 1}",
                       f"https://{LOOPBACK}:{port}"):
            for method, path, body in (("POST", "/api/sync", None),
                                       ("PUT", "/api/records/voters/v-0001", put),
                                       ("DELETE", "/api/records/voters/v-0001", None),
                                       ("POST", "/api/login-links", None)):
                reply = raw(port, method, path, {**headers, "Origin": origin}, body)
                assert reply.status == 403, (how, origin, method, path, reply)
                assert reply.body["origin"] == origin, reply
                assert "Origin" in reply.body["error"], reply
    # A cookie without an Origin is not a browser's same-origin write either.
    no_origin = raw(port, "POST", "/api/sync", {"Cookie": cookie})
    assert no_origin.status == 403 and "Origin" in no_origin.body["error"], no_origin
    assert daemon.request("GET", "/api/records/voters/v-0001").status == 404
    # Reads carry no Origin rule: the browser's same-origin policy keeps their answers.
    assert raw(port, "GET", "/", {"Cookie": cookie, "Origin": EVIL}).status == 200


def test_same_origin_writes_are_accepted(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = port_of(daemon)
    _, cookie = login(daemon)
    own = f"http://{LOOPBACK}:{port}"
    token = {"Authorization": f"Bearer {daemon.token}"}
    for headers in ({"Cookie": cookie, "Origin": own}, {**token, "Origin": own}, token,
                    {"Cookie": cookie, "Origin": f"http://localhost:{port}",
                     "Host": f"localhost:{port}"}):
        reply = raw(port, "POST", "/api/sync", headers)
        assert reply.status == 202 and reply.body["ok"] is True, (headers, reply)
    put = json.dumps({"fields": {"nama": "Contoh"}}).encode()
    reply = raw(port, "PUT", "/api/records/voters/v-0001",
                {"Cookie": cookie, "Origin": own, "Content-Type": "application/json"}, put)
    assert reply.status == 200, reply
    assert daemon.get("/api/records/voters/v-0001")["fields"] == {"nama": "Contoh"}


def test_a_login_link_works_once(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    port = port_of(daemon)
    link = run_json("login", "--home", daemon.home)["url"][len(daemon.api_url):]
    assert raw(port, "HEAD", link).status == 405  # a link preview does not use it up
    assert raw(port, "GET", link).status == 303
    path, cookie = login(daemon)
    page = raw(port, "GET", "/", {"Cookie": cookie})
    assert page.status == 200 and daemon.device_id[:16] in page.body
    again = raw(port, "GET", path)
    assert again.status == 403 and "already used" in again.body["error"], again
    assert not again.headers["set-cookie"]
    for bad in ("/login?once=guessed", "/login"):
        reply = raw(port, "GET", bad)
        assert reply.status == 403 and "meshsync login" in reply.body["error"], reply
    text = run("login", "--home", daemon.home).stdout
    assert f"{daemon.api_url}/login?once=" in text and "2 minutes" in text, text


def test_login_needs_a_running_daemon(lab: Lab) -> None:
    home = lab.home("phone-a")
    proc = run("login", "--home", home, check=False)
    assert proc.returncode != 0 and "no daemon is running" in proc.stderr, proc


# -- the guard alone, on a clock the test turns ----------------------------------------


class Clock:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_link_expires() -> None:
    from meshsync.daemon.guard import LOGIN_TTL_S, ApiGuard

    clock = Clock()
    guard = ApiGuard("t" * 43, clock=clock)
    guard.listen_on(["http://127.0.0.1:7421"])
    late = guard.new_link()
    clock.now += LOGIN_TTL_S + 0.5
    with pytest.raises(PermissionError, match="expired"):
        guard.redeem(late)
    fresh = guard.new_link()
    clock.now += LOGIN_TTL_S - 1
    session = guard.redeem(fresh)
    assert guard.has_session(session) and not guard.has_session(fresh)
    with pytest.raises(PermissionError, match="already used"):
        guard.redeem(fresh)
    assert guard.cookie_name == "meshsync_session_7421"
    assert guard.allows_host("localhost:7421") and not guard.allows_host("localhost:7422")
