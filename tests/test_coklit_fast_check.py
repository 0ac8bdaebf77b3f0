"""The voters validator's fast acceptance (examples/coklit/fastcheck.py) never changes a
verdict, neither the coded validator's nor the signed document's: on generated voters,
each changed in one or two fields (a value of another voter, a wrong type, an edge
case), under each setting of the rules, the validator says exactly what its full
checks say; and the name tidying's ASCII shortcut gives
what NFC and space folding give. All people are made up."""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from meshsync.coklit import regions
from meshsync.coklit.checks import age_on
from meshsync.coklit.document import PACKAGE, document
from meshsync.coklit.merge import baseline_of
from meshsync.coklit.nik import make_nik
from meshsync.coklit.sample import SampleVoter, generate
from meshsync.coklit.schema import FIELDS, Rules, VoterValidator
from meshsync.coklit.textnorm import _SPACES, tidy

from meshsync.model.codec import canonical_value, pack, unpack
from meshsync.replica.schema import Compiled


@cache
def samples() -> tuple[SampleVoter, ...]:
    voters = generate(5, "Jila", voters_per_tps=15, tps_per_kampung=2, coklit_results=True)
    voters += generate(6, "Tembagapura", voters_per_tps=10, tps_per_kampung=1,
                       coklit_results=True)
    return tuple(voters[::3])


EDGES: list[Any] = [None, "", [], 0, 1, True, 3.0, "x", " ", "\t", "00", "123",
                    "9109061503800001", "9404065503800000", "9109063203800001",
                    "9109061503800001\n", "９１０９０６１５０３８０００１", "1980-03-15",
                    "1980-02-30", "2030-01-01", "15-03-1980", "MS", "TMS", "baru", "ubah",
                    "meninggal", "di_bawah_umur", "B", "S", "P", "L", "Jila", "jila",
                    "Diloa", "Pilik Ogom", "T'Singa", "Timika", ["fisik"], ["fisik", "fisik"],
                    ["x"], {"nama": "Yosina"}, {}, 17, 44, 150, 151, -1, 999, 1000,
                    "R2D2", "Ma'ruf\u00a0Contoh", "a" * 201]
FIELD_EDGES: dict[str, list[Any]] = {
    "tms": ["meninggal", "di_bawah_umur", "ganda", "x"], "coklit": ["MS", "TMS", "baru", "ubah"],
    "status": ["MS", "TMS", "baru"], "status_kawin": ["B", "S", "P", "K"],
    "jenis_kelamin": ["L", "P", "X"], "umur": [0, 16, 17, 44, 59, True, "44"],
    "tanggal_lahir": ["2010-01-01", "2007-11-28", "2007-11-27", "1965-09-26"],
    "kampung": ["Diloa", "Jila", "Pilik Ogom", "Waa", "T'Singa", "Nowhere", "diloa"],
    "distrik": ["Jila", "Tembagapura", "JILA", "Nowhere", "Mimika Baru", "Jila\t"],
    "tps": [1, 2, 3, 0, True, "1"], "rt": ["001", "1234", 1, "12\n", "\u0661"],
    "disabilitas": [["mental"]],
}
BIRTHS = [date(2010, 1, 1), date(2007, 11, 27), date(2007, 11, 28), date(1990, 7, 1),
          date(2025, 3, 3), date(2012, 2, 29)]


def _reborn(fields: dict[str, Any], born: date, with_age: bool) -> None:
    """Set the birth date and rebuild the NIK's date part (and ``umur``) to match."""
    nik = fields.get("nik")
    if not (isinstance(nik, str) and len(nik) == 16 and nik.isdigit()):
        return
    female = fields.get("jenis_kelamin") == "P"
    fields["tanggal_lahir"] = born.isoformat()
    fields["nik"] = make_nik(nik[:6], born, female, int(nik[12:]) or 1)
    fields.pop("umur", None)
    if with_age:
        fields["umur"] = age_on(born, date(2024, 11, 27))


RULES = [Rules(), Rules(nik_region="kabupaten"), Rules(nik_region="off"),
         Rules(election_day=date(2029, 4, 17))]


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    pool = samples()
    base = draw(st.sampled_from(pool))
    fields = dict(base.fields)
    if draw(st.booleans()):
        fields["dpt"] = baseline_of(fields)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*FIELDS, "unknown"]))
        how = draw(st.sampled_from(["edge", "other", "drop", "dpt", "born", "moved",
                                    "region"]))
        if how == "born":  # another birth date, the NIK made to agree with it
            _reborn(fields, draw(st.sampled_from(BIRTHS)), draw(st.booleans()))
        elif how == "moved":  # other region fields, and the partition they spell
            fields["distrik"] = draw(st.sampled_from(FIELD_EDGES["distrik"]))
            fields["kampung"] = draw(st.sampled_from(FIELD_EDGES["kampung"]))
            fields["tps"] = draw(st.sampled_from([1, 2, 7]))
            return fields, (f"mimika/{regions.slug(str(fields['distrik']))}/"
                            f"{regions.slug(str(fields['kampung']))}/tps-{fields['tps']:03d}")
        elif how == "region" and isinstance(fields.get("nik"), str):
            fields["nik"] = draw(st.sampled_from(["940406", "910910", "120106", "940499"])) \
                + fields["nik"][6:]
        elif how == "edge":
            fields[name] = draw(st.sampled_from(FIELD_EDGES.get(name, EDGES))
                                | st.sampled_from(EDGES))
        elif how == "other":
            fields[name] = draw(st.sampled_from(pool)).fields.get(name)
        elif how == "drop":
            fields.pop(name, None)
        elif isinstance(fields.get("dpt"), dict):
            fields["dpt"] = {**fields["dpt"], name: draw(st.sampled_from(EDGES))}
    partition = base.partition
    named = regions.partition_for_fields(fields)
    if named and draw(st.booleans()):  # the partition the changed fields name
        partition = named
    elif draw(st.integers(0, 9)) == 0:
        partition = draw(st.sampled_from([*(v.partition for v in pool), "mimika/jila",
                                          "local", "mimika/jila/diloa/tps-000",
                                          "mimika/jila/nowhere/tps-001"]))
    return fields, partition


@settings(max_examples=1500, deadline=None)
@given(records(), st.sampled_from(RULES))
def test_fast_acceptance_gives_the_full_verdict(record: tuple[dict[str, Any], str],
                                                rules: Rules) -> None:
    fields, partition = record
    validator = VoterValidator(rules)
    full = validator.problems(fields, partial=False, partition=partition)
    assert validator("k", fields, partial=False, partition=partition) == full


def test_generated_voters_are_accepted_fast_and_broken_ones_are_not() -> None:
    """The shortcut is taken (the property above would hold without it) and is not
    blind: a voter whose NIK misstates the sex is refused, with the full message."""
    validator = VoterValidator()
    voter = samples()[0]
    fields = {**voter.fields, "dpt": baseline_of(voter.fields)}
    assert validator("k", fields, partial=False, partition=voter.partition) == []
    wrong = "P" if fields["jenis_kelamin"] == "L" else "L"
    found = validator("k", {**fields, "jenis_kelamin": wrong}, partial=False,
                      partition=voter.partition)
    assert [name for name, _ in found] == ["nik"], found


def _tidy_rule(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip(" ")


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("aZ9 '.-\t\n\u00a0\u2003e\u0301é")), max_size=12))
@example("  Yosina  ")
@example("Yosina Contoh")
def test_tidy_shortcut_agrees_with_nfc_and_space_folding(text: str) -> None:
    assert tidy(text) == _tidy_rule(text)


@dataclass(frozen=True)
class _Doc:
    """The parts of a signed schema document that its interpretation reads."""

    body: dict[str, Any]
    collection: str = "voters"
    version: int = 1
    blob: bytes = b""


@cache
def _compiled(rules: Rules, fast: bool) -> Compiled:
    body = unpack(pack(canonical_value(document(rules)["body"])), max_bytes=1 << 20)  # as signed
    compiled = Compiled(_Doc(body), lambda name: PACKAGE)  # type: ignore[arg-type]
    assert compiled.accepts is not None  # the package's own document: the shortcut is on
    if not fast:
        compiled.accepts = None
    return compiled


def _changed(**change: Any) -> tuple[dict[str, Any], str]:
    voter = samples()[0]
    return {**voter.fields, **change}, voter.partition


@settings(max_examples=1500, deadline=None)
@given(records(), st.sampled_from(RULES))
@example(_changed(rt="12\n"), Rules())  # the coded rule takes it, the document's not
@example(_changed(distrik="Jila\t"), Rules())
def test_the_signed_documents_shortcut_gives_its_full_verdict(
        record: tuple[dict[str, Any], str], rules: Rules) -> None:
    """The same for the signed ``voters`` document (what an enrolled node, central
    above all, judges by): its interpretation with and without the package's shortcut."""
    fields, partition = record
    full = _compiled(rules, False).check(fields, partial=False, partition=partition)
    assert _compiled(rules, True).check(fields, partial=False, partition=partition) == full


def test_another_document_version_gets_no_shortcut() -> None:
    body = copy.deepcopy(document()["body"])
    del body["fields"]["coklit"]["codes"]["baru"]  # a newer version that refuses baru
    assert PACKAGE.fast_acceptance(body) is None
    assert PACKAGE.fast_acceptance(document()["body"]) is not None
    signed = unpack(pack(canonical_value(document()["body"])), max_bytes=1 << 20)
    assert PACKAGE.fast_acceptance(signed) is not None  # as decoded: lists, not tuples
