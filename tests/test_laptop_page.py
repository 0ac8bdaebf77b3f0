"""The PPK laptop's page in headless Chromium, against real daemons on 127.0.0.1
(issue 15, item 2; docs/architecture.md §9 "The laptop page").

A district laptop (gateway) syncs with two Pantarlih phones enrolled under officers'
names (fictitious) and has an uplink to a KPU central (SQLite) that is not running yet.
Each phone wrote its own entry for the same record before the laptop saw them: a
conflict. The laptop imported a small generated DPT and two coklit results were
recorded. Chromium follows ``meshsync login``'s one-time link and the rendered DOM is
read in Indonesian at three moments: never connected to KPU, connected (KPU confirmed
everything), and KPU gone (connection lost since a time). The conflict is resolved
with the exact request the page's form makes (urlencoded, same Origin, the session
cookie), then gone from the page. Screenshots go to ``$MESHSYNC_SCREENSHOTS`` (CI keeps
``ci-artifacts/screenshots``), else the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import re
import socket
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from daemonfixtures import DaemonLab, DaemonProcess, http
from meshsync.daemon.laptop_page import headline, phone_rows, render_laptop, shown_value
from netfixtures import DISTRICT, LOOPBACK, VILLAGE, District, run, run_json, wait_until
from test_status_page import CHROMIUM, chromium, png_size

from meshsync.host.i18n import number

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (Debian: apt-get install chromium)")

#: home -> (name given at enrolment, role, scope, default partition). Fictitious names.
HOMES = {
    "central": ("Server KPU Mimika", "central", "", "mimika"),
    "laptop": ("Laptop PPK Jila", "gateway", DISTRICT, DISTRICT),
    "hp-yohana": ("Yohana Wenda", "pantarlih", VILLAGE, f"{VILLAGE}/tps-001"),
    "hp-markus": ("Markus Kogoya", "pantarlih", VILLAGE, f"{VILLAGE}/tps-002"),
}
FAST = {"backoff_min_s": 0.2, "backoff_max_s": 1.0, "anti_entropy_s": 3600.0}
RECORD = ("kunjungan", "rumah-007", f"{VILLAGE}/tps-001")
#: Screenshot size: a laptop screen's width, tall enough for the whole page.
SHOT = (1280, 2000)


def shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``$MESHSYNC_SCREENSHOTS`` (kept by CI), else ``tmp_path``."""
    folder = Path(os.environ.get("MESHSYNC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    """A port nobody listens on now (central's, known to the laptop before it runs)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class Lab(DaemonLab):
    """This test's copy of the enrolled homes and its daemons."""

    def daemon(self, name: str, *, peers: tuple[str, ...] = (), uplink: tuple[str, ...] = (),
               listen: int = 0, role: str | None = None) -> DaemonProcess:
        """A daemon on home ``name`` (not started), mesh "mimika", static discovery."""
        return self.add(DaemonProcess(
            self.home(name), self.logs / f"{name}-{len(self.daemons)}.log",
            {"mesh": "mimika", "listen": f"{LOOPBACK}:{listen}", **FAST,
             "static_peers": list(peers), "uplink": list(uplink)},
            args=["--role", role] if role else [], stop_timeout=20))

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``check``; on timeout fail with every daemon's log tail."""
        try:
            return wait_until(check, timeout, what, interval=0.1)
        except AssertionError as exc:
            tails = "\n".join(f"--- {d.name}:\n{d.log()[-1500:]}" for d in self.daemons)
            raise AssertionError(f"{exc}\n{tails}") from None


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enrol once, each home under its name."""
    root = tmp_path_factory.mktemp("jila")
    district = District(root)
    for home, (name, role, scope, partition) in HOMES.items():
        run("init", "--home", root / home, "--partition", partition, "--name", name)
        run("authority", "issue", "--home", district.authority, root / home / "device.csr",
            "--role", role, "--scope", scope, "-o", root / f"{home}.crt")
        run("enroll", "--home", root / home, root / f"{home}.crt")
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path) -> Iterator[Lab]:
    with Lab.copy_of(template, tmp_path, "jila") as the_lab:
        yield the_lab


def dpt_csv() -> tuple[bytes, list[tuple[str, str]]]:
    """A small generated voter list of distrik Jila (fictitious) and its (partition,
    key) pairs."""
    from meshsync.coklit.dpt_csv import write_csv
    from meshsync.coklit.sample import generate

    voters = generate(7, "Jila", voters_per_tps=3, tps_per_kampung=1)
    out = io.StringIO()
    write_csv(out, ((v.partition, v.key, v.fields) for v in voters))
    return out.getvalue().encode(), [(v.partition, v.key) for v in voters]


VOID = {"input", "meta", "link", "br", "img", "hr"}


class Dom(HTMLParser):
    """Text of the elements with an id (cells apart), and the forms with their inputs."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.forms: list[dict[str, str]] = []
        self._stack: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "")})
        if tag == "input" and self.forms:
            self.forms[-1][a.get("name", "")] = a.get("value", "")
        if tag in VOID:
            return
        self._stack.append((tag, a.get("id")))
        if a.get("id"):
            self.text.setdefault(a["id"], "")

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _tag, ident in self._stack:
            if ident:
                self.text[ident] += data + " "

    def of(self, ident: str) -> str:
        """The text of element ``ident``, whitespace collapsed."""
        return " ".join(self.text.get(ident, "").split())


def browse(lab: Lab, laptop: DaemonProcess, tmp_path: Path, shot: str) -> Dom:
    """Open the laptop page in Chromium through a fresh login link: its rendered DOM,
    and a screenshot ``shot``.png."""
    dumped = chromium(tmp_path / f"dom-{shot}", "--dump-dom",
                      run_json("login", "--home", laptop.home)["url"])
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    path = shots_dir(tmp_path) / f"laptop-{shot}.png"
    taken = chromium(tmp_path / f"shot-{shot}", f"--screenshot={path}",
                     run_json("login", "--home", laptop.home)["url"], window=SHOT)
    assert taken.returncode == 0 and png_size(path) == SHOT, taken.stderr[-2000:]
    assert path.stat().st_size > 15_000  # a blank page is ~3.6 KB
    return Dom(dumped.stdout)


def session_cookie(laptop: DaemonProcess) -> str:
    """Follow a one-time login link as a browser does: the session cookie it sets."""
    link = urlsplit(run_json("login", "--home", laptop.home)["url"])
    conn = HTTPConnection(str(link.hostname), link.port, timeout=10)
    try:
        conn.request("GET", f"{link.path}?{link.query}")
        reply = conn.getresponse()
        assert reply.status in (302, 303, 307), reply.status
        return reply.headers["set-cookie"].split(";", 1)[0]
    finally:
        conn.close()


def post_form(laptop: DaemonProcess, body: str, cookie: str,
              origin: str) -> tuple[int, str, str]:
    """POST ``body`` to the resolve route as a browser's form does: status, Location,
    the page sent back."""
    link = urlsplit(laptop.api_url)
    conn = HTTPConnection(str(link.hostname), link.port, timeout=10)
    try:
        conn.request("POST", "/api/conflicts/resolve", body=body.encode(), headers={
            "Cookie": cookie, "Origin": origin,
            "Content-Type": "application/x-www-form-urlencoded"})
        reply = conn.getresponse()
        text = reply.read().decode("utf-8", "replace")
        return reply.status, reply.headers.get("location", ""), text
    finally:
        conn.close()


def page_html(laptop: DaemonProcess) -> str:
    """The page as served (token), for polling until a state shows."""
    return str(http("GET", laptop.api_url + "/", laptop.token).body)


def test_laptop_page_never_connected_up_and_down_with_a_conflict_resolved(
        lab: Lab, tmp_path: Path) -> None:
    phones = {name: lab.daemon(name).start() for name in ("hp-yohana", "hp-markus")}
    entries = {"hp-yohana": "pintu biru, dekat gereja", "hp-markus": "pintu hijau"}
    for name, phone in phones.items():  # the same record, before either reached the laptop
        collection, key, partition = RECORD
        phone.put(collection, key, {"catatan": entries[name]}, partition)
    central_port = free_port()
    laptop = lab.daemon("laptop", peers=tuple(p.address for p in phones.values()),
                        uplink=(f"{LOOPBACK}:{central_port}",)).start()
    csv, voters = dpt_csv()
    reply = http("POST", laptop.api_url + "/api/coklit/import?name=dpt.csv", laptop.token,
                 body=csv)
    assert reply.status == 200, reply
    for (partition, key), result in zip(voters[:3], ("MS", "TMS", "ubah"), strict=True):
        fields: dict[str, Any] = {"coklit": result}
        if result == "TMS":
            fields["tms"] = "meninggal"
        assert laptop.request("PUT", f"/api/records/voters/{key}",
                              {"fields": fields, "partition": partition}).status == 200
    lab.wait(lambda: all(laptop.synced_with(p) for p in phones.values())
             and laptop.get("/api/status")["conflicts"] == 1
             and (laptop.get("/api/status")["uplink"] or {}).get("last_error"),
             40, "the laptop to sync both phones and try its uplink")

    # 1. Never connected to KPU: the headline says so, though the phones sync fine.
    status = laptop.get("/api/status")
    assert status["diagnosis"] in ("ok", "syncing")  # the old page said a green "ok" here
    dom = browse(lab, laptop, tmp_path, "never-connected")
    assert dom.of("uplink") == "Belum pernah terhubung ke KPU", dom.text
    held = status["changes"]
    assert f"{number(held, 'id')} perubahan menunggu dikirim ke KPU" in dom.of("waiting")
    assert f"menyimpan {number(held, 'id')} perubahan yang belum dikonfirmasi KPU" in \
        dom.of("custody-summary")
    # Per TPS: the record both phones wrote is in tps-001 (two changes, one from each).
    assert re.search(rf"{VILLAGE}/tps-001 (\d+) \1 ", dom.of("custody-tps")), \
        dom.of("custody-tps")
    peers = dom.of("peers")
    for name in ("Yohana Wenda", "Markus Kogoya"):
        assert name in peers and name in dom.of("custody-phones"), peers
    assert "None" not in peers and "{" not in peers and "busy" not in peers
    assert "HP Pantarlih" in peers and "diloa/tps-001" in peers, peers
    assert "tidak bisa dihubungi" not in peers  # KPU is in the headline, not a device row
    visited = voters[0][0]  # the three results were recorded at this TPS
    done = sum(1 for p, _key in voters[:3] if p == visited)
    total = sum(1 for p, _key in voters if p == visited)
    kampung, tps = visited.split("/")[-2:]
    assert f"{kampung} {tps} dicoklit {done} dari {total} " in dom.of("progress-tps"), \
        dom.of("progress-tps")
    assert f"{kampung} dicoklit {done} dari {total} " in dom.of("progress-village")
    conflicts = dom.of("conflicts")
    for name, entry in entries.items():
        assert entry in conflicts and HOMES[name][0] in conflicts, conflicts
    forms = [f for f in dom.forms if f["action"] == "/api/conflicts/resolve"]
    assert len(forms) == 2 and all(f["method"] == "post" for f in forms), dom.forms

    # 2. KPU runs: connected, and nothing waits once its receipt came back.
    central = lab.daemon("central", listen=central_port, role="central").start()
    laptop.request("POST", "/api/sync")
    lab.wait(lambda: "Tidak ada yang menunggu" in page_html(laptop), 40,
             "KPU to confirm everything the laptop holds")
    dom = browse(lab, laptop, tmp_path, "connected")
    assert dom.of("uplink") == "Terhubung ke KPU", dom.text
    assert "Tidak ada yang menunggu" in dom.of("waiting")
    assert "KPU terakhir mengonfirmasi pukul" in dom.of("custody-summary")
    assert "semua TPS: sudah dikonfirmasi KPU" in dom.of("custody-tps")

    # 3. The page's form, as the browser sends it: same origin, the session cookie.
    chosen = next(f for f in forms if f["author"] == phones["hp-markus"].device_id)
    body = urlencode({k: v for k, v in chosen.items() if k not in ("action", "method")})
    status, location, _ = post_form(laptop, body, session_cookie(laptop), laptop.api_url)
    assert (status, location) == (303, "/#conflicts")
    record = laptop.get(f"/api/records/{RECORD[0]}/{RECORD[1]}?partition={RECORD[2]}")
    assert record["fields"]["catatan"] == entries["hp-markus"] and not record["conflicts"]
    again = laptop.request("POST", "/api/conflicts/resolve", {
        k: v for k, v in chosen.items() if k not in ("action", "method")})
    assert again.status == 409 and "no open conflict" in again.body["error"], again
    # The same form again, from the page left open: a page saying nothing was written.
    status, _, text = post_form(laptop, body, session_cookie(laptop), laptop.api_url)
    assert status == 409 and "Isian ini sudah tidak berkonflik" in text, text
    # Another origin's page cannot do the same.
    assert post_form(laptop, body, session_cookie(laptop), "http://evil.test")[0] == 403

    # 4. KPU gone: the headline says since when, never "connected".
    central.stop()
    laptop.request("POST", "/api/sync")
    lab.wait(lambda: laptop.get("/api/status")["uplink"]["state"] == "down", 30,
             "the laptop to notice KPU is gone")
    dom = browse(lab, laptop, tmp_path, "disconnected")
    assert dom.of("uplink").startswith("Koneksi ke KPU terputus sejak "), dom.of("uplink")
    assert re.search(r"sejak \d{2}\.\d{2} \(", dom.of("uplink")), dom.of("uplink")
    assert "Tidak ada konflik" in dom.of("no-conflicts")


@pytest.mark.parametrize("uplink, kind", [
    (None, "none"),
    ({"state": "up", "last_sync_ms": 5}, "up"),
    ({"state": "down", "last_sync_ms": 5, "last_error": "connect: refused"}, "down"),
    ({"state": "down", "last_sync_ms": None, "last_error": "connect: refused"}, "never"),
])
def test_headline_is_connected_only_when_the_uplink_is_up(uplink: Any, kind: str) -> None:
    assert headline(uplink, 0)["kind"] == kind
    assert headline(uplink, 0, "gateway")["kind"] == kind


def test_a_session_in_flight_is_drawn_with_the_peers_name() -> None:
    dev = "b" * 52
    status = {"device_id": "c" * 52, "role": "gateway", "mesh": "mimika", "uplink": None,
              "clock": None, "progress": [
                  {"peer": dev, "direction": "outgoing", "changes_received": 8000,
                   "changes_offered": 16417, "changes_sent": 0, "changes_to_send": 0,
                   "bytes_received": 2_460_000, "bytes_sent": 900, "started_ms": 1}]}
    facts = {"names": {dev: {"name": "Yohana Wenda", "scope": VILLAGE, "role": "pantarlih"}},
             "held": {"feeds": [], "waiting": 0, "confirmed_ms": None, "refused": []},
             "conflicts": []}
    skewed = {"device_id": dev, "role": "pantarlih", "addresses": [], "last_seen_ms": 1,
              "last_sync_ms": 2, "failures": 0, "syncing": False, "pending": 0,
              "to_receive": 0, "clock_warnings": ["x"], "clock_skew_ms": 7_200_000}
    page = render_laptop(status, [skewed], {"tps": {}, "village": {}}, facts, "id")
    assert "Jam Yohana Wenda berbeda 7.200 detik dari jam laptop ini" in page
    flight = " ".join(Dom(page).of("flight").split())
    assert flight == "Menerima dari Yohana Wenda: 8.000 dari 16.417 perubahan, sejauh ini " \
                     "2,5 MB.", flight
    assert 'value="8000"' in page and 'max="16417"' in page
    headline_text = Dom(page).of("uplink")
    assert headline_text == "Koneksi ke KPU belum diatur di laptop ini", headline_text
    phone = render_laptop({**status, "role": "pantarlih", "progress": []}, [],
                          {"tps": {}, "village": {}}, facts, "id")
    assert "lewat laptop PPK" in Dom(phone).of("uplink")
    english = render_laptop(status, [], {"tps": {}, "village": {}}, facts, "en")
    assert '<html lang="en">' in english and "Receiving from Yohana Wenda: 8,000 of " \
        "16,417 changes" in english
    assert '<html lang="id">' in page


def test_phone_rows_name_the_phone_and_never_show_raw_values_or_a_busy_race() -> None:
    dev = "a" * 52
    names = {dev: {"name": "Yohana Wenda", "scope": VILLAGE, "role": "pantarlih"}}
    peer = {"device_id": dev, "role": "pantarlih", "addresses": [], "last_seen_ms": 1,
            "last_sync_ms": 2, "failures": 0, "syncing": False, "pending": None,
            "to_receive": None, "clock_warnings": ["peer aaaaaaaa clock differs"],
            "clock_skew_ms": -3_600_000,
            "last_error": "busy: peer refused: an incoming session with this device runs"}
    uplink = {**peer, "device_id": None, "addresses": [{"host": LOOPBACK, "port": 1,
                                                        "via": "uplink"}]}
    rows = phone_rows([peer, uplink], names, {dev: [f"{VILLAGE}/tps-001"]})
    assert len(rows) == 1  # KPU (the uplink) is the headline's, not a device row
    row = rows[0]
    assert (row["name"], row["tps"], row["state"], row["error"]) == (
        "Yohana Wenda", "diloa/tps-001", "ok", "")
    assert row["skew_s"] == 3600 and row["warnings"] and row["to_send"] is None
    failing = phone_rows([{**peer, "failures": 2, "last_error": "connect: refused"}], {}, {})
    assert (failing[0]["state"], failing[0]["name"]) == ("failing", dev[:8])
    assert shown_value(None) == "" and shown_value({"rt": 2}) == '{"rt": 2}'
    assert shown_value(b"\x00") == '{"$bytes": "AA=="}' and shown_value(16417) == "16417"


def test_the_pages_fast_number_format_equals_babels() -> None:
    from meshsync.daemon.templating import number as page_number

    for value in (0, 7, 999, 1000, 16417, 1_234_567, -12_345, 2.5):
        for lang in ("id", "en"):
            assert page_number(value, lang) == number(value, lang), (value, lang)


def test_the_pages_script_parses_and_its_assets_are_served_guarded(lab: Lab) -> None:
    import shutil
    import subprocess

    from meshsync.daemon.templating import STATIC

    script = STATIC / "laptop" / "live.js"
    node = shutil.which("node")
    if node is not None:  # a syntax check where Node.js is installed (not needed in CI)
        checked = subprocess.run([node, "--check", str(script)], capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, checked.stderr
    laptop = lab.daemon("laptop").start()
    css = http("GET", laptop.api_url + "/static/laptop/laptop.css", laptop.token)
    assert css.status == 200 and css.content_type.startswith("text/css")
    assert http("GET", laptop.api_url + "/static/laptop/laptop.css").status == 401
    for name in ("nope.css", "..%2Fapi.py", "live.JS", "laptop.css.map"):
        reply = http("GET", laptop.api_url + "/static/laptop/" + name, laptop.token)
        assert reply.status == 404, (name, reply)
    page = http("GET", laptop.api_url + "/", laptop.token)
    assert "<script" in str(page.body) and "http-equiv=\"refresh\"" not in str(page.body)
