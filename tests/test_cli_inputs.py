"""CLI input gaps: ``bundle export --store``.

Runs the real ``meshsync`` command with the helpers of ``test_cli.py``. Covers:
``bundle export --store`` reads central's PostgreSQL store like ``bundle import
--store`` (tests/pg.py: skipped without a server unless ``MESHSYNC_TEST_PG_REQUIRED=1``).
"""

from __future__ import annotations

from pathlib import Path

import test_cli
from test_cli import init, ok, ok_json, run

pytest_plugins = ["pg"]

clean_env = test_cli.clean_env  # autouse: never the developer's MESHSYNC_HOME


# -- bundle export --store -----------------------------------------------------------------


def test_bundle_export_takes_store_like_import(tmp_path: Path) -> None:
    home = init(tmp_path / "central")
    export_help = ok("bundle", "export", "--help")
    import_help = ok("bundle", "import", "--help")
    assert "--store postgresql://…" in export_help and "--store postgresql://…" in import_help
    for command in (["bundle", "export", "-o", tmp_path / "x.msb"],
                    ["bundle", "import", tmp_path / "x.msb"]):
        (tmp_path / "x.msb").write_bytes(b"")
        proc = run(*command, "--home", home, "--store", "sqlite:///x")
        assert proc.returncode == 1, proc.stderr
        assert "--store must be a PostgreSQL connection string" in proc.stderr
    assert not (tmp_path / "x.msb.part").exists()


def test_bundle_export_store_reads_central_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    phone, central, other = (init(tmp_path / n) for n in ("phone", "central", "other"))
    for i in range(5):
        ok("put", "--home", phone, "voters", f"v-{i:04d}", f"nama=Contoh {i}")
    ok("bundle", "export", "--home", phone, "-o", tmp_path / "phone.msb")
    imported = ok_json("bundle", "import", "--home", central, tmp_path / "phone.msb",
                       "--store", pg_dsn)
    assert imported["applied"] == 5
    from_pg = ok_json("bundle", "export", "--home", central, "--store", pg_dsn,
                      "-o", tmp_path / "central.msb")
    from_sqlite = ok_json("bundle", "export", "--home", central,
                          "-o", tmp_path / "central-sqlite.msb")
    assert (from_pg["changes"], from_sqlite["changes"]) == (5, 0)
    assert ok_json("bundle", "import", "--home", other, tmp_path / "central.msb")["applied"] \
        == 5
    assert [r["key"] for r in ok_json("ls", "--home", other, "voters")] == \
        [f"v-{i:04d}" for i in range(5)]
