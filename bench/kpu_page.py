"""Benchmark: the KPU page at central with 300,000 voters across Mimika's distrik.

Run from the repository, inside the venv (the ``central`` extra for PostgreSQL)::

    python bench/kpu_page.py                       # 300,000 voters, SQLite and PostgreSQL
    python bench/kpu_page.py --voters 60000 --json
    python bench/kpu_page.py --no-pg               # SQLite only

A throwaway authority enrols a central home (scope: everything). The coklit example's
generator writes a made-up DPT (nobody real; real region names) of every distrik and
kampung of Mimika, 4 TPS per kampung, about ``--voters`` voters; about 40% of them
carry a coklit result (MS, TMS with a reason, ubah, baru), the others are belum
dicoklit. They go in through the library, 500 voters per signed change (as
bench/api_paging.py; the CSV import, which checks and normalises every row, takes
several times longer on a loaded 2-core box), into the home's SQLite file, then into a
fresh PostgreSQL schema (``ANALYZE``d after); the home then takes the coklit schema, as
a CSV import would give it. That loading is not timed (its seconds are printed). Then,
per store:

* **library** (in this process, on the store): :func:`meshsync.replica.progress.progress`
  (the counts kept on write) against :func:`~meshsync.replica.progress.recompute`
  (every record decoded and classified: what ``GET /api/progress`` cost before the
  counts), median of ``--runs`` (3 for the recount).
* **daemon** (``meshsync daemon --role central`` on 127.0.0.1): median of ``--runs``
  requests of ``GET /kpu``, ``/kpu/<distrik>``, ``/kpu/<distrik>/<kampung>``,
  ``/kpu/export.csv`` and ``GET /api/progress``; goal: the pages within 200 ms.
  Baseline in the same run: ``GET /api/status``. The first ``/kpu`` after the start is
  shown apart. With ``--screenshots DIR`` (or ``$MESHSYNC_SCREENSHOTS``), headless
  Chromium saves ``/kpu`` of each store there (``kpu-page-sqlite.png``, ...), after the
  timings.

Numbers depend on load: on a shared 2-core machine run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from api_paging import Daemon, analyze, pg_server  # bench/api_paging.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from meshsync.coklit import regions  # noqa: E402
from meshsync.coklit.sample import generate  # noqa: E402
from netfixtures import District  # noqa: E402  (after the path insert)

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TPS_PER_KAMPUNG = 4
RESULT_SHARE = 0.4  #: voters that keep the generator's coklit result
PER_CHANGE = 500  #: voters per signed change while loading


def mimika_voters(voters: int, seed: int = 2026) -> list[tuple[str, str, dict[str, Any]]]:
    """About ``voters`` made-up ``(partition, key, fields)`` of all of Mimika."""
    kampung = sum(len(k) for _, k in regions.DISTRIK.values())
    per_tps = max(1, voters // (kampung * TPS_PER_KAMPUNG))
    rng = random.Random(seed)
    rows = []
    for i, distrik in enumerate(sorted(regions.DISTRIK)):
        for v in generate(seed + i, distrik, voters_per_tps=per_tps,
                          tps_per_kampung=TPS_PER_KAMPUNG, coklit_results=True):
            fields = dict(v.fields)
            if rng.random() >= RESULT_SHARE:
                fields.pop("coklit", None)
                fields.pop("tms", None)
            rows.append((v.partition, v.key, fields))
    return rows


def bulk_write(home: Path, rows: list[tuple[str, str, dict[str, Any]]],
               store: str | None) -> float:
    """Write ``rows`` into ``home`` (or the PostgreSQL ``store``) through the library,
    :data:`PER_CHANGE` voters per signed change, one feed per TPS, labelled by the
    coklit classifier (no validator: the rows are the generator's). Its seconds."""
    from meshsync.coklit.visits import outcome

    from meshsync.host.local import open_node
    from meshsync.replica.progress import register_classifier

    register_classifier("voters", outcome)
    by_tps: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for partition, key, fields in rows:
        by_tps.setdefault(partition, []).append((key, fields))
    start = time.perf_counter()
    with open_node(home, store=store) as node:
        for partition, records in by_tps.items():
            for i in range(0, len(records), PER_CHANGE):
                node.write(partition, [("put", "voters", k, f)
                                       for k, f in records[i:i + PER_CHANGE]])
    return time.perf_counter() - start


def timed(func: Any, runs: int) -> tuple[float, Any]:
    """Median milliseconds of ``runs`` calls of ``func()``, and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def without_times(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` without ``last_done_ms`` (kept as the newest ever counted)."""
    return {level: {name: {k: v for k, v in row.items() if k != "last_done_ms"}
                    for name, row in rows.items()} for level, rows in figures.items()}


def library(home: Path, store: str | None, runs: int) -> dict[str, Any]:
    """Counts kept on write against a full recount, in this process."""
    from meshsync.host.home import Home
    from meshsync.host.local import open_node, use_schema
    from meshsync.replica.progress import progress, recompute

    with open_node(home, store=store) as node:
        use_schema(node, Home.open(home))  # the coklit classifier, as the daemon has it
        progress(node.store, "voters")  # records the classifier's name once
        kept_ms, kept = timed(lambda: progress(node.store, "voters"), runs)
        full_ms, full = timed(lambda: recompute(node.store, "voters"), 3)
    return {"progress_ms": round(kept_ms, 2), "recompute_ms": round(full_ms, 1),
            "equal": without_times(kept) == without_times(full), "tps": len(kept["tps"])}


def fetch_ms(daemon: Daemon, path: str) -> float:
    """Milliseconds of one GET (the whole body read)."""
    request = urllib.request.Request(daemon.api + path,
                                     headers={"Authorization": f"Bearer {daemon.token}"})
    start = time.perf_counter()
    with NO_PROXY.open(request, timeout=300) as response:
        response.read()
    return (time.perf_counter() - start) * 1000


def screenshot(home: Path, shots: Path, name: str) -> str:
    """Headless Chromium's screenshot of ``/kpu`` (after a one-time login link) saved
    as ``shots/name``; the file's path, or why there is none."""
    import shutil

    from netfixtures import run_json
    from test_status_page import chromium  # tests/test_status_page.py: kept off the net

    if shutil.which("chromium") is None:
        return "skipped: no chromium"
    shots.mkdir(parents=True, exist_ok=True)
    link = run_json("login", "--home", home)["url"] + "&next=/kpu"
    with tempfile.TemporaryDirectory(prefix="kpu-chromium-") as profile:
        done = chromium(Path(profile), f"--screenshot={shots / name}", link)
    return str(shots / name) if done.returncode == 0 else f"failed: {done.stderr[-300:]}"


def pages(home: Path, store: str | None, log: Path, runs: int, where: tuple[str, str],
          shots: Path | None = None) -> dict[str, Any]:
    """The daemon's figures (see the module docs); a screenshot of ``/kpu`` into
    ``shots`` if given."""
    daemon = Daemon(home, store, log)
    distrik, kampung = where
    paths = {"status": "/api/status", "kpu": "/kpu", "kpu_distrik": f"/kpu/{distrik}",
             "kpu_kampung": f"/kpu/{distrik}/{kampung}", "export_csv": "/kpu/export.csv",
             "api_progress": "/api/progress"}
    try:
        out: dict[str, Any] = {"first_kpu_ms": round(fetch_ms(daemon, "/kpu"), 1)}
        for _ in range(3):
            fetch_ms(daemon, "/api/status")  # warm up
        for name, path in paths.items():
            out[f"{name}_ms"] = round(statistics.median(
                fetch_ms(daemon, path) for _ in range(runs)), 2)
        if shots is not None:
            kind = "postgresql" if store else "sqlite"
            out["screenshot"] = screenshot(home, shots, f"kpu-page-{kind}.png")
    finally:
        daemon.stop()
    return out


def measure(home: Path, store: str | None, log: Path, args: argparse.Namespace
            ) -> dict[str, Any]:
    """One loaded store: library figures, daemon figures."""
    shots = args.screenshots or os.environ.get("MESHSYNC_SCREENSHOTS")
    return {"library": library(home, store, args.runs),
            "daemon": pages(home, store, log, args.runs, ("jila", "diloa"),
                            Path(shots) if shots else None)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both stores' figures: both are loaded first (without a schema, so no validator
    runs), then the home takes the coklit schema, as a CSV import gives it, so every
    process counts with the coklit classifier; then each is measured."""
    from meshsync.host.home import Home
    from meshsync.host.local import adopt_schema

    with tempfile.TemporaryDirectory(prefix="kpu-page-") as tmp:
        root = Path(tmp)
        rows = mimika_voters(args.voters)
        results: dict[str, Any] = {"voters": len(rows)}
        home = District(root).enrol("central", role="central", scope="", partition="mimika")
        loads = {"sqlite": bulk_write(home, rows, None)}
        server = nullcontext(None) if args.no_pg else \
            pg_server(args.dsn or os.environ.get("MESHSYNC_BENCH_PG_DSN"))
        with server as dsn:
            schema = None
            if dsn is not None:
                from central_ingest import fresh_schema  # bench/central_ingest.py

                schema = fresh_schema(dsn)
                loads["postgresql"] = bulk_write(home, rows, schema)
                analyze(schema)
            adopt_schema(Home.open(home), "coklit")
            results["sqlite"] = {"load_s": round(loads["sqlite"], 1),
                                 **measure(home, None, root / "sqlite.log", args)}
            if schema is None:
                results["postgresql"] = "skipped" if args.no_pg else \
                    "skipped: no server and no Debian binaries"
                return results
            results["postgresql"] = {"load_s": round(loads["postgresql"], 1),
                                     **measure(home, schema, root / "pg.log", args)}
    return results


def show(results: dict[str, Any]) -> None:
    """A short table per store."""
    print(f"{results['voters']:,} voters across Mimika's distrik")
    for store in ("sqlite", "postgresql"):
        r = results.get(store)
        if not isinstance(r, dict):
            if r:
                print(f"{store}: {r}")
            continue
        lib, d = r["library"], r["daemon"]
        print(f"{store}: load {r['load_s']} s; {lib['tps']} TPS; progress() "
              f"{lib['progress_ms']} ms vs recompute {lib['recompute_ms']} ms "
              f"(equal: {lib['equal']})")
        print("  " + "  ".join(f"{k[:-3]} {v} ms" for k, v in d.items() if k.endswith("_ms")))
        if "screenshot" in d:
            print(f"  screenshot: {d['screenshot']}")


def main() -> None:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voters", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=15, help="requests per median")
    parser.add_argument("--dsn", help="PostgreSQL server [default: a throwaway cluster]")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--screenshots", help="folder for a headless Chromium screenshot "
                        "of /kpu per store [default: $MESHSYNC_SCREENSHOTS, else none]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    print(json.dumps(results, indent=2)) if args.json else show(results)


if __name__ == "__main__":
    main()
