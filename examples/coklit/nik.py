"""NIK and NKK numbers: their structure, checks and (for sample data) construction.

An NIK (Nomor Induk Kependudukan, the lifelong resident number on the KTP) is 16
digits ``PPKKCC DDMMYY SSSS``:

=========  ======  =========================================================
digits     part    meaning
=========  ======  =========================================================
1-2        PP      province of first registration (Papua 91, Papua Tengah 94)
3-4        KK      regency/city (Mimika: 09 under Papua, 04 under Papua Tengah)
5-6        CC      district (kecamatan/distrik), e.g. Jila 06
7-8        DD      birth day; **women: day + 40** (41-71)
9-10       MM      birth month 01-12
11-12      YY      birth year, last two digits
13-16      SSSS    serial among people of that district and birth date, 0001-9999
=========  ======  =========================================================

Sources: UU 23/2006 and 24/2013 (Administrasi Kependudukan: the NIK is unique and for
life), Perpres 96/2018, and Disdukcapil explanations of the code ("arti kode angka
dalam NIK"); the same layout is used by public NIK parsers (e.g. Perl
``Business::ID::NIK``, ``libktpnik``). The serial 0000 is never issued.

An NKK (nomor Kartu Keluarga, the family card number) is also 16 digits,
``PPKKCC DDMMYY SSSS`` with the card's issue date (no +40). The coklit schema checks
its length only: family cards are reissued often and old cards do not all follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from meshsync.model.text import Msg

NIK_DIGITS = 16
FEMALE_DAY_OFFSET = 40
_DIGITS16 = re.compile(r"^\d{16}$")


@dataclass(frozen=True)
class NikParts:
    """The parts of a well-formed NIK. ``day`` is the real day (the +40 removed)."""

    region: str  # 6 digits PPKKCC
    day: int
    month: int
    yy: int  # last two digits of the birth year
    female: bool
    serial: str  # 4 digits

    @property
    def regency(self) -> str:
        """The first 4 digits (province + regency)."""
        return self.region[:4]


def is_16_digits(value: object) -> bool:
    """True if ``value`` is text of exactly 16 ASCII digits."""
    return isinstance(value, str) and bool(_DIGITS16.match(value))


def length_problem(value: object, what: str) -> str | None:
    """A message if ``value`` is not 16 digits, naming ``what`` (e.g. "NIK"), else None."""
    if not isinstance(value, str):
        return Msg("must be text of exactly 16 digits (%(what)s), not %(type)s", what=what,
                   type=type(value).__name__)
    if _DIGITS16.match(value):
        return None
    if value.isascii() and value.isdigit():
        return Msg("must be exactly 16 digits (%(what)s); got %(n)d digits", what=what,
                   n=len(value))
    return Msg("must be exactly 16 digits (%(what)s) with nothing else in it; got %(value)r",
               what=what, value=value)


def parse_nik(nik: str) -> NikParts | None:
    """Split a 16-digit NIK; None if its date part cannot be a birth date."""
    if not is_16_digits(nik):
        return None
    raw_day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    female = raw_day > FEMALE_DAY_OFFSET
    day = raw_day - FEMALE_DAY_OFFSET if female else raw_day
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    return NikParts(nik[:6], day, month, yy, female, nik[12:])


def nik_problem(nik: str) -> str | None:
    """A message if a 16-digit NIK's own parts are impossible (date, serial), else None."""
    parts = parse_nik(nik)
    if parts is None:
        return Msg("digits 7-12 (%(digits)s) are not a birth date DDMMYY "
                   "(women: day + 40, so 41-71)", digits=nik[6:12])
    if parts.serial == "0000":
        return Msg("the last 4 digits (serial) are 0000, which is never issued")
    return None


def birth_part(born: date, female: bool) -> str:
    """Digits 7-12 of the NIK of someone born on ``born``: ``DDMMYY``, women day + 40."""
    day = born.day + (FEMALE_DAY_OFFSET if female else 0)
    return f"{day:02d}{born.month:02d}{born.year % 100:02d}"


def birth_date_problem(nik: str, born: date, female: bool | None) -> str | None:
    """A message if the NIK's date part disagrees with ``born`` and the sex, else None.

    ``female`` None means the sex is unknown here: either day is then accepted.
    """
    parts = parse_nik(nik)
    if parts is None:
        return None  # reported by nik_problem
    same_date = (parts.day, parts.month, parts.yy) == (born.day, born.month, born.year % 100)
    if not same_date:
        shown = f"{parts.day:02d}-{parts.month:02d}-{parts.yy:02d}"
        return Msg("NIK digits 7-12 are %(digits)s (born %(shown)s), but tanggal_lahir is "
                   "%(born)s; expected %(expected)s", digits=nik[6:12], shown=shown,
                   born=born.isoformat(), expected=birth_part(born, parts.female))
    if female is not None and female != parts.female:
        marked = Msg("a woman (day + 40)") if parts.female else Msg("a man (day without + 40)")
        sex = "P (perempuan)" if female else "L (laki-laki)"
        return Msg("NIK digits 7-8 are %(digits)s, which marks %(marked)s, but jenis_kelamin "
                   "is %(sex)s; expected %(expected)s in digits 7-12", digits=nik[6:8],
                   marked=marked, sex=sex, expected=birth_part(born, female))
    return None


def make_nik(region: str, born: date, female: bool, serial: int) -> str:
    """Build an NIK (for sample data): ``region`` is 6 digits, ``serial`` 1-9999."""
    if not (len(region) == 6 and region.isdigit() and 1 <= serial <= 9999):
        raise ValueError(f"bad NIK parts: region {region!r}, serial {serial}")
    return f"{region}{birth_part(born, female)}{serial:04d}"


def make_nkk(region: str, issued: date, serial: int) -> str:
    """Build a family card number (for sample data): region, issue date DDMMYY, serial."""
    if not (len(region) == 6 and region.isdigit() and 1 <= serial <= 9999):
        raise ValueError(f"bad NKK parts: region {region!r}, serial {serial}")
    return f"{region}{birth_part(issued, False)}{serial:04d}"
