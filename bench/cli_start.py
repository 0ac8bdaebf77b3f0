"""How long the ``meshsync`` command takes to start, against a bare Python start.

Usage::

    python bench/cli_start.py [--runs 20] [--json]

Times whole processes, from spawn to exit, in the same run and interleaved (one of
each per round, so a machine that slows down slows all three alike):

* ``python -c pass``: the floor, the same interpreter and venv as the command;
* ``meshsync --help``: the command's start-up, no sub-command module imported;
* ``meshsync get``: a small home (one record) opened and one record shown.

Prints min and median wall time of each and the median's ratio to the floor. The goal
is both ratios at most 3 (docs/architecture.md §9, "Start-up": the command imports only
what the command line needs, and a plain ``get`` runs without click; see
``python -X importtime -m meshsync.cli.start get ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Goal: each command's median within this factor of ``python -c pass``.
GOAL_RATIO = 3.0


def meshsync_script() -> str:
    """The installed ``meshsync`` console script beside this interpreter (as users run
    it), else the one on PATH. Raises SystemExit if neither exists."""
    beside = Path(sys.executable).with_name("meshsync")
    found = str(beside) if beside.exists() else shutil.which("meshsync")
    if found is None:
        raise SystemExit("meshsync is not installed (pip install -e .)")
    return found


def make_home(root: Path, meshsync: str) -> Path:
    """A home under ``root`` holding one record, ``voters/v-1``; returns its path."""
    home = root / "phone"
    for args in (["init", "--partition", "mimika/jila/diloa/tps-003"],
                 ["put", "voters", "v-1", "nama=Yosina", "status=MS"]):
        subprocess.run([meshsync, *args, "--home", str(home)], check=True,
                       capture_output=True)
    return home


def wall_seconds(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``argv`` to its exit (output discarded). Raises
    :class:`subprocess.CalledProcessError` if it exits non-zero."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Each command of ``commands`` (label -> argv) ``runs`` times, interleaved, after
    one unmeasured warm-up round (which also writes the bytecode cache, even where
    ``PYTHONDONTWRITEBYTECODE`` is set); label -> wall seconds of each run."""
    # As installed: bytecode is cached (the warm-up round writes it for an editable
    # install), else every run would compile meshsync's sources again.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MESHSYNC_HOME", "PYTHONDONTWRITEBYTECODE")}
    times: dict[str, list[float]] = {label: [] for label in commands}
    for round_ in range(runs + 1):
        for label, argv in commands.items():
            seconds = wall_seconds(argv, env)
            if round_:
                times[label].append(seconds)
    return times


def report(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """label -> ``{"min_ms", "median_ms", "ratio"}``; the ratio is the median over the
    first label's (the floor's) median."""
    floor = statistics.median(next(iter(times.values())))
    return {label: {"min_ms": round(min(runs) * 1000, 1),
                    "median_ms": round(statistics.median(runs) * 1000, 1),
                    "ratio": round(statistics.median(runs) / floor, 2)}
            for label, runs in times.items()}


def main() -> None:
    """Parse the arguments, time the commands, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs of each")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    meshsync = meshsync_script()
    with tempfile.TemporaryDirectory(prefix="cli-start-") as tmp:
        home = make_home(Path(tmp), meshsync)
        figures = report(measure({
            "python -c pass": [sys.executable, "-c", "pass"],
            "meshsync --help": [meshsync, "--help"],
            "meshsync get": [meshsync, "get", "--home", str(home), "voters", "v-1"],
        }, args.runs))
    if args.json:
        print(json.dumps({"runs": args.runs, "goal_ratio": GOAL_RATIO, "figures": figures},
                         indent=2))
        return
    print(f"{'command':<18}{'min ms':>9}{'median ms':>11}{'ratio':>8}   ({args.runs} runs)")
    for label, row in figures.items():
        goal = "" if label == "python -c pass" else (
            "  ok" if row["ratio"] <= GOAL_RATIO else f"  > {GOAL_RATIO:g}x goal")
        print(f"{label:<18}{row['min_ms']:>9}{row['median_ms']:>11}{row['ratio']:>8}{goal}")


if __name__ == "__main__":
    main()
