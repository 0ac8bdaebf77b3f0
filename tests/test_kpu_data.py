"""Unit tests of the KPU page's figures (daemon/kpu_data.py), its static files and the
login link's ``next`` (daemon/guard.py); the page itself runs in a browser in
tests/test_kpu_page.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from meshsync.daemon.api import ApiError
from meshsync.daemon.guard import _next_page
from meshsync.daemon.kpu_data import DAY_MS, csv_rows, ordered, title_of, total, tree
from meshsync.daemon.static_files import static_file

NOW = 1_800_000_000_000


def row(records: int, done: int, last: int | None, **status: int) -> dict[str, Any]:
    return {"records": records, "deleted": 0, "conflicts": 0, "done": done,
            "last_done_ms": last, "status": status}


PROGRESS = {"tps": {
    "mimika/jila/diloa/tps-001": row(10, 4, NOW - DAY_MS, MS=3, TMS=1),
    "mimika/jila/diloa/tps-002": row(20, 0, None),
    "mimika/jila/alama/tps-001": row(5, 5, NOW - 10 * DAY_MS, ubah=2, baru=3),
    "mimika/agimuga/amar/tps-001": row(7, 1, NOW, MS=1),
    "mimika/loose": row(3, 0, None),  # not a TPS: left out
}}


def test_tree_totals_each_level_and_counts_idle_tps() -> None:
    districts = tree(PROGRESS, NOW, 3)
    assert [d.name for d in districts] == ["agimuga", "jila"]
    jila = districts[1]
    assert (jila.voters, jila.dicoklit, jila.belum, jila.ms, jila.tms, jila.ubah, jila.baru) \
        == (35, 9, 26, 3, 1, 2, 3)
    assert (jila.tps, jila.idle_tps, jila.last_ms) == (3, 2, NOW - DAY_MS)
    diloa = next(v for v in jila.children if v.name == "diloa")
    assert [t.idle for t in diloa.children] == [False, True]
    everything = total(districts)
    assert (everything.voters, everything.dicoklit, everything.tps) == (42, 10, 4)
    assert round(everything.percent, 1) == 23.8


def test_sorting_by_any_column_ties_by_name() -> None:
    villages = tree(PROGRESS, NOW, 3)[1].children
    assert [v.name for v in ordered(villages, "pemilih", True)] == ["diloa", "alama"]
    assert [v.name for v in ordered(villages, "persen", True)] == ["alama", "diloa"]
    assert [v.name for v in ordered(villages, "nama", True)] == ["diloa", "alama"]
    assert [v.name for v in ordered(villages, "terakhir", False)] == ["alama", "diloa"]


def test_csv_has_one_row_per_tps() -> None:
    rows = list(csv_rows(tree(PROGRESS, NOW, 3)))
    assert [r[3] for r in rows] == ["mimika/agimuga/amar/tps-001", "mimika/jila/diloa/tps-001",
                                    "mimika/jila/diloa/tps-002", "mimika/jila/alama/tps-001"]
    assert rows[2][4:7] == (20, 0, 20) and rows[2][-2:] == ("", 1)


def test_region_titles() -> None:
    assert [title_of(s) for s in ("diloa-dua", "tps-003", "jila")] == [
        "Diloa Dua", "TPS 003", "Jila"]


@pytest.mark.parametrize("wanted,goes", [
    ("/kpu", "/kpu"), ("/kpu/jila?sort=pemilih&order=desc", "/kpu/jila?sort=pemilih&order=desc"),
    ("//evil.example/kpu", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
    ("kpu", "/"), ("/kpu/../api", "/kpu/../api"), (None, "/"), ("/a b", "/")])
def test_login_goes_only_to_a_page_of_this_api(wanted: str | None, goes: str) -> None:
    assert _next_page(wanted) == goes


def test_static_files_stay_in_their_folder(tmp_path: Path) -> None:
    (tmp_path / "kpu").mkdir()
    (tmp_path / "kpu" / "a.css").write_text("p{}")
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / "kpu" / "link.css").symlink_to(tmp_path.parent / "outside.css")
    (tmp_path.parent / "outside.css").write_text("x{}")
    assert static_file(tmp_path, "kpu/a.css") == (tmp_path / "kpu" / "a.css").resolve()
    for bad in ("../outside.css", "secret.txt", "kpu/../secret.txt", "kpu/link.css",
                "kpu/", "", "kpu/.hidden.css", "kpu/missing.css", "\x00", "kpu/a\x00.css"):
        with pytest.raises(ApiError):
            static_file(tmp_path, bad)
