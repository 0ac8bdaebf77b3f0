"""The laptop's page in a real browser: headless Chromium (docs/architecture.md §9).

A district laptop's daemon syncs with two phone daemons (static peers, 127.0.0.1
only); Chromium follows the one-time link ``meshsync login`` prints, lands on the
laptop's page with its session cookie, and the rendered DOM must list both phones
(named as enrolled), say in its headline that no connection to KPU is set up, and
must not show the voter fields the node holds outside a conflict (the page lists
progress and custody as counts; only a conflict shows its entries, to be resolved).
Without the link the page is refused, and a second use of the same link too (issue
14: the local API is closed to web pages). tests/test_laptop_page.py covers the
rest of the page (the uplink's states, custody, conflicts, progress).

Chromium is kept off the network: besides the usual switches, every host name
resolves to nothing but 127.0.0.1 and every non-loopback URL goes to a dead proxy
on 127.0.0.1. Needs Debian's ``chromium`` package; skipped with the reason without it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import test_daemon
from netfixtures import LOOPBACK, run_json, wait_until
from test_daemon import Lab

# The district and daemon fixtures of test_daemon, used here by name.
template, lab = test_daemon.template, test_daemon.lab

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (Debian: apt-get install chromium)")

WINDOW = (1000, 700)


def chromium(user_data: Path, *args: str, window: tuple[int, int] = WINDOW
             ) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with switches that keep it off the network, its window
    ``window`` (width, height) pixels."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--no-default-browser-check",
         f"--user-data-dir={user_data}",
         f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}",
         f"--proxy-server=http://{LOOPBACK}:9",  # loopback itself bypasses proxies
         f"--window-size={window[0]},{window[1]}", *args],
        capture_output=True, text=True, timeout=90, check=False)


class PageText(HTMLParser):
    """The text of the element with id ``uplink`` (the headline) and the cells of
    ``tr.peer`` rows."""

    def __init__(self) -> None:
        super().__init__()
        self.headline = ""
        self.peer_rows: list[list[str]] = []
        self._where: str | None = None  # "headline", "peer-row" or "cell"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id") == "uplink":
            self._where = "headline"
        elif tag == "tr":
            is_peer = (attributes.get("class") or "").split()[:1] == ["peer"]
            self._where = "peer-row" if is_peer else None
            if is_peer:
                self.peer_rows.append([])
        elif tag == "td" and self._where == "peer-row":
            self.peer_rows[-1].append("")
            self._where = "cell"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._where == "cell":
            self._where = "peer-row"
        elif tag in ("h1", "tr"):
            self._where = None

    def handle_data(self, data: str) -> None:
        if self._where == "headline":
            self.headline += data
        elif self._where == "cell":
            self.peer_rows[-1][-1] += data


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_status_page_in_headless_chromium_after_the_login_link(lab: Lab, tmp_path: Path) -> None:
    phones = [lab.daemon(name).start() for name in ("phone-a", "phone-b")]
    laptop = lab.daemon("laptop", [f"{LOOPBACK}:{p.listen_port}" for p in phones]).start()
    secret = "Contoh Rahasia Pemilih"
    phones[0].put("voters", "v-0001", {"nama": secret, "nik": "0000000000000001"})
    wait_until(lambda: all(laptop.synced_with(p) for p in phones) and
               laptop.request("GET", "/api/records/voters/v-0001?partition="
                              "mimika/jila/diloa/tps-001").status == 200
               and laptop.get("/api/status")["diagnosis"] == "ok",
               30, "the laptop to sync with both phones", interval=0.1)

    closed = chromium(tmp_path / "stranger", "--dump-dom", laptop.api_url + "/")
    assert "missing or wrong API token" in closed.stdout, closed.stdout
    assert laptop.device_id[:16] not in closed.stdout

    link = run_json("login", "--home", laptop.home)["url"]
    assert link.startswith(laptop.api_url + "/login?once="), link
    dom = chromium(tmp_path / "profile", "--dump-dom", link)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = PageText()
    page.feed(dom.stdout)
    # The page speaks Indonesian by default; this laptop has no uplink, and says so
    # first (the old page's first word was a green "ok" whatever the uplink did).
    assert page.headline.strip() == "Koneksi ke KPU belum diatur di laptop ini", dom.stdout
    assert f"({laptop.device_id[:16]})" in dom.stdout
    # Phones by the name they were enrolled under (`meshsync init` names a home's
    # request meshsync-<first 8 of its id>), each with its role and short id. The
    # laptop re-syncs with each phone every few seconds, so a healthy page may catch a
    # session in flight: either word is the truth.
    healthy = {"lancar", "sedang sinkronisasi"}
    names = sorted(f"meshsync-{p.device_id[:8]}" for p in phones)
    assert sorted(row[0].strip() for row in page.peer_rows) == names, page.peer_rows
    for row in page.peer_rows:
        assert row[2].split() == ["HP", "Pantarlih", row[0].strip()[9:]], row
        assert row[-1].strip() in healthy, row
    assert secret not in dom.stdout and "0000000000000001" not in dom.stdout
    assert laptop.token not in dom.stdout

    # The same link a second time (another browser, or the same one): refused.
    for profile in ("profile", "other"):
        again = chromium(tmp_path / profile, "--dump-dom", link)
        assert "already used" in again.stdout, again.stdout
        assert laptop.device_id[:16] not in again.stdout

    shot = tmp_path / "status.png"
    link = run_json("login", "--home", laptop.home)["url"]
    rendered = chromium(tmp_path / "shot", f"--screenshot={shot}", link)
    assert rendered.returncode == 0 and shot.exists(), rendered.stderr[-2000:]
    assert png_size(shot) == WINDOW
    # A blank page of this size is ~3.6 KB; the rendered tables and text are ~40 KB.
    assert shot.stat().st_size > 15_000, shot.stat().st_size
