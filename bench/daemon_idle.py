"""What an idle daemon costs, and how soon a new peer gets its first sync.

Usage::

    python bench/daemon_idle.py [--seconds 60] [--runs 5] [--changes 200] [--json]
                                [--keep DIR]

Real ``meshsync daemon`` processes on 127.0.0.1, static discovery only (no mDNS,
beacon or gateway probe: nothing leaves the machine), enrolled by one throwaway
authority.

1. **Idle CPU.** A district laptop with the two phones as static peers (the phones
   only answer), ``anti_entropy_s`` at its default (60 s), everything already synced.
   Over ``--seconds``, user + system CPU of each daemon from ``/proc/PID/stat`` (all
   threads), as % of one core. Beside it, in the same run and window,
   ``python -c "import time; time.sleep(SECONDS)"`` (its whole life, start-up
   included, from ``wait4``): the floor of any idle Python process. Sessions during
   the window are counted from ``/api/status`` read before and after (nothing polls
   the daemons in between).
2. **New peer.** ``--runs`` times: a freshly enrolled phone starts with the laptop and
   the first phone as static peers while the laptop holds ``--changes`` changes.
   Reported (median, min, max): spawn -> API up (``daemon.json`` written), API up ->
   first completed sync (the ``last_sync_ms`` the new daemon records), API up -> the
   laptop lists it with a finished session (``/api/peers``, polled every 10 ms), and
   spawn -> holding every change.

Numbers depend on load: run on an idle machine (other processes on a 2-core box
easily double times and CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from netfixtures import (  # noqa: E402  (after the path insert)
    DISTRICT,
    LOOPBACK,
    MESHSYNC,
    VILLAGE,
    District,
    count_changes,
    device_id,
    wait_until,
    write_many_changes,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Daemon:
    """One ``meshsync daemon`` (static discovery, ports picked by the kernel)."""

    def __init__(self, home: Path, static_peers: list[str], logs: Path) -> None:
        self.home = home
        config = logs / f"{home.name}.toml"
        values = {"mesh": "bench", "listen": f"{LOOPBACK}:0", "api": f"{LOOPBACK}:0",
                  "discovery": ["static"], "static_peers": static_peers}
        config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
        self.spawned = time.time()
        with (logs / f"{home.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*MESHSYNC, "daemon", "--home", str(home), "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.runtime: dict[str, Any] = wait_until(self._runtime, 60, f"daemon {home.name}",
                                                  interval=0.005)
        self.ready = (home / "daemon.json").stat().st_mtime
        self.token = (home / "api.token").read_text().strip()
        self.device_id = device_id(home)

    def _runtime(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon {self.home.name} exited {self.proc.returncode}")
        try:
            data = json.loads((self.home / "daemon.json").read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("pid") == self.proc.pid else None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the sync listener."""
        return str(self.runtime["listen"])

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://{self.runtime['api']}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with NO_PROXY.open(request, timeout=10) as response:
            return json.loads(response.read())

    def peer(self, dev: str) -> dict[str, Any] | None:
        return next((p for p in self.get("/api/peers") if p["device_id"] == dev), None)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (man 5 proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def synced(a: Daemon, b: Daemon) -> bool:
    row = a.peer(b.device_id)
    return row is not None and row["sessions_ok"] >= 1


def idle_cpu(district: District, logs: Path, seconds: float) -> dict[str, Any]:
    a_home, b_home = district.home("phone-a"), district.home("phone-b")
    phone_a = Daemon(a_home, [], logs)
    phone_b = Daemon(b_home, [], logs)
    laptop = Daemon(district.home("laptop"), [phone_a.address, phone_b.address], logs)
    daemons = {"laptop": laptop, "phone-a": phone_a, "phone-b": phone_b}
    try:
        wait_until(lambda: synced(laptop, phone_a) and synced(laptop, phone_b), 60,
                   "the first syncs")
        time.sleep(2)  # let the first sessions' follow-ups (refresh, gossip) finish
        sessions = {n: d.get("/api/status")["sessions"] for n, d in daemons.items()}
        started = time.monotonic()
        cpu = {n: d.cpu_seconds() for n, d in daemons.items()}
        sleeper = subprocess.Popen([sys.executable, "-c",
                                    f"import time; time.sleep({seconds})"])
        _, status, usage = os.wait4(sleeper.pid, 0)
        sleeper.returncode = os.waitstatus_to_exitcode(status)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        wall = time.monotonic() - started
        cpu = {n: d.cpu_seconds() - cpu[n] for n, d in daemons.items()}
        sessions = {n: d.get("/api/status")["sessions"] - sessions[n]
                    for n, d in daemons.items()}
    finally:
        for daemon in daemons.values():
            daemon.stop()
    baseline = usage.ru_utime + usage.ru_stime
    return {
        "seconds": round(wall, 1),
        "daemons": {n: {"cpu_s": round(c, 3), "percent_of_core": round(100 * c / wall, 3),
                        "sessions": sessions[n]} for n, c in cpu.items()},
        "baseline_sleep": {"cpu_s": round(baseline, 3),
                           "percent_of_core": round(100 * baseline / seconds, 3)},
    }


def new_peer(district: District, logs: Path, runs: int, changes: int) -> dict[str, Any]:
    laptop_home = district.home("laptop")
    write_many_changes(laptop_home, changes)
    total = count_changes(laptop_home)
    laptop = Daemon(laptop_home, [], logs)
    phone_a = Daemon(district.home("phone-a"), [laptop.address], logs)
    samples: dict[str, list[float]] = {"spawn_to_api": [], "api_to_first_sync": [],
                                       "api_to_listed_by_laptop": [],
                                       "spawn_to_all_changes": []}
    try:
        wait_until(lambda: synced(phone_a, laptop), 60, "phone-a's first sync")
        for run in range(runs):
            home = district.enrol(f"phone-n{run}", scope=VILLAGE,
                                  partition=f"{VILLAGE}/tps-1{run:02d}")
            fresh = Daemon(home, [laptop.address, phone_a.address], logs)
            listed = wait_until(lambda f=fresh: _listed(laptop, f), 60, "the laptop to list it",
                                interval=0.01)
            first = wait_until(lambda f=fresh: _first_sync_ms(f), 60, "the first sync",
                               interval=0.01)
            wait_until(lambda h=home: count_changes(h) >= total, 60, "every change",
                       interval=0.01)
            held = time.time()
            samples["spawn_to_api"].append(fresh.ready - fresh.spawned)
            samples["api_to_first_sync"].append(first / 1000 - fresh.ready)
            samples["api_to_listed_by_laptop"].append(listed - fresh.ready)
            samples["spawn_to_all_changes"].append(held - fresh.spawned)
            fresh.stop()
    finally:
        laptop.stop()
        phone_a.stop()
    return {"runs": runs, "changes": total,
            **{k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                   "max_s": round(max(v), 3)} for k, v in samples.items()}}


def _listed(laptop: Daemon, fresh: Daemon) -> float | None:
    row = laptop.peer(fresh.device_id)
    return time.time() if row is not None and row["sessions_ok"] >= 1 else None


def _first_sync_ms(fresh: Daemon) -> int | None:
    times = [p["last_sync_ms"] for p in fresh.get("/api/peers") if p["last_sync_ms"]]
    return min(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="keep homes and logs here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="meshsync-idle-")) if args.keep is None else args.keep
    try:
        district = District(root / "district")
        district.enrol("laptop", "gateway", DISTRICT)
        for name, tps in (("phone-a", "tps-001"), ("phone-b", "tps-002")):
            district.enrol(name, scope=VILLAGE, partition=f"{VILLAGE}/{tps}")
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        report = {"idle": idle_cpu(district, logs, args.seconds),
                  "new_peer": new_peer(district, logs, args.runs, args.changes),
                  "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    idle = report["idle"]
    print(f"idle CPU over {idle['seconds']} s (anti_entropy_s 60; % of one core):")
    for name, row in idle["daemons"].items():
        print(f"  {name:<16} {row['percent_of_core']:7.3f} %   ({row['cpu_s']} s CPU, "
              f"{row['sessions']} sessions)")
    base = idle["baseline_sleep"]
    print(f"  {'python sleep':<16} {base['percent_of_core']:7.3f} %   ({base['cpu_s']} s CPU, "
          "whole process)")
    peer = report["new_peer"]
    print(f"new peer, {peer['runs']} runs, laptop holding {peer['changes']} changes "
          "(median [min-max] s):")
    for key in ("spawn_to_api", "api_to_first_sync", "api_to_listed_by_laptop",
                "spawn_to_all_changes"):
        row = peer[key]
        print(f"  {key:<24} {row['median_s']:.3f} [{row['min_s']:.3f}-{row['max_s']:.3f}]")
    print(f"({report['cpus']} CPUs, 1-minute load {report['load_avg_1m']:.2f} at the end)")


if __name__ == "__main__":
    main()
