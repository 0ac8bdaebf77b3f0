"""A fast acceptance of whole ``voters`` records that are valid, as most are.

:func:`accepts` answers True only for a complete record (``partial=False``) that the
full :class:`~meshsync.coklit.schema.VoterValidator` finds free of problems; for
anything unusual it answers False and the validator runs its full checks, which say
what is wrong. It applies the same rules (each field's own check, then NIK against
birth date, sex and region, age on election day, the TMS reason, the kampung in its
distrik and the record's TPS partition) in one pass, without building messages; where
it is stricter than the rules (an NIK of other than ASCII digits, a baseline ``dpt``
that differs from the fields) it leaves the verdict to the full checks. It is also
at least as strict as the signed ``voters`` document (:mod:`.document`), whose
interpretation uses it for exactly that document (:meth:`.document.CoklitPackage.
fast_acceptance`): there ``distrik`` is text without control characters and ``rt``,
``rw`` are 1-3 digits and nothing else.
``tests/test_coklit_fast_check.py`` compares the two verdicts on generated records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshsync.coklit import regions
from meshsync.coklit.checks import MIN_AGE, Rules, age_on, date_of, result_of
from meshsync.coklit.codes import ELIGIBLE

FieldCheck = Callable[[Any], "str | None"]

#: Fields the signed document types as text that the coded checks do not test for
#: control characters (``distrik``: any spelling a slug matches): required printable.
_PLAIN_TEXT = frozenset({"distrik"})


def _digits16(value: Any) -> bool:
    return type(value) is str and len(value) == 16 and value.isascii() and value.isdigit()


def accepts(fields: dict[str, Any], partition: str, rules: Rules,
            checks: dict[str, FieldCheck], required: tuple[str, ...]) -> bool:
    """True only if the whole record ``fields`` in ``partition`` has no problem under
    ``rules`` (``checks``: each field's own check, ``required``: the required fields)."""
    given = {k: v for k, v in fields.items() if v is not None and v not in ("", [])}
    for name in required:
        if name not in given:
            return False
    return _fields_ok(given, checks) and _nik_ok(given, rules) and \
        _rest_ok(given, partition, rules)


def _fields_ok(given: dict[str, Any], checks: dict[str, FieldCheck]) -> bool:
    """Each given field passes its own check (and the document's, where stricter)."""
    for name, value in given.items():
        if name == "dpt":
            # each (name, value) of the baseline is the record's own (dict_items
            # compare by key lookup and ==, values need not be hashable)
            if type(value) is not dict or not value.items() <= given.items():
                return False  # a baseline that differs: judged in full
        elif name in ("nik", "nkk"):
            if not _digits16(value):
                return False
        elif name in _PLAIN_TEXT and not (type(value) is str and value.isprintable()):
            return False  # the document's text type refuses a control character here
        elif name in ("rt", "rw") and not (
                type(value) is str and len(value) <= 3 and value.isascii() and value.isdigit()):
            return False  # the coded check's ``$`` also takes "12\n"; the document's not
        else:
            check = checks.get(name)
            if check is None or check(value) is not None:
                return False
    return True


def _nik_ok(given: dict[str, Any], rules: Rules) -> bool:
    """The NIK's own date and serial, its birth date and sex, its region."""
    nik: str = given["nik"]
    raw_day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    female = raw_day > 40
    day = raw_day - 40 if female else raw_day
    if not (1 <= day <= 31 and 1 <= month <= 12) or nik[12:] == "0000":
        return False
    born = date_of(given["tanggal_lahir"])
    if born is None or (day, month, yy) != (born.day, born.month, born.year % 100):
        return False
    if (given["jenis_kelamin"] == "P") != female:
        return False
    if rules.nik_region == "off":
        return True
    if nik[:4] not in regions.KABUPATEN_CODES:
        return False
    return rules.nik_region == "kabupaten" or nik[:6] in regions.nik_regions(given["distrik"])


def _rest_ok(given: dict[str, Any], partition: str, rules: Rules) -> bool:
    """Age on election day, the result and its TMS reason, kampung and partition."""
    born = date_of(given["tanggal_lahir"])
    assert born is not None  # checked by _nik_ok
    if born > rules.election_day:
        return False
    age = age_on(born, rules.election_day)
    if given.get("umur", age) != age:
        return False
    _, status = result_of(given)
    tms = given.get("tms")
    minor = age < MIN_AGE and given["status_kawin"] == "B"
    if (minor and status in ELIGIBLE) or (not minor and tms == "di_bawah_umur"):
        return False
    if (status == "TMS") != (tms is not None):
        return False
    distrik, kampung = given["distrik"], given["kampung"]
    if regions.kampung_name(distrik, kampung) is None:
        return False
    return regions.split_partition(partition) == (
        regions.slug(distrik), regions.slug(kampung), given["tps"])
