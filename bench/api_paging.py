"""Benchmark: paging through 100,000 voters with the local API, beside /api/status.

Run from the repository, inside the venv (the ``central`` extra for PostgreSQL)::

    python bench/api_paging.py                      # 100,000 voters, SQLite and PostgreSQL
    python bench/api_paging.py --voters 20000 --json
    python bench/api_paging.py --no-pg              # SQLite only

A throwaway authority enrols a central home (scope: everything); the made-up voters of
bench/voters.py (nobody real) are written into it through the library, 500 per signed
change, into its SQLite file and, when a server is at hand (``--dsn``,
``MESHSYNC_BENCH_PG_DSN``, else a throwaway cluster from Debian's binaries as in
bench/central_ingest.py), into a fresh PostgreSQL schema, then ``ANALYZE``d (as
autovacuum would be soon after an import). None of that is timed. Then
``meshsync daemon --role central`` on 127.0.0.1 (``--store DSN`` for PostgreSQL), and:

* **first page**: ``GET /api/records/voters`` (500 records, the default ``limit``),
  median of ``--runs`` requests; goal <= 50 ms. Baseline in the same run: ``GET
  /api/status`` (no store access), median of as many requests.
* **walk**: every page, following ``next``, ``--limit`` records each; the seconds it
  takes and the daemon's RSS (``VmRSS``) after each page: before, the peak and after.
  Baseline: the RSS after the status requests. Flat means the peak stays near the
  baseline whatever the number of voters.

Numbers depend on load: on a shared 2-core machine run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voters import VOTERS_PER_TPS, voters  # bench/voters.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from netfixtures import DISTRICT, MESHSYNC, District  # noqa: E402  (after the path insert)

from meshsync.host.local import open_node  # noqa: E402

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fill(home: Path, count: int, store: str | None) -> None:
    """Write ``count`` made-up voters into ``home`` (or the PostgreSQL ``store``), one
    change per TPS."""
    by_tps: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for partition, key, fields in voters(count):
        by_tps.setdefault(partition, []).append((key, fields))
    with open_node(home, store=store) as node:
        for partition, records in by_tps.items():
            for i in range(0, len(records), VOTERS_PER_TPS):
                node.write(partition, [("put", "voters", k, f)
                                       for k, f in records[i:i + VOTERS_PER_TPS]])


def analyze(dsn: str) -> None:
    """``ANALYZE`` the records table, as autovacuum does within a minute of a large
    import: with no statistics yet the planner takes 100,000 rows for a few hundred and
    sorts them all for the first page instead of reading the primary key in order."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(b"ANALYZE meshsync_records")


class Daemon:
    """``meshsync daemon`` on 127.0.0.1 (``--role central`` unless ``role`` says another,
    or None: the home's own), ports from ``daemon.json``; ``prefix`` goes before the
    command (``["taskset", "-c", "0"]`` pins it to one core); it must start within
    ``start_s`` seconds. The other benches' daemons are this one."""

    def __init__(self, home: Path, store: str | None, log: Path, *,
                 role: str | None = "central", prefix: tuple[str, ...] = (),
                 start_s: float = 120) -> None:
        extra = (["--store", store] if store else []) + (["--role", role] if role else [])
        (home / "daemon.json").unlink(missing_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, *MESHSYNC, "daemon", "--home", str(home), *extra,
                 "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--discovery",
                 "static"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + start_s
        while True:
            try:
                runtime = json.loads((home / "daemon.json").read_text())
                if runtime.get("pid") == self.proc.pid:
                    break
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the daemon did not start: see {log}")
            time.sleep(0.05)
        self.api = f"http://{runtime['api']}"
        self.token = (home / "api.token").read_text().strip()

    def get(self, path: str) -> tuple[float, Any]:
        """Seconds the request took, and the parsed answer."""
        request = urllib.request.Request(self.api + path,
                                         headers={"Authorization": f"Bearer {self.token}"})
        start = time.perf_counter()
        with NO_PROXY.open(request, timeout=120) as response:
            raw = response.read()
        return time.perf_counter() - start, json.loads(raw)

    def rss_mb(self) -> float:
        """The daemon's resident memory now, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def median_ms(daemon: Daemon, path: str, runs: int) -> float:
    """Median milliseconds of ``runs`` GETs of ``path``."""
    return statistics.median(daemon.get(path)[0] for _ in range(runs)) * 1000


def walk(daemon: Daemon, limit: int) -> dict[str, Any]:
    """Every page of the voters; seconds, records, pages and RSS samples."""
    before, peak, count, pages, cursor = daemon.rss_mb(), 0.0, 0, 0, None
    start = time.perf_counter()
    while True:
        query = f"?limit={limit}" + (f"&after={cursor}" if cursor else "")
        _, page = daemon.get("/api/records/voters" + query)
        count, pages = count + len(page["records"]), pages + 1
        peak = max(peak, daemon.rss_mb())
        cursor = page["next"]
        if cursor is None:
            break
    return {"seconds": round(time.perf_counter() - start, 2), "records": count,
            "pages": pages, "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(daemon.rss_mb(), 1)}


def measure(home: Path, store: str | None, log: Path, args: argparse.Namespace
            ) -> dict[str, Any]:
    """One store's figures (see the module docs)."""
    daemon = Daemon(home, store, log)
    try:
        median_ms(daemon, "/api/status", 3)  # warm up
        status_ms = median_ms(daemon, "/api/status", args.runs)
        status_rss = daemon.rss_mb()
        first_ms = median_ms(daemon, "/api/records/voters", args.runs)
        walked = walk(daemon, args.limit)
    finally:
        daemon.stop()
    if walked["records"] != args.voters:
        raise SystemExit(f"walked {walked['records']} records, not {args.voters}")
    return {"status_ms": round(status_ms, 2), "first_page_ms": round(first_ms, 2),
            "status_rss_mb": round(status_rss, 1), "walk": walked}


@contextmanager
def pg_server(dsn: str | None) -> Iterator[str | None]:
    """A PostgreSQL DSN (``dsn``, else a throwaway cluster), or None if there is none."""
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg import TempCluster, find_bindir  # tests/pg.py

    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    cluster = TempCluster(bindir)
    try:
        cluster.start()
        yield cluster.dsn
    finally:
        cluster.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both stores' figures."""
    results: dict[str, Any] = {"voters": args.voters, "limit": args.limit}
    with tempfile.TemporaryDirectory(prefix="api-paging-") as tmp:
        root = Path(tmp)
        home = District(root).enrol("central", role="central", scope="",
                                    partition=DISTRICT)
        fill(home, args.voters, None)
        results["sqlite"] = measure(home, None, root / "sqlite.log", args)
        if args.no_pg:
            return results
        with pg_server(args.dsn or os.environ.get("MESHSYNC_BENCH_PG_DSN")) as dsn:
            if dsn is None:
                results["postgresql"] = "skipped: no server and no Debian binaries"
                return results
            from central_ingest import fresh_schema  # bench/central_ingest.py

            schema = fresh_schema(dsn)
            fill(home, args.voters, schema)
            analyze(schema)
            results["postgresql"] = measure(home, schema, root / "pg.log", args)
    return results


def show(results: dict[str, Any]) -> None:
    """A short table."""
    print(f"{results['voters']:,} voters, walk {results['limit']} per page")
    print(f"{'store':<11}{'status ms':>10}{'1st page ms':>12}{'RSS status':>11}"
          f"{'RSS before':>11}{'RSS peak':>9}{'RSS after':>10}{'walk s':>8}")
    for store in ("sqlite", "postgresql"):
        r = results.get(store)
        if not isinstance(r, dict):
            if r:
                print(f"{store:<11}{r}")
            continue
        w = r["walk"]
        print(f"{store:<11}{r['status_ms']:>10}{r['first_page_ms']:>12}"
              f"{r['status_rss_mb']:>11}{w['rss_before_mb']:>11}{w['rss_peak_mb']:>9}"
              f"{w['rss_after_mb']:>10}{w['seconds']:>8}")


def main() -> None:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voters", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=500, help="records per page walked")
    parser.add_argument("--runs", type=int, default=20, help="requests per median")
    parser.add_argument("--dsn", help="PostgreSQL server [default: a throwaway cluster]")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    print(json.dumps(results, indent=2)) if args.json else show(results)


if __name__ == "__main__":
    main()
