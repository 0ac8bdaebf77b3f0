"""Benchmark: importing a district's voter list from a bundle, against its floor.

Run from the repository, inside the venv::

    python bench/bundle_import.py                 # 100,000 records, table
    python bench/bundle_import.py --records 20000 --json
    python bench/bundle_import.py --profile       # also the import's top costs

What it does, in one run:

1. Generates fictitious voter records (15 fields, valid-looking 16-digit NIK and KK
   numbers, Mimika village partitions), written by one device as changes of
   ``--per-change`` records each, into a bundle file (the format of meshsync.protocol.bundle).
2. **Import**: ``meshsync.protocol.bundle.import_bundle`` into an empty SQLite home, in a fresh
   subprocess so its peak RSS (Linux VmHWM) is the import's own.
3. **Floor**: the least any importer of the same file must do: msgpack-decode the same
   items, Ed25519-verify the same signatures, and insert one row per record into SQLite
   (WAL, synchronous=FULL, 1,000 rows per transaction, a UNIQUE key index).

The ratio import / floor is the overhead of meshsync's own work: canonical re-encoding
of each change, hash chains, the CRDT merge, record states, the changes table. The goal
is a ratio within 2.

With ``--sealed``, the same items are also sealed (format version 2,
meshsync.protocol.seal) to the key of a second empty home, and imported there in a
fresh process too: the ratio sealed / clear is the cost of the encryption (goal: within
1.2). The bench homes are not enrolled (the open policy authorises the bench device),
so the sealed import's "is this home enrolled" lookup is skipped in the child.

No real personal data: names are invented, NIK/KK numbers only have the right shape.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from meshsync.host.home import Home
from meshsync.host.local import open_node
from meshsync.model.change import SIGN_CONTEXT, Put, sign_change
from meshsync.model.hlc import make as make_hlc
from meshsync.model.identity import DeviceKey
from meshsync.protocol import bundle as bundle_module
from meshsync.protocol.bundle import END, FOOTER, FOOTER_BYTES, HEADER, MAGIC, import_bundle
from meshsync.protocol.seal import SealingWriter
from meshsync.protocol.wire import CHANGE, FEED, WireEncoder

START_MS = 1_717_200_000_000  # 2024-06-01, the coklit month
VOTERS_PER_TPS = 450

#: Distrik -> villages (kampung) of Mimika used as partitions.
VILLAGES = {
    "jila": ["jila", "diloa", "umpliga", "pilikogom"],
    "alama": ["alama", "jaelele"],
    "hoya": ["hoya", "jinoni"],
    "agimuga": ["kiliarma", "amungun"],
    "tembagapura": ["tembagapura", "banti", "tsinga", "aroanop"],
    "mimika-barat-jauh": ["potowai-buru", "aindua"],
}
DISTRICT_CODE = {d: f"9109{i + 10:02d}" for i, d in enumerate(VILLAGES)}
GIVEN = ["Yosina", "Markus", "Debora", "Ma'ruf", "Syafi'i", "Yohana", "Petrus", "Maria",
         "Agustina", "Yakobus", "Elisabet", "Natalis", "Fransina", "Benyamin", "Dorkas"]
FAMILY = ["Contoh", "Uji", "Sampel", "Coba", ""]  # "" = a single name


def voters(count: int, seed: int = 2024) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` fictitious voters as ``(partition, key, fields)``, grouped by TPS."""
    rng = random.Random(seed)
    places = [(d, v) for d, vs in VILLAGES.items() for v in vs]
    out = []
    for n in range(count):
        district, village = places[(n // VOTERS_PER_TPS) % len(places)]
        tps = n // VOTERS_PER_TPS // len(places) + 1
        out.append((f"mimika/{district}/{village}/tps-{tps:03d}", f"v-{n:07d}",
                    voter_fields(rng, n, district, village, tps)))
    return out


def voter_fields(rng: random.Random, n: int, district: str, village: str,
                 tps: int) -> dict[str, Any]:
    female = rng.random() < 0.5
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2007)
    region = DISTRICT_CODE[district]
    nik = f"{region}{day + 40 * female:02d}{month:02d}{year % 100:02d}{n % 9999 + 1:04d}"
    kk = f"{region}{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(5, 23):02d}" \
         f"{rng.randint(1, 9999):04d}"
    family = rng.choice(FAMILY)
    fields = {
        "nik": nik, "kk": kk, "nama": f"{rng.choice(GIVEN)} {family}".strip(),
        "tempat_lahir": rng.choice(["Timika", village.title(), "Jayapura", "Nabire"]),
        "tanggal_lahir": f"{year:04d}-{month:02d}-{day:02d}",
        "jenis_kelamin": "P" if female else "L",
        "status_kawin": rng.choice(["B", "S", "P"]),
        "alamat": f"Kampung {village.title()}", "rt": rng.randint(1, 12),
        "rw": rng.randint(1, 5), "kampung": village, "distrik": district,
        "tps": tps, "disabilitas": 0 if rng.random() < 0.97 else rng.randint(1, 6),
        "status": "ms",
    }
    return dict(sorted(fields.items()))  # canonical: keys in UTF-8 order


# -- the bundle --------------------------------------------------------------------------


def write_bundle(path: Path, records: list[tuple[str, str, dict[str, Any]]],
                 per_change: int) -> list[tuple[bytes, bytes, bytes]]:
    """Write the records as changes of ``per_change`` puts by one device, feed by feed.

    Returns ``(public key, signature, signed message)`` of every change, for the floor.
    """
    key = DeviceKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench").digest()))
    packer, encoder, digest = msgpack.Packer(use_bin_type=True), WireEncoder(), hashlib.sha256()
    signed, heads, hlc = [], {}, make_hlc(START_MS)
    with path.open("wb") as f:
        def write(data: bytes) -> None:
            f.write(data)
            digest.update(data)

        write(MAGIC)
        write(packer.pack([HEADER, {"created_ms": START_MS, "creator": key.public_key,
                                    "version": 1}]))
        for partition, batch in batches(records, per_change):
            seq, prev = heads.get(partition, (0, b""))
            ops = tuple(Put("voters", k, fields) for _, k, fields in batch)
            change = sign_change(key, partition, seq + 1, prev, hlc, ops)
            heads[partition], hlc = (change.seq, change.hash), hlc + len(ops)
            signed.append((key.public_key, change.sig, SIGN_CONTEXT + change.body))
            write(b"".join(packer.pack(item) for item in encoder.encode(change)))
        write(packer.pack([END, len(signed), 0]))
        f.write(FOOTER + digest.digest())
    return signed


def batches(records: list[tuple[str, str, dict[str, Any]]],
            size: int) -> list[tuple[str, list[tuple[str, str, dict[str, Any]]]]]:
    """Consecutive runs of at most ``size`` records of one partition."""
    out: list[tuple[str, list[tuple[str, str, dict[str, Any]]]]] = []
    for record in records:
        if out and out[-1][0] == record[0] and len(out[-1][1]) < size:
            out[-1][1].append(record)
        else:
            out.append((record[0], [record]))
    return out


# -- (a) meshsync's import, in a fresh process ----------------------------------------------


def peak_rss_kb() -> int:
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: Linux carries that across
    fork and exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_import(bundle: Path, home: Path, profile: bool) -> dict[str, Any]:
    if not (home / "device.key").exists():
        Home.create(home)
    bundle_module.is_enrolled = lambda node: True  # see the module docs (--sealed)
    base = peak_rss_kb()
    profiler = cProfile.Profile() if profile else None
    with open_node(home) as node, bundle.open("rb") as f:
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        report = import_bundle(node, f)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - start
        records = sum(1 for _ in node.store.iter_records())
    out: dict[str, Any] = {"seconds": seconds, "base_rss_kb": base, "peak_rss_kb": peak_rss_kb(),
                           "applied": report.apply.applied, "refused": len(report.apply.refused),
                           "records": records}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
        out["profile"] = text.getvalue()
    return out


def seal_copy(bundle: Path, sealed: Path, home: Path) -> None:
    """Write ``bundle``'s items to ``sealed``, sealed to the device key of a new
    ``home`` (made here)."""
    key = Home.create(home).load_key()
    data = bundle.read_bytes()[len(MAGIC):-FOOTER_BYTES]
    with sealed.open("wb") as f:
        writer = SealingWriter(f, [key.public_key], created_ms=START_MS,
                               creator=key.public_key)
        for offset in range(0, len(data), 1 << 16):
            writer.write(data[offset:offset + (1 << 16)])
        writer.close()


def run_import(bundle: Path, workdir: Path, profile: bool,
               home: str = "home") -> dict[str, Any]:
    args = [sys.executable, __file__, "--child-import", str(bundle), str(workdir / home)]
    proc = subprocess.run(args + (["--profile"] if profile else []), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"import failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# -- (b) the floor ---------------------------------------------------------------------


def floor_decode(bundle: Path) -> tuple[float, list[Any]]:
    """msgpack-decode every item of the bundle, fed in 64 KiB chunks as an importer must."""
    data = bundle.read_bytes()[len(MAGIC):-FOOTER_BYTES]
    items: list[Any] = []
    start = time.perf_counter()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    for offset in range(0, len(data), 1 << 16):
        unpacker.feed(data[offset:offset + (1 << 16)])
        items.extend(unpacker)
    return time.perf_counter() - start, items


def rows_of(items: list[Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(collection, key, partition, fields)`` of every put, from decoded wire items."""
    rows, partition = [], ""
    for item in items:
        if item[0] == FEED:
            partition = item[2]
        elif item[0] == CHANGE:
            rows += [(op[1], op[2], partition, op[3]) for op in item[2]]
    return rows


def floor_verify(signed: list[tuple[bytes, bytes, bytes]]) -> float:
    """Ed25519-verify every change signature over its signed bytes."""
    keys = {pk: Ed25519PublicKey.from_public_bytes(pk) for pk, _, _ in signed}
    start = time.perf_counter()
    for pk, sig, message in signed:
        keys[pk].verify(sig, message)
    return time.perf_counter() - start


def floor_insert(rows: list[tuple[str, str, str, dict[str, Any]]], path: Path) -> float:
    """One row per record (fields packed), 1,000 rows per transaction, WAL, FULL sync."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, collection TEXT NOT NULL, "
               "key TEXT NOT NULL, partition TEXT NOT NULL, fields BLOB NOT NULL, "
               "UNIQUE (collection, key, partition))")
    start = time.perf_counter()
    for i in range(0, len(rows), 1000):
        batch = [(c, k, p, msgpack.packb(f, use_bin_type=True)) for c, k, p, f in rows[i:i + 1000]]
        db.execute("BEGIN")
        db.executemany("INSERT INTO records (collection, key, partition, fields) "
                       "VALUES (?,?,?,?)", batch)
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return seconds


def run_floor(bundle: Path, signed: list[tuple[bytes, bytes, bytes]],
              workdir: Path) -> dict[str, float]:
    decode, items = floor_decode(bundle)
    rows = rows_of(items)  # the very data decoded, so the floor stores what it read
    verify = floor_verify(signed)
    insert = floor_insert(rows, workdir / "floor.sqlite")
    return {"decode": decode, "verify": verify, "insert": insert,
            "total": decode + verify + insert, "rows": len(rows)}


# -- the report --------------------------------------------------------------------------


def measure(count: int, per_change: int, profile: bool, sealed: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        workdir = Path(tmp)
        bundle = workdir / "district.msb"
        signed = write_bundle(bundle, voters(count), per_change)
        imported = run_import(bundle, workdir, profile)
        floor = run_floor(bundle, signed, workdir)
        size = bundle.stat().st_size
        opened = None
        if sealed:
            seal_copy(bundle, workdir / "sealed.msb", workdir / "home-sealed")
            opened = run_import(workdir / "sealed.msb", workdir, False, "home-sealed")
            if opened["applied"] != len(signed):
                raise SystemExit(f"sealed import incomplete: {opened}")
    if imported["applied"] != len(signed) or count != imported["records"] or \
            count != floor.pop("rows"):
        raise SystemExit(f"import or floor incomplete: {imported}, {floor}")
    return {
        "records": count, "changes": len(signed), "bundle_bytes": size,
        "import": {"seconds": imported["seconds"],
                   "changes_per_s": len(signed) / imported["seconds"],
                   "records_per_s": count / imported["seconds"],
                   "peak_rss_mb": imported["peak_rss_kb"] / 1024,
                   "rss_growth_mb": (imported["peak_rss_kb"] - imported["base_rss_kb"]) / 1024},
        "floor": floor,
        "ratio": imported["seconds"] / floor["total"],
        "sealed": None if opened is None else {
            "seconds": opened["seconds"], "peak_rss_mb": opened["peak_rss_kb"] / 1024,
            "ratio_to_clear": opened["seconds"] / imported["seconds"]},
        "profile": imported.get("profile"),
    }


def print_table(r: dict[str, Any]) -> None:
    imp, fl = r["import"], r["floor"]
    print(f"bundle: {r['records']:,} records in {r['changes']:,} changes, "
          f"{r['bundle_bytes'] / 2**20:.1f} MiB")
    print(f"{'step':<28}{'seconds':>10}{'records/s':>12}")
    rows = [("import_bundle (meshsync)", imp["seconds"]),
            ("floor: msgpack decode", fl["decode"]), ("floor: Ed25519 verify", fl["verify"]),
            ("floor: SQLite insert", fl["insert"]), ("floor: total", fl["total"])]
    for name, seconds in rows:
        print(f"{name:<28}{seconds:>10.2f}{r['records'] / seconds:>12,.0f}")
    print(f"import: {imp['changes_per_s']:,.0f} changes/s, peak RSS {imp['peak_rss_mb']:.0f} MB "
          f"(+{imp['rss_growth_mb']:.0f} MB during the import)")
    print(f"ratio import / floor: {r['ratio']:.2f} (goal: <= 2)")
    if r["sealed"]:
        sealed = r["sealed"]
        print(f"sealed import: {sealed['seconds']:.2f} s, peak RSS {sealed['peak_rss_mb']:.0f} "
              f"MB; ratio sealed / clear: {sealed['ratio_to_clear']:.2f} (goal: <= 1.2)")
    if r["profile"]:
        print(r["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--per-change", type=int, default=100, help="records per change")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile the import")
    parser.add_argument("--sealed", action="store_true",
                        help="also import the same items sealed, and compare")
    parser.add_argument("--child-import", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_import:
        print(json.dumps(child_import(*args.child_import, args.profile)))
        return
    result = measure(args.records, args.per_change, args.profile, args.sealed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
