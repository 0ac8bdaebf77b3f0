"""The voter list's CSV columns and how each cell maps to a ``voters`` field.

Columns, in export order, with the names used by the KPU voter list forms (Model
A-Daftar Pemilih, DPS/DPT exports from Sidalih) and the aliases accepted on import
(header matching ignores case, spaces and punctuation):

==================  ==============  ===============================================
column              field           accepted forms on import
==================  ==============  ===============================================
NO                  (row number)    ignored on import (alias NO URUT)
ID                  record key      meshsync's own column; blank = ``nik-<NIK>``
DISTRIK             distrik         alias KECAMATAN
KAMPUNG             kampung         aliases KELURAHAN, DESA, KELURAHAN/DESA
TPS                 tps             ``3``, ``003``, ``TPS 003``
NKK                 nkk             aliases NO KK, KK
NIK                 nik
NAMA                nama            kept exactly as in the file
TEMPAT LAHIR        tempat_lahir
TANGGAL LAHIR       tanggal_lahir   ``DD-MM-YYYY`` (export), ``DD/MM/YYYY``,
                                    ``DD|MM|YYYY`` or ``YYYY-MM-DD``
USIA                umur            alias UMUR; blank allowed
STATUS PERKAWINAN   status_kawin    ``B``/``S``/``P`` or the words; alias STS KAWIN
JENIS KELAMIN       jenis_kelamin   ``L``/``P`` or LAKI-LAKI/PEREMPUAN; alias L/P
ALAMAT              alamat
RT, RW              rt, rw          digits or blank
DISABILITAS         disabilitas     codes 1-6 or names, separated by ``,`` or ``;``
KETERANGAN          coklit, tms     blank = belum dicoklit (no result); ``MS``;
                                    ``B`` = baru; ``U`` = ubah; a TMS code 1-10
                                    (``4``, ``TMS 4``) or reason
==================  ==============  ===============================================

KETERANGAN is the coklit result. A voter list straight from Sidalih has it blank,
so its voters import as belum dicoklit; a file that carries results (an export, or
results keyed in from paper forms) imports them as results recorded by the importing
device. Export writes ``MS`` for an MS result and leaves the cell blank for belum
dicoklit; a record of an old home (``status``, see :mod:`.visits`) exports as it
did before (blank for MS).

Codes are those of :mod:`meshsync.coklit.codes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from meshsync.coklit.checks import date_of, result_of
from meshsync.coklit.codes import DISABILITAS, TMS_REASONS
from meshsync.coklit.textnorm import normalise_voter

HEADERS = ("NO", "ID", "DISTRIK", "KAMPUNG", "TPS", "NKK", "NIK", "NAMA", "TEMPAT LAHIR",
           "TANGGAL LAHIR", "USIA", "STATUS PERKAWINAN", "JENIS KELAMIN", "ALAMAT", "RT",
           "RW", "DISABILITAS", "KETERANGAN")
OPTIONAL_HEADERS = ("NO", "ID", "USIA", "RT", "RW", "DISABILITAS", "KETERANGAN")

_ALIASES = {
    "NO URUT": "NO", "NOMOR": "NO", "KECAMATAN": "DISTRIK", "KELURAHAN": "KAMPUNG",
    "DESA": "KAMPUNG", "KELURAHAN DESA": "KAMPUNG", "DESA KELURAHAN": "KAMPUNG",
    "NO KK": "NKK", "KK": "NKK", "NOMOR KK": "NKK", "NAMA LENGKAP": "NAMA",
    "TGL LAHIR": "TANGGAL LAHIR", "UMUR": "USIA", "STS KAWIN": "STATUS PERKAWINAN",
    "STATUS KAWIN": "STATUS PERKAWINAN", "KAWIN": "STATUS PERKAWINAN",
    "L P": "JENIS KELAMIN", "JK": "JENIS KELAMIN", "KET": "KETERANGAN",
}

#: field -> column, for messages that speak the officers' column names.
COLUMN_OF = {"distrik": "DISTRIK", "kampung": "KAMPUNG", "tps": "TPS", "nkk": "NKK",
             "nik": "NIK", "nama": "NAMA", "tempat_lahir": "TEMPAT LAHIR",
             "tanggal_lahir": "TANGGAL LAHIR", "umur": "USIA",
             "status_kawin": "STATUS PERKAWINAN", "jenis_kelamin": "JENIS KELAMIN",
             "alamat": "ALAMAT", "rt": "RT", "rw": "RW", "disabilitas": "DISABILITAS",
             "coklit": "KETERANGAN", "tms": "KETERANGAN", "status": "KETERANGAN"}

_KAWIN = {"B": "B", "BELUM KAWIN": "B", "S": "S", "SUDAH KAWIN": "S", "KAWIN": "S",
          "P": "P", "PERNAH KAWIN": "P", "CERAI HIDUP": "P", "CERAI MATI": "P"}
_SEX = {"L": "L", "LAKI LAKI": "L", "LAKI": "L", "P": "P", "PEREMPUAN": "P"}
_TPS = re.compile(r"^(?:TPS\s*)?0*(\d{1,3})$", re.IGNORECASE)
_DMY = re.compile(r"^(\d{1,2})[-/|.](\d{1,2})[-/|.](\d{4})$")


class CellError(ValueError):
    """A cell that cannot be read: ``column`` and a plain-English reason."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column


def header_name(text: str) -> str:
    """The canonical column of a header cell (case, spaces, punctuation ignored)."""
    plain = " ".join(re.sub(r"[^A-Z0-9]+", " ", text.upper()).split())
    return _ALIASES.get(plain, plain)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^A-Z0-9]+", " ", text.upper()).split())


def _tps(text: str) -> int:
    match = _TPS.match(text)
    if match is None or int(match.group(1)) == 0:
        raise CellError("TPS", f"{text!r} is not a TPS number (e.g. 3, 003 or TPS 003)")
    return int(match.group(1))


def _date(text: str) -> str:
    match = _DMY.match(text)
    iso = f"{match.group(3)}-{int(match.group(2)):02d}-{int(match.group(1)):02d}" \
        if match else text
    if date_of(iso) is None:
        raise CellError("TANGGAL LAHIR", f"{text!r} is not a date (use DD-MM-YYYY)")
    return iso


def _umur(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise CellError("USIA", f"{text!r} is not a whole number of years")
    return int(text)


def _coded(column: str, table: dict[str, str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        # a code as the table spells it is its own _words form: no need to fold it
        value = table.get(text) or table.get(_words(text))
        if value is None:
            raise CellError(column, f"{text!r} is not one of {', '.join(sorted(set(table)))}")
        return value
    return parse


_DISABILITAS_BY = {str(code): name for name, (code, _) in DISABILITAS.items()} | {
    _words(label): name for name, (_, label) in DISABILITAS.items()} | {
    _words(name): name for name in DISABILITAS}


def _disabilitas(text: str) -> list[str] | None:
    items = [t.strip() for t in re.split(r"[,;]", text) if t.strip() not in ("", "0", "-")]
    kinds = []
    for item in items:
        kind = _DISABILITAS_BY.get(_words(item))
        if kind is None:
            raise CellError("DISABILITAS", f"{item!r} is not a code 1-6 or a kind "
                                           f"({', '.join(DISABILITAS)})")
        kinds.append(kind)
    return kinds or None


_TMS_BY = {str(code): name for name, (code, _, _) in TMS_REASONS.items()} | {
    _words(label): name for name, (_, label, _) in TMS_REASONS.items()} | {
    _words(name): name for name in TMS_REASONS}


def keterangan(text: str) -> tuple[str | None, str | None]:
    """``(coklit, tms)`` of a KETERANGAN cell (``(None, None)`` when blank: belum
    dicoklit); raises :class:`CellError` if the cell is not a known code."""
    if text in {"", "MS"}:  # the common cells, as _words leaves them
        return (None, None) if text == "" else ("MS", None)
    word = _words(text)
    if word == "":
        return None, None
    if word == "MS":
        return "MS", None
    if word in ("B", "BARU"):
        return "baru", None
    if word in ("U", "UBAH"):
        return "ubah", None
    if word == "TMS":
        raise CellError("KETERANGAN", "TMS needs its reason: a code 1-10 (e.g. TMS 1 for "
                                      "meninggal) or the reason's name")
    reason = _TMS_BY.get(word.removeprefix("TMS ").strip())
    if reason is None:
        raise CellError("KETERANGAN", f"{text!r} is not blank/MS, B (baru), U (ubah) or a "
                                      "TMS code 1-10 or reason")
    return "TMS", reason


_PARSE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DISTRIK": ("distrik", str), "KAMPUNG": ("kampung", str), "TPS": ("tps", _tps),
    "NKK": ("nkk", str), "NIK": ("nik", str), "TEMPAT LAHIR": ("tempat_lahir", str),
    "TANGGAL LAHIR": ("tanggal_lahir", _date), "USIA": ("umur", _umur),
    "STATUS PERKAWINAN": ("status_kawin", _coded("STATUS PERKAWINAN", _KAWIN)),
    "JENIS KELAMIN": ("jenis_kelamin", _coded("JENIS KELAMIN", _SEX)),
    "ALAMAT": ("alamat", str), "RT": ("rt", str), "RW": ("rw", str),
    "DISABILITAS": ("disabilitas", _disabilitas),
}


def fields_of(cells: dict[str, str]) -> tuple[dict[str, Any], list[CellError]]:
    """The fields of one row (column -> cell text) and the cells that could not be read.

    Blank optional cells give no field. Other cells are trimmed; NAMA, TEMPAT LAHIR
    and ALAMAT are stored in one spelling (NFC, single spaces:
    :func:`meshsync.coklit.textnorm.tidy`).
    """
    fields: dict[str, Any] = {}
    problems: list[CellError] = []
    if cells.get("NAMA", "").strip():
        fields["nama"] = cells["NAMA"]
    for column, (name, parse) in _PARSE.items():
        text = cells.get(column, "").strip()
        if not text:
            continue
        try:
            value = parse(text)
        except CellError as exc:
            problems.append(exc)
            continue
        if value is not None:
            fields[name] = value
    try:
        result, tms = keterangan(cells.get("KETERANGAN", ""))
    except CellError as exc:
        problems.append(exc)
    else:
        if result:
            fields["coklit"] = result
        if tms:
            fields["tms"] = tms
    return normalise_voter(fields), problems


def cells_of(fields: dict[str, Any], no: int, key: str) -> list[str]:
    """One exported row, in :data:`HEADERS` order."""
    born = str(fields.get("tanggal_lahir", ""))
    dmy = f"{born[8:10]}-{born[5:7]}-{born[:4]}" if date_of(born) else born
    name, status = result_of(fields)
    tms = fields.get("tms")
    ms = "MS" if name == "coklit" else ""  # an old home's MS may be a blank KETERANGAN
    note = {"MS": ms, "baru": "B", "ubah": "U"}.get(str(status), str(status or ""))
    if status == "TMS":
        note = str(TMS_REASONS[tms][0]) if tms in TMS_REASONS else "TMS"
    kinds = fields.get("disabilitas") or []
    codes = ",".join(str(DISABILITAS[k][0]) if k in DISABILITAS else str(k) for k in kinds)

    def cell(name: str) -> str:
        value = fields.get(name)
        return "" if value is None else str(value)

    return [str(no), key, cell("distrik"), cell("kampung"), cell("tps"), cell("nkk"),
            cell("nik"), cell("nama"), cell("tempat_lahir"), dmy, cell("umur"),
            cell("status_kawin"), cell("jenis_kelamin"), cell("alamat"), cell("rt"),
            cell("rw"), codes, note]
