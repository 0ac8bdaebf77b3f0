"""The figures of the KPU page (:mod:`.kpu_page`): distrik -> kampung -> TPS rows with
"dicoklit X dari Y", MS/TMS/ubah/baru and belum, from the progress figures that the
stores keep up to date on write (:func:`meshsync.replica.progress.progress`).

Partitions are ``<root>/<distrik>/<kampung>/<tps>`` (e.g. ``mimika/jila/diloa/tps-003``);
a page names a distrik and a kampung by their segment (``/kpu/jila/diloa``). A TPS is
*idle* when no coklit result newer than ``days`` days was counted there (or none at all);
a distrik's or kampung's row counts its idle TPS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
DEFAULT_IDLE_DAYS = 3  #: a TPS with no result for this many days is highlighted
MAX_IDLE_DAYS = 366

#: Result labels of the coklit classifier (meshsync.coklit.visits), in page order.
RESULTS = ("MS", "TMS", "ubah", "baru")

#: ``?sort=`` keys -> the :class:`Area` attribute they order by.
SORT_KEYS = {"nama": "name", "pemilih": "voters", "dicoklit": "dicoklit",
             "persen": "percent", "belum": "belum", "ms": "ms", "tms": "tms",
             "ubah": "ubah", "baru": "baru", "konflik": "conflicts",
             "terakhir": "last_ms", "diam": "idle_tps"}


@dataclass
class Area:
    """One row: a distrik, kampung or TPS (``key``: its partition prefix; ``name``: the
    last segment). Counts are voters (live records); ``last_ms``: newest result time
    counted (Unix ms) or None; ``tps``/``idle_tps``: TPS under it and those idle."""

    key: str
    name: str
    voters: int = 0
    dicoklit: int = 0
    ms: int = 0
    tms: int = 0
    ubah: int = 0
    baru: int = 0
    conflicts: int = 0
    last_ms: int | None = None
    tps: int = 0
    idle_tps: int = 0
    children: list[Area] = field(default_factory=list, repr=False)

    @property
    def title(self) -> str:
        """The name as people write it: ``diloa-dua`` -> ``Diloa Dua``, ``tps-003`` ->
        ``TPS 003``."""
        return title_of(self.name)

    @property
    def belum(self) -> int:
        """Voters without a result (belum dicoklit)."""
        return self.voters - self.dicoklit

    @property
    def percent(self) -> float:
        """Share of voters with a result, 0-100."""
        return 100.0 * self.dicoklit / self.voters if self.voters else 0.0

    @property
    def idle(self) -> bool:
        """Whether every TPS under it is idle (for a TPS: whether it is)."""
        return self.tps > 0 and self.idle_tps == self.tps

    def add(self, other: Area) -> None:
        """Add ``other``'s counts (a child) to this row."""
        for name in ("voters", "dicoklit", "ms", "tms", "ubah", "baru", "conflicts", "tps",
                     "idle_tps"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.last_ms is not None:
            self.last_ms = max(self.last_ms or 0, other.last_ms)


def title_of(segment: str) -> str:
    """A partition segment as people write the place: ``diloa-dua`` -> ``Diloa Dua``,
    ``tps-003`` -> ``TPS 003``."""
    words = segment.replace("_", "-").split("-")
    if words[0].lower() == "tps":
        return " ".join(["TPS", *words[1:]])
    return " ".join(w[:1].upper() + w[1:] for w in words if w)


def _tps_area(key: str, row: dict[str, Any], cutoff_ms: int) -> Area:
    status = row["status"]
    last = row["last_done_ms"]
    ms, tms, ubah, baru = (int(status.get(r, 0)) for r in RESULTS)
    area = Area(key, key.rpartition("/")[2], row["records"], row["done"], ms, tms, ubah,
                baru, row["conflicts"], last, tps=1)
    area.idle_tps = int(last is None or last < cutoff_ms)
    return area


def tree(progress: dict[str, Any], now_ms: int, days: int) -> list[Area]:
    """The distrik rows, each with its kampung (``children``) and theirs (TPS), from
    :func:`meshsync.replica.progress.progress`'s ``tps`` rows. Partitions shallower
    than a TPS (fewer than two segments below a distrik) are left out."""
    cutoff = now_ms - days * DAY_MS
    districts: dict[str, Area] = {}
    villages: dict[str, Area] = {}
    for key, row in progress["tps"].items():
        segs = key.split("/")
        if len(segs) < 3:
            continue
        village_key = key.rpartition("/")[0]
        district_key = village_key.rpartition("/")[0]
        tps = _tps_area(key, row, cutoff)
        village = villages.get(village_key)
        if village is None:
            village = villages[village_key] = Area(village_key, segs[-2])
            district = districts.get(district_key)
            if district is None:
                district = districts[district_key] = Area(district_key, segs[-3])
            district.children.append(village)
        village.children.append(tps)
        village.add(tps)
    for district in districts.values():
        for village in district.children:
            district.add(village)
    return [districts[k] for k in sorted(districts)]


def find(areas: list[Area], name: str) -> Area | None:
    """The area called ``name`` (its last segment) among ``areas``, or None."""
    return next((a for a in areas if a.name == name), None)


def total(areas: list[Area], key: str = "", name: str = "") -> Area:
    """One row summing ``areas``."""
    out = Area(key, name)
    for area in areas:
        out.add(area)
    return out


def ordered(areas: list[Area], sort: str, descending: bool) -> list[Area]:
    """``areas`` ordered by ``?sort=`` key ``sort`` (:data:`SORT_KEYS`; ties by name).
    Unknown keys order by name."""
    attr = SORT_KEYS.get(sort, "name")
    by_name = sorted(areas, key=lambda a: a.name)
    if attr == "name":
        return by_name[::-1] if descending else by_name
    return sorted(by_name, key=lambda a: (getattr(a, attr) is None, getattr(a, attr) or 0),
                  reverse=descending)


CSV_COLUMNS = ("distrik", "kampung", "tps", "partisi", "pemilih", "dicoklit", "belum",
               "ms", "tms", "ubah", "baru", "konflik", "hasil_terakhir_ms", "tanpa_kegiatan")


def csv_rows(districts: list[Area]) -> Iterator[tuple[object, ...]]:
    """One row per TPS (:data:`CSV_COLUMNS`), distrik by distrik."""
    for district in districts:
        for village in district.children:
            for tps in village.children:
                yield (district.name, village.name, tps.name, tps.key, tps.voters,
                       tps.dicoklit, tps.belum, tps.ms, tps.tms, tps.ubah, tps.baru,
                       tps.conflicts, "" if tps.last_ms is None else tps.last_ms,
                       int(tps.idle))
