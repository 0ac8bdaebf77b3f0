"""The KPU page at 300,000 made-up voters across every distrik and kampung of Mimika,
rendered by headless Chromium from a real central daemon (SQLite), its screenshot kept
with CI's (``$MESHSYNC_SCREENSHOTS``). The voters are loaded as bench/kpu_page.py loads
them (through the library, 500 a signed change, the coklit classifier; no real person):
this test checks the page at that size says the same totals as the store, and the bench
times it (docs/architecture.md §11)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from netfixtures import District, run_json
from test_kpu_page import CHROMIUM, KpuDom, chromium, dicoklit, png_size, shots_dir

from meshsync.host.home import Home
from meshsync.host.local import adopt_schema, open_node
from meshsync.replica.progress import recompute

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from api_paging import Daemon
from kpu_page import bulk_write, mimika_voters

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (Debian: apt-get install chromium)")

VOTERS = 300_000


def test_kpu_page_at_300000_voters_in_chromium(tmp_path: Path) -> None:
    rows = mimika_voters(VOTERS)
    assert len(rows) >= VOTERS * 0.99
    home = District(tmp_path).enrol("central", role="central", scope="", partition="mimika")
    start = time.monotonic()
    bulk_write(home, rows, None)
    adopt_schema(Home.open(home), "coklit")
    with open_node(home) as node:  # the truth the page must show: a full recount
        from meshsync.host.local import use_schema

        use_schema(node, Home.open(home))
        full = recompute(node.store, "voters")
    voters = sum(r["records"] for r in full["district"].values())
    done = sum(r["done"] for r in full["district"].values())
    assert voters == len(rows) and 0 < done < voters
    daemon = Daemon(home, None, tmp_path / "central.log")
    try:
        link = run_json("login", "--home", home)["url"] + "&next=/kpu"
        shot = shots_dir(tmp_path) / "kpu-300000.png"
        dump = chromium(tmp_path / "profile", "--dump-dom", link, window=(1280, 1300))
        assert dump.returncode == 0, dump.stderr[-2000:]
        dom = KpuDom()
        dom.feed(dump.stdout)
        assert dom.texts["scope-total"].strip() == dicoklit(done, voters), dom.texts
        assert len(dom.rows["area"]) == len(full["district"])  # every distrik of Mimika
        link = run_json("login", "--home", home)["url"] + "&next=/kpu"
        taken = chromium(tmp_path / "profile2", f"--screenshot={shot}", link,
                         window=(1280, 1300))
        assert taken.returncode == 0 and png_size(shot) == (1280, 1300), taken.stderr[-500:]
    finally:
        daemon.stop()
    print(f"300k KPU page: loaded and checked in {time.monotonic() - start:.0f} s")
