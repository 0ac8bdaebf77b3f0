"""Coklit visits (belum dicoklit until an officer records a result; progress counts
visits) and re-importing a baseline as a three-way merge that never reverts an
officer's work (docs/architecture.md §4). All people are made up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import START_MS, Device, exchange
from hypothesis import given
from hypothesis import strategies as st
from meshsync.coklit.dpt_csv import import_csv
from meshsync.coklit.schema import register

from meshsync.replica.crdt import RecordState
from meshsync.replica.progress import progress

P = "mimika/jila/diloa/tps-003"
KEY = "nik-9109061503800001"
HEADER = ("NO,DISTRIK,KAMPUNG,TPS,NKK,NIK,NAMA,TEMPAT LAHIR,TANGGAL LAHIR,USIA,"
          "STATUS PERKAWINAN,JENIS KELAMIN,ALAMAT,RT,RW,DISABILITAS,KETERANGAN\n")
MARUF = ("1,Jila,Diloa,3,9109060205120017,9109061503800001,Ma'ruf Contoh,Timika,15-03-1980,"
         "44,S,L,{alamat},{rt},,,\n")
YOSINA = ("2,Jila,Diloa,3,9109060205120017,9109065503800002,Yosina Contoh,Jila,15-03-1980,"
          "44,S,P,Kampung Diloa,,,,\n")


def dpt(tmp_path: Path, alamat: str = "Kampung Diloa", rt: str = "001") -> Path:
    """A two-voter DPT of Diloa TPS 3 with blank KETERANGAN (as Sidalih exports it)."""
    path = tmp_path / "dpt.csv"
    path.write_text(HEADER + MARUF.format(alamat=alamat, rt=rt) + YOSINA, "utf-8")
    return path


@pytest.fixture
def mesh(make_device: Any, tmp_path: Path) -> tuple[Device, Device]:
    """Central imported the DPT; the Pantarlih's phone of Diloa TPS 3 holds it."""
    central = make_device("central", kind="sqlite")
    phone = make_device("phone-a", kind="sqlite", partition=P, now_ms=START_MS + 3_600_000)
    register(central.node)
    register(phone.node)
    import_csv(central.node, dpt(tmp_path))
    exchange(central, phone)
    return central, phone


def officer(phone: Device, central: Device, **fields: Any) -> None:
    """The officer records ``fields`` for Ma'ruf; the phone syncs to central."""
    phone.put("voters", KEY, fields, P)
    exchange(phone, central)


def visit(device: Device, key: str = KEY) -> Any:
    from meshsync.coklit.visits import visit_of  # (imported here: no such module before)

    row = device.store.load_record(P, "voters", key)
    return visit_of(RecordState.decode(row.state))


# -- belum dicoklit until an officer acts ------------------------------------------------


def test_an_imported_voter_is_belum_dicoklit_until_an_officer_records_a_result(
        mesh: tuple[Device, Device]) -> None:
    central, phone = mesh
    assert progress(central.store)["tps"][P]["status"] == {"belum dicoklit": 2}
    assert visit(phone).result is None and visit(phone).label == "belum dicoklit"
    officer(phone, central, coklit="MS")
    for device in (central, phone):
        seen = visit(device)
        assert (seen.result, seen.by, seen.at_ms) == ("MS", phone.key.device_id,
                                                      START_MS + 3_600_000)
    assert progress(central.store)["tps"][P]["status"] == {"MS": 1, "belum dicoklit": 1}


def test_progress_counts_visits_per_tps_kampung_and_distrik(
        mesh: tuple[Device, Device]) -> None:
    central, phone = mesh
    officer(phone, central, coklit="TMS", tms="meninggal")
    phone.clock.advance(60_000)
    phone.put("voters", "nik-9109065503800002", {"coklit": "ubah", "alamat": "Jalan Contoh 7"})
    exchange(phone, central)
    figures = progress(central.store)
    for level, prefix in (("tps", P), ("village", "mimika/jila/diloa"),
                          ("district", "mimika/jila")):
        row = figures[level][prefix]
        assert (row["done"], row["records"]) == (2, 2), level
        assert row["status"] == {"TMS": 1, "ubah": 1}
        assert row["last_done_ms"] == START_MS + 3_660_000
    assert progress(phone.store) == figures  # the same figures on every node


# -- re-importing the baseline -----------------------------------------------------------


def test_reimport_keeps_an_officers_tms_and_reports_it(mesh: tuple[Device, Device],
                                                       tmp_path: Path) -> None:
    central, phone = mesh
    officer(phone, central, coklit="TMS", tms="meninggal")
    report = import_csv(central.node, dpt(tmp_path))
    assert (report.new, report.updated, report.unchanged, report.changes) == (0, 0, 2, 0)
    assert report.kept == 2 and report.conflicts == []  # coklit and tms
    exchange(central, phone)
    for device in (central, phone):
        fields = device.get("voters", KEY).fields
        assert (fields["coklit"], fields["tms"]) == ("TMS", "meninggal")
        assert visit(device).by == phone.key.device_id


def test_reimport_keeps_an_officers_tms_written_the_old_way(mesh: tuple[Device, Device],
                                                            tmp_path: Path) -> None:
    """The issue's report, as typed before visits: ``put status=TMS tms=meninggal``."""
    central, _ = mesh
    central.put("voters", KEY, {"status": "TMS", "tms": "meninggal"}, P)
    import_csv(central.node, dpt(tmp_path))
    fields = central.get("voters", KEY).fields
    assert (fields["status"], fields["tms"]) == ("TMS", "meninggal")
    assert progress(central.store)["tps"][P]["status"]["TMS"] == 1


def test_a_baseline_change_to_an_untouched_field_applies(mesh: tuple[Device, Device],
                                                         tmp_path: Path) -> None:
    central, phone = mesh
    officer(phone, central, rt="007")  # the officer corrected RT, not the address
    report = import_csv(central.node, dpt(tmp_path, alamat="Kampung Diloa Atas"))
    assert (report.updated, report.applied, report.kept, report.conflicts) == (1, 1, 1, [])
    exchange(central, phone)
    fields = phone.get("voters", KEY).fields
    assert (fields["alamat"], fields["rt"]) == ("Kampung Diloa Atas", "007")
    assert fields["dpt"]["alamat"] == "Kampung Diloa Atas" and fields["dpt"]["rt"] == "001"
    assert central.conflicts("voters") == []


def test_both_changed_is_a_conflict_listed_by_the_import_and_by_conflicts(
        mesh: tuple[Device, Device], tmp_path: Path) -> None:
    central, phone = mesh
    officer(phone, central, alamat="Jalan Contoh 7", coklit="ubah")
    report = import_csv(central.node, dpt(tmp_path, alamat="Kampung Diloa Atas"))
    assert report.updated == 1 and report.kept == 1  # the result, coklit ubah
    assert [c.to_json() for c in report.conflicts] == [{
        "line": 2, "partition": P, "key": KEY, "field": "alamat",
        "officer": "Jalan Contoh 7", "file": "Kampung Diloa Atas"}]
    exchange(central, phone)
    for device in (central, phone):
        [record] = device.conflicts("voters")
        versions = record.conflicts["alamat"]
        assert {v.value for v in versions} == {"Jalan Contoh 7", "Kampung Diloa Atas"}
        assert record.fields["coklit"] == "ubah"  # the result is untouched
    phone.put("voters", KEY, {"alamat": "Jalan Contoh 7"})  # the officer picks
    assert phone.conflicts("voters") == []


def test_an_old_homes_blank_keterangan_reads_belum_dicoklit(make_device: Any) -> None:
    """Before visits, an import wrote ``status`` MS for a blank KETERANGAN."""
    central = make_device("central")
    register(central.node)
    old = {"nkk": "9109060205120017", "nik": "9109061503800001", "nama": "Ma'ruf Contoh",
           "tempat_lahir": "Timika", "tanggal_lahir": "1980-03-15", "status_kawin": "S",
           "jenis_kelamin": "L", "alamat": "Kampung Diloa", "status": "MS",
           "distrik": "Jila", "kampung": "Diloa", "tps": 3}
    central.put("voters", KEY, old, P)
    central.put("voters", "v-2", dict(old, nik="9109065503800002", jenis_kelamin="P",
                                      status="TMS", tms="pindah_domisili"), P)
    assert visit(central).label == "belum dicoklit"
    assert visit(central, "v-2").result == "TMS"
    central.put("voters", KEY, {"coklit": "MS"}, P)  # the officer's visit, the new way
    assert visit(central).result == "MS"


# -- the command line --------------------------------------------------------------------


def run(*args: str | Path) -> str:
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    assert found, "the meshsync console script is not installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    proc = subprocess.run([found, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


def test_cli_import_reports_each_case_and_lists_conflicts(tmp_path: Path) -> None:
    home = tmp_path / "central"
    run("init", "--home", home)
    run("coklit", "import", dpt(tmp_path), "--home", home)
    run("put", "--home", home, "voters", KEY, "coklit=TMS", "tms=meninggal",
        "alamat=Jalan Contoh 7")
    out = run("coklit", "import", dpt(tmp_path, alamat="Kampung Diloa Atas", rt="002"),
              "--home", home)
    assert out.splitlines()[0] == (
        "Read 2 rows: 0 new voters, 1 updated, 1 unchanged, 0 invalid rows. In voters "
        "already held, 1 baseline changes were applied, 2 fields kept the officer's value "
        "and 1 fields are in conflict. Wrote 1 signed changes in 1 TPS.")
    assert out.splitlines()[1].startswith(
        f"Conflict on line 2: voter {KEY} in {P}, field alamat: the officer recorded "
        "'Jalan Contoh 7' and the file says 'Kampung Diloa Atas'.")
    again = json.loads(run("coklit", "import", dpt(tmp_path, alamat="Kampung Diloa Atas",
                                                   rt="002"), "--home", home, "--json"))
    assert (again["unchanged"], again["changes"], again["conflicts"]) == (2, 0, [])
    assert KEY in run("conflicts", "--home", home)
    lines = run("coklit", "progress", "--home", home, "--level", "distrik").splitlines()
    assert lines[0].startswith("mimika/jila: dicoklit 1 dari 2 (MS 0, TMS 1, ubah 0, "
                               "baru 0; belum dicoklit 1); 1 conflicts; last result 20")
    data = json.loads(run("coklit", "progress", "--home", home, "--json"))
    assert data["tps"][P]["done"] == 1


def test_reimport_into_an_old_home_keeps_what_officers_changed(make_device: Any,
                                                               tmp_path: Path) -> None:
    """A record the old import wrote (one op, ``status`` MS, no stored baseline)."""
    central = make_device("central")
    register(central.node)
    old = {"nkk": "9109060205120017", "nik": "9109061503800001", "nama": "Ma'ruf Contoh",
           "tempat_lahir": "Timika", "tanggal_lahir": "1980-03-15", "umur": 44,
           "status_kawin": "S", "jenis_kelamin": "L", "alamat": "Kampung Diloa", "rt": "001",
           "status": "MS", "distrik": "Jila", "kampung": "Diloa", "tps": 3}
    central.put("voters", KEY, old, P)
    central.put("voters", KEY, {"alamat": "Jalan Contoh 7", "status": "TMS",
                                "tms": "pindah_domisili"}, P)
    report = import_csv(central.node, dpt(tmp_path, alamat="Kampung Diloa Atas", rt="002"))
    assert (report.applied, report.kept, report.conflicts) == (1, 2, [])  # rt; alamat, tms
    fields = central.get("voters", KEY).fields
    assert (fields["rt"], fields["alamat"], fields["status"], fields["tms"]) == (
        "002", "Jalan Contoh 7", "TMS", "pindah_domisili")
    assert fields["dpt"]["alamat"] == "Kampung Diloa Atas"  # now a known baseline
    again = import_csv(central.node, dpt(tmp_path, alamat="Kampung Diloa Bawah", rt="002"))
    assert [c.field for c in again.conflicts] == ["alamat"]


def test_a_result_is_judged_the_same_as_a_local_edit_and_as_a_received_change(
        make_device: Any, tmp_path: Path) -> None:
    from meshsync.model.errors import ValidationError

    central = make_device("central", kind="sqlite")
    old_app = make_device("phone-b", kind="sqlite", partition=P)  # no validator
    register(central.node)
    import_csv(central.node, dpt(tmp_path))
    exchange(central, old_app)
    for bad, words in (({"coklit": "selesai"}, "coklit: is 'selesai'; use one of MS"),
                       ({"coklit": "MS", "tms": "meninggal"}, "a reason goes only with TMS"),
                       ({"dpt": {"alamat": ""}}, "dpt: alamat must be non-empty text")):
        with pytest.raises(ValidationError, match=words):
            central.put("voters", KEY, bad, P)
        old_app.put("voters", KEY, bad, P)
        report = exchange(old_app, central)
        assert [words in r.reason for r in report.invalid] == [True]
    assert visit(central).label == "belum dicoklit"


def test_a_pemilih_baru_an_officer_added_keeps_the_officers_data_when_the_dpt_lists_it(
        mesh: tuple[Device, Device], tmp_path: Path) -> None:
    central, phone = mesh
    new = {"nkk": "9109060205120017", "nik": "9109065503800003", "nama": "Maria Contoh",
           "tempat_lahir": "Jila", "tanggal_lahir": "1980-03-15", "status_kawin": "S",
           "jenis_kelamin": "P", "alamat": "Jalan Contoh 9", "distrik": "Jila",
           "kampung": "Diloa", "tps": 3, "coklit": "baru"}
    phone.put("voters", "nik-9109065503800003", new, P)
    exchange(phone, central)
    path = dpt(tmp_path)
    path.write_text(path.read_text("utf-8") + "3,Jila,Diloa,3,9109060205120017,"
                    "9109065503800003,Maria Contoh,Jila,15-03-1980,44,S,P,Kampung Diloa,,,,\n",
                    "utf-8")
    report = import_csv(central.node, path)
    assert (report.new, report.applied, report.conflicts) == (0, 0, [])
    fields = central.get("voters", "nik-9109065503800003").fields
    assert (fields["alamat"], fields["coklit"]) == ("Jalan Contoh 9", "baru")
    assert "umur" not in fields and fields["dpt"]["umur"] == 44


# -- the merge rule, for any three values ------------------------------------------------

VALUES = ("Kampung Diloa", "Jalan Contoh 7", "Jalan Contoh 9")


@given(st.lists(st.tuples(st.sampled_from(VALUES), st.sampled_from(VALUES),
                          st.sampled_from(VALUES)), min_size=3, max_size=3))
def test_the_merge_never_reverts_an_officers_value(triples: list[tuple[str, str, str]]
                                                   ) -> None:
    from meshsync.coklit.merge import plan

    names = ("alamat", "tempat_lahir", "nama")
    base = {n: b for n, (b, _, _) in zip(names, triples, strict=True)}
    officer_fields = {n: c for n, (b, c, _) in zip(names, triples, strict=True) if c != b}
    new = {n: v for n, (_, _, v) in zip(names, triples, strict=True)}
    importer, phone = b"c" * 32, b"p" * 32
    state = RecordState()
    state.apply_put((1, importer), {**base, "dpt": base}, ())
    if officer_fields:
        state.apply_put((2, phone), officer_fields, ((1, importer),))
    out = plan(state, new, importer)
    put = out.fields or {}
    for name, (b, c, n) in zip(names, triples, strict=True):
        if n == c:
            assert name not in put
        elif c == b:
            assert put[name] == n and name in out.applied
        elif n == b:
            assert name not in put and name in out.kept  # the officer's value stays
        else:
            assert put[name] == n and name in [f for f, _, _ in out.conflicts]
            assert (2, phone) in out.keep  # the officer's value stays, beside the file's
    assert put.get("dpt", new) == new
