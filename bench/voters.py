"""Made-up voter records for benchmarks: DPT-like, about 15 fields each.

Nobody here is real. Family names are "Contoh" ("example") and "Uji" ("test");
NIK and KK numbers start with region code 99, which no Indonesian province has, so
they can never be a real person's number. Villages are "Kampung Uji N".
Deterministic: the same ``seed`` gives the same records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

GIVEN = ("Yosina", "Natalis", "Maria", "Yohanes", "Agustina", "Markus", "Elisabeth",
         "Petrus", "Ruth", "Daniel", "Martha", "Simon", "Ma'ruf", "Siti", "Agus", "Dewi")
FAMILY = ("Contoh", "Uji")
PLACES = ("Timika", "Agimuga", "Jila", "Jita", "Alama", "Hoya", "Tembagapura")
DISTRICT = "mimika/jila"
VOTERS_PER_TPS = 500


def partition_of(index: int) -> str:
    """TPS partition of voter ``index``: 500 voters a TPS, 10 TPS a village."""
    tps = index // VOTERS_PER_TPS
    return f"{DISTRICT}/kampung-uji-{tps // 10:02d}/tps-{tps % 10 + 1:03d}"


def voter(index: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """``(key, fields)`` of made-up voter ``index`` (15 fields)."""
    tps = index // VOTERS_PER_TPS
    born = f"{rng.randint(1940, 2007)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return f"v-{index:07d}", {
        "nik": f"99{rng.randrange(10**14):014d}",
        "kk": f"99{rng.randrange(10**14):014d}",
        "nama": f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}",
        "tempat_lahir": rng.choice(PLACES),
        "tanggal_lahir": born,
        "jenis_kelamin": rng.choice("LP"),
        "status_kawin": rng.choice(("B", "S", "P")),
        "alamat": f"Jalan Uji No. {rng.randint(1, 200)}",
        "rt": rng.randint(1, 20),
        "rw": rng.randint(1, 8),
        "kelurahan": f"Kampung Uji {tps // 10:02d}",
        "disabilitas": rng.random() < 0.03,
        "ktp_el": rng.random() < 0.9,
        "status": "MS",
        "keterangan": "",
    }


def voters(count: int, seed: int = 2024) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(partition, key, fields)`` for ``count`` made-up voters, TPS by TPS."""
    rng = random.Random(seed)
    for index in range(count):
        key, fields = voter(index, rng)
        yield partition_of(index), key, fields


def edits(count: int, total: int, seed: int = 7) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` single-field edits of distinct voters among ``total``: ``(partition,
    key, {field: value})``, as officers make them door to door during coklit."""
    rng = random.Random(seed)
    picked = rng.sample(range(total), count)
    changes = (("status", "TMS"), ("keterangan", "pindah domisili"), ("ktp_el", True))
    return [(partition_of(i), f"v-{i:07d}", dict([rng.choice(changes)])) for i in picked]
