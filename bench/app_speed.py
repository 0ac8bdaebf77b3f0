"""Benchmark: the officer's app on a phone's share of a CPU, a district of 30,000 voters.

Run from the repository, inside the venv::

    python bench/app_speed.py                 # 30,000 voters
    python bench/app_speed.py --voters 5000 --json

A throwaway authority enrols a Pantarlih phone home for distrik Kuala Kencana and a
central home; the made-up voters of :func:`meshsync.coklit.sample.generate` (nobody
real: 500 a TPS, 60 TPS) are written into central's store through the library, one
signed change per TPS, and carried to the phone by a bundle, so the phone holds
central's baseline as a sync from the laptop would leave it (not timed). Then ``meshsync daemon``
runs on 127.0.0.1 with the coklit schema, **pinned to CPU 0** (started through
``taskset -c 0``, so every thread it makes inherits the affinity; a phone gives an app
about one core), and this script (pinned to CPU 1 when there is one) asks with the API token:

* **baseline**: ``GET /app/static/app.css`` (a bare file of the app, through the same
  guard), median of ``--runs``;
* **search**: ``GET /app/cari?q=…&frag=1`` (the results the page's script fetches as
  the officer types), for a part of a name, a whole name typed in NFD with another
  apostrophe, a NIK and a part of one; the first search after the start (it builds the
  in-memory index from the store) apart, with the daemon's RSS before and after it,
  then medians; goal 100 ms;
* **search after an edit**: a ``PUT`` of one voter, then the next search (the index
  reloads only what the new change touched);
* **voter card**: ``GET /app/pemilih/KEY?tps=TPS`` over ``--runs`` voters; goal 300 ms;
* **TPS list** ``GET /app`` and **a TPS** ``GET /app/tps/TPS``, medians;
* **without the index** (before it existed): ``meshsync.coklit.names.find`` (what
  ``meshsync coklit find`` does: a scan of every record in the store) on the same home
  in this process, pinned to CPU 0 too, after the daemon stopped.

Figures are printed as milliseconds and as ratios to the baseline of the same run.
Numbers depend on load: on a shared 2-core machine run it when the machine is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from api_paging import Daemon as PagingDaemon  # noqa: E402  (bench/api_paging.py)
from netfixtures import MESHSYNC, District  # noqa: E402  (after the path insert)

from meshsync.host.local import open_node  # noqa: E402

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DISTRIK = "Kuala Kencana"


def fill(home: Path, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Write ``count`` generated voters into ``home`` (central's), one change per TPS;
    returns ``(partition, key, fields)`` of each."""
    from meshsync.coklit.sample import generate

    people = generate(7, DISTRIK, voters_per_tps=500, tps_per_kampung=6)[:count]
    rows = [(p.partition, f"v-{i:06d}", p.fields) for i, p in enumerate(people)]
    by_tps: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for partition, key, fields in rows:
        by_tps.setdefault(partition, []).append((key, fields))
    with open_node(home) as node:
        for partition, records in by_tps.items():
            node.write(partition, [("put", "voters", k, f) for k, f in records])
    return rows


def _pin_to_cpu0() -> None:
    os.sched_setaffinity(0, {0})


class Daemon(PagingDaemon):
    """``meshsync daemon`` on 127.0.0.1 pinned to CPU 0 (``taskset`` sets the affinity
    before exec), ports from ``daemon.json``."""

    def __init__(self, home: Path, log: Path) -> None:
        super().__init__(home, None, log, role=None, prefix=("taskset", "-c", "0"))
        self.cpus = sorted(os.sched_getaffinity(self.proc.pid))

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[float, bytes]:
        """Seconds the request took, and the body of the answer (errors raise)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.api + path, data=body, method=method,
                                         headers=headers)
        start = time.perf_counter()
        with NO_PROXY.open(request, timeout=120) as response:
            raw = response.read()
        return time.perf_counter() - start, raw

    def ms(self, path: str) -> float:
        """Milliseconds of one GET of ``path``."""
        return self.request("GET", path)[0] * 1000


def _q(text: str) -> str:
    return "/app/cari?frag=1&q=" + urllib.parse.quote(text)


def queries(rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """The searches timed: label -> query."""
    name = str(rows[len(rows) // 2][2]["nama"])
    nik = str(rows[len(rows) // 3][2]["nik"])
    nfd = unicodedata.normalize("NFD", name.replace("'", "\u2019")).lower()
    return {"part of a name": name.split(maxsplit=1)[0][:4], "whole name, NFD": nfd,
            "NIK": nik, "part of a NIK": nik[6:12]}


def measure(daemon: Daemon, rows: list[tuple[str, str, dict[str, Any]]], runs: int
            ) -> dict[str, Any]:
    """The app's figures (see the module docs), milliseconds."""
    def median(paths: list[str]) -> float:
        return statistics.median(daemon.ms(p) for p in paths)

    out: dict[str, Any] = {"daemon_cpus": daemon.cpus}
    searches = queries(rows)
    out["rss_before_index_mb"] = round(daemon.rss_mb(), 1)
    out["first_search_ms"] = daemon.ms(_q(searches["part of a name"]))  # builds the index
    out["rss_after_index_mb"] = round(daemon.rss_mb(), 1)
    median(["/app/static/app.css"] * 3)  # warm up
    out["baseline_ms"] = median(["/app/static/app.css"] * runs)
    out["search_ms"] = {label: median([_q(q)] * runs) for label, q in searches.items()}
    out["found"] = {label: daemon.request("GET", _q(q))[1].count(b"<li>")
                    for label, q in searches.items()}
    if not all(out["found"].values()):
        raise SystemExit(f"a search found nothing: {out['found']}")
    partition, key, _fields = rows[5]
    body = json.dumps({"fields": {"alamat": "Jalan Bench 1"}, "partition": partition})
    daemon.request("PUT", f"/api/records/voters/{key}", body.encode())
    out["search_after_edit_ms"] = daemon.ms(_q(searches["whole name, NFD"]))
    time.sleep(2)  # the daemon's own recount after a write (status, custody) is done
    out["search_later_ms"] = daemon.ms(_q(searches["whole name, NFD"]))
    step = max(1, len(rows) // runs)
    cards = [f"/app/pemilih/{k}?tps={urllib.parse.quote(p)}" for p, k, _f in rows[::step]]
    out["card_ms"] = median(cards[:runs])
    if b'id="voter-name"' not in daemon.request("GET", cards[0])[1]:
        raise SystemExit("the voter card did not show the voter")
    out["tps_list_ms"] = median(["/app"] * runs)
    out["tps_ms"] = median([f"/app/tps/{partition}"] * runs)
    return out


def without_index(home: Path, rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, float]:
    """``coklit find`` (a scan of the store) for the same queries, ms, on CPU 0."""
    from meshsync.coklit.names import find

    _pin_to_cpu0()
    out = {}
    with open_node(home) as node:
        for label, query in queries(rows).items():
            start = time.perf_counter()
            find(node, query)
            out[label] = (time.perf_counter() - start) * 1000
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, measure, clean up; the figures."""
    with tempfile.TemporaryDirectory(prefix="meshsync-app-speed-") as tmp:
        district = District(Path(tmp) / "kpu")
        scope = "mimika/kuala-kencana"
        home = district.enrol("phone", "pantarlih", scope, f"{scope}/kuala-kencana/tps-001")
        central = district.enrol("central", "central", "", "mimika")
        rows = fill(central, args.voters)  # the baseline is central's, as on a real phone
        bundle = Path(tmp) / "baseline.bundle"
        # in clear: central has not met this phone, so it could seal to it only once it
        # holds the phone's certificate (made-up voters; the bench times the app, not this)
        for command in (["bundle", "export", "--clear", "--home", str(central), "-o",
                         str(bundle)],
                        ["bundle", "import", "--home", str(home), str(bundle)]):
            subprocess.run([*MESHSYNC, *command], check=True, stdout=subprocess.DEVNULL)
        config = (home / "config.toml").read_text()
        (home / "config.toml").write_text(config + 'schema = "coklit"\n')
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {1})  # the client off the daemon's core
        daemon = Daemon(home, Path(tmp) / "daemon.log")
        try:
            figures = measure(daemon, rows, args.runs)
        finally:
            daemon.stop()
        figures["without_index_ms"] = without_index(home, rows)
    figures["voters"] = len(rows)
    return figures


def show(f: dict[str, Any]) -> None:
    """Print the figures as a table."""
    base = f["baseline_ms"]

    def row(label: str, ms: float, goal: str = "") -> None:
        print(f"{label:<44} {ms:9.1f} ms {ms / base:8.1f}x  {goal}")

    print(f"{f['voters']:,} voters; daemon pinned to CPU {f['daemon_cpus']}; RSS "
          f"{f['rss_before_index_mb']} MiB before the index, {f['rss_after_index_mb']} after")
    row("baseline: GET /app/static/app.css", base)
    row("first search (builds the index)", f["first_search_ms"])
    for label, ms in f["search_ms"].items():
        row(f"search: {label} ({f['found'][label]} found)", ms, "goal 100 ms")
    row("search right after an edit", f["search_after_edit_ms"], "goal 100 ms")
    row("the same search 2 s later", f["search_later_ms"], "goal 100 ms")
    row("voter card", f["card_ms"], "goal 300 ms")
    row("TPS list (GET /app)", f["tps_list_ms"])
    row("one TPS (GET /app/tps/…)", f["tps_ms"])
    for label, ms in f["without_index_ms"].items():
        row(f"without the index (coklit find): {label}", ms)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        show(figures)


if __name__ == "__main__":
    main()
