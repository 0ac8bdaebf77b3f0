"""Benchmark P9: ``meshsync coklit import`` of a DPT CSV against the bundle import of the
same voters, side by side in one run (issue 18 item 5).

Run from the repository, inside the venv::

    python bench/csv_import.py                    # 100,000 voters, 3 pairs, a table
    python bench/csv_import.py --voters 20000 --repeats 2 --json
    python bench/csv_import.py --profile          # cProfile of one in-process CSV import

What it does, in one run:

1. Generates fictitious voters with the coklit sample generator
   (:func:`meshsync.coklit.sample.generate`: invented people, valid-looking NIK/NKK,
   real Mimika distrik and kampung names), distrik after distrik until ``--voters``,
   and writes them as a DPT CSV (:func:`meshsync.coklit.dpt_csv.write_csv`).
2. Builds the bundle a CSV import would amount to: the very puts the import signs
   (each row's fields and its ``dpt`` baseline, read from the same CSV by the import's
   own reader), in changes of ``--batch-size`` records per TPS, signed by a bench
   device, written as a clear bundle file.
3. Times, as whole processes, alternately (CSV, bundle, CSV, bundle, ...), each into a
   fresh home set to ``schema = "coklit"`` (so both validate every voter):
   ``meshsync coklit import FILE.csv`` and ``meshsync bundle import FILE.msb``.
   Both must store every voter; the ratio CSV / bundle is computed pair by pair.

Goal (P9): the CSV import within 2x the bundle import. No real personal data.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_import import write_bundle  # bench/bundle_import.py
from meshsync.coklit import regions
from meshsync.coklit.dpt_csv import (
    BATCH_SIZE,
    ImportReport,
    _by_partition,
    _decode,
    import_csv,
    read_rows,
    write_csv,
)
from meshsync.coklit.merge import plan
from meshsync.coklit.sample import generate
from meshsync.coklit.schema import VoterValidator

from meshsync.host.home import Home
from meshsync.host.local import adopt_schema, open_node
from meshsync.model.codec import canonical_value


def sample_voters(count: int, seed: int = 18) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` fictitious voters ``(partition, key, fields)``, distrik after distrik."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for n, distrik in enumerate(regions.DISTRIK):
        out += [(v.partition, v.key, v.fields) for v in generate(seed + n, distrik)]
        if len(out) >= count:
            return out[:count]
    raise SystemExit(f"the generator gave only {len(out)} voters")


def write_inputs(workdir: Path, count: int, batch_size: int) -> tuple[Path, Path, int]:
    """The CSV and the bundle of the same ``count`` voters; returns their paths and the
    number of changes in the bundle."""
    csv_path, bundle_path = workdir / "dpt.csv", workdir / "dpt.msb"
    with csv_path.open("w", encoding="utf-8", newline="") as out:
        write_csv(out, sample_voters(count))
    report = ImportReport()
    text = _decode(csv_path.read_bytes(), str(csv_path))
    rows = read_rows(text, str(csv_path), VoterValidator(), report)
    if report.bad or len(rows) != count:
        raise SystemExit(f"generated rows refused: {report.bad[:3]}")
    records = []
    for partition, group in _by_partition(rows).items():
        for row in group:
            put = plan(None, row.fields, b"").fields
            assert put is not None
            records.append((partition, row.key, canonical_value(put)))
    signed = write_bundle(bundle_path, records, batch_size)
    return csv_path, bundle_path, len(signed)


def fresh_home(path: Path) -> Path:
    """An empty home with ``schema = "coklit"`` (its store created)."""
    Home.create(path)
    adopt_schema(Home.open(path), "coklit")
    with open_node(path):
        pass
    return path


def meshsync() -> str:
    script = Path(sys.executable).with_name("meshsync")
    found = str(script) if script.exists() else shutil.which("meshsync")
    if not found:
        raise SystemExit("the meshsync command is not installed (pip install -e .)")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Wall and CPU (user + system) seconds of one whole command, and its JSON report.
    CPU time is quoted beside wall time: on a shared machine it moves less with the
    load (the bundle import also checks signatures on other threads: CPU counts them)."""
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{args[1:3]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return seconds, cpu, report


def records_in(home: Path) -> int:
    with closing(sqlite3.connect(home / "store.sqlite")) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def measure(count: int, repeats: int, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshsync-csvbench-") as tmp:
        workdir = Path(tmp)
        csv_path, bundle_path, changes = write_inputs(workdir, count, batch_size)
        command = meshsync()
        pairs = []
        for n in range(repeats):
            csv_home = fresh_home(workdir / f"csv-{n}")
            bundle_home = fresh_home(workdir / f"bundle-{n}")
            csv_s, csv_cpu, csv_report = timed(
                [command, "coklit", "import", str(csv_path), "--home", str(csv_home),
                 "--batch-size", str(batch_size), "--json"])
            bundle_s, bundle_cpu, bundle_report = timed(
                [command, "bundle", "import", str(bundle_path), "--home", str(bundle_home),
                 "--json"])
            if (csv_report["new"], records_in(csv_home), records_in(bundle_home)) != \
                    (count, count, count) or bundle_report["applied"] != changes:
                raise SystemExit(f"incomplete import: {csv_report}, {bundle_report}")
            pairs.append({"csv_s": csv_s, "bundle_s": bundle_s, "ratio": csv_s / bundle_s,
                          "csv_cpu_s": csv_cpu, "bundle_cpu_s": bundle_cpu,
                          "cpu_ratio": csv_cpu / bundle_cpu})
            shutil.rmtree(csv_home)
            shutil.rmtree(bundle_home)
        csv_bytes, bundle_bytes = csv_path.stat().st_size, bundle_path.stat().st_size
    return {"voters": count, "changes": changes, "batch_size": batch_size,
            "csv_bytes": csv_bytes, "bundle_bytes": bundle_bytes, "pairs": pairs,
            "csv_median_s": statistics.median(p["csv_s"] for p in pairs),
            "bundle_median_s": statistics.median(p["bundle_s"] for p in pairs),
            "ratio_median": statistics.median(p["ratio"] for p in pairs),
            "cpu_ratio_median": statistics.median(p["cpu_ratio"] for p in pairs)}


def profile(count: int, batch_size: int, sort: str = "tottime") -> str:
    """cProfile's top costs of one in-process CSV import (not a timing)."""
    with tempfile.TemporaryDirectory(prefix="meshsync-csvbench-") as tmp:
        workdir = Path(tmp)
        csv_path, _, _ = write_inputs(workdir, count, batch_size)
        home = fresh_home(workdir / "home")
        profiler = cProfile.Profile()
        with open_node(home) as node:
            profiler.enable()
            import_csv(node, csv_path, batch_size=batch_size)
            profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(40)
    return text.getvalue()


def print_table(r: dict[str, Any]) -> None:
    print(f"{r['voters']:,} voters: CSV {r['csv_bytes'] / 2**20:.1f} MiB; bundle "
          f"{r['changes']:,} changes of <= {r['batch_size']}, {r['bundle_bytes'] / 2**20:.1f} MiB")
    print(f"{'pair':<6}{'coklit import s':>17}{'bundle import s':>17}{'CSV / bundle':>14}"
          f"{'CPU s: CSV / bundle':>24}{'CPU ratio':>11}")
    for n, p in enumerate(r["pairs"], 1):
        print(f"{n:<6}{p['csv_s']:>17.2f}{p['bundle_s']:>17.2f}{p['ratio']:>14.2f}"
              f"{p['csv_cpu_s']:>15.2f} / {p['bundle_cpu_s']:<6.2f}{p['cpu_ratio']:>11.2f}")
    print(f"{'median':<6}{r['csv_median_s']:>17.2f}{r['bundle_median_s']:>17.2f}"
          f"{r['ratio_median']:>14.2f}{'':>24}{r['cpu_ratio_median']:>11.2f}  (P9 goal: <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voters", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="pairs, interleaved")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile's top costs of one in-process CSV import")
    args = parser.parse_args()
    if args.profile:
        print(profile(args.voters, args.batch_size))
        return
    result = measure(args.voters, args.repeats, args.batch_size)
    print(json.dumps(result, indent=2) if args.json else "", end="")
    if not args.json:
        print_table(result)


if __name__ == "__main__":
    main()
