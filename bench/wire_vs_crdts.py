"""Bytes on the wire and full-state apply: meshsync (compressed and uncompressed frames,
side by side in one run) against loro and pycrdt, for the same made-up voters.

Usage::

    python bench/wire_vs_crdts.py [--records 100000] [--edits 1000]
                                  [--ops-per-change 500] [--json] [--keep DIR]

Needs the ``bench`` extra (``pip install -e '.[bench]'``: loro, pycrdt).

**P1, full state.** A central home holds ``--records`` voters (bench/voters.py), written
as changes of ``--ops-per-change`` puts, and is copied. ``meshsync serve`` runs on each
copy in turn; an empty, enrolled gateway home (also copied) runs ``meshsync sync``
with it through a counting relay (real processes, mutual TLS on 127.0.0.1): one pair
with compressed frames (the default), one with ``compress = false`` in the gateway's
config.toml (every frame uncompressed). Two pairs, so neither gateway is sent the
receipt the other issued. Reported per
sync: session bytes (both ways, the frames as sent), TLS bytes (what crossed the
socket), the session's seconds (TLS, verify, durable SQLite), and the receiving
process's peak RSS (its own ``VmHWM``, bench/procstat.py: ``ru_maxrss`` would carry the
bench's own size into the child). The same-run floor (decode + verify + SQLite insert,
bench/sync_full.py) is the time baseline. loro: the sender exports its updates from an
empty version vector; a fresh process imports them into an empty ``LoroDoc`` (in
memory). pycrdt: bench/sync_full.py's sender and receiver (``apply_update`` into an
empty doc, in memory). Each receiver is its own subprocess.

**P2, 1,000 single-field edits, each its own change** (``--edits``; bench/voters.py
``edits``): on meshsync, each is ``node.put`` (its own signed change); on loro, each its
own ``commit``; on pycrdt, its own transaction. Bytes: meshsync's session bytes of the
incremental sync (both ways, all frames) and its TLS bytes; loro's update since the
receiver's version vector, plus that vector; pycrdt's update since the receiver's state
vector, plus that vector. **Effective ops** are counted the same way for all three:
edits whose value differs from the value held (the generator sets some fields to what
they already are); loro's own op count (``len_ops``) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_full import (
    Server,
    floor,
    load_baseline,
    make_homes,
    measure_pycrdt,
    run_measured,
    stored,
    sync_once,
)
from voters import edits, voters

from meshsync.host.local import open_node

ME = [sys.executable, str(Path(__file__).resolve())]

# -- loro ----------------------------------------------------------------------------------


def loro_sender(count: int, n_edits: int, out: Path) -> None:
    """Build the sender doc of ``count`` voters; write its full update, then the update
    for ``n_edits`` edits (each its own commit) since the state after the full one."""
    from loro import ExportMode, LoroDoc, LoroMap

    doc = LoroDoc()
    root = doc.get_map("voters")
    records: dict[str, Any] = {}
    for _partition, key, fields in voters(count):
        record = records[key] = root.insert_container(key, LoroMap())
        for name, value in fields.items():
            record.insert(name, value)
    doc.commit()
    empty = LoroDoc().oplog_vv
    started = time.perf_counter()
    full = doc.export(ExportMode.Updates(empty))
    encode_s = time.perf_counter() - started
    snapshot = len(doc.export(ExportMode.Snapshot()))
    held = doc.oplog_vv  # what the receiver holds after importing ``full``
    ops_before = doc.len_ops
    for _partition, key, change in edits(n_edits, count):
        for name, value in change.items():
            records[key].insert(name, value)
        doc.commit()
    incr = doc.export(ExportMode.Updates(held))
    out.with_suffix(".full").write_bytes(full)
    out.with_suffix(".incr").write_bytes(incr)
    out.with_suffix(".json").write_text(json.dumps({
        "encode_s": encode_s, "snapshot_bytes": snapshot,
        "vv_bytes": len(held.encode()), "edit_ops": doc.len_ops - ops_before,
        "changes": doc.len_changes}))


def loro_receiver(update_file: Path) -> None:
    """Import a full update into an empty doc; print seconds and records."""
    from loro import LoroDoc

    update = update_file.read_bytes()
    doc = LoroDoc()
    started = time.perf_counter()
    doc.import_(update)
    seconds = time.perf_counter() - started
    print(json.dumps({"apply_s": seconds, "records": len(doc.get_map("voters"))}))


def measure_loro(count: int, n_edits: int, work: Path) -> dict[str, Any]:
    base = work / "loro"
    subprocess.run([*ME, "_loro_sender", str(count), str(n_edits), str(base)], check=True)
    recv = run_measured([*ME, "_loro_receiver", str(base.with_suffix(".full"))],
                        work / "loro-recv.out")
    if recv["rc"] != 0:
        raise SystemExit(f"loro receiver failed: {recv['stderr']}")
    applied = json.loads((work / "loro-recv.out").read_text())
    sender = json.loads(base.with_suffix(".json").read_text())
    return {"full_bytes": base.with_suffix(".full").stat().st_size,
            "incr_bytes": base.with_suffix(".incr").stat().st_size, **sender,
            "apply_s": applied["apply_s"], "records": applied["records"],
            "rss_mb": recv["rss_mb"]}


# -- meshsync ----------------------------------------------------------------------------------


def effective_edits(count: int, n_edits: int) -> int:
    """Edits whose value differs from the voter's value before it (the same for every
    system: the same generator)."""
    wanted = {key: change for _p, key, change in edits(n_edits, count)}
    differ = 0
    for _partition, key, fields in voters(count):
        change = wanted.get(key)
        if change is not None:
            differ += sum(fields.get(name) != value for name, value in change.items())
    return differ


def meshsync_sync(central: Path, laptop: Path, tag: str, work: Path) -> dict[str, Any]:
    """``meshsync sync`` of ``laptop`` with ``meshsync serve`` on ``central``, through a
    counting relay; its summary."""
    server = Server(central, work / f"serve-{tag}.log")
    try:
        before = _cpu_s(server.proc.pid)
        run = sync_once(laptop, server, work / f"{tag}.out", relay=True)
        run["server_cpu_s"] = _cpu_s(server.proc.pid) - before
        return run
    finally:
        server.stop()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of running process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _keep(run: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": run["seconds"], "wall_s": run["wall_s"], "rss_mb": run["rss_mb"],
            "cpu_s": run["cpu_s"], "server_cpu_s": run["server_cpu_s"],
            "session_bytes": run["bytes_sent"] + run["bytes_received"],
            "bytes_received": run["bytes_received"], "tls_bytes": run["tls_bytes"],
            "changes_received": run["changes_received"], "converged": run["converged"]}


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    central, laptop = make_homes(work)
    load_s = load_baseline(central, args.records, args.ops_per_change)
    floor_took = floor(stored(central), work / "floor.sqlite")
    # Two independent pairs (the same central, copied), so that neither laptop is sent
    # the receipt the other issued: one pair with compressed frames, one without.
    pairs = {"compressed": (central, laptop),
             "uncompressed": (work / "central-plain", work / "laptop-plain")}
    for name in (0, 1):
        shutil.copytree((central, laptop)[name], pairs["uncompressed"][name])
    with (pairs["uncompressed"][1] / "config.toml").open("a", encoding="utf-8") as config:
        config.write("\ncompress = false\n")
    full = {name: meshsync_sync(c, lap, f"full-{name}", work)
            for name, (c, lap) in pairs.items()}
    for c, _laptop in pairs.values():  # the same edits on both copies (same device key)
        with open_node(c) as node:
            for partition, key, fields in edits(args.edits, args.records):
                node.put("voters", key, fields, partition)
    incr = {name: meshsync_sync(c, lap, f"incr-{name}", work)
            for name, (c, lap) in pairs.items()}
    return {
        "records": args.records, "edits": args.edits, "ops_per_change": args.ops_per_change,
        "effective_edits": effective_edits(args.records, args.edits),
        "baseline_load_s": round(load_s, 2), "load_avg": os.getloadavg()[0],
        "cpus": os.cpu_count(), "floor_s": round(floor_took["seconds"], 3),
        "meshsync_full": {k: _keep(v) for k, v in full.items()},
        "meshsync_incr": {k: _keep(v) for k, v in incr.items()},
        "loro": measure_loro(args.records, args.edits, work),
        "pycrdt": measure_pycrdt(args.records, args.edits, work),
    }


# -- report ------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    full, incr, lo, y = r["meshsync_full"], r["meshsync_incr"], r["loro"], r["pycrdt"]
    eff = r["effective_edits"]
    rows: list[tuple[str, ...]] = [("P1 full state", "bytes", "apply s", "vs floor",
                                    "peak RSS MB", "note")]
    for name, run in full.items():
        rows.append((f"meshsync {name}", f"{run['session_bytes']:,}", f"{run['seconds']:.2f}",
                     f"{run['seconds'] / r['floor_s']:.2f}x", f"{run['rss_mb']:.0f}",
                     f"TLS {run['tls_bytes']:,} B; CPU receiver {run['cpu_s']:.2f} s, "
                     f"sender {run['server_cpu_s']:.2f} s; process wall {run['wall_s']:.2f} s"))
    rows.append(("floor (decode+verify+insert)", "", f"{r['floor_s']:.2f}", "1.00x", "",
                 "same run"))
    rows.append(("loro (updates, import)", f"{lo['full_bytes']:,}", f"{lo['apply_s']:.2f}",
                 f"{lo['apply_s'] / r['floor_s']:.2f}x", f"{lo['rss_mb']:.0f}",
                 f"snapshot {lo['snapshot_bytes']:,} B; memory only"))
    rows.append(("pycrdt (apply_update)", f"{y['full_bytes']:,}", f"{y['apply_s']:.2f}",
                 f"{y['apply_s'] / r['floor_s']:.2f}x", f"{y['rss_mb']:.0f}", "memory only"))
    rows.append(("P2 edits", "bytes", "B/eff. op", "", "", ""))
    for name, run in incr.items():
        rows.append((f"meshsync {name}", f"{run['session_bytes']:,}",
                     f"{run['session_bytes'] / eff:.1f}", "", "",
                     f"TLS {run['tls_bytes']:,} B; {run['changes_received']} changes"))
    lo_total = lo["incr_bytes"] + lo["vv_bytes"]
    y_total = y["incr_bytes"] + y["state_vector_bytes"]
    rows.append(("loro update + vv", f"{lo_total:,}", f"{lo_total / eff:.1f}", "", "",
                 f"update {lo['incr_bytes']:,} + vv {lo['vv_bytes']}; loro counts "
                 f"{lo['edit_ops']} ops"))
    rows.append(("pycrdt update + sv", f"{y_total:,}", f"{y_total / eff:.1f}", "", "",
                 f"update {y['incr_bytes']:,} + state vector {y['state_vector_bytes']}"))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    comp, unc = full["compressed"], full["uncompressed"]
    ic, iu = incr["compressed"], incr["uncompressed"]
    lines += [
        f"{r['records']:,} voters in changes of {r['ops_per_change']} ops; {r['edits']} "
        f"edits of which {eff} change a value (effective ops, counted the same for all); "
        f"load average {r['load_avg']:.2f} on {r['cpus']} CPUs",
        f"compressed / uncompressed: P1 bytes {comp['session_bytes'] / unc['session_bytes']:.2f}"
        f", P1 time {comp['seconds'] / unc['seconds']:.2f}, P2 bytes "
        f"{ic['session_bytes'] / iu['session_bytes']:.2f}",
        f"meshsync compressed / loro: P1 bytes {comp['session_bytes'] / lo['full_bytes']:.2f}, "
        f"P1 time {comp['seconds'] / lo['apply_s']:.2f}, RSS "
        f"{comp['rss_mb'] / lo['rss_mb']:.2f}, P2 bytes {ic['session_bytes'] / lo_total:.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "_loro_sender":
        loro_sender(int(argv[1]), int(argv[2]), Path(argv[3]))
        return
    if argv and argv[0] == "_loro_receiver":
        loro_receiver(Path(argv[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--ops-per-change", type=int, default=500)
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="Print JSON, not a table.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the homes here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = bench(args, work)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main(sys.argv[1:])
