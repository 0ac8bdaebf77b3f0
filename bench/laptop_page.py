"""Benchmark: the PPK laptop's page (``GET /``) at 300,000 voters, beside two baselines.

Run from the repository, inside the venv (the ``central`` extra for PostgreSQL)::

    python bench/laptop_page.py                      # 300,000 voters, SQLite and PostgreSQL
    python bench/laptop_page.py --voters 50000 --no-pg --json

A throwaway authority enrols a district laptop (role gateway, scope ``mimika/jila``);
the made-up voters of bench/voters.py (nobody real) are written into its SQLite file
and, when a server is at hand (``--dsn``, ``MESHSYNC_BENCH_PG_DSN``, else a throwaway
cluster from Debian's binaries), into a fresh PostgreSQL schema, 500 per signed change
(as bench/api_paging.py; not timed). Then ``meshsync daemon`` on 127.0.0.1
(``--store DSN`` for PostgreSQL) and, each the median of ``--runs`` requests:

* **page**: ``GET /`` (the whole laptop page, HTML); goal <= 200 ms;
* **status** (baseline, same run): ``GET /api/status``, no store access;
* **progress** (what the page includes): ``GET /api/progress``, the progress figures
  per TPS and village (:mod:`meshsync.replica.progress`), computed by reading every
  record: the page's floor until progress is kept as aggregates on write.

Then, in this process on the same store (the daemon stopped), the page's parts one by
one, median of ``--runs``: ``progress`` (:func:`meshsync.replica.progress.progress`),
``facts`` (custody towards KPU, names, conflicts: ``LocalNode.laptop_facts``) and
``render`` (the templates, given those): what the page costs beside progress.

Numbers depend on load: on a shared 2-core machine run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from api_paging import NO_PROXY, Daemon, analyze, fill, pg_server  # bench/api_paging.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from netfixtures import DISTRICT, District  # noqa: E402  (after the path insert)


class Laptop(Daemon):
    """``meshsync daemon`` (the home's role: gateway) on 127.0.0.1."""

    def __init__(self, home: Path, store: str | None, log: Path) -> None:
        super().__init__(home, store, log, role=None, start_s=300)

    def fetch_ms(self, path: str) -> tuple[float, bytes]:
        """Milliseconds ``GET path`` took, and the body."""
        request = urllib.request.Request(self.api + path,
                                         headers={"Authorization": f"Bearer {self.token}"})
        start = time.perf_counter()
        with NO_PROXY.open(request, timeout=300) as response:
            body = response.read()
        return (time.perf_counter() - start) * 1000, body


def median_ms(laptop: Laptop, path: str, runs: int) -> float:
    """Median milliseconds of ``runs`` GETs of ``path``."""
    return round(statistics.median(laptop.fetch_ms(path)[0] for _ in range(runs)), 1)


def parts_ms(home: Path, store: str | None, runs: int) -> dict[str, float]:
    """The page's parts in this process (see the module docs), median milliseconds."""
    import trio
    from meshsync.daemon.laptop_page import render_laptop
    from meshsync.daemon.service import LocalNode

    from meshsync.host.home import Home
    from meshsync.host.local import open_node
    from meshsync.replica.progress import progress

    def timed(func: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        out = func()
        return (time.perf_counter() - start) * 1000, out

    with open_node(home, store=store) as node:
        local = LocalNode(Home.open(home), node, trio.CapacityLimiter(1))
        local.refresh()
        status = {"device_id": node.key.device_id, "role": "gateway", "mesh": "bench",
                  "uplink": None, "clock": None, "progress": []}
        rows: dict[str, list[float]] = {"progress": [], "facts": [], "render": []}
        for _ in range(runs):
            ms, figures = timed(lambda: progress(node.store, "voters"))
            rows["progress"].append(ms)
            ms, facts = timed(lambda: local.laptop_facts(set()))
            rows["facts"].append(ms)
            ms, _page = timed(partial(render_laptop, status, [], figures, facts, "id"))
            rows["render"].append(ms)
    return {f"{k}_ms": round(statistics.median(v), 1) for k, v in rows.items()}


def measure(home: Path, store: str | None, log: Path, runs: int) -> dict[str, Any]:
    """One store's figures (see the module docs)."""
    laptop = Laptop(home, store, log)
    try:
        _, page = laptop.fetch_ms("/")  # warm up (templates compiled, caches filled)
        if b"dicoklit" not in page:
            raise SystemExit("the page has no progress rows: is this the laptop page?")
        status = median_ms(laptop, "/api/status", runs)
        progress = median_ms(laptop, "/api/progress", runs)
        page_ms = median_ms(laptop, "/", runs)
    finally:
        laptop.stop()
    return {"page_ms": page_ms, "status_ms": status, "progress_ms": progress,
            "page_over_status": round(page_ms / status, 1) if status else None,
            "page_bytes": len(page), "in_process": parts_ms(home, store, runs)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both stores' figures."""
    results: dict[str, Any] = {"voters": args.voters, "goal_ms": 200}
    with tempfile.TemporaryDirectory(prefix="laptop-page-") as tmp:
        root = Path(tmp)
        home = District(root).enrol("laptop", role="gateway", scope=DISTRICT,
                                    partition=DISTRICT)
        fill(home, args.voters, None)
        results["sqlite"] = measure(home, None, root / "sqlite.log", args.runs)
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
            results["postgresql"] = measure(home, schema, root / "pg.log", args.runs)
    return results


def show(results: dict[str, Any]) -> None:
    """A short table."""
    print(f"{results['voters']:,} voters; goal: page <= {results['goal_ms']} ms")
    print(f"{'store':<11}{'page ms':>9}{'status ms':>11}{'progress ms':>13}"
          f"{'page/status':>13}   in-process: progress, facts, render ms")
    for store in ("sqlite", "postgresql"):
        r = results.get(store)
        if not isinstance(r, dict):
            if r:
                print(f"{store:<11}{r}")
            continue
        p = r["in_process"]
        print(f"{store:<11}{r['page_ms']:>9}{r['status_ms']:>11}{r['progress_ms']:>13}"
              f"{r['page_over_status']:>13}   {p['progress_ms']}, {p['facts_ms']}, "
              f"{p['render_ms']}")


def main() -> None:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voters", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=5, help="requests per median")
    parser.add_argument("--dsn", help="PostgreSQL server [default: a throwaway cluster]")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    print(json.dumps(results, indent=2)) if args.json else show(results)


if __name__ == "__main__":
    main()
