"""The ``meshsync`` command, run as officers and scripts run it: a real subprocess.

Covers docs/architecture.md §9 (one command, one home, ``--json`` everywhere, ``MESHSYNC_HOME``),
the one-line error contract (``meshsync: error: ...`` on stderr, non-zero exit), two
homes converging through bundles both ways (§4), and names stored byte-exact
(docs/failure-cases.md B19). CliRunner runs the whole error matrix in-process (one error
of each kind also goes through the real command) and the too-large record (an 8 MiB
argument is beyond the kernel's per-argument limit).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from meshsync.cli.main import main

from meshsync.model.identity import DeviceKey
from meshsync.model.limits import MAX_RECORD_BYTES
from meshsync.store import SQLiteStore

P = "mimika/jila/diloa/tps-003"
P2 = "mimika/hoya/hoya/tps-001"


def meshsync_script() -> str:
    """The installed console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    assert found, "the meshsync console script is not installed (pip install -e .)"
    return found


MESHSYNC = meshsync_script()


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may use the developer's MESHSYNC_HOME or real data dir."""
    monkeypatch.delenv("MESHSYNC_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))


def run(*args: str | Path, env: dict[str, str] | None = None,
        umask: int = -1) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([MESHSYNC, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=60, check=False, umask=umask)


def ok(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run; assert success with nothing on stderr; return stdout."""
    proc = run(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def ok_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(*args, "--json", env=env))


def error_line(returncode: int, stdout: str, stderr: str) -> str:
    """Assert the error contract; return the one stderr line."""
    assert returncode != 0, stdout
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("meshsync: error: "), lines[0]
    return lines[0]


def fails(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = run(*args, env=env)
    return error_line(proc.returncode, proc.stdout, proc.stderr)


def init(path: Path, partition: str = P) -> Path:
    ok("init", "--home", path, "--partition", partition)
    return path


def exchange(src: Path, dst: Path, bundle: Path) -> dict[str, Any]:
    """Export ``src`` to ``bundle`` and import it into ``dst``; the import report."""
    ok("bundle", "export", "--clear", "--home", src, "-o", bundle)
    report: dict[str, Any] = ok_json("bundle", "import", "--home", dst, bundle)
    assert report["refused"] == [] and report["invalid"] == []
    return report


def change_count(home: Path) -> int:
    store = SQLiteStore(home / "store.sqlite")
    try:
        return store.count_changes()
    finally:
        store.close()


# -- init ----------------------------------------------------------------------------


def test_init_creates_home_with_private_key_and_prints_device_id(tmp_path: Path) -> None:
    home = tmp_path / "phone-a"
    proc = run("init", "--home", home, umask=0)  # 0600 must not depend on the umask
    assert proc.returncode == 0 and proc.stderr == ""
    key_file = home / "device.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    device_id = DeviceKey.from_pem(key_file.read_bytes()).device_id
    assert proc.stdout == device_id + "\n"
    assert len(device_id) == 52 and device_id.islower()


def test_init_json_sets_partition_for_later_edits(tmp_path: Path) -> None:
    home = tmp_path / "phone-a"
    info = ok_json("init", "--home", home, "--partition", P)
    assert info["device_id"] == DeviceKey.from_pem((home / "device.key").read_bytes()).device_id
    assert (info["home"], info["partition"]) == (str(home), P)
    put = ok_json("put", "--home", home, "voters", "v-0001", "nama=Yosina")
    assert put["change"] == {"author": info["device_id"], "partition": P, "seq": 1,
                             "hash": put["change"]["hash"]}
    assert put["record"]["partition"] == P


def test_meshsync_home_environment_variable(tmp_path: Path) -> None:
    env_home, flag_home = tmp_path / "from-env", tmp_path / "from-flag"
    env = {"MESHSYNC_HOME": str(env_home)}
    device_id = ok("init", env=env).strip()
    assert DeviceKey.from_pem((env_home / "device.key").read_bytes()).device_id == device_id
    ok("put", "voters", "v-0001", "nama=Yosina", env=env)
    assert ok_json("get", "voters", "v-0001", env=env)["fields"] == {"nama": "Yosina"}
    # --home wins over the environment.
    init(flag_home)
    ok("put", "--home", flag_home, "voters", "v-0002", "nama=Contoh", env=env)
    assert [r["key"] for r in ok_json("ls", "voters", env=env)] == ["v-0001"]
    assert [r["key"] for r in ok_json("ls", "--home", flag_home, "voters")] == ["v-0002"]


def test_init_on_existing_home_fails_and_keeps_the_key(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    key = (home / "device.key").read_bytes()
    line = fails("init", "--home", home)
    assert "already a node home" in line and str(home) in line
    assert (home / "device.key").read_bytes() == key


def test_init_with_bad_partition_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "phone-a"
    assert "invalid partition 'Mimika/Jila'" in fails("init", "--home", home,
                                                       "--partition", "Mimika/Jila")
    assert not home.exists()


# -- records -------------------------------------------------------------------------


def test_put_text_and_typed_values(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    put = ok_json("put", "--home", home, "voters", "v-0001",
                  "nama=Yosina", "nik=0091090101800001", "umur:=44", "skor:=4.5",
                  "aktif:=true", "pindah:=false", "catatan:=null", "tps:=-3",
                  'tags:=["disabilitas", 2, null]', 'alamat:={"rt": "003", "rw": 1}',
                  "rumus=a=b", "kosong=", "angka_teks=42", "json_teks=[1]")
    fields = ok_json("get", "--home", home, "voters", "v-0001")["fields"]
    assert fields == {
        "nama": "Yosina", "nik": "0091090101800001", "umur": 44, "skor": 4.5,
        "aktif": True, "pindah": False, "catatan": None, "tps": -3,
        "tags": ["disabilitas", 2, None], "alamat": {"rt": "003", "rw": 1},
        "rumus": "a=b", "kosong": "", "angka_teks": "42", "json_teks": "[1]"}
    assert type(fields["umur"]) is int and type(fields["aktif"]) is bool
    assert put["record"]["fields"] == fields
    # A second put changes only the fields it names.
    ok("put", "--home", home, "voters", "v-0001", "umur:=45")
    assert ok_json("get", "--home", home, "voters", "v-0001")["fields"] == {
        **fields, "umur": 45}


def test_ls_filters_by_partition_prefix_of_whole_segments(tmp_path: Path) -> None:
    home = init(tmp_path / "laptop")
    ok("put", "--home", home, "voters", "v-0002", "nama=Dua")
    ok("put", "--home", home, "voters", "v-0001", "nama=Satu")
    ok("put", "--home", home, "--partition", P2, "voters", "v-0003", "nama=Tiga")
    ok("put", "--home", home, "--partition", "mimika/jila/jila/tps-001", "keluarga", "kk-1",
       "kepala=Satu")

    def keys(*extra: str) -> list[tuple[str, str]]:
        return [(r["key"], r["partition"])
                for r in ok_json("ls", "--home", home, "voters", *extra)]

    assert keys() == [("v-0001", P), ("v-0002", P), ("v-0003", P2)]
    assert keys("--partition", "mimika/jila") == [("v-0001", P), ("v-0002", P)]
    assert keys("--partition", "mimika/hoya/hoya/tps-001") == [("v-0003", P2)]
    assert keys("--partition", "mimika/ji") == []  # prefixes are whole segments
    listed = ok_json("ls", "--home", home, "voters", "--partition", "mimika/hoya")
    assert listed == [ok_json("get", "--home", home, "voters", "v-0003")]


def test_delete_then_restore(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    ok("put", "--home", home, "voters", "v-0001", "nama=Yosina", "status=ms")
    ok("put", "--home", home, "voters", "v-0002", "nama=Contoh")
    deleted = ok_json("delete", "--home", home, "voters", "v-0001")
    assert (deleted["partition"], deleted["seq"]) == (P, 3)
    record = ok_json("get", "--home", home, "voters", "v-0001")
    assert (record["deleted"], record["fields"], record["conflicts"]) == (True, {}, {})
    assert [r["key"] for r in ok_json("ls", "--home", home, "voters")] == ["v-0002"]
    assert [r["key"] for r in ok_json("ls", "--home", home, "voters", "--deleted")] == [
        "v-0001", "v-0002"]
    assert "no record voters/v-0001" in fails("delete", "--home", home, "voters", "v-0001")
    # A put made after seeing the delete restores the record, without the old fields.
    ok("put", "--home", home, "voters", "v-0001", "status=kembali")
    record = ok_json("get", "--home", home, "voters", "v-0001")
    assert (record["deleted"], record["fields"]) == (False, {"status": "kembali"})


def test_log_text_says_how_many_refusals_it_does_not_list(tmp_path: Path) -> None:
    from meshsync.store.base import Refusal

    home = init(tmp_path / "phone-a")
    store = SQLiteStore(home / "store.sqlite")
    try:
        with store.transaction():
            for seq in range(1, 33):
                store.add_refusal(Refusal(b"\x0a" * 32, P, seq, "authorization",
                                          "no certificate", "bundle:x", bytes([seq]) * 32))
    finally:
        store.close()
    text = ok("log", "--home", home)
    assert "refused changes: 32" in text
    assert text.count(" [authorization] ") == 20
    assert "… and 12 more (all with --json)" in text
    assert len(ok_json("log", "--home", home)["refusals"]) == 32


def test_log_json_lists_own_feeds(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    ok("put", "--home", home, "voters", "v-0001", "nama=Yosina")
    ok("put", "--home", home, "--partition", P2, "voters", "v-0002", "nama=Contoh")
    ok("put", "--home", home, "voters", "v-0001", "status=ms")
    log = ok_json("log", "--home", home)
    me = log["device_id"]
    assert sorted((f["author"], f["partition"], f["seq"]) for f in log["feeds"]) == [
        (me, P2, 1), (me, P, 2)]
    assert (log["forks"], log["refusals"]) == ([], [])
    assert ok_json("conflicts", "--home", home) == []


# -- errors: one line, non-zero ------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with v-0001, and v-0009 in two partitions, for errors that must not change it."""
    home = tmp_path_factory.mktemp("errors") / "phone-a"
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    for args in (["init", "--home", home, "--partition", P],
                 ["put", "--home", home, "voters", "v-0001", "nama=Yosina"],
                 ["put", "--home", home, "--partition", P2, "voters", "v-0009", "nama=A"],
                 ["put", "--home", home, "--partition", P, "voters", "v-0009", "nama=B"]):
        subprocess.run([MESHSYNC, *map(str, args)], check=True, capture_output=True, env=env)
    (home.parent / "garbage.msb").write_bytes(b"this is not a bundle, only text" * 4)
    return home


#: One error of each kind, also run through the real command (subprocess): unknown
#: home, missing record, bad field syntax, bad JSON, bad partition, corrupted bundle.
REAL_PROCESS_CASES = [
    # (arguments, words the message must contain); --home is added unless given
    (["get", "--home", "{missing}", "voters", "v-0001"], "no node home at {missing}"),
    (["get", "voters", "v-0404"], "no record voters/v-0404"),
    (["put", "voters", "v-0001", "nama"], "'nama': expected field=value or field:=json"),
    (["put", "voters", "v-0001", "umur:=4x"], "'umur:=4x': value after ':=' is not JSON"),
    (["put", "--partition", "Mimika/Jila", "voters", "v-0001", "a=1"],
     "invalid partition 'Mimika/Jila'"),
    (["bundle", "import", "{tmp}/garbage.msb"], "decode: not a meshsync bundle"),
]

ERROR_CASES = [
    *REAL_PROCESS_CASES,
    (["put", "--home", "{missing}", "voters", "v-0001", "a=1"], "no node home at {missing}"),
    (["ls", "--home", "{missing}", "voters"], "no node home at {missing}"),
    (["bundle", "export", "--clear", "--home", "{missing}", "-o", "{tmp}/x.msb"], "no node home"),
    (["get", "voters", "v-0001", "--partition", P2], "no record voters/v-0001"),
    (["delete", "voters", "v-0404"], "no record voters/v-0404"),
    (["get", "voters", "v-0009"], "several partitions"),
    (["put", "voters", "v-0001", "=Yosina"], "missing field name"),
    (["put", "voters", "v-0001", "a=1", "a=2"], "field 'a' given twice"),
    (["put", "voters", "v-0001", "umur:='44'"], "is not JSON"),
    (["put", "voters", "v-0001", "umur:="], "is not JSON"),
    (["put", "voters", "v-0001", "umur:=NaN"], "NaN is not a JSON number"),
    (["put", "voters", "v-0001", "umur:=1e400"], "1e400 is too large"),
    (["put", "voters", "v-0001", "n:=18446744073709551616"], "integer out of range"),
    (["put", "voters", "v-0001", "n:=" + "[" * 20 + "]" * 20], "nested too deeply"),
    (["put", "voters", "v-0001", "n:=" + "[" * 5000 + "]" * 5000], "is not JSON"),
    (["put", "voters", "k" * 257, "a=1"], "invalid key"),
    (["put", "--partition", "mimika//jila", "voters", "v-0001", "a=1"], "invalid partition"),
    (["ls", "voters", "--partition", "mimika/Jila"], "invalid partition 'mimika/Jila'"),
    (["get", "voters", "v-0001", "--partition", "tps 003"], "invalid partition 'tps 003'"),
    (["delete", "voters", "v-0001", "--partition", "/mimika"], "invalid partition"),
]


def check_error(home: Path, tmp_path: Path, args: list[str], words: str,
                real_process: bool) -> None:
    names = {"missing": str(tmp_path / "no-such-home"), "tmp": str(home.parent)}
    args = [a.format(**names) for a in args]
    if "--home" not in args:
        at = 2 if args[0] == "bundle" else 1  # after the (sub)command name
        args[at:at] = ["--home", str(home)]
    before = change_count(home)
    if real_process:
        line = fails(*args)
    else:
        result = CliRunner().invoke(main, args)
        line = error_line(result.exit_code, result.stdout, result.stderr)
    assert words.format(**names) in line
    assert change_count(home) == before
    assert not (tmp_path / "no-such-home").exists()


@pytest.mark.parametrize(("args", "words"), ERROR_CASES,
                         ids=[" ".join(a)[:40] for a, _ in ERROR_CASES])
def test_errors_are_one_line_and_change_nothing(shared_home: Path, tmp_path: Path,
                                                args: list[str], words: str) -> None:
    check_error(shared_home, tmp_path, args, words, real_process=False)


@pytest.mark.parametrize(("args", "words"), REAL_PROCESS_CASES,
                         ids=[" ".join(a)[:40] for a, _ in REAL_PROCESS_CASES])
def test_errors_from_the_real_command(shared_home: Path, tmp_path: Path,
                                      args: list[str], words: str) -> None:
    check_error(shared_home, tmp_path, args, words, real_process=True)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    (home / "device.key").chmod(0o644)
    assert "readable by others (chmod 600 it)" in fails("put", "--home", home, "voters",
                                                          "v-0001", "nama=Yosina")


def test_too_large_record_is_refused_with_the_limit(tmp_path: Path) -> None:
    home = init(tmp_path / "phone-a")
    runner = CliRunner()
    ok_size = runner.invoke(main, ["put", "--home", str(home), "voters", "v-0001",
                                   "foto=" + "x" * (MAX_RECORD_BYTES - 100)])
    assert ok_size.exit_code == 0, ok_size.stderr
    result = runner.invoke(main, ["put", "--home", str(home), "voters", "v-0002",
                                  "foto=" + "x" * MAX_RECORD_BYTES])
    line = error_line(result.exit_code, result.stdout, result.stderr)
    assert f"record voters/v-0002 is {MAX_RECORD_BYTES + 11} bytes" in line
    assert f"the limit is {MAX_RECORD_BYTES} bytes" in line
    assert change_count(home) == 1


# -- two homes converge through bundles ---------------------------------------------------


def snapshot(home: Path, keys: list[str]) -> dict[str, Any]:
    """What an officer can see: every record (ls), ``get`` of ``keys``, conflicts, feeds."""
    log = ok_json("log", "--home", home)
    return {
        "ls": ok_json("ls", "--home", home, "voters", "--deleted"),
        "get": {k: ok_json("get", "--home", home, "voters", k) for k in keys},
        "conflicts": ok_json("conflicts", "--home", home),
        "feeds": sorted((f["author"], f["partition"], f["seq"], f["head"])
                        for f in log["feeds"]),
        "forks": log["forks"],
    }


def test_two_homes_converge_through_bundles_both_ways(tmp_path: Path) -> None:
    a, b = init(tmp_path / "phone-a"), init(tmp_path / "phone-b")
    ok("put", "--home", a, "voters", "v-0001", "nama=Yosina", "status=ms", "lahir:=1980")
    ok("put", "--home", a, "voters", "v-0002", "nama=Ma'ruf Contoh", "status=ms")
    ok("put", "--home", a, "voters", "v-0003", "nama=Debora Contoh", "status=ms")
    assert exchange(a, b, tmp_path / "a1.msb")["applied"] == 3

    # Offline, both edit: the same field (a conflict), a field seen from the other
    # (causality: B's edit replaces A's value, whatever the clocks), and a delete
    # concurrent with an edit.
    ok("put", "--home", a, "voters", "v-0001", "status=pindah")
    ok("put", "--home", b, "voters", "v-0001", "status=meninggal")
    ok("put", "--home", b, "voters", "v-0002", "nama=Ma'ruf Contoh Baru")
    ok("put", "--home", a, "voters", "v-0002", "lahir:=1975")
    ok("put", "--home", a, "voters", "v-0003", "status=kembali")
    ok("delete", "--home", b, "voters", "v-0003")
    ok("put", "--home", b, "voters", "v-0004", "nama=Yosina Contoh")

    # Both export before either imports: a true crossing of bundles.
    ok("bundle", "export", "--clear", "--home", a, "-o", tmp_path / "a2.msb")
    ok("bundle", "export", "--clear", "--home", b, "-o", tmp_path / "b2.msb")
    from_b = ok_json("bundle", "import", "--home", a, tmp_path / "b2.msb")
    from_a = ok_json("bundle", "import", "--home", b, tmp_path / "a2.msb")
    assert (from_b["applied"], from_a["applied"]) == (4, 3)
    assert from_b["refused"] == from_a["refused"] == []

    keys = ["v-0001", "v-0003"]  # the conflicted ones; ls shows every record in full
    seen_a, seen_b = snapshot(a, keys), snapshot(b, keys)
    assert seen_a == seen_b

    v1 = seen_a["get"]["v-0001"]
    versions = v1["conflicts"]["status"]
    assert sorted(v["value"] for v in versions) == ["meninggal", "pindah"]
    assert v1["fields"]["status"] == versions[0]["value"]  # the winner is listed first
    records = {r["key"]: r for r in seen_a["ls"]}
    assert records["v-0002"]["fields"] == {
        "nama": "Ma'ruf Contoh Baru", "status": "ms", "lahir": 1975}
    assert records["v-0002"]["conflicts"] == {}
    assert records["v-0004"]["fields"] == {"nama": "Yosina Contoh"}
    # The delete ran after A's edit on this machine's clock, so it is the visible
    # state; both the edit and the tombstone stay listed until someone resolves them.
    v3 = seen_a["get"]["v-0003"]
    assert (v3["deleted"], v3["fields"]) == (True, {})
    tomb, = v3["conflicts"]["*"]
    assert tomb["value"] is None and tomb["author"] == ok_json("log", "--home", b)["device_id"]
    assert [r["key"] for r in seen_a["conflicts"]] == ["v-0001", "v-0003"]

    # A resolves after seeing both values; once exchanged, the conflict is gone on both.
    ok("put", "--home", a, "voters", "v-0001", "status=pindah")
    assert exchange(a, b, tmp_path / "a3.msb")["applied"] == 1
    seen_a, seen_b = snapshot(a, keys), snapshot(b, keys)
    assert seen_a == seen_b
    assert seen_a["get"]["v-0001"]["conflicts"] == {}
    assert seen_a["get"]["v-0001"]["fields"]["status"] == "pindah"
    assert [r["key"] for r in seen_a["conflicts"]] == ["v-0003"]


# -- names stored exactly as typed (B19) --------------------------------------------------

NAMES = {
    "nama_u0027": "Ma'ruf Contoh",
    "nama_u2019": "Ma\u2019ruf Contoh",
    "nama_u02bc": "Ma\u02bcruf Contoh",
    "nama_nfc": unicodedata.normalize("NFC", "Syafi'i D\u00e9bora"),
    "nama_nfd": unicodedata.normalize("NFD", "Syafi'i D\u00e9bora"),
    "nama_tunggal": "Yosina",
}


def test_apostrophes_and_normal_forms_are_stored_byte_exact(tmp_path: Path) -> None:
    assert NAMES["nama_nfc"] != NAMES["nama_nfd"]
    assert len({v.encode() for v in NAMES.values()}) == len(NAMES)
    a, b = init(tmp_path / "phone-a"), init(tmp_path / "laptop-gw")
    ok("put", "--home", a, "voters", "v-0001", *(f"{k}={v}" for k, v in NAMES.items()))
    # Keys differing only in normal form are two records.
    ok("put", "--home", a, "voters", NAMES["nama_nfc"], "bentuk=NFC")
    ok("put", "--home", a, "voters", NAMES["nama_nfd"], "bentuk=NFD")
    ok("bundle", "export", "--clear", "--home", a, "-o", tmp_path / "names.msb")
    raw = (tmp_path / "names.msb").read_bytes()
    for value in NAMES.values():
        assert value.encode("utf-8") in raw  # signed and carried as typed
    ok_json("bundle", "import", "--home", b, tmp_path / "names.msb")

    got = ok_json("get", "--home", b, "voters", "v-0001")["fields"]
    assert {k: v.encode("utf-8") for k, v in got.items()} == {
        k: v.encode("utf-8") for k, v in NAMES.items()}
    by_key = {r["key"]: r["fields"]["bentuk"] for r in ok_json("ls", "--home", b, "voters")
              if "bentuk" in r["fields"]}
    assert by_key == {NAMES["nama_nfc"]: "NFC", NAMES["nama_nfd"]: "NFD"}
    assert ok_json("ls", "--home", a, "voters") == ok_json("ls", "--home", b, "voters")
