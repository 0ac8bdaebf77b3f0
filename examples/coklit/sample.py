"""A made-up but realistic voter list for one Mimika distrik, reproducible from a seed.

Region names are the public Kemendagri ones (:mod:`meshsync.coklit.regions`). People
are invented: given names are common Papuan (mostly Christian) and Indonesian given
names; family names are ordinary Indonesian words (Kasuari, Matoa, Noken, ...) and
often "Contoh" ("example"), so no row describes a real person; some people have one
name only. NIK and NKK numbers have the valid form (region, birth date with women's
day + 40, a serial unique per region and date) but are fictitious.

Households share an NKK, address and RT/RW; each TPS has ``voters_per_tps`` voters
(default 300-600 at random) and each kampung ``tps_per_kampung`` TPS (default 2-4).
Every row passes the ``voters`` validator under the default rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from meshsync.coklit import regions
from meshsync.coklit.checks import Rules, age_on
from meshsync.coklit.nik import make_nik, make_nkk
from meshsync.coklit.schema import DEFAULT_RULES

MALE = ("Yohanes", "Petrus", "Paulus", "Markus", "Yakobus", "Yulianus", "Marthen", "Frans",
        "Herman", "Agustinus", "Stefanus", "Simon", "Daniel", "Yosep", "Lukas", "Andreas",
        "Nikolaus", "Elias", "Natan", "Benyamin", "Budi", "Agus", "Ahmad", "Rahmat", "Wahyu",
        "Ma'ruf", "Syafi'i", "Ja'far", "Hasan", "Yusuf", "Eko", "Yance")
FEMALE = ("Yosina", "Maria", "Agustina", "Elisabeth", "Naomi", "Ruth", "Debora", "Martina",
          "Yuliana", "Fransina", "Ester", "Rahel", "Selina", "Anita", "Ribka", "Magdalena",
          "Siti", "Dewi", "Sri", "Nur", "Wati", "Rina", "Mu'minah", "Fitri", "Yanti", "Mince")
FAMILY = ("Kasuari", "Matoa", "Sagu", "Kenari", "Cendana", "Nibung", "Pelangi", "Gunung",
          "Rimba", "Samudra", "Bintang", "Embun", "Telaga", "Mutiara", "Karang", "Damar",
          "Merbau", "Tifa", "Noken", "Honai")
TOWNS = ("Timika", "Nabire", "Jayapura", "Wamena", "Biak", "Merauke", "Makassar", "Ambon")
STREETS = ("Jl. Budi Utomo", "Jl. Cenderawasih", "Jl. Hasanuddin", "Jl. Yos Sudarso",
           "Jl. Sam Ratulangi", "Jl. Pattimura")
URBAN = ("Mimika Baru", "Kuala Kencana", "Wania", "Kwamki Narama", "Iwaka")
TMS_SAMPLE = ("meninggal", "meninggal", "pindah_domisili", "pindah_domisili", "ganda",
              "tidak_dikenal", "tni", "polri", "salah_tps")


@dataclass(frozen=True)
class SampleVoter:
    """One generated row: its partition, record key and fields."""

    partition: str
    key: str
    fields: dict[str, Any]


class _Generator:
    def __init__(self, seed: int, distrik: str, rules: Rules, coklit_results: bool) -> None:
        official = regions.distrik_name(distrik)
        if official is None:
            raise ValueError(f"{distrik!r} is not a distrik of Kabupaten Mimika "
                             f"({', '.join(regions.DISTRIK)})")
        self.rng = random.Random(seed)
        self.distrik, self.rules, self.coklit = official, rules, coklit_results
        self.code = regions.DISTRIK[official][0]
        self.serials: set[str] = set()

    def _serial(self, prefix: str) -> int:
        while True:
            serial = self.rng.randint(1, 9999)
            if prefix + f"{serial:04d}" not in self.serials:
                self.serials.add(prefix + f"{serial:04d}")
                return serial

    def _born(self, low: int, high: int) -> date:
        day = self.rules.election_day
        born = day - timedelta(days=self.rng.randint(low * 366, high * 365))
        if self.rng.random() < 0.05:  # unknown birthdays are often listed as 1 July
            born = date(born.year, 7, 1)
        return born

    def _nik(self, born: date, female: bool) -> str:
        new_code = born.year >= 2005 and self.rng.random() < 0.7
        region = (regions.KABUPATEN_CODES[0] if new_code else regions.KABUPATEN_CODES[1]) \
            + self.code
        prefix = make_nik(region, born, female, 1)[:12]
        return make_nik(region, born, female, self._serial(prefix))

    def _name(self, female: bool, family: str | None) -> str:
        given = self.rng.choice(FEMALE if female else MALE)
        if self.rng.random() < 0.15:
            given += " " + self.rng.choice(FEMALE if female else MALE)
        if self.rng.random() < 0.1:
            given = given.replace("'", "\u2019")  # typed on a phone keyboard
        return f"{given} {family}" if family else given

    def household(self, kampung: str, tps: int) -> list[dict[str, Any]]:
        """The voters of one family card (KK): 1-5 adults sharing NKK and address."""
        rng = self.rng
        roll = rng.random()
        family = "Contoh" if roll < 0.2 else (None if roll < 0.35 else rng.choice(FAMILY))
        urban = self.distrik in URBAN
        home = {"distrik": self.distrik, "kampung": kampung, "tps": tps,
                "alamat": f"{rng.choice(STREETS)} No. {rng.randint(1, 120)}" if urban
                else f"Kampung {kampung}",
                "rt": f"{rng.randint(1, 12):03d}" if urban or rng.random() < 0.4 else "",
                "rw": f"{rng.randint(1, 4):03d}" if urban else ""}
        region = regions.KABUPATEN_CODES[1] + self.code
        issued = date(rng.randint(2010, 2023), rng.randint(1, 12), rng.randint(1, 28))
        prefix = make_nkk(region, issued, 1)[:12]
        home["nkk"] = make_nkk(region, issued, self._serial("kk" + prefix))
        people = [(False, "S", 30, 70), (True, "S", 25, 65)] if rng.random() < 0.75 \
            else [(rng.random() < 0.5, rng.choice("BP"), 20, 80)]
        people += [(rng.random() < 0.5, "B", 17, 30)] * rng.randint(0, 3)
        return [self.person(home, family, *p) for p in people]

    def person(self, home: dict[str, Any], family: str | None, female: bool, kawin: str,
               low: int, high: int) -> dict[str, Any]:
        """One household member's fields (``low``-``high`` years old on election day)."""
        born = self._born(low, high)
        fields = dict(home, nama=self._name(female, family), jenis_kelamin="P" if female
                      else "L", status_kawin=kawin, tanggal_lahir=born.isoformat(),
                      umur=age_on(born, self.rules.election_day),
                      nik=self._nik(born, female),
                      tempat_lahir=self.rng.choice((home["kampung"], *TOWNS[:3])))
        if not fields["rt"]:
            del fields["rt"]
        if not fields["rw"]:
            del fields["rw"]
        if self.rng.random() < 0.015:
            fields["disabilitas"] = [self.rng.choice(("fisik", "sensorik_netra",
                                                       "sensorik_rungu", "mental"))]
        if self.coklit:
            self._coklit(fields)
        return fields

    def _coklit(self, fields: dict[str, Any]) -> None:
        roll = self.rng.random()
        fields["coklit"] = "MS"
        if roll < 0.03:
            fields.update(coklit="TMS", tms=self.rng.choice(TMS_SAMPLE))
        elif roll < 0.06:
            fields["coklit"] = "ubah"
        elif roll < 0.09 and fields["status_kawin"] == "B" and fields["umur"] < 20:
            fields["coklit"] = "baru"


def generate(seed: int, distrik: str = "Jila", *, voters_per_tps: int | None = None,
             tps_per_kampung: int | None = None, coklit_results: bool = False,
             duplicate_rate: float = 0.0, rules: Rules = DEFAULT_RULES) -> list[SampleVoter]:
    """Generate the voter list of ``distrik``: the same ``seed`` gives the same rows.

    ``voters_per_tps`` fixes the number of voters per TPS (default 300-600 at random;
    a household may end a TPS a few voters over). ``coklit_results`` gives every row
    a coklit result (``coklit``), mostly ``MS``, some TMS (with a reason), ``ubah`` or
    ``baru``, as after coklit; otherwise no row has one (belum dicoklit).
    ``duplicate_rate`` is the share of voters listed a second time at another TPS of
    the distrik (same person, same NIK), for duplicate detection to find.
    Raises ValueError for an unknown distrik.
    """
    gen = _Generator(seed, distrik, rules, coklit_results)
    rng = gen.rng
    voters: list[SampleVoter] = []
    for kampung in regions.DISTRIK[gen.distrik][1]:
        for tps in range(1, (tps_per_kampung or rng.randint(2, 4)) + 1):
            partition = regions.partition_for(gen.distrik, kampung, tps)
            target = voters_per_tps or rng.randint(300, 600)
            count = 0
            while count < target:
                for fields in gen.household(kampung, tps):
                    voters.append(SampleVoter(partition, f"p{rng.getrandbits(48):012x}",
                                              fields))
                    count += 1
    return voters + _duplicates(rng, voters, duplicate_rate)


def _duplicates(rng: random.Random, voters: list[SampleVoter],
                rate: float) -> list[SampleVoter]:
    partitions = sorted({v.partition for v in voters})
    extra = []
    for voter in rng.sample(voters, int(len(voters) * rate)):
        elsewhere = [p for p in partitions if p != voter.partition]
        if not elsewhere:
            continue
        partition = rng.choice(elsewhere)
        _, kampung, tps = regions.split_partition(partition) or ("", "", 1)
        name = regions.kampung_name(voter.fields["distrik"], kampung) or kampung
        fields = dict(voter.fields, kampung=name, tps=tps)
        extra.append(SampleVoter(partition, f"p{rng.getrandbits(48):012x}", fields))
    return extra
