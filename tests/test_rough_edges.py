"""Rough edges a new user hit on a shared Wi-Fi district (issue 14, item 6), each held by
a test that fails without its fix: one clear line, every cause named."""

from __future__ import annotations

from pathlib import Path

from meshsync.coklit.schema import REQUIRED
from netfixtures import run


def test_a_refused_new_voter_lists_every_missing_field(tmp_path: Path) -> None:
    """The error names all 13 missing fields; it was cut after ~300 characters."""
    home = tmp_path / "phone"
    run("init", "--home", home, "--partition", "mimika/jila/diloa/tps-003")
    with (home / "config.toml").open("a") as f:
        f.write('schema = "coklit"\n')
    proc = run("put", "--home", home, "voters", "v-1", "nama=Yosina Contoh", check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith("meshsync: error: ") and "\n" not in line, proc.stderr
    assert "more characters" not in line
    missing = [name for name in REQUIRED if name != "nama"]
    assert all(f"{name}: is required" in line for name in missing), line
