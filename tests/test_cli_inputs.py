"""CLI input gaps: JSON options refuse duplicate keys, record values JSON cannot carry
print in the documented tagged form, ``bundle export --store``.

Runs the real ``meshsync`` command with the helpers of ``test_cli.py``. Covers: a
``field:=JSON`` value with a duplicate key (at the top or nested) refused naming the
key and its place, nothing stored; bytes written as ``{"$bytes": BASE64}`` and read
back the same by ``get/ls/conflicts --json``; NaN and infinities written by the
library print as ``{"$float": ...}`` (strict JSON, never a bare ``NaN``); ``bundle
export --store`` reads central's PostgreSQL store like ``bundle import --store``
(tests/pg.py: skipped without a server unless ``MESHSYNC_TEST_PG_REQUIRED=1``).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
import test_cli
from test_cli import change_count, fails, init, ok, ok_json, run

from meshsync.host.local import open_node

pytest_plugins = ["pg"]

clean_env = test_cli.clean_env  # autouse: never the developer's MESHSYNC_HOME


def _strict(text: str) -> Any:
    """Parse as RFC 8259 JSON: a bare NaN or Infinity fails the test."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


# -- duplicate keys ------------------------------------------------------------------------


DUPLICATE_CASES = [
    ('alamat:={"rt": "001", "rt": "002"}', "(alamat: duplicate key 'rt')"),
    ('alamat:={"rt": {"no": 1, "no": 2}}', "(alamat.rt: duplicate key 'no')"),
    ('tags:=[{"a": 1}, {"a": 1, "b": 2, "a": 3}]', "(tags[1]: duplicate key 'a')"),
    ('x:={"nama lengkap": {"a": 1, "a": 2}}', '(x["nama lengkap"]: duplicate key \'a\')'),
]


@pytest.mark.parametrize(("arg", "words"), DUPLICATE_CASES, ids=[a for a, _ in DUPLICATE_CASES])
def test_duplicate_keys_in_a_json_value_are_refused_naming_the_key(
        tmp_path: Path, arg: str, words: str) -> None:
    home = init(tmp_path / "phone-a")
    line = fails("put", "--home", home, "voters", "v-0001", "nama=Contoh", arg)
    assert "value after ':=' is not JSON this accepts" in line and words in line, line
    assert change_count(home) == 0


def test_other_json_values_a_record_cannot_hold_name_their_place(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    for arg, words in [
        ('x:=[1, {"skor": NaN}]', "(x[1].skor: NaN is not a JSON number)"),
        ('x:={"a": 18446744073709551616}', "(x.a: integer out of range"),
        ('x:={"a": "\\ud800"}', "(x.a: not valid Unicode text (a lone surrogate"),
        ('foto:={"$bytes": "bukan base64"}', "(foto: $bytes is not base64"),
        ('skor:={"$float": "NaN"}', "(skor: $float: only finite numbers"),
    ]:
        line = fails("put", "--home", home, "voters", "v-0001", arg)
        assert words in line, (arg, line)
    assert change_count(home) == 0


# -- values JSON cannot carry --------------------------------------------------------------


def test_bytes_round_trip_through_the_tagged_json_form(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    photo = bytes(range(256))
    tagged = {"$bytes": base64.b64encode(photo).decode()}
    put = ok_json("put", "--home", home, "voters", "v-0001", "nama=Contoh",
                  f"foto:={json.dumps(tagged)}", 'peta:={"$map": {"$bytes": "teks"}}',
                  'isi:=[{"$bytes": ""}]')
    expected = {"nama": "Contoh", "foto": tagged, "peta": {"$map": {"$bytes": "teks"}},
                "isi": [{"$bytes": ""}]}
    assert put["record"]["fields"] == expected
    assert _strict(ok("get", "--home", home, "voters", "v-0001", "--json"))["fields"] == \
        expected
    with open_node(home) as node:
        record = node.get("voters", "v-0001")
    assert record is not None
    assert record.fields == {"nama": "Contoh", "foto": photo, "peta": {"$bytes": "teks"},
                             "isi": [b""]}


def test_library_values_print_as_strict_json(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    with open_node(home) as node:
        node.put("voters", "v-0001", {"foto": b"\x00\xff", "skor": math.nan,
                                      "batas": [math.inf, -math.inf]})
    expected = {"foto": {"$bytes": "AP8="}, "skor": {"$float": "NaN"},
                "batas": [{"$float": "Infinity"}, {"$float": "-Infinity"}]}
    assert _strict(ok("get", "--home", home, "voters", "v-0001", "--json"))["fields"] == \
        expected
    [listed] = _strict(ok("ls", "--home", home, "voters", "--json"))
    assert listed["fields"] == expected
    text = ok("get", "--home", home, "voters", "v-0001")  # the text view: Python reprs
    assert "foto = b'\\x00\\xff'" in text and "skor = nan" in text


def test_conflicting_bytes_versions_print_tagged(tmp_path: Path) -> None:
    a, b = init(tmp_path / "phone-a"), init(tmp_path / "phone-b")
    for home, photo in ((a, b"a"), (b, b"b")):  # bytes written by the library
        with open_node(home) as node:
            node.put("voters", "v-0001", {"foto": photo})
    ok("bundle", "export", "--clear", "--home", b, "-o", tmp_path / "b.msb")
    ok("bundle", "import", "--home", a, tmp_path / "b.msb")
    [record] = _strict(ok("conflicts", "--home", a, "--json"))
    assert sorted(v["value"]["$bytes"] for v in record["conflicts"]["foto"]) == \
        ["YQ==", "Yg=="]
    assert record["fields"]["foto"] == record["conflicts"]["foto"][0]["value"]


# -- bundle export --store -----------------------------------------------------------------


def test_bundle_export_takes_store_like_import(tmp_path: Path) -> None:
    home = init(tmp_path / "central")
    export_help = ok("bundle", "export", "--clear", "--help")
    import_help = ok("bundle", "import", "--help")
    assert "--store postgresql://…" in export_help and "--store postgresql://…" in import_help
    for command in (["bundle", "export", "--clear", "-o", tmp_path / "x.msb"],
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
    ok("bundle", "export", "--clear", "--home", phone, "-o", tmp_path / "phone.msb")
    imported = ok_json("bundle", "import", "--home", central, tmp_path / "phone.msb",
                       "--store", pg_dsn)
    assert imported["applied"] == 5
    from_pg = ok_json("bundle", "export", "--clear", "--home", central, "--store", pg_dsn,
                      "-o", tmp_path / "central.msb")
    from_sqlite = ok_json("bundle", "export", "--clear", "--home", central,
                          "-o", tmp_path / "central-sqlite.msb")
    assert (from_pg["changes"], from_sqlite["changes"]) == (5, 0)
    assert ok_json("bundle", "import", "--home", other, tmp_path / "central.msb")["applied"] \
        == 5
    assert [r["key"] for r in ok_json("ls", "--home", other, "voters")] == \
        [f"v-{i:04d}" for i in range(5)]
