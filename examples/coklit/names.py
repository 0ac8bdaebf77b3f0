"""Matching voters' names for search and duplicate detection (docs/failure-cases.md B19).

Names are stored exactly as typed; nothing here changes a record. Matching uses a
*key* derived from the name by :func:`match_key`:

1. apostrophe-like characters dropped: U+0027 ``'``, U+2019 ``’``, U+02BC ``ʼ``,
   U+2018 ``‘``, U+0060 `````, U+00B4 ``´``, U+02B9, U+2032 ``′``, U+FF07 (so
   "Ma'ruf", "Ma’ruf", "Maʼruf" and "Maruf" match);
2. Unicode compatibility decomposition (NFKD), so NFC and NFD spellings, and
   full-width letters, become the same characters;
3. combining marks dropped ("José" -> "Jose");
4. case folded (``str.casefold``);
5. dots, commas, hyphens and underscores read as spaces ("M. Yusuf" = "M Yusuf"),
   and runs of white space (any Unicode space) collapsed to one space, trimmed.

One-word names are complete names: nothing assumes a family name.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshsync.coklit import regions
from meshsync.coklit.checks import result_of
from meshsync.coklit.codes import APOSTROPHES
from meshsync.coklit.schema import COLLECTION
from meshsync.coklit.visits import result_label

if TYPE_CHECKING:
    from meshsync.replica.node import Node
    from meshsync.replica.records import Record


_DROP = {ord(c): None for c in APOSTROPHES}
_SEPARATORS = re.compile(r"[\s.,_\-]+")


def match_key(name: str) -> str:
    """The matching key of a name (see the module docstring); "" for a blank name."""
    # Apostrophes go first: NFKD turns U+00B4 into a space and a combining accent.
    decomposed = unicodedata.normalize("NFKD", name.translate(_DROP))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = bare.translate(_DROP).casefold()
    return _SEPARATORS.sub(" ", folded).strip()


def _sort_key(record: Record) -> tuple[str, str, str]:
    return (match_key(str(record.fields.get("nama", ""))), record.partition, record.key)


#: Fields a query of digits is looked up in: the NIK and the NKK (16 digits each).
NUMBER_FIELDS = ("nik", "nkk")
_NUMBER_QUERY = re.compile(r"[\d\s.\-]*\d[\d\s.\-]*")


def number_query(query: str) -> str | None:
    """The digits of ``query`` if it is a number (a NIK or NKK, or part of one, written
    with or without spaces, dots or hyphens); None for a name."""
    if not _NUMBER_QUERY.fullmatch(query.strip()):
        return None
    return re.sub(r"\D", "", query)


def _matches(record: Record, name: str | None, digits: str | None) -> bool:
    if digits is not None:
        return any(digits in str(record.fields.get(f, "")) for f in NUMBER_FIELDS)
    return name is not None and name in match_key(str(record.fields.get("nama", "")))


def find(node: Node, query: str, partition_prefix: str = "") -> list[Record]:
    """Voters whose name contains ``query`` once both are folded by :func:`match_key`,
    or, for a query of digits (:func:`number_query`: a NIK or NKK, or part of one),
    whose NIK or NKK contains those digits.

    Whole words are not required ("ruf" finds "Ma'ruf"); an empty query finds nothing.
    Returns records (deleted ones excluded) ordered by name key, partition, key.
    """
    digits = number_query(query)
    wanted = match_key(query) if digits is None else None
    if not digits and not wanted:
        return []
    found = [r for r in node.records(COLLECTION, partition_prefix)
             if _matches(r, wanted, digits)]
    return sorted(found, key=_sort_key)


@dataclass(frozen=True)
class Cluster:
    """Records that may be one person.

    ``reason`` is ``"name"`` (same name key, birth year and kampung) or ``"nik"``
    (the same NIK on several records, in one TPS or across TPS); ``match`` is what
    they share, e.g. ``"maruf contoh|1980|mimika/jila/diloa"`` or the NIK.
    """

    reason: str
    match: str
    records: tuple[Record, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: the shared value and, per record, where it is and its name."""
        return {"reason": self.reason, "match": self.match,
                "records": [{"partition": r.partition, "key": r.key,
                             "nama": r.fields.get("nama"), "nik": r.fields.get("nik"),
                             "tanggal_lahir": r.fields.get("tanggal_lahir"),
                             "coklit": result_label(r.fields)} for r in self.records]}


def _village(record: Record) -> str:
    parts = regions.split_partition(record.partition)
    if parts is not None:
        return f"{regions.KABUPATEN_SLUG}/{parts[0]}/{parts[1]}"
    return regions.slug(str(record.fields.get("kampung", "")))


def _birth_year(record: Record) -> str:
    return str(record.fields.get("tanggal_lahir", ""))[:4]


def duplicates(node: Node, partition_prefix: str = "") -> list[Cluster]:
    """Possible duplicate voters under ``partition_prefix``.

    Two kinds of cluster, each of two or more records: the same :func:`match_key` of
    ``nama`` with the same birth year and kampung (``reason="name"``), and the same
    NIK anywhere (``reason="nik"``, across TPS and kampung too). Records already
    marked TMS (e.g. ``tms=ganda``) are resolved and left out. Clusters are ordered
    by reason then match; records in a cluster by partition and key.
    """
    live = [r for r in node.records(COLLECTION, partition_prefix)
            if result_of(r.fields)[1] != "TMS"]
    by_name: dict[str, list[Record]] = defaultdict(list)
    by_nik: dict[str, list[Record]] = defaultdict(list)
    for record in live:
        name = match_key(str(record.fields.get("nama", "")))
        if name:
            by_name[f"{name}|{_birth_year(record)}|{_village(record)}"].append(record)
        nik = record.fields.get("nik")
        if isinstance(nik, str) and nik:
            by_nik[nik].append(record)
    return _clusters("name", by_name.items()) + _clusters("nik", by_nik.items())


def _clusters(reason: str, groups: Iterable[tuple[str, list[Record]]]) -> list[Cluster]:
    return [Cluster(reason, match, tuple(sorted(rs, key=lambda r: (r.partition, r.key))))
            for match, rs in sorted(groups, key=lambda g: g[0]) if len(rs) > 1]
