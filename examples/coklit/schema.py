"""The ``voters`` collection: one record per person on the voter list, and its validator.

Fields follow the columns of the KPU voter list (Model A-Daftar Pemilih, the Sidalih
export; column names in :mod:`meshsync.coklit.dpt_csv`). Text is stored exactly as
entered (names above all: docs/failure-cases.md B19); codes are stored canonically.

A record holds three things (docs/architecture.md §4): the voter's data as now
known (the baseline fields below, which an officer may correct), the **coklit
result** (``coklit`` and ``tms``), and the **baseline** the last import wrote
(``dpt``), which a later import merges against (:mod:`meshsync.coklit.merge`).

==============  =======  ====================================================
field           type     meaning (Indonesian term)
==============  =======  ====================================================
nkk             text     family card number, 16 digits (Nomor Kartu Keluarga)
nik             text     resident number, 16 digits (Nomor Induk Kependudukan)
nama            text     full name as on the KTP; one word is a valid name
tempat_lahir    text     place of birth
tanggal_lahir   text     date of birth, ``YYYY-MM-DD``
umur            integer  age in whole years on election day (usia); optional
status_kawin    text     marital status: ``B`` belum kawin (never), ``S`` sudah
                         kawin (married), ``P`` pernah kawin (widowed/divorced)
jenis_kelamin   text     sex: ``L`` laki-laki (male), ``P`` perempuan (female)
alamat          text     address (street, dusun or kampung)
rt, rw          text     neighbourhood numbers, 1-3 digits; optional (many
                         kampung in the highlands have none)
disabilitas     list     kinds of disability, see :mod:`.codes`; optional
distrik         text     district (kecamatan), e.g. ``Jila``
kampung         text     village (kampung/kelurahan), e.g. ``Pilik Ogom``
tps             integer  polling station number within the kampung, 1-999
coklit          text     the coklit result: ``MS`` checked and eligible (memenuhi
                         syarat), ``TMS`` not eligible (tidak memenuhi syarat),
                         ``ubah`` data changed, ``baru`` new voter (pemilih
                         baru); absent: belum dicoklit (not yet checked)
tms             text     why TMS, see :mod:`.codes`; only with ``TMS``
dpt             map      the baseline fields as the last import wrote them
                         (field -> value, the fields above but ``dpt``);
                         written by the import only
status          text     before coklit visits (old homes): the result and
                         the KETERANGAN of the import in one field; still
                         accepted and read by :mod:`.visits`, no longer written
==============  =======  ====================================================

Who recorded a result, and when, is not typed in: it is the author (device) and
hybrid-clock time of the op that wrote the visible ``coklit`` value
(:func:`meshsync.coklit.visits.visit_of`).

A record lives in partition ``mimika/<distrik>/<kampung>/tps-NNN``
(:func:`meshsync.coklit.regions.partition_for`); the validator checks this.

Rules (each error names the field): NIK and NKK are exactly 16 digits; the NIK's
birth-date part agrees with ``tanggal_lahir`` and ``jenis_kelamin``; its region part
is Mimika's (see :class:`Rules`); ``umur`` agrees with ``tanggal_lahir``; an eligible
result needs age 17 on election day or having married; ``TMS`` needs a reason and
other results must not have one; the kampung belongs to the distrik; each value of
``dpt`` passes its own field's check.
"""


from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from meshsync.coklit import regions
from meshsync.coklit.checks import Rules, check_fields, cross_checks, date_of
from meshsync.coklit.codes import (
    APOSTROPHES,
    DISABILITAS,
    JENIS_KELAMIN,
    STATUS_KAWIN,
    STATUSES,
    TMS_REASONS,
)
from meshsync.coklit.fastcheck import accepts
from meshsync.coklit.nik import length_problem, nik_problem

from meshsync.model.text import Msg

if TYPE_CHECKING:
    from meshsync.replica.node import Node

__all__ = ["COLLECTION", "DEFAULT_RULES", "FIELDS", "REQUIRED", "Rules", "VoterValidator",
           "check_partition", "partition_of", "register"]

COLLECTION = "voters"

REQUIRED = ("nkk", "nik", "nama", "tempat_lahir", "tanggal_lahir", "status_kawin",
            "jenis_kelamin", "alamat", "distrik", "kampung", "tps")
BASELINE = ("nkk", "nik", "nama", "tempat_lahir", "tanggal_lahir", "umur", "status_kawin",
            "jenis_kelamin", "alamat", "rt", "rw", "disabilitas", "distrik", "kampung", "tps")
"""The voter's data, in the order of the voter list's columns (before KETERANGAN)."""
RESULT = ("coklit", "tms")
"""The coklit result (the KETERANGAN column)."""
FIELDS = (*BASELINE, *RESULT, "dpt", "status")
"""Every field: the voter's data, the result, the stored baseline, the old result."""
IMPORTED = (*BASELINE, *RESULT)
"""The fields an import writes and merges; the keys ``dpt`` may hold."""

MAX_NAME_CHARS = 120
MAX_TEXT_CHARS = 200
_NAME_PUNCT = set(" .,-" + APOSTROPHES)
_RT_RW = re.compile(r"^\d{1,3}$")
#: A name of ASCII letters and the allowed punctuation only: valid without a per-letter look
#: at the Unicode database (the slow path judges everything else, with the same verdict).
_PLAIN_NAME = re.compile("[A-Za-z" + re.escape("".join(sorted(_NAME_PUNCT))) + "]+")
DEFAULT_RULES = Rules()


def _text(limit: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return Msg("must be non-empty text")
        if len(value) > limit:
            return Msg("is %(n)d characters; the limit is %(limit)d", n=len(value), limit=limit)
        # isprintable() is False for every category C character (and for separators
        # other than the space): only then look character by character.
        if not value.isprintable() and any(unicodedata.category(c).startswith("C")
                                           for c in value):
            return Msg("contains a control character")
        return None
    return check


_NAME_TEXT = _text(MAX_NAME_CHARS)


def check_nama(value: Any) -> str | None:
    """Names: letters (any script, any normal form), spaces, apostrophes of every kind,
    dots, commas and hyphens. A single word is a complete name (B19)."""
    problem = _NAME_TEXT(value)
    if problem or _PLAIN_NAME.fullmatch(value):
        return problem
    for char in value:
        if char not in _NAME_PUNCT and unicodedata.category(char)[0] not in "LM":
            kind = Msg("a digit") if char.isdigit() else f"U+{ord(char):04X}"
            return Msg("contains %(char)r (%(kind)s): a name holds letters, spaces, "
                       "apostrophes, dots, commas and hyphens only", char=char, kind=kind)
    return None


def _choice(options: dict[str, str]) -> Callable[[Any], str | None]:
    listed = ", ".join(f"{k} ({v})" for k, v in options.items())
    # text only: a list or map is no code (and not hashable: ``in`` would raise)
    return lambda value: None if isinstance(value, str) and value in options else Msg(
        "is %(value)r; use one of %(listed)s", value=value, listed=listed)


def _whole(low: int, high: int, hint: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return Msg("must be a whole number (%(hint)s), not %(value)r", hint=hint, value=value)
        return None if low <= value <= high else Msg(
            "must be %(low)d-%(high)d, not %(value)s", low=low, high=high, value=value)
    return check


def _rt_rw(value: Any) -> str | None:
    if isinstance(value, str) and (value == "" or _RT_RW.match(value)):
        return None
    return Msg("must be 1-3 digits as text (e.g. \"003\") or empty, not %(value)r", value=value)


def _disabilitas(value: Any) -> str | None:
    if not isinstance(value, list) or any(not isinstance(v, str) or v not in DISABILITAS
                                          for v in value):
        return Msg("must be a list of %(kinds)s; got %(value)r", kinds=", ".join(DISABILITAS),
                   value=value)
    return Msg("lists a kind twice") if len(set(value)) != len(value) else None


def _distrik(value: Any) -> str | None:
    if isinstance(value, str) and regions.distrik_name(value):
        return None
    return Msg("%(value)r is not a distrik of Kabupaten Mimika (%(known)s)", value=value,
               known=", ".join(regions.DISTRIK))


FIELD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "nkk": lambda v: length_problem(v, "NKK, nomor Kartu Keluarga"),
    "nik": lambda v: length_problem(v, "NIK, Nomor Induk Kependudukan") or nik_problem(v),
    "nama": check_nama,
    "tempat_lahir": _text(MAX_TEXT_CHARS),
    "tanggal_lahir": lambda v: None if date_of(v) else
    Msg("must be a date YYYY-MM-DD (e.g. 1980-03-15), not %(value)r", value=v),
    "umur": _whole(0, 150, Msg("years")),
    "status_kawin": _choice(STATUS_KAWIN),
    "jenis_kelamin": _choice(JENIS_KELAMIN),
    "alamat": _text(MAX_TEXT_CHARS),
    "rt": _rt_rw,
    "rw": _rt_rw,
    "disabilitas": _disabilitas,
    "distrik": _distrik,
    "kampung": _text(MAX_TEXT_CHARS),
    "tps": _whole(1, regions.MAX_TPS, Msg("use tps:=3 on the command line")),
    "coklit": _choice(STATUSES),
    "tms": _choice({k: v[1] for k, v in TMS_REASONS.items()}),
    "status": _choice(STATUSES),
}


def _dpt(value: Any) -> str | None:
    """The stored baseline: a map of imported fields, each valid on its own."""
    if not isinstance(value, dict):
        return Msg("must be a map of the imported fields (%(fields)s), not %(value)r",
                   fields=", ".join(IMPORTED), value=value)
    for name, item in value.items():
        if name not in IMPORTED:
            return Msg("holds %(name)r, which is not an imported field (%(fields)s)",
                       name=name, fields=", ".join(IMPORTED))
        problem = FIELD_CHECKS[name](item)
        if problem:
            return Msg("%(field)s %(problem)s", field=name, problem=problem)
    return None


FIELD_CHECKS["dpt"] = _dpt


class VoterValidator:
    """The ``voters`` validator (:class:`meshsync.replica.policy.Validator`).

    Called as ``validator(key, fields, partial=..., partition=...)``; returns
    ``[(field, message), ...]``, empty when valid. With ``partial=False`` (a local
    edit; ``fields`` is the whole record) every rule applies, required fields
    included. With ``partial=True`` (a received op) only the given fields are
    judged, and a rule between two fields only when both are given, so the verdict
    depends on the op alone and every device reaches the same one. Clearing a
    required field (``None``, ``""`` or ``[]``) is refused in both modes.
    """

    takes_partition = True
    """Ask the node to pass the record's partition (:func:`meshsync.replica.policy.validate`)."""
    required = frozenset(REQUIRED)
    """A received put with no ``pred`` that writes one of these creates a record and
    is judged whole (:meth:`meshsync.replica.receive.Receiver._validate`)."""

    def __init__(self, rules: Rules = DEFAULT_RULES) -> None:
        self.rules = rules
        self._cross = cross_checks(rules)

    def __call__(self, key: str, fields: dict[str, Any], *, partial: bool,
                 partition: str | None = None) -> list[tuple[str, str]]:
        """Check one record or op; see the class docstring."""
        if not partial and partition is not None and accepts(
                fields, partition, self.rules, FIELD_CHECKS, REQUIRED):
            return []  # valid, found without building a message (meshsync.coklit.fastcheck)
        return self.problems(fields, partial=partial, partition=partition)

    def problems(self, fields: dict[str, Any], *, partial: bool,
                 partition: str | None = None) -> list[tuple[str, str]]:
        """Every rule, one by one (``__call__`` without its fast acceptance)."""
        given = {k: v for k, v in fields.items() if v is not None and v not in ("", [])}
        problems = check_fields(_dpt_once(given), FIELD_CHECKS, FIELDS)
        missing = (Msg("is required and cannot be cleared") if partial
                   else Msg("is required but missing"))
        problems += [(name, missing) for name in REQUIRED
                     if name not in given and (name in fields or not partial)]
        bad = {name for name, _ in problems}
        ok = {k: v for k, v in given.items() if k not in bad}
        for check in self._cross:
            problems += check(ok, set(fields), not partial)
        if partition is not None:
            problems += check_partition(ok, partition, whole=not partial)
        return _first_per_field(problems)


def _dpt_once(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with the ``dpt`` entries that equal the record's own fields left out
    of ``dpt``: those values are checked once, as the fields (the import writes both
    alike, so this halves its checks; the verdict is the same)."""
    dpt = given.get("dpt")
    if not isinstance(dpt, dict):
        return given
    return {**given, "dpt": {k: v for k, v in dpt.items() if k not in given or given[k] != v}}


def _first_per_field(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One message per field, the first found: a field already wrong on its own is
    not also reported by the rules that relate it to others."""
    first: dict[str, str] = {}
    for name, message in problems:
        first.setdefault(name, message)
    return list(first.items())


def check_partition(fields: dict[str, Any], partition: str, *,
                    whole: bool) -> list[tuple[str, str]]:
    """Problems if ``partition`` is not the TPS partition the region fields name.

    ``whole``: the record is complete, so the partition must be a TPS partition even
    if no region field is given.
    """
    expected = "mimika/<distrik>/<kampung>/tps-NNN (lower-case, e.g. mimika/jila/diloa/tps-003)"
    region = [f for f in ("distrik", "kampung", "tps") if f in fields]
    parts = regions.split_partition(partition)
    if parts is None:
        if whole or region:
            return [("partition", Msg("voters are kept in %(expected)s; this record is in "
                                      "%(partition)r", expected=expected, partition=partition))]
        return []
    wanted = {"distrik": parts[0], "kampung": parts[1], "tps": parts[2]}
    actual = {"distrik": regions.slug(str(fields.get("distrik", ""))),
              "kampung": regions.slug(str(fields.get("kampung", ""))),
              "tps": fields.get("tps")}
    named = regions.partition_for_fields(fields)
    where = Msg("; by its fields it belongs in %(named)s", named=named) if named else ""
    return [(name, Msg("is %(value)r but the record is in partition %(partition)s%(where)s",
                       value=fields[name], partition=partition, where=where))
            for name in region if actual[name] != wanted[name]]


def partition_of(fields: dict[str, Any]) -> str:
    """The partition a complete, valid record belongs in."""
    part = regions.partition_for_fields(fields)
    if part is None:
        raise ValueError("record lacks distrik, kampung or tps")
    return part


def register(node: Node, rules: Rules = DEFAULT_RULES) -> VoterValidator:
    """Register the ``voters`` validator on ``node``, its normaliser of local edits
    (:func:`meshsync.coklit.textnorm.normalise_voter`) and the coklit progress
    classifier (:func:`meshsync.coklit.visits.outcome`); returns the validator."""
    from meshsync.coklit.textnorm import normalise_voter
    from meshsync.coklit.visits import outcome

    from meshsync.replica.progress import register_classifier

    validator = VoterValidator(rules)
    node.register_validator(COLLECTION, validator)
    node.normalisers[COLLECTION] = normalise_voter  # names in one spelling (textnorm)
    register_classifier(COLLECTION, outcome)
    register_search_of_voters()
    return validator


def register_search_of_voters() -> None:
    """Let the officer's app search ``voters`` as ``coklit find`` does: names by
    :func:`meshsync.coklit.names.match_key`, numbers in ``nik`` and ``nkk``
    (:mod:`meshsync.replica.search`)."""
    from meshsync.coklit.names import NUMBER_FIELDS, match_key

    from meshsync.replica.search import SearchSpec, register_search

    register_search(COLLECTION, SearchSpec("nama", NUMBER_FIELDS, match_key))
