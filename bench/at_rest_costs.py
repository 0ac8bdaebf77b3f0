"""Benchmark: what an encrypted home costs a full sync (P1) and a bundle import (P4).

Usage::

    python bench/at_rest_costs.py [--records 100000] [--repeats 3] [--json]

Needs the ``encrypted`` extra (``pip install -e '.[encrypted]'``: sqlcipher3).

* **P1, full sync.** A central home holds ``--records`` made-up voters
  (bench/voters.py, changes of 500 puts; bench/sync_full.py's set-up); ``meshsync
  serve`` runs on it. Two empty gateway homes enrolled the same way, one clear and one
  made with ``meshsync init --encrypt`` (SQLCipher; docs/architecture.md §6), each
  receive everything with ``meshsync sync`` (real processes, mutual TLS on 127.0.0.1),
  each repeat into a fresh copy of the empty home, the two interleaved and their order
  alternated, so machine load falls on both alike. Reported: the session's seconds
  (``sync --json``) and the process's wall time (with the start-up, and for the
  encrypted home the one scrypt of its passphrase).
* **P4, bundle import.** bench/bundle_import.py's bundle of the same size (changes of
  100 puts) imported in a fresh process into an empty clear home and into an empty
  encrypted one (made with the data key wrapped under a passphrase), interleaved the
  same way; the import itself is timed inside the child (open and scrypt excluded),
  the child's wall time beside it.

Beside the seconds, each row's CPU time (user + system of the receiving process, from
its start: the scrypt of the passphrase included) is less at the mercy of other load
on a shared machine than wall time.

Ratios are encrypted / clear, medians of the same run (goal: within 1.2, issue 17).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle_import
import sync_full
from voters import DISTRICT

from meshsync.host import atrest
from meshsync.host.home import Home

PASSPHRASE = "bench passphrase 2029"
GOAL = 1.2


def enrolled_encrypted(root: Path, name: str) -> Path:
    """An empty gateway home made with ``init --encrypt``, enrolled by ``root/kpu``."""
    home = root / name
    sync_full.cli("init", "--home", home, "--partition", DISTRICT, "--encrypt")
    sync_full.cli("authority", "issue", "--home", root / "kpu", home / "device.csr",
                  "--role", "gateway", "--scope", DISTRICT, "-o", root / f"{name}.crt")
    sync_full.cli("enroll", "--home", home, root / f"{name}.crt")
    return home


def full_sync(count: int, repeats: int, work: Path) -> dict[str, Any]:
    """P1: interleaved full syncs into fresh copies of a clear and an encrypted home."""
    central, clear = sync_full.make_homes(work)
    encrypted = enrolled_encrypted(work, "laptop-enc")
    sync_full.load_baseline(central, count, 500)
    runs: dict[str, list[dict[str, Any]]] = {"clear": [], "encrypted": []}
    server = sync_full.Server(central, work / "serve.log")
    try:
        for i in range(repeats):
            order = ("clear", "encrypted") if i % 2 == 0 else ("encrypted", "clear")
            for kind in order:
                fresh = work / f"{kind}-{i}"
                shutil.copytree(clear if kind == "clear" else encrypted, fresh)
                done = sync_full.sync_once(fresh, server, work / f"{kind}-{i}.out")
                if done["changes_received"] == 0:
                    raise SystemExit(f"{kind} sync received nothing: {done}")
                runs[kind].append({k: done[k] for k in ("seconds", "wall_s", "cpu_s",
                                                        "rss_mb", "changes_received")})
                shutil.rmtree(fresh)
    finally:
        server.stop()
    return summarize(runs, "seconds", "wall_s", "cpu_s")


def bundle_imports(count: int, repeats: int, work: Path) -> dict[str, Any]:
    """P4: interleaved imports of one bundle into fresh clear and encrypted homes."""
    bundle = work / "district.msb"
    signed = bundle_import.write_bundle(bundle, bundle_import.voters(count), 100)
    runs: dict[str, list[dict[str, Any]]] = {"clear": [], "encrypted": []}
    for i in range(repeats):
        order = ("clear", "encrypted") if i % 2 == 0 else ("encrypted", "clear")
        for kind in order:
            name = f"import-{kind}-{i}"
            home = Home.create(work / name)
            if kind == "encrypted":
                atrest.create(home.path, passphrase=PASSPHRASE)
            started, cpu = time.perf_counter(), children_cpu()
            done = bundle_import.run_import(bundle, work, False, name)
            wall, cpu = time.perf_counter() - started, children_cpu() - cpu
            if done["applied"] != len(signed):
                raise SystemExit(f"{kind} import incomplete: {done}")
            runs[kind].append({"seconds": done["seconds"], "wall_s": wall, "cpu_s": cpu,
                               "rss_mb": done["peak_rss_kb"] / 1024})
            shutil.rmtree(home.path)
    return summarize(runs, "seconds", "wall_s", "cpu_s")


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarize(runs: dict[str, list[dict[str, Any]]], *keys: str) -> dict[str, Any]:
    """Medians per kind and the encrypted / clear ratios of each key."""
    out: dict[str, Any] = {"runs": runs}
    for key in keys:
        clear = statistics.median(r[key] for r in runs["clear"])
        enc = statistics.median(r[key] for r in runs["encrypted"])
        out[key] = {"clear": round(clear, 3), "encrypted": round(enc, 3),
                    "ratio": round(enc / clear, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("p1", "p4"), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ[atrest.PASSPHRASE_ENV] = PASSPHRASE  # for the encrypted homes' processes
    result: dict[str, Any] = {"records": args.records, "repeats": args.repeats,
                              "load_avg_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        if args.only in (None, "p1"):
            (Path(tmp) / "p1").mkdir()
            result["P1 full sync"] = full_sync(args.records, args.repeats, Path(tmp) / "p1")
        if args.only in (None, "p4"):
            (Path(tmp) / "p4").mkdir()
            result["P4 bundle import"] = bundle_imports(args.records, args.repeats,
                                                        Path(tmp) / "p4")
    result["load_avg_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.records:,} records, {args.repeats} interleaved repeats, medians; "
          f"load {result['load_avg_before']:.1f} -> {result['load_avg_after']:.1f}")
    for row in ("P1 full sync", "P4 bundle import"):
        if row in result:
            for key in ("seconds", "wall_s", "cpu_s"):
                r = result[row][key]
                print(f"{row:<17}{key:<8} clear {r['clear']:>7.2f}  encrypted "
                      f"{r['encrypted']:>7.2f}  ratio {r['ratio']:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
