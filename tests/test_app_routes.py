"""The officer's app is behind the API's guard, and installable (issue 16; docs/app.md).

One real phone daemon on 127.0.0.1 (the enrolled homes of test_daemon): every ``/app``
route refuses a request without the token (401), under a foreign ``Host`` (421), and a
form POST from another origin (403); with the token the pages answer in Indonesian
with a CSP that allows only the app's own scripts and styles; the web app manifest
names the app's start page and icons that are served; a file outside the app's static
folder is never served. (The browser path, login link and cookie, is
tests/test_app_phone.py.)
"""

from __future__ import annotations

import json
import time
import urllib.parse
from http.client import HTTPConnection

import test_daemon
from daemonfixtures import DaemonProcess, http
from test_daemon import Lab

template, lab = test_daemon.template, test_daemon.lab

PARTITION = "mimika/jila/diloa/tps-001"
GETS = ["/app", "/app/cari?q=CONTOH", f"/app/tps/{PARTITION}",
        f"/app/pemilih/v-0001?tps={PARTITION}", "/app/catatan",
        f"/app/baru?tps={PARTITION}", "/app/manifest.webmanifest", "/app/static/app.css"]
POSTS = ["/app/pemilih/v-0001/coklit", f"/app/pemilih/v-0001/ubah?tps={PARTITION}",
         f"/app/baru?tps={PARTITION}"]


def fetch(daemon: DaemonProcess, method: str, path: str, body: bytes | None = None,
          **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body, with the token; no redirects."""
    host, port = daemon.runtime["api"].rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path, body=body,
                     headers={"Authorization": f"Bearer {daemon.token}", **headers})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_every_app_route_is_guarded_and_the_app_installs(lab: Lab) -> None:
    daemon = lab.daemon("phone-a").start()
    daemon.put("voters", "v-0001", {"nama": "Contoh Pemilih"})
    form = urllib.parse.urlencode({"tps": PARTITION, "hasil": "MS"}).encode()
    for path in GETS + POSTS:
        method = "POST" if path in POSTS else "GET"
        body = form if method == "POST" else None
        assert http(method, daemon.api_url + path, body=body).status == 401, path
        foreign = http(method, daemon.api_url + path, daemon.token, body=body,
                       headers={"Host": "evil.example:80"})
        assert foreign.status == 421, path
        other = http(method, daemon.api_url + path, daemon.token, body=body,
                     headers={"Origin": "http://evil.example"}) if method == "POST" else None
        assert other is None or other.status == 403, path
    for path in GETS:
        reply = http("GET", daemon.api_url + path, daemon.token)
        assert reply.status == 200, (path, reply)
    status, headers, page = fetch(daemon, "GET", "/app/cari?q=pemilih")
    assert headers["content-security-policy"].startswith("default-src 'self';")
    assert "unsafe-inline" not in headers["content-security-policy"]
    text = page.decode()
    assert '<html lang="id">' in text and "1 ditemukan" in text and "Contoh Pemilih" in text
    status, headers, raw = fetch(daemon, "GET", "/app/manifest.webmanifest")
    assert headers["content-type"].startswith("application/manifest+json")
    manifest = json.loads(raw)
    assert (manifest["start_url"], manifest["display"]) == ("/app", "standalone")
    for icon in manifest["icons"]:
        status, headers, raw = fetch(daemon, "GET", icon["src"])
        assert status == 200 and headers["content-type"].startswith(icon["type"]), icon
    for hidden in ("/app/static/..%2Fapp.css", "/app/static/.x", "/app/static/nothing.js",
                   "/app/static/%2E%2E%2Ftemplates%2Fapp%2Fbase.html", "/app/static/%00",
                   "/static/%00", "/static/kpu/a%00.css"):
        assert fetch(daemon, "GET", hidden)[0] == 404, hidden
    browser = http("GET", daemon.api_url + "/app", headers={"Accept": "text/html"})
    assert browser.status == 401 and "Belum masuk" in browser.body  # a page, not JSON
    status, _, page = fetch(daemon, "GET", "/app/pemilih/v-9999")
    assert status == 404 and "tidak ada pemilih v-9999" in page.decode()
    status, _, page = fetch(daemon, "POST", "/app/pemilih/v-9999/coklit", form,  # no voter
                            **{"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 404 and "tidak ada pemilih v-9999" in page.decode()
    status, headers, _ = fetch(daemon, "POST", "/app/pemilih/v-0001/coklit", form,
                               **{"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"].startswith("/app/pemilih/v-0001?")
    assert daemon.get(f"/api/records/voters/v-0001?partition={PARTITION}")["fields"][
        "coklit"] == "MS"
    edit = urllib.parse.urlencode({"nama": "Contoh Pemilih Baru", "nik": "9109060101800001"})
    status, _, _ = fetch(daemon, "POST", f"/app/pemilih/v-0001/ubah?tps={PARTITION}",
                         edit.encode(), **{"Content-Type": "application/x-www-form-urlencoded"})
    fields = daemon.get(f"/api/records/voters/v-0001?partition={PARTITION}")["fields"]
    assert status == 303 and (fields["nama"], fields["coklit"]) == ("Contoh Pemilih Baru", "ubah")
    twin = urllib.parse.urlencode({"nama": "Orang Lain", "nik": "9109060101800001"})
    status, _, page = fetch(daemon, "POST", f"/app/baru?tps={PARTITION}", twin.encode(),
                            **{"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "NIK ini sudah terdaftar atas nama Contoh Pemilih Baru" in \
        page.decode()
    assert len(daemon.listing("/api/records/voters")) == 1  # nothing stored
    for method in ("GET", "POST"):  # a TPS this phone does not hold has no form
        status, _, page = fetch(daemon, method, "/app/baru?tps=zzz", twin.encode(),
                                **{"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 404 and "tidak ada pemilih di zzz" in page.decode(), method
    assert len(daemon.listing("/api/records/voters")) == 1
    assert daemon.stop() == 0


class _Daemon:
    """The two calls sync_state makes, answering what a phone with a wrong date and a
    full disk reports in ``/api/status`` and ``/api/peers`` (a stand-in for the unit
    test below; the real figures are the daemon's: tests/test_wrong_date.py,
    tests/test_storage_reserve.py)."""

    def status(self) -> dict[str, object]:
        return {"clock": {"plausible": False, "device_date": "2031-01-01T08:00Z",
                          "network_date": "2026-12-07T10:00Z", "problem": "clock_ahead"},
                "clock_warnings": [], "storage": {"free_mb": 12.5, "reserve_mb": 64.0,
                                                  "low": True}}

    def peers(self) -> list[dict[str, object]]:
        now = int(time.time() * 1000)
        return [{"device_id": "a" * 52, "role": "gateway", "last_seen_ms": now,
                 "last_sync_ms": now - 180_000, "failures": 0}]


def test_the_first_page_warns_of_a_wrong_date_and_low_storage_in_indonesian() -> None:
    from meshsync.daemon.app_data import FORM_FIELDS, LABELS, codes
    from meshsync.daemon.app_state import sync_state
    from meshsync.daemon.templating import render

    state = sync_state(_Daemon(), [])  # type: ignore[arg-type]
    page = render("app/home.html", "id", codes=codes(), labels=LABELS,
                  form_fields=FORM_FIELDS, rows=[(PARTITION, 3, 7)], own=PARTITION,
                  state=state)
    assert "Tanggal/jam HP salah: HP menunjukkan 2031-01-01, jaringan 2026-12-07" in page
    assert "Memori HP hampir penuh (sisa 12,5 MB)" in page
    assert "laptop PPK" in page and "3 menit lalu" in page
    assert "dicoklit 3 dari 7" in page and "TPS 001 · Diloa" in page
