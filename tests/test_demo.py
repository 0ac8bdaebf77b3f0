"""The README's first command, shortened: ``meshsync demo`` converges and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_short_demo_converges_and_writes_its_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meshsync.cli.main", "demo", "--voters-per-tps", "8",
         "--dir", str(tmp_path / "demo"), "--json"],
        capture_output=True, text=True, check=False, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    written = json.loads((tmp_path / "demo" / "report.json").read_text())

    assert result["converged"] is True
    assert written["converged"] is True and written["voters"] == result["voters"]
    # Two officers edited one voter while one phone was offline: one visible conflict.
    assert result["conflicts"] == [result["conflict_voter"]]
    village = result["progress"]["village"]
    assert sum(row["records"] for row in village.values()) == result["voters"]
    assert sum(row["status"].get("TMS", 0) for row in village.values()) >= 1
    # Every voter starts belum dicoklit; the officers checked 11 (MS, TMS, ubah).
    [distrik] = result["progress"]["district"].values()
    assert distrik["done"] == 11 and distrik["records"] == result["voters"]
    assert distrik["status"]["belum dicoklit"] == result["voters"] - 11
    assert distrik["last_done_ms"] is not None
    assert result["sessions"] > 0 and result["bytes"] > 0
    # The officer of phone-a sees her edits safe at central after the uplink returned.
    feeds = result["custody_on_phone_a"]
    assert feeds and all(f["safe_at_central"] and f["central"] == f["local"] for f in feeds)
    assert "receipts_on_phones" in result["times_s"]
