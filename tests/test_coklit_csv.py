"""The voter list CSV: import (bad rows by line, batches, progress, idempotence), export,
and the ``meshsync coklit`` commands. All people are made up."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from meshsync.coklit.columns import HEADERS
from meshsync.coklit.dpt_csv import export_csv, import_csv, write_csv
from meshsync.coklit.sample import generate
from meshsync.coklit.schema import register

from meshsync.model.errors import UsageError

HEADER = ("NO,DISTRIK,KAMPUNG,TPS,NKK,NIK,NAMA,TEMPAT LAHIR,TANGGAL LAHIR,USIA,"
          "STATUS PERKAWINAN,JENIS KELAMIN,ALAMAT,RT,RW,DISABILITAS,KETERANGAN\n")
GOOD = "1,Jila,Diloa,3,9109060205120017,9109061503800001,Ma'ruf Contoh,Timika,15-03-1980,44," \
       "S,L,Kampung Diloa,001,,,\n"


def test_bad_rows_are_listed_by_line_and_good_rows_import(make_device: Any,
                                                          tmp_path: Path) -> None:
    text = (HEADER + GOOD
            + "2,Jila,Diloa,3,9109060205120017,910906550380002,Yosina,Jila,15-03-1980,44,"
              "S,P,Kampung Diloa,001,,,\n"                                    # line 3: 15 digits
            + "3,Jila,Diloa,3,9109060205120017,9109065503800002,Yosina,Jila,15-03-1980,44,"
              "S,P,Kampung Diloa,001,,,TMS\n"                                 # line 4: no reason
            + "\n"                                                            # line 5: blank
            + '4,Jila,Diloa,3,9109060205120018,9109060101900001,Yohanes,Jila,01-01-1990,34,'
              'B,L,"Kampung Diloa,\nbelakang gereja",,,1;6,U\n'               # lines 6-7: 2 lines
            + "5,Jila,Diloa,3,9109060205120018,9109064101900002,Maria,Jila,31-02-1990,,"
              "B,P,Kampung Diloa,,,,\n"                                       # line 8: no date
            + "6,Jila,Kiliarma,1,9109060205120018,9109064101900002,Maria,Jila,01-01-1990,,"
              "B,P,Kampung Diloa,,,,4\n"                                      # line 9: kampung
            + '7,Jila,Diloa,3,9109060205120018,9109060101900001,Yohanes,Jila,01-01-1990,34,'
              'B,L,"Kampung Diloa, belakang gereja",,,1;6,U\n')               # line 10: good
    path = tmp_path / "dpt.csv"
    path.write_text(text, "utf-8")
    central = make_device("central", kind="sqlite")
    report = import_csv(central.node, path)
    assert (report.rows, report.imported, report.changes) == (7, 2, 1)
    bad = {b.line: b.reason for b in report.bad}
    assert sorted(bad) == [3, 4, 6, 8, 9]
    assert bad[3].startswith("NIK (nik): must be exactly 16 digits")
    assert bad[4].startswith("KETERANGAN: TMS needs its reason") and ";" not in bad[4]
    assert bad[6] == "ALAMAT (alamat): contains a control character"
    assert bad[8] == "TANGGAL LAHIR: '31-02-1990' is not a date (use DD-MM-YYYY)"
    assert bad[9].startswith("KAMPUNG (kampung): 'Kiliarma' is not a kampung of distrik Jila")
    assert report.to_json()["bad"][0] == {"line": 3, "reason": bad[3]}
    yohanes = central.get("voters", "nik-9109060101900001")
    assert yohanes.fields["alamat"] == "Kampung Diloa, belakang gereja"
    assert yohanes.fields["disabilitas"] == ["fisik", "sensorik_netra"]
    assert yohanes.fields["coklit"] == "ubah" and yohanes.partition == "mimika/jila/diloa/tps-003"
    assert "voters" in central.node.validators  # registered by the import


def test_excel_files_with_bom_semicolons_and_alias_headers_import(make_device: Any,
                                                                  tmp_path: Path) -> None:
    header = ("No Urut;KECAMATAN;Kelurahan/Desa;TPS;No KK;NIK;Nama;Tempat Lahir;Tgl Lahir;"
              "Umur;Sts Kawin;L/P;Alamat;RT;RW;Disabilitas;Ket\n")
    row = ("1;jila;DILOA;TPS 003;9109060205120017;9109061503800001;Ma\u2019ruf Contoh;Timika;"
           "1980-03-15;;KAWIN;LAKI-LAKI;Kampung Diloa;1;;;TMS 1\n")
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + row).encode("utf-8"))
    central = make_device("central")
    report = import_csv(central.node, path)
    assert report.bad == [] and report.imported == 1
    fields = central.get("voters", "nik-9109061503800001").fields
    assert fields["nama"].encode() == "Ma\u2019ruf Contoh".encode()
    assert (fields["coklit"], fields["tms"], fields["status_kawin"]) == ("TMS", "meninggal", "S")
    assert (fields["distrik"], fields["kampung"], fields["tps"]) == ("jila", "DILOA", 3)


def test_unreadable_files_are_refused_before_anything_is_written(make_device: Any,
                                                                 tmp_path: Path) -> None:
    central = make_device("central")
    path = tmp_path / "x.csv"
    path.write_text("NO,NIK,NAMA\n1,2,3\n", "utf-8")
    with pytest.raises(UsageError, match=r"lacks column.*DISTRIK"):
        import_csv(central.node, path)
    path.write_bytes(HEADER.encode() + GOOD.encode() + "3,Ma\u2019ruf\n".encode("cp1252"))
    with pytest.raises(UsageError, match="line 3 is not UTF-8"):
        import_csv(central.node, path)
    path.write_text("", "utf-8")
    with pytest.raises(UsageError, match="is empty"):
        import_csv(central.node, path)
    assert list(central.records("voters")) == []


def _sample_file(tmp_path: Path, **kwargs: Any) -> Path:
    path = tmp_path / "sample.csv"
    voters = generate(21, "Jila", **kwargs)
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(out, ((v.partition, v.key, v.fields) for v in voters))
    return path


def test_import_writes_few_signed_changes_reports_progress_and_is_idempotent(
        make_device: Any, tmp_path: Path) -> None:
    path = _sample_file(tmp_path, voters_per_tps=30, tps_per_kampung=1)
    central = make_device("central", kind="sqlite")
    seen: list[tuple[int, int]] = []
    report = import_csv(central.node, path, batch_size=25,
                        progress=lambda done, total: seen.append((done, total)))
    tps = 12  # the kampung of Jila, one TPS each
    assert report.bad == [] and report.imported == report.rows >= 30 * tps
    assert report.changes == 2 * tps and len(report.partitions) == tps
    assert sum(f.head_seq for f in central.store.feeds()) == report.changes
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (report.rows, report.rows)
    again = import_csv(central.node, path)
    assert (again.imported, again.unchanged, again.changes) == (0, report.rows, 0)


def test_export_round_trips_through_import_byte_for_byte(make_device: Any,
                                                         tmp_path: Path) -> None:
    path = _sample_file(tmp_path, voters_per_tps=8, tps_per_kampung=2, coklit_results=True)
    central, laptop = make_device("central"), make_device("laptop")
    import_csv(central.node, path)
    out = io.StringIO()
    rows = export_csv(central.node, out, "mimika/jila")
    assert rows == len(list(central.records("voters")))
    assert out.getvalue().startswith(",".join(HEADERS) + "\n")
    exported = tmp_path / "export.csv"
    exported.write_text(out.getvalue(), "utf-8")
    report = import_csv(laptop.node, exported)
    assert report.bad == [] and report.imported == rows
    assert [r.to_json()["fields"] for r in laptop.records("voters")] == [
        r.to_json()["fields"] for r in central.records("voters")]
    assert export_csv(central.node, io.StringIO(), "mimika/jila/diloa") < rows


def test_reimport_clears_fields_the_file_no_longer_has(make_device: Any,
                                                       tmp_path: Path) -> None:
    central = make_device("central")
    register(central.node)
    path = tmp_path / "dpt.csv"
    path.write_text(HEADER + GOOD.replace(",,,\n", ",,,1\n"), "utf-8")  # TMS meninggal
    import_csv(central.node, path)
    path.write_text(HEADER + GOOD, "utf-8")  # blank: no result, the reason must go
    report = import_csv(central.node, path)
    assert report.bad == [] and report.imported == 1 and report.applied == 2
    fields = central.get("voters", "nik-9109061503800001").fields
    assert fields.get("coklit") is None and fields.get("tms") is None


# -- the commands ----------------------------------------------------------------------


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    assert found, "the meshsync console script is not installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    return subprocess.run([found, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def ok(*args: str | Path) -> str:
    proc = run(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


def test_cli_generate_import_find_duplicates_export(tmp_path: Path) -> None:
    gen = ("coklit", "generate", "--seed", "9", "--distrik", "Agimuga", "--voters-per-tps",
           "10", "--tps-per-kampung", "1", "--duplicate-rate", "0.05", "-o")
    ok(*gen, tmp_path / "a.csv")
    ok(*gen, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    with (tmp_path / "a.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = (tmp_path / "a.csv").read_text("utf-8").splitlines()
    lines[2] = lines[2].replace(rows[1]["NIK"], rows[1]["NIK"][:-1])  # line 3: 15 digits
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n", "utf-8")

    home = tmp_path / "central"
    ok("init", "--home", home)
    proc = run("coklit", "import", tmp_path / "a.csv", "--home", home, "--json")
    assert proc.returncode == 3 and proc.stderr == "", proc  # exit 3: a row was refused
    report = json.loads(proc.stdout)
    assert report["imported"] == len(rows) - 1
    assert [b["line"] for b in report["bad"]] == [3]
    assert "schema = \"coklit\"" in (home / "config.toml").read_text()
    assert "partition = \"local\"" in (home / "config.toml").read_text()

    name = rows[0]["NAMA"].split()[0]
    found = json.loads(ok("coklit", "find", name.upper(), "--home", home, "--json"))
    assert rows[0]["ID"] in {r["key"] for r in found}
    clusters = json.loads(ok("coklit", "duplicates", "--home", home, "--json"))
    assert any(c["reason"] == "nik" for c in clusters)
    assert "records" in ok("coklit", "duplicates", "--home", home)

    ok("coklit", "export", "--home", home, "-o", tmp_path / "out.csv")
    exported = (tmp_path / "out.csv").read_text("utf-8").splitlines()
    assert len(exported) == len(rows)  # header + the rows that imported
    proc = run("coklit", "export", "--home", home, "--partition", "Bad/Partition")
    assert proc.returncode == 1 and proc.stderr.startswith("meshsync: error: invalid partition")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = run("coklit", "generate", "--seed", "1", "--distrik", "Timika", "-o",
               tmp_path / "x.csv")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "not a distrik of Kabupaten Mimika" in proc.stderr
    assert not (tmp_path / "x.csv").exists()
    (tmp_path / "empty.csv").write_text("", "utf-8")
    proc = run("coklit", "import", tmp_path / "empty.csv", "--home", tmp_path / "none")
    assert proc.returncode == 1 and "no node home" in proc.stderr
