"""Idle-connection flood against ``meshsync serve`` (issue 14, hostile neighbours).

Starts ``meshsync serve`` on 127.0.0.1 for a fresh gateway home, measures an honest
phone's ``meshsync sync`` (time), the server's open files (``/proc/PID/fd``) and memory
(``VmRSS``), then opens ``--connections`` idle TCP connections (never a byte sent) from
``--procs`` flooding processes, and measures again during the flood and ``--after``
seconds after it ended; finally counts the server's log lines and bytes. Traffic only
goes to 127.0.0.1.

To compare with older code, pass ``--tree DIR``: a checkout with its own ``.venv``
(e.g. ``git archive <commit> | tar -x -C DIR`` and ``pip install -e`` there); its
``meshsync`` runs every command.

    python bench/conn_flood.py                              # 20,000 connections
    python bench/conn_flood.py --connections 5000 --procs 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLOODER = r"""
import resource, socket, sys
port, count, sources, first = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held, failed = [], 0
for n in range(count):
    s = socket.socket()
    s.settimeout(3)
    try:
        if sources > 1:  # all of 127.0.0.0/8 is this machine's loopback
            s.bind((f"127.0.{n % sources // 250}.{n % sources % 250 + 2}", 0))
        s.connect(("127.0.0.1", port))
        if first:
            s.send(bytes.fromhex(first))  # a TLS record header, then silence
        held.append(s)
    except OSError:
        failed += 1
        s.close()
print(len(held), failed, flush=True)
sys.stdin.read()  # hold them until the bench closes our stdin
"""


class Bench:
    """One server and the CLI of one tree; every figure the report needs."""

    def __init__(self, tree: Path | None, work: Path) -> None:
        python = str(tree / ".venv" / "bin" / "python") if tree else sys.executable
        self.cli = [python, "-m", "meshsync.cli.main"]
        self.cwd = str(tree) if tree else None
        self.work = work
        self.log_path = work / "serve.log"
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0

    def run(self, *args: object) -> str:
        """Run ``meshsync ARGS``; its stdout (fails loudly on a non-zero exit)."""
        proc = subprocess.run([*self.cli, *map(str, args)], capture_output=True, text=True,
                              cwd=self.cwd, check=False, timeout=300)
        if proc.returncode:
            raise SystemExit(f"meshsync {args}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def enrol(self, name: str, role: str, scope: str) -> Path:
        """A home called ``name`` issued ``role`` for ``scope`` by the bench authority."""
        home, kpu = self.work / name, self.work / "kpu"
        if not kpu.exists():
            self.run("authority", "init", "--home", kpu, "--name", "KPU Bench")
        self.run("init", "--home", home, "--partition", f"{scope}/tps-001"
                 if role == "pantarlih" else scope)
        self.run("authority", "issue", "--home", kpu, home / "device.csr", "--role", role,
                 "--scope", scope, "-o", self.work / f"{name}.crt")
        self.run("enroll", "--home", home, self.work / f"{name}.crt")
        return home

    def serve(self, home: Path) -> None:
        """Start ``meshsync serve`` on 127.0.0.1:0; wait until it listens."""
        with self.log_path.open("wb") as log:
            self.server = subprocess.Popen(
                [*self.cli, "serve", "--home", str(home), "--listen", "127.0.0.1:0"],
                cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if " on 127.0.0.1:" in text:
                self.port = int(text.split(" on 127.0.0.1:", 1)[1].split()[0])
                return
            time.sleep(0.05)
        raise SystemExit(f"serve did not start: {self.log_path.read_text()}")

    def state(self) -> dict[str, float]:
        """The server's open files and RSS (MB)."""
        assert self.server is not None
        pid = self.server.pid
        rss = next(int(line.split()[1]) / 1024 for line in
                   Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return {"open_files": len(os.listdir(f"/proc/{pid}/fd")), "rss_mb": round(rss, 1)}

    def sync_s(self, phone: Path, key: str) -> float:
        """Seconds of one honest sync carrying one new record."""
        self.run("put", "--home", phone, "voters", key, "nama=Yohana")
        start = time.monotonic()
        self.run("sync", "--home", phone, f"127.0.0.1:{self.port}")
        return round(time.monotonic() - start, 2)


class Peak:
    """Polls the server's state every 0.1 s in a thread; ``stop()`` gives the maxima."""

    def __init__(self, bench: Bench) -> None:
        self.bench, self.peak = bench, bench.state()
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.running:
            now = self.bench.state()
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
            time.sleep(0.1)

    def stop(self) -> dict[str, float]:
        """Stop polling; the peak open files and RSS."""
        self.running = False
        self.thread.join()
        return self.peak


def flood(port: int, args: argparse.Namespace) -> tuple[list[subprocess.Popen[str]], int]:
    """Open the flood from ``args.procs`` processes; (the processes, connections held)."""
    share, procs = -(-args.connections // args.procs), args.procs
    first = "16030100" if args.send_byte else ""
    children = [subprocess.Popen([sys.executable, "-c", FLOODER, str(port), str(share),
                                  str(args.sources), first],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(procs)]
    held = 0
    for child in children:
        assert child.stdout is not None
        held += int(child.stdout.readline().split()[0])
    return children, held


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole run; every figure in one dict."""
    bench = Bench(args.tree, work)
    laptop = bench.enrol("laptop", "gateway", "mimika/jila")
    if args.log_interval:
        with (laptop / "config.toml").open("a") as config:
            config.write(f"refusal_log_interval_s = {args.log_interval}\n")
    phone = bench.enrol("phone", "pantarlih", "mimika/jila/diloa")
    bench.serve(laptop)
    out: dict[str, Any] = {"connections": args.connections, "sources": args.sources,
                           "send_byte": args.send_byte}
    try:
        bench.sync_s(phone, "warm")
        out["before"] = {**bench.state(), "sync_s": bench.sync_s(phone, "b")}
        peak = Peak(bench)
        start = time.monotonic()
        children, held = flood(bench.port, args)
        out["flood_open_s"] = round(time.monotonic() - start, 1)
        out["flood_held_by_client"] = held
        sync_s = bench.sync_s(phone, "d")
        out["during"] = {**peak.stop(), "sync_s": sync_s}
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
        time.sleep(args.after)
        out["after"] = {**bench.state(), "sync_s": bench.sync_s(phone, "a")}
    finally:
        assert bench.server is not None
        bench.server.terminate()
        bench.server.wait(30)
    text = bench.log_path.read_text(errors="replace")
    out["log_lines"] = len(text.splitlines())
    out["log_refused_lines"] = sum("refused" in line for line in text.splitlines())
    out["log_bytes"] = len(text.encode())
    out["log_count_lines"] = [line.split("WARNING meshsync.net: ", 1)[-1]
                              for line in text.splitlines() if " more at " in line]
    return out


def main() -> None:
    """Parse the options, run, print a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=4, help="flooding processes")
    parser.add_argument("--after", type=float, default=20.0,
                        help="seconds after the flood before measuring again")
    parser.add_argument("--sources", type=int, default=1,
                        help="source addresses of the flood (127.0.0.2 onwards)")
    parser.add_argument("--send-byte", action="store_true",
                        help="each connection sends 4 bytes of a TLS header, then stalls")
    parser.add_argument("--log-interval", type=float,
                        help="set refusal_log_interval_s (a tree that has the key)")
    parser.add_argument("--tree", type=Path, help="run this checkout's meshsync instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conn-flood-") as tmp:
        out = measure(args, Path(tmp))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['connections']:,} idle connections from {out['sources']} address(es)"
          f"{' (4 bytes sent)' if out['send_byte'] else ''}: {out['flood_held_by_client']:,} "
          f"established, opened in {out['flood_open_s']} s")
    print(f"{'':8} {'open files':>10} {'RSS MB':>8} {'sync s':>7}   (during: peaks)")
    for phase in ("before", "during", "after"):
        row = out[phase]
        print(f"{phase:8} {row['open_files']:>10} {row['rss_mb']:>8} {row['sync_s']:>7}")
    print(f"log: {out['log_lines']:,} lines ({out['log_refused_lines']:,} refusals), "
          f"{out['log_bytes']:,} bytes")
    for line in out["log_count_lines"]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
