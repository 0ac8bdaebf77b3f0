"""The rules of the ``voters`` validator that relate two or more fields.

Each check takes the fields that passed their own checks (``ok``), the names the
caller gave at all (``given``, including cleared ones), and whether the record is
complete (``whole``); it returns ``(field, message)`` pairs. A check runs only when
the fields it relates are all in ``ok``, so a received op is judged on what it
carries (see :class:`meshsync.coklit.schema.VoterValidator`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from meshsync.coklit import regions
from meshsync.coklit.codes import ELIGIBLE, TMS_REASONS
from meshsync.coklit.nik import birth_date_problem, parse_nik

from meshsync.model.text import Msg

Problems = list[tuple[str, str]]
Check = Callable[[dict[str, Any], set[str], bool], Problems]

MIN_AGE = 17
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Rules:
    """Mesh-wide settings of the validator. Every device of a mesh must use the same
    rules, or devices would disagree about which received changes are valid.

    ``election_day``: the day ages are counted to (umur, the 17-year rule); default
    the 2024 simultaneous regional election (Pilkada serentak), 27 November 2024.

    ``nik_region``: how the NIK's region part (digits 1-6) must agree with the record:
    ``"distrik"`` (default) the first 6 digits are Mimika's code (94.04 or the older
    91.09) followed by the record's distrik code; ``"kabupaten"`` only the first 4
    (Mimika); ``"off"`` no check. Caution: an NIK keeps the code of the place where it
    was first issued, so a voter who moved in from elsewhere has a foreign prefix and
    is refused under the first two settings.
    """

    election_day: date = date(2024, 11, 27)
    nik_region: Literal["distrik", "kabupaten", "off"] = "distrik"


def date_of(value: Any) -> date | None:
    """The date of ``YYYY-MM-DD`` text (year 1900 or later), else None."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if day.year >= 1900 else None


def age_on(born: date, day: date) -> int:
    """Whole years from ``born`` to ``day`` (the birthday counts on the day itself)."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def check_fields(given: dict[str, Any], checks: dict[str, Callable[[Any], str | None]],
                 order: Iterable[str]) -> Problems:
    """Run each given field's own check, in ``order``; unknown field names are errors."""
    problems: Problems = []
    for name in order:
        if name in given:
            message = checks[name](given[name])
            if message:
                problems.append((name, message))
    known = ", ".join(order)
    problems += [(name, Msg("is not a voters field (fields: %(known)s)", known=known))
                 for name in sorted(given) if name not in checks]
    return problems


def cross_checks(rules: Rules) -> list[Check]:
    """The checks between fields, under ``rules``."""
    def nik_region(ok: dict[str, Any], given: set[str], whole: bool) -> Problems:
        return _nik_region(ok, rules)

    def ages(ok: dict[str, Any], given: set[str], whole: bool) -> Problems:
        return _ages(ok, rules.election_day)

    return [_nik_birth, nik_region, ages, _tms_reason, _kampung]


def _nik_birth(ok: dict[str, Any], given: set[str], whole: bool) -> Problems:
    nik, born, sex = ok.get("nik"), date_of(ok.get("tanggal_lahir")), ok.get("jenis_kelamin")
    if nik is None:
        return []
    female = None if sex is None else sex == "P"
    if born is not None:
        problem = birth_date_problem(nik, born, female)
        return [("nik", problem)] if problem else []
    parts = parse_nik(nik)
    if parts is not None and female is not None and parts.female != female:
        marked = Msg("a woman (day + 40)") if parts.female else Msg("a man (day without + 40)")
        return [("nik", Msg("NIK digits 7-8 are %(digits)s, which marks %(marked)s, but "
                            "jenis_kelamin is %(sex)s", digits=nik[6:8], marked=marked, sex=sex))]
    return []


def _nik_region(ok: dict[str, Any], rules: Rules) -> Problems:
    nik = ok.get("nik")
    if nik is None or rules.nik_region == "off":
        return []
    codes = " / ".join(f"{c[:2]}.{c[2:]}" for c in regions.KABUPATEN_CODES)
    if nik[:4] not in regions.KABUPATEN_CODES:
        digits = f"{nik[:2]}.{nik[2:4]}"
        return [("nik", Msg("NIK digits 1-4 are %(digits)s, not Kabupaten Mimika (%(codes)s)",
                            digits=digits, codes=codes))]
    distrik = ok.get("distrik")
    if rules.nik_region == "kabupaten" or distrik is None:
        return []
    allowed = regions.nik_regions(distrik)
    if nik[:6] in allowed:
        return []
    region = f"{nik[:2]}.{nik[2:4]}.{nik[4:6]}"
    expected = " / ".join(f"{a[:2]}.{a[2:4]}.{a[4:]}" for a in allowed)
    return [("nik", Msg("NIK digits 5-6 are %(digits)s but distrik %(distrik)s is %(code)s "
                        "(NIK region %(region)s, expected %(expected)s)", digits=nik[4:6],
                        distrik=distrik, code=allowed[0][4:], region=region, expected=expected))]


def _ages(ok: dict[str, Any], day: date) -> Problems:
    problems: Problems = []
    born = date_of(ok.get("tanggal_lahir"))
    age = ok.get("umur")
    if born is not None:
        if born > day:
            return [("tanggal_lahir", Msg("%(born)s is after election day %(day)s",
                                          born=born.isoformat(), day=day.isoformat()))]
        real = age_on(born, day)
        if age is not None and age != real:
            problems.append(("umur", Msg("is %(age)s but someone born %(born)s is %(real)d on "
                                         "election day %(day)s", age=age, born=born.isoformat(),
                                         real=real, day=day.isoformat())))
        age = real
    kawin, tms = ok.get("status_kawin"), ok.get("tms")
    name, status = result_of(ok)
    if age is None or kawin is None:
        return problems
    minor = age < MIN_AGE and kawin == "B"
    if minor and status in ELIGIBLE:
        problems.append((name, Msg("is %(status)s but the voter is %(age)s on election day "
                                   "%(day)s and never married (status_kawin B): not eligible; "
                                   "mark TMS with tms di_bawah_umur", status=status, age=age,
                                   day=day.isoformat())))
    if not minor and tms == "di_bawah_umur":
        why = (Msg("the voter is %(age)s on election day", age=age) if age >= MIN_AGE
               else Msg("the voter has married"))
        problems.append(("tms", Msg("is di_bawah_umur (under age) but %(why)s", why=why)))
    return problems


def result_of(fields: dict[str, Any]) -> tuple[str, Any]:
    """``(field, value)`` of the coklit result among ``fields``: ``coklit`` when
    present, else the old ``status`` (homes from before coklit visits), else
    ``("coklit", None)``."""
    if fields.get("coklit") is not None or fields.get("status") is None:
        return "coklit", fields.get("coklit")
    return "status", fields["status"]


def _tms_reason(ok: dict[str, Any], given: set[str], whole: bool) -> Problems:
    name, status = result_of(ok)
    tms = ok.get("tms")
    if status == "TMS" and tms is None and (whole or "tms" in given):
        return [("tms", Msg("%(field)s TMS (tidak memenuhi syarat) needs a reason: one of "
                            "%(reasons)s", field=name, reasons=", ".join(TMS_REASONS)))]
    if tms is not None and status != "TMS" and (whole or status is not None):
        shown = "belum dicoklit" if status is None else status
        return [("tms", Msg("is %(tms)s but %(field)s is %(shown)s; a reason goes only with "
                            "TMS (clear it: tms:=null)", tms=tms, field=name, shown=shown))]
    return []


def _kampung(ok: dict[str, Any], given: set[str], whole: bool) -> Problems:
    distrik, kampung = ok.get("distrik"), ok.get("kampung")
    if distrik is None or kampung is None or regions.kampung_name(distrik, kampung):
        return []
    official = regions.distrik_name(distrik) or distrik
    names = ", ".join(regions.DISTRIK[official][1])
    return [("kampung", Msg("%(kampung)r is not a kampung of distrik %(distrik)s (%(names)s)",
                            kampung=kampung, distrik=official, names=names))]
