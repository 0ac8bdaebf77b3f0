"""The KPU page at central in a real browser (issue 15): headless Chromium against a
central daemon on PostgreSQL that imported made-up voter lists of two distrik of
Mimika, with a district gateway syncing to it.

The rendered DOM must read, in Indonesian, "dicoklit X dari Y" for all of Mimika and
for each distrik, with the figures SQL gives (``meshsync_kpu_progress``, read from the
counts kept on write, and ``meshsync_coklit_progress``, which scans the records: both
must agree), the drill-down to kampung and TPS, and the gateway's last contact. The
CSV export adds up to the same totals. Screenshots go to ``$MESHSYNC_SCREENSHOTS``
(else the test's folder). All people are made up.
"""

from __future__ import annotations

import csv
import io
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import test_gateway_central
from meshsync.daemon.kpu_data import title_of
from netfixtures import run, run_json
from test_gateway_central import Central, Lab
from test_status_page import CHROMIUM, chromium, png_size

from meshsync.host import i18n

pytest_plugins = ["pg"]  # fixtures pg_server, pg_dsn

# The enrolled homes and daemon fixtures of test_gateway_central, used here by name.
template, lab = test_gateway_central.template, test_gateway_central.lab

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (Debian: apt-get install chromium)")

DISTRIK = {"Jila": 2031, "Agimuga": 2032}  # name -> generator seed


class KpuDom(HTMLParser):
    """Texts of ``#scope-total``, ``h1``, and the cells of ``tr.area`` (name, voters,
    dicoklit, ...) and ``tr.gateway`` rows, plus which area rows are ``idle``."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {"h1": "", "scope-total": ""}
        self.rows: dict[str, list[list[str]]] = {"area": [], "gateway": []}
        self.idle: list[bool] = []
        self._text: str | None = None
        self._row: str | None = None
        self._cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "span":  # the percentage after "dicoklit X dari Y"
            self._text = None
        elif tag == "h1" or a.get("id") == "scope-total":
            self._text = "h1" if tag == "h1" else "scope-total"
        elif tag == "tr" and ({"area", "gateway"} & set(classes)):
            self._row = "area" if "area" in classes else "gateway"
            self.rows[self._row].append([])
            if self._row == "area":
                self.idle.append("idle" in classes)
        elif tag == "td" and self._row:
            self.rows[self._row][-1].append("")
            self._cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "tr"):
            self._cell = False
        if tag == "tr":
            self._row = None
        elif tag in ("h1", "p"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text:
            self.texts[self._text] += data
        elif self._cell and self._row:
            cells = self.rows[self._row][-1]
            cells[-1] = (cells[-1] + data).strip()


def dicoklit(done: int, voters: int) -> str:
    """The page's words, with Indonesian numbers (16.417)."""
    return f"dicoklit {i18n.number(done, 'id')} dari {i18n.number(voters, 'id')}"


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MESHSYNC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def import_dpt(lab: Lab, dsn: str, distrik: str, seed: int) -> int:
    """A made-up DPT of ``distrik`` (every voter belum dicoklit), imported at central's
    PostgreSQL store by the CLI."""
    path = lab.district.root / f"dpt-{distrik.lower()}.csv"
    run("coklit", "generate", "--seed", seed, "--distrik", distrik, "--voters-per-tps", 15,
        "--tps-per-kampung", 2, "-o", path)
    report = run_json("coklit", "import", path, "--home", lab.home("central"), "--store", dsn)
    assert report["bad"] == [] and report["imported"] > 0, report
    return int(report["imported"])


def open_page(daemon: Any, tmp_path: Path, page: str, mode: str = "--dump-dom") -> str:
    """``page`` after a one-time login link that goes there: its DOM with ``mode``
    ``--dump-dom``, or ``--screenshot=FILE``."""
    link = run_json("login", "--home", daemon.home)["url"] + "&next=" + quote(page, safe="")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = chromium(profile, mode, link)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_kpu_page_in_headless_chromium_on_postgresql(lab: Lab, pg_dsn: str,
                                                     tmp_path: Path) -> None:
    voters = sum(import_dpt(lab, pg_dsn, d, seed) for d, seed in DISTRIK.items())
    central = lab.daemon("central", store=pg_dsn, role="central", kpu_idle_days=5).start()
    gateway = lab.daemon("gw-jila", uplink=(central.address,)).start()
    lab.wait(lambda: any(p["role"] == "gateway" and p["last_sync_ms"]
                         for p in central.get("/api/peers")), 60,
             "the gateway's first sync with central")
    db = Central(pg_dsn)
    # coklit results for the first voter of every other TPS of Jila (written at central)
    firsts = db.rows("SELECT DISTINCT ON (partition) partition, key FROM meshsync_records "
                     "WHERE starts_with(partition, 'mimika/jila/') ORDER BY partition, key")
    for partition, key in firsts[::2]:
        central.put("voters", key, {"coklit": "MS"}, partition)
    per_distrik = db.rows("SELECT prefix, dicoklit, voters, ms, tms, ubah, baru, belum "
                          "FROM meshsync_kpu_progress WHERE up = 2 ORDER BY prefix")
    assert per_distrik == db.rows(  # counted on write == counted from the fields
        "SELECT prefix, dicoklit, voters, ms, tms, ubah, baru, belum "
        "FROM meshsync_coklit_progress WHERE up = 2 ORDER BY prefix")
    assert sum(r[2] for r in per_distrik) == voters and len(per_distrik) == 2
    done = sum(r[1] for r in per_distrik)
    assert done == len(firsts[::2]) > 0

    dom = KpuDom()
    html = open_page(central, tmp_path, "/kpu")
    dom.feed(html)
    assert "TPS tanpa hasil coklit dalam 5 hari terakhir" in html  # kpu_idle_days
    assert dom.texts["h1"] == "Pemantauan coklit per distrik", dom.texts
    assert dom.texts["scope-total"].strip() == dicoklit(done, voters), dom.texts
    shown = {row[0].strip(): row for row in dom.rows["area"]}
    assert sorted(shown) == ["Agimuga", "Jila"]
    for prefix, d, v, ms, tms, ubah, baru, belum in per_distrik:
        row = shown[title_of(prefix.rpartition("/")[2])]
        assert row[1] == i18n.number(v, "id") and row[2] == dicoklit(d, v), row
        assert row[4:9] == [i18n.number(n, "id") for n in (ms, tms, ubah, baru, belum)], row
    # results written now: Agimuga has none, so all its TPS are highlighted
    assert dom.idle == [True, False], dom.idle
    [gw] = dom.rows["gateway"]
    assert gw[0] == gateway.device_id[:16] and "lalu" in gw[2], gw
    assert "lalu" in gw[1], gw  # seen when it last synced, never "belum pernah" beside it

    jila = db.rows("SELECT prefix, dicoklit, voters FROM meshsync_kpu_progress "
                   "WHERE up = 1 AND starts_with(prefix, 'mimika/jila/') ORDER BY prefix")
    dom = KpuDom()
    dom.feed(open_page(central, tmp_path, "/kpu/jila?sort=pemilih&order=desc"))
    assert [r[0] for r in dom.rows["area"]] == [
        title_of(p.rpartition("/")[2]) for p, _, v in sorted(jila, key=lambda r: (-r[2], r[0]))]
    assert [r[2] for r in dom.rows["area"]] == [
        dicoklit(d, v) for _, d, v in sorted(jila, key=lambda r: (-r[2], r[0]))]
    kampung = jila[0][0].rpartition("/")[2]
    dom = KpuDom()
    dom.feed(open_page(central, tmp_path, f"/kpu/jila/{kampung}"))
    tps = db.rows("SELECT prefix, dicoklit, voters FROM meshsync_kpu_progress "
                  "WHERE up = 0 AND starts_with(prefix, %s) ORDER BY prefix", jila[0][0] + "/")
    assert [(r[0], r[2]) for r in dom.rows["area"]] == [
        (title_of(p.rpartition("/")[2]), dicoklit(d, v)) for p, d, v in tps]
    assert dom.idle == [d == 0 for _, d, _ in tps]  # no result in 5 days: highlighted

    shots = shots_dir(tmp_path)
    for name, page in (("kpu-distrik.png", "/kpu"), ("kpu-kampung.png", "/kpu/jila")):
        open_page(central, tmp_path, page, f"--screenshot={shots / name}")
        assert png_size(shots / name) == (1000, 700)
        assert (shots / name).stat().st_size > 15_000  # tables and text, not a blank page

    export = central.request("GET", "/kpu/export.csv")
    assert export.status == 200 and export.content_type.startswith("text/csv"), export
    lines = list(csv.DictReader(io.StringIO(export.body)))
    assert sum(int(r["pemilih"]) for r in lines) == voters
    assert sum(int(r["dicoklit"]) for r in lines) == done
    assert central.request("GET", "/kpu", token=None).status == 401
    assert central.request("GET", "/kpu?sort=umur").status == 400
    assert central.request("GET", "/kpu/nowhere").status == 404
    css = central.request("GET", "/static/kpu/kpu.css")
    assert css.status == 200 and "tr.idle" in css.body, css
    assert central.request("GET", "/static/../api.token").status == 404
    assert gateway.request("GET", "/kpu").status == 404  # central's page only
    for daemon in (gateway, central):
        assert daemon.stop() == 0
