"""Full and incremental sync of made-up voter records over loopback mutual TLS.

Usage::

    python bench/sync_full.py [--records 100000] [--ops-per-change 500] [--edits 1000]
                              [--json] [--profile] [--keep DIR]

1. **Full sync.** A central home holds ``--records`` voters (bench/voters.py), written
   as changes of ``--ops-per-change`` puts, one feed per TPS. ``meshsync serve`` runs
   on it; an empty, enrolled gateway home runs ``meshsync sync`` (real processes,
   127.0.0.1). Reported: the session's seconds and bytes, the process wall time and
   the receiving process's peak RSS (its own ``VmHWM``, polled every 20 ms).
2. **Floor**, in this process on the same stored changes: msgpack decode + Ed25519
   verify + SQLite insert (WAL, ``synchronous=FULL`` like meshsync, one transaction
   per change) of the changes and one row per record. Full sync is given as a ratio
   to it (same run, same machine load).
3. **pycrdt (Yjs)** beside it: the same records as nested maps, synced by state
   vector; the receiver (a separate process: ``apply_update`` into an empty doc) is
   timed and its peak RSS read the same way. pycrdt keeps nothing on disk and
   verifies no signature.
4. **Incremental.** ``--edits`` single-field edits on the central home (each its own
   signed change), then another sync: bytes (session, both ways; TLS bytes through a
   counting relay) beside pycrdt's update for the same edits plus its state vector
   (the goal's reference). Shown beside it, not judged: the sum of the edits' own
   updates (one per transaction), which is what a live Yjs provider sends.

``--profile`` replays the full sync in this process with a sans-I/O session pair
(no TLS, no threads) under cProfile and prints the top costs.

Goals (docs/architecture.md §11): full sync within 1.5x the floor and under 200 MB RSS;
incremental bytes within 1.6x pycrdt's.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import wait_with_peak
from voters import DISTRICT, edits, voters

from meshsync.host.local import open_node
from meshsync.model.change import SIGN_CONTEXT

MESHSYNC = [sys.executable, "-m", "meshsync.cli.main"]
GOAL_FLOOR_RATIO, GOAL_RSS_MB, GOAL_INCR_RATIO = 1.5, 200, 1.6

# -- homes ---------------------------------------------------------------------------


def cli(*args: object) -> str:
    """Run ``meshsync ARGS``; raise with its stderr if it fails."""
    proc = subprocess.run([*MESHSYNC, *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"meshsync {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def make_homes(root: Path) -> tuple[Path, Path]:
    """An authority, an enrolled central home and an enrolled, empty gateway home."""
    kpu, central, laptop = root / "kpu", root / "central", root / "laptop"
    cli("authority", "init", "--home", kpu, "--name", "KPU Uji")
    for home, role, scope in ((central, "central", ""), (laptop, "gateway", DISTRICT)):
        cli("init", "--home", home, "--partition", DISTRICT)
        cli("authority", "issue", "--home", kpu, home / "device.csr", "--role", role,
            "--scope", scope, "-o", root / f"{home.name}.crt")
        cli("enroll", "--home", home, root / f"{home.name}.crt")
    return central, laptop


def load_baseline(home: Path, count: int, ops_per_change: int) -> float:
    """Write ``count`` voters into ``home`` as batched changes; seconds taken."""
    started = time.perf_counter()
    batch: list[tuple[str, str, str, Any]] = []
    partition = None
    with open_node(home) as node:
        for part, key, fields in voters(count):
            if batch and (part != partition or len(batch) >= ops_per_change):
                node.write(partition or part, batch)
                batch = []
            partition = part
            batch.append(("put", "voters", key, fields))
        if batch:
            node.write(partition or DISTRICT, batch)
    return time.perf_counter() - started


def stored(home: Path) -> list[tuple[bytes, bytes, bytes]]:
    """``(author, body, sig)`` of every change ``home`` holds."""
    with open_node(home) as node:
        return [(f.author, c.body, c.sig) for f in node.store.feeds()
                for c in node.store.iter_changes(f.feed)]


# -- the floor -----------------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE changes (id INTEGER PRIMARY KEY, feed INTEGER NOT NULL, seq INTEGER NOT NULL,
                      body BLOB NOT NULL, sig BLOB NOT NULL, UNIQUE (feed, seq));
CREATE TABLE records (id INTEGER PRIMARY KEY, collection TEXT NOT NULL, key TEXT NOT NULL,
                      partition TEXT NOT NULL, state BLOB NOT NULL,
                      UNIQUE (collection, key, partition));
"""


def floor(changes: list[tuple[bytes, bytes, bytes]], path: Path) -> dict[str, float]:
    """Least work to hold the same data durably and verified: decode every body,
    verify every signature, insert changes and records (one transaction per change)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(FLOOR_SCHEMA)
    keys: dict[bytes, Ed25519PublicKey] = {}
    feeds: dict[tuple[bytes, str], int] = {}
    took = {"decode": 0.0, "verify": 0.0, "insert": 0.0}
    cpu = time.process_time()
    for author, body, sig in changes:
        t0 = time.perf_counter()
        raw = msgpack.unpackb(body, raw=False)
        t1 = time.perf_counter()
        key = keys.get(author) or keys.setdefault(author,
                                                  Ed25519PublicKey.from_public_bytes(author))
        key.verify(sig, SIGN_CONTEXT + body)
        t2 = time.perf_counter()
        partition, seq, ops = raw[2], raw[3], raw[6]
        feed = feeds.setdefault((author, partition), len(feeds))
        db.execute("BEGIN")
        db.execute("INSERT INTO changes (feed, seq, body, sig) VALUES (?,?,?,?)",
                   (feed, seq, body, sig))
        db.executemany("INSERT INTO records (collection, key, partition, state) "
                       "VALUES (?,?,?,?)",
                       [(op[1], op[2], partition, msgpack.packb(op[3])) for op in ops])
        db.execute("COMMIT")
        t3 = time.perf_counter()
        took["decode"] += t1 - t0
        took["verify"] += t2 - t1
        took["insert"] += t3 - t2
    db.close()
    took["seconds"] = sum(took.values())
    took["cpu_s"] = time.process_time() - cpu
    return took


# -- processes -----------------------------------------------------------------------------


def run_measured(cmd: list[str], out: Path) -> dict[str, Any]:
    """Run ``cmd`` with stdout to ``out``; wall seconds, exit code and peak RSS (MB)."""
    started = time.perf_counter()
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
        _, usage, peak_mb = wait_with_peak(proc)
    return {"wall_s": time.perf_counter() - started, "rc": proc.returncode,
            "rss_mb": peak_mb,  # the child's own VmHWM (bench/procstat.py)
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "stderr": out.with_suffix(".err").read_text("utf-8", "replace")}


class Server:
    """``meshsync serve`` on 127.0.0.1 (port from its "serving" line)."""

    def __init__(self, home: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen([*MESHSYNC, "serve", "--home", str(home), "--listen",
                                          "127.0.0.1:0"], stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "serving " not in (text := log.read_text("utf-8", "replace")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"meshsync serve did not start:\n{text}")
            time.sleep(0.05)
        self.port = int(text.split("serving ", 1)[1].split()[2].rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Relay:
    """Counts the TCP bytes (TLS records included) of one connection each way."""

    def __init__(self, port: int) -> None:
        self.target, self.counts = port, {"up": 0, "down": 0}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        pumps = [threading.Thread(target=self._pump, args=(a, b, k))
                 for a, b, k in ((client, upstream, "up"), (upstream, client, "down"))]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        self.listener.close()

    def _pump(self, src: socket.socket, dst: socket.socket, key: str) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                self.counts[key] += len(data)
                dst.sendall(data)
        for sock in (src, dst):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def sync_once(client: Path, server: Server, out: Path, relay: bool = False) -> dict[str, Any]:
    """``meshsync sync --json`` from ``client``; its summary plus wall time and RSS."""
    counter = Relay(server.port) if relay else None
    port = counter.port if counter else server.port
    run = run_measured([*MESHSYNC, "sync", "--home", str(client), f"127.0.0.1:{port}",
                        "--json"], out)
    if run["rc"] != 0:
        raise SystemExit(f"sync failed ({run['rc']}): {run['stderr']}")
    summary = json.loads(out.read_text("utf-8"))
    if counter:
        counter.thread.join(30)
        summary["tls_bytes"] = counter.counts["up"] + counter.counts["down"]
    return {**summary, **run}


# -- pycrdt ---------------------------------------------------------------------------------


def pycrdt_sender(count: int, n_edits: int, out: Path) -> None:
    """Build the sender doc; write the full update, then the update for the edits."""
    from pycrdt import Doc, Map

    doc = Doc()
    root = doc.get("voters", type=Map)
    with doc.transaction():
        for _partition, key, fields in voters(count):
            root[key] = Map(fields)
    empty = Doc().get_state()
    started = time.perf_counter()
    full = doc.get_update(empty)
    encode_s = time.perf_counter() - started
    state = doc.get_state()  # what the receiver holds after applying ``full``
    live: list[int] = []  # each edit's own update, as a live Yjs provider sends them
    subscription = doc.observe(lambda event: live.append(len(event.update)))
    for _partition, key, change in edits(n_edits, count):
        with doc.transaction():
            for name, value in change.items():
                root[key][name] = value
    doc.unobserve(subscription)
    out.with_suffix(".full").write_bytes(full)
    out.with_suffix(".incr").write_bytes(doc.get_update(state))
    out.with_suffix(".json").write_text(json.dumps({"encode_s": encode_s,
                                                    "state_vector_bytes": len(state),
                                                    "live_updates": len(live),
                                                    "live_bytes": sum(live)}))


def pycrdt_receiver(update_file: Path) -> None:
    """Apply a full update to an empty doc; print seconds (its peak RSS is polled by the bench)."""
    from pycrdt import Doc, Map

    update = update_file.read_bytes()
    doc = Doc()
    started = time.perf_counter()
    doc.apply_update(update)
    seconds = time.perf_counter() - started
    records = len(doc.get("voters", type=Map))
    print(json.dumps({"apply_s": seconds, "records": records}))


def measure_pycrdt(count: int, n_edits: int, work: Path) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve())]
    base = work / "pycrdt"
    subprocess.run([*me, "_pycrdt_sender", str(count), str(n_edits), str(base)], check=True)
    recv = run_measured([*me, "_pycrdt_receiver", str(base.with_suffix(".full"))],
                        work / "pycrdt-recv.out")
    if recv["rc"] != 0:
        raise SystemExit(f"pycrdt receiver failed: {recv['stderr']}")
    applied = json.loads((work / "pycrdt-recv.out").read_text())
    sender = json.loads(base.with_suffix(".json").read_text())
    return {"full_bytes": base.with_suffix(".full").stat().st_size,
            "incr_bytes": base.with_suffix(".incr").stat().st_size,
            "state_vector_bytes": sender["state_vector_bytes"],
            "live_updates": sender["live_updates"], "live_bytes": sender["live_bytes"],
            "encode_s": sender["encode_s"], "apply_s": applied["apply_s"],
            "records": applied["records"], "rss_mb": recv["rss_mb"]}


# -- profile -----------------------------------------------------------------------------------


def profile_full(central: Path, empty: Path, top: int = 22) -> str:
    """Replay the full sync in-process on a sans-I/O session pair, under cProfile."""
    from meshsync.host.home import Home
    from meshsync.net.setup import session_config
    from meshsync.protocol.peer import Peer

    def now() -> int:
        return time.time_ns() // 1_000_000

    with open_node(central) as a_node, open_node(empty) as b_node:
        a = Peer(a_node, session_config(Home.open(central)), now_ms=now())
        b = Peer(b_node, session_config(Home.open(empty)), now_ms=now())
        profiler = cProfile.Profile()
        profiler.enable()
        while not (a.finished and b.finished):
            for src, dst in ((a, b), (b, a)):
                data = src.data_to_send()
                if data:
                    dst.receive_data(data, now())
        profiler.disable()
        if b.summary.error or a.summary.error:
            raise SystemExit(f"profiled session failed: {a.summary.error or b.summary.error}")
    text = _stats_text(profiler, "tottime", top)
    return text + "\n" + _stats_text(profiler, "cumulative", top)


def _stats_text(profiler: cProfile.Profile, key: str, top: int) -> str:
    import io

    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
    return buf.getvalue()


# -- main ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    central, laptop = make_homes(work)
    empty_copy = work / "laptop-empty"
    shutil.copytree(laptop, empty_copy)
    load_s = load_baseline(central, args.records, args.ops_per_change)
    changes = stored(central)
    floor_took = floor(changes, work / "floor.sqlite")
    startup = run_measured([*MESHSYNC, "--help"], work / "startup.out")
    server = Server(central, work / "serve.log")
    try:
        full = sync_once(laptop, server, work / "full.out")
        full["startup_cpu_s"] = startup["cpu_s"]
    finally:
        server.stop()
    profile = profile_full(central, empty_copy) if args.profile else None
    with open_node(central) as node:
        for partition, key, fields in edits(args.edits, args.records):
            node.put("voters", key, fields, partition)
    server = Server(central, work / "serve2.log")
    try:
        incr = sync_once(laptop, server, work / "incr.out", relay=True)
    finally:
        server.stop()
    ycrdt = measure_pycrdt(args.records, args.edits, work)
    result = report(args, load_s, len(changes), floor_took, full, incr, ycrdt)
    if profile:
        result["profile"] = profile
    return result


def report(args: argparse.Namespace, load_s: float, n_changes: int, floor_took: dict[str, float],
           full: dict[str, Any], incr: dict[str, Any], ycrdt: dict[str, Any]) -> dict[str, Any]:
    incr_bytes = incr["bytes_sent"] + incr["bytes_received"]
    y_incr = ycrdt["incr_bytes"] + ycrdt["state_vector_bytes"]
    return {
        "records": args.records, "ops_per_change": args.ops_per_change, "changes": n_changes,
        "edits": args.edits, "baseline_load_s": round(load_s, 2),
        "load_avg": os.getloadavg()[0], "cpus": os.cpu_count(),
        "floor": {k: round(v, 3) for k, v in floor_took.items()},
        "full": {k: full[k] for k in ("seconds", "wall_s", "cpu_s", "startup_cpu_s", "rss_mb",
                                      "bytes_received",
                                      "bytes_sent", "frames_received", "changes_received",
                                      "converged")},
        "full_vs_floor": round(full["seconds"] / floor_took["seconds"], 2),
        "full_wall_vs_floor": round(full["wall_s"] / floor_took["seconds"], 2),
        "full_cpu_vs_floor_cpu": round(full["cpu_s"] / floor_took["cpu_s"], 2),
        "incremental": {k: incr[k] for k in ("seconds", "bytes_received", "bytes_sent",
                                             "tls_bytes", "changes_received", "converged")},
        "pycrdt": ycrdt,
        "incr_vs_pycrdt": round(incr_bytes / y_incr, 2),
        "goals": {
            f"full sync <= {GOAL_FLOOR_RATIO}x floor":
                full["seconds"] / floor_took["seconds"] <= GOAL_FLOOR_RATIO,
            f"receiver RSS < {GOAL_RSS_MB} MB": full["rss_mb"] < GOAL_RSS_MB,
            f"incremental bytes <= {GOAL_INCR_RATIO}x pycrdt":
                incr_bytes / y_incr <= GOAL_INCR_RATIO,
        },
    }


def table(r: dict[str, Any]) -> str:
    f, full, inc, y = r["floor"], r["full"], r["incremental"], r["pycrdt"]
    incr_total = inc["bytes_sent"] + inc["bytes_received"]
    rows = [
        ("", "seconds", "bytes", "peak RSS MB", "note"),
        ("floor (decode+verify+insert)", f"{f['seconds']:.2f}", "", "",
         f"decode {f['decode']:.2f} / verify {f['verify']:.2f} / insert {f['insert']:.2f}; "
         f"CPU {f['cpu_s']:.2f} s"),
        ("meshsync full sync", f"{full['seconds']:.2f}", f"{full['bytes_received']:,}",
         f"{full['rss_mb']:.0f}", f"{r['full_vs_floor']}x floor; process wall "
         f"{full['wall_s']:.2f} s ({r['full_wall_vs_floor']}x); receiver CPU "
         f"{full['cpu_s']:.2f} s ({r['full_cpu_vs_floor_cpu']}x floor CPU; interpreter "
         f"start {full['startup_cpu_s']:.2f} s of it)"),
        ("pycrdt full (apply)", f"{y['apply_s']:.2f}", f"{y['full_bytes']:,}",
         f"{y['rss_mb']:.0f}", f"encode {y['encode_s']:.2f} s; no disk, no signatures"),
        ("meshsync incremental", f"{inc['seconds']:.2f}", f"{incr_total:,}", "",
         f"{inc['changes_received']} changes; TLS bytes {inc['tls_bytes']:,}; "
         f"{r['incr_vs_pycrdt']}x pycrdt"),
        ("pycrdt incremental", "", f"{y['incr_bytes'] + y['state_vector_bytes']:,}", "",
         f"update {y['incr_bytes']:,} + state vector {y['state_vector_bytes']:,} (the goal's "
         f"reference); one update per edit, as a live provider sends them: "
         f"{y['live_bytes']:,} in {y['live_updates']}"),
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
             for row in rows]
    lines.append(f"{r['records']:,} records in {r['changes']} changes of "
                 f"{r['ops_per_change']} ops; {r['edits']} edits; load average "
                 f"{r['load_avg']:.2f} on {r['cpus']} CPUs")
    lines += [f"goal {'met' if ok else 'MISSED'}: {name}" for name, ok in r["goals"].items()]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    workers: dict[str, Callable[..., None]] = {
        "_pycrdt_sender": lambda n, e, out: pycrdt_sender(int(n), int(e), Path(out)),
        "_pycrdt_receiver": lambda f: pycrdt_receiver(Path(f)),
    }
    if argv and argv[0] in workers:
        workers[argv[0]](*argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--ops-per-change", type=int, default=500)
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="Print JSON, not a table.")
    parser.add_argument("--profile", action="store_true",
                        help="Also profile the full sync in-process (sans-I/O pair).")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the homes here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = bench(args, work)
    profile = result.pop("profile", None)
    print(json.dumps(result, indent=2) if args.json else table(result))
    if profile:
        print(profile, file=sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
