"""Run one benchmark on two checkouts in turn and compare their ratios, run by run.

A change that must not slow meshsync down (a refactor, a new layer) is judged by the
benchmark's own ratio (meshsync against the floor measured in the same run), taken on
the old and the new code alternately, A B A B ..., so that a machine whose speed drifts
during the call moves both sides alike. Each checkout needs its own virtual
environment with meshsync installed from that checkout (``CHECKOUT/.venv``)::

    git worktree add --detach ../old 3b1771e
    (cd ../old && python3 -m venv .venv && .venv/bin/pip install -e '.[test,bench]')
    python bench/vs_checkout.py --old ../old --runs 3 sync_full
    python bench/vs_checkout.py --old ../old --runs 3 bundle_import

It prints each pair's ratios and the median of new/old (1.00 = same speed; above 1 the
new code is slower relative to its floor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The ratio each benchmark is judged by, read from its --json output.
RATIOS = {
    "sync_full": lambda r: r["full"]["seconds"] / r["floor"]["seconds"],
    "bundle_import": lambda r: r["ratio"],
}


def run_once(checkout: Path, bench: str, extra: list[str]) -> dict[str, Any]:
    """Run ``bench/<bench>.py --json`` of ``checkout`` with its own venv; its JSON result.

    Raises ``subprocess.CalledProcessError`` if the benchmark fails.
    """
    python = checkout / ".venv" / "bin" / "python"
    out = subprocess.run([str(python), f"bench/{bench}.py", "--json", *extra], cwd=checkout,
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=sorted(RATIOS))
    parser.add_argument("--old", type=Path, required=True, help="the baseline checkout")
    parser.add_argument("--new", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="arguments passed to the benchmark")
    args = parser.parse_args()
    ratio = RATIOS[args.bench]
    pairs = []
    for i in range(args.runs):
        old = ratio(run_once(args.old, args.bench, args.extra))
        new = ratio(run_once(args.new, args.bench, args.extra))
        pairs.append((old, new))
        print(f"run {i + 1}: old {old:.3f}x floor, new {new:.3f}x floor, new/old {new / old:.3f}",
              flush=True)
    print(f"{args.bench}: median new/old {statistics.median(n / o for o, n in pairs):.3f} "
          f"over {len(pairs)} pairs")


if __name__ == "__main__":
    main()
