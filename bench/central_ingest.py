"""Benchmark: central ingests a gateway's changes into PostgreSQL, beside plain COPY.

Run from the repository, inside the venv (needs the ``central`` extra)::

    python bench/central_ingest.py                       # 100,000 changes, a table
    python bench/central_ingest.py --changes 20000 --json
    python bench/central_ingest.py --profile             # plus the ingest's top costs
    python bench/central_ingest.py --dsn "host=/run/postgresql dbname=bench"
    python bench/central_ingest.py --no-gateway          # without the gateway row

Without ``--dsn`` (or ``MESHSYNC_BENCH_PG_DSN``) it starts a throwaway cluster with the
Debian binaries, as the tests do (tests/pg.py), with the server's default durability
(``fsync=on``). Every step uses a fresh schema of the same server.

What it does, in one run:

1. Generates made-up voters (bench/voters.py: 500 per TPS, nobody real), one officer
   phone per TPS signing one change of ``--ops-per-change`` puts per edit, and writes
   them as the gateway would: a bundle, feed by feed. (Steps 2-4 use made-up phone keys
   and a node without certificates: they check signatures, not authorization.)
2. **Ingest**: ``import_bundle`` of that bundle into an empty :class:`PostgresStore`
   (the whole receive pipeline: decode, signature, hash chain, merge, record states
   with their jsonb fields, one transaction).
3. **COPY**: PostgreSQL ``COPY ... FORMAT BINARY`` of the same changes, one row per
   change ``(feed, seq, hash, body, sig)`` into a table with primary key
   ``(feed, seq)``, one transaction. Goal: ingest at >= 1/2 of the COPY rate.
4. For the breakdown: the same ingest with signature checks switched off, the same
   into a MemoryStore with signature checks off (meshsync's pipeline with no storage:
   what is left is the PostgreSQL store's own cost), the Ed25519 verify of every
   change alone, and (``--sqlite``) the same import into SQLite.
5. **From a gateway** (the issue's case; ``--no-gateway`` skips it), real processes on
   127.0.0.1 (bench/gateway_ingest.py): an authority, a central home, a gateway home
   and one officer phone per TPS, all enrolled with the CLI (``init``, ``authority
   issue``, ``enroll``); the same voters signed with the phones' own keys, imported with
   the phones' certificates into the gateway's SQLite store (``meshsync bundle
   import``); ``meshsync daemon --role central --store DSN --listen 127.0.0.1:0`` on a
   fresh schema (``serve`` has no ``--store``). None of that is timed. Timed: ``meshsync
   sync --home GATEWAY 127.0.0.1:PORT --json``, from process start to exit (mutual TLS,
   the session; central checks every signature and authorizes every change against
   the certificates the gateway forwards). Its row's ``client`` column is the central
   daemon's CPU and ``server`` that of its PostgreSQL backends (``/proc/PID/stat``
   before and after); a line below gives the session's own seconds, the ratio to the
   COPY rate, bytes sent and the gateway process's CPU. Afterwards SQL checks that
   central holds exactly the changes sent (none twice by ``(feed, seq)`` or hash), one
   record per voter and no refusals; the bench stops otherwise. Set-up enrols a
   phone per 500 voters (200 for 100,000: a few minutes of CLI runs).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gateway_ingest as gw  # bench/gateway_ingest.py
import msgpack
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.conninfo import make_conninfo
from voters import VOTERS_PER_TPS, partition_of, voters  # bench/voters.py

from meshsync.host.verify_pool import shared_verifier
from meshsync.model import change as change_mod
from meshsync.model.change import SIGN_CONTEXT, Change, Put, sign_change
from meshsync.model.hlc import make as make_hlc
from meshsync.model.identity import DeviceKey
from meshsync.protocol.bundle import CREDENTIAL, END, FOOTER, HEADER, MAGIC, import_bundle
from meshsync.protocol.wire import WireEncoder
from meshsync.replica.node import Node
from meshsync.store import MemoryStore, SQLiteStore, Store
from meshsync.store.postgres import PostgresStore

START_MS = 1_717_200_000_000  # 2024-06-01, the coklit month
TESTS = Path(__file__).resolve().parent.parent / "tests"


def key_of(name: str) -> DeviceKey:
    """A deterministic device key."""
    return DeviceKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest()))


def phone_key(partition: str) -> DeviceKey:
    """The made-up key of the officer phone of ``partition`` (no certificate)."""
    return key_of(f"phone {partition}")


def make_changes(n_changes: int, ops: int, keys: Callable[[str], DeviceKey] = phone_key,
                 start_ms: int = START_MS) -> list[Change]:
    """Signed changes of up to ``ops`` puts each (``n_changes * ops`` voters), one feed
    per TPS (signed with ``keys(partition)``), in the order the phones made them."""
    by_tps: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for partition, key, fields in voters(n_changes * ops):
        by_tps.setdefault(partition, []).append((key, dict(sorted(fields.items()))))
    out = []
    for partition, records in by_tps.items():
        key, prev, hlc = keys(partition), b"", make_hlc(start_ms)
        for i in range(0, len(records), ops):
            puts = tuple(Put("voters", k, f) for k, f in records[i:i + ops])
            ch = sign_change(key, partition, i // ops + 1, prev, hlc, puts)
            prev, hlc = ch.hash, hlc + len(puts)
            out.append(ch)
    return out


def write_bundle(path: Path, changes: list[Change], credentials: list[bytes] | None = None
                 ) -> None:
    """The bundle a gateway exports: ``credentials`` (certificates), then the changes
    feed by feed (meshsync.protocol.bundle format)."""
    credentials = credentials or []
    packer, encoder, digest = msgpack.Packer(use_bin_type=True), WireEncoder(), hashlib.sha256()
    ordered = sorted(changes, key=lambda c: (c.author, c.partition, c.seq))
    with path.open("wb") as f:
        def write(data: bytes) -> None:
            f.write(data)
            digest.update(data)
        write(MAGIC)
        write(packer.pack([HEADER, {"created_ms": START_MS, "creator": b"\x00" * 32,
                                    "version": 1}]))
        for blob in credentials:
            write(packer.pack([CREDENTIAL, blob]))
        for ch in ordered:
            write(b"".join(packer.pack(item) for item in encoder.encode(ch)))
        write(packer.pack([END, len(ordered), len(credentials)]))
        f.write(FOOTER + digest.digest())


# -- PostgreSQL ---------------------------------------------------------------------------


@contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """The DSN of the server to use: ``dsn``, or a throwaway cluster."""
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(TESTS))
    from pg import TempCluster, find_bindir  # tests/pg.py

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries: install postgresql or pass --dsn")
    cluster = TempCluster(bindir)
    try:
        cluster.start()
        yield cluster.dsn
    finally:
        cluster.stop()


def fresh_schema(dsn: str) -> str:
    """A DSN whose search_path is a new, empty schema."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    return make_conninfo(dsn, options=f"-csearch_path={name}")


@dataclass
class Cost:
    """Wall seconds, and CPU seconds of this process and of the PostgreSQL backend
    serving it (from /proc; None when the server is not local). On a busy machine
    wall time includes waiting for a core; CPU time does not."""

    wall: float
    client: float
    server: float | None = None

    @property
    def cpu(self) -> float:
        """Client plus server CPU seconds."""
        return self.client + (self.server or 0.0)


def backend_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid``, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(fn: Callable[[], Any], backend: int | None = None) -> tuple[Any, Cost]:
    """``fn()`` and what it cost."""
    server0, wall0, cpu0 = backend_cpu(backend), time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu, server1 = time.perf_counter() - wall0, time.process_time() - cpu0, \
        backend_cpu(backend)
    server = server1 - server0 if server0 is not None and server1 is not None else None
    return result, Cost(wall, cpu, server)


#: Whether the central node checks signatures on every core, as ``open_node`` sets it up.
SETTINGS = {"verifier": True}


def central(store: Store) -> Node:
    node = Node(store, key_of("central"), lambda: START_MS + 86_400_000)
    node.verifier = shared_verifier() if SETTINGS["verifier"] else None
    return node


def ingest(store: Store, bundle: Path, profile: bool = False) -> tuple[Any, str]:
    """Import ``bundle`` into a central node on ``store``: (report, profile text)."""
    profiler = cProfile.Profile() if profile else None
    with bundle.open("rb") as f:
        if profiler:
            profiler.enable()
        report = import_bundle(central(store), f, source="gateway")
        if profiler:
            profiler.disable()
    text = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(22)
        text = out.getvalue()
    return report, text


def pg_ingest(dsn: str, bundle: Path, profile: bool = False) -> tuple[Any, str, Cost]:
    """Ingest into a fresh PostgresStore; checks that everything arrived."""
    store = PostgresStore(fresh_schema(dsn))
    pid = store._conn.info.backend_pid  # the bench reads the server's CPU use from /proc
    (report, text), cost = run(lambda: ingest(store, bundle, profile), pid)
    held = store.count_changes()
    store.close()
    if held != report.apply.received or report.apply.refused:
        raise SystemExit(f"ingest incomplete: {report.apply.to_json()}")
    return report, text, cost


def copy_baseline(dsn: str, changes: list[Change]) -> Cost:
    """COPY one row per change (feed, seq, hash, body, sig), one transaction."""
    feeds = {f: i for i, f in enumerate(sorted({c.feed for c in changes}), 1)}
    rows = [(feeds[c.feed], c.seq, c.hash, c.body, c.sig) for c in changes]
    with psycopg.connect(fresh_schema(dsn), autocommit=True) as conn:
        conn.execute("CREATE TABLE copy_baseline (feed bigint NOT NULL, seq bigint NOT NULL, "
                     "hash bytea NOT NULL, body bytea NOT NULL, sig bytea NOT NULL, "
                     "PRIMARY KEY (feed, seq))")

        def copy_all() -> None:
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY copy_baseline (feed, seq, hash, body, sig) FROM STDIN "
                    "(FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8", "bytea", "bytea", "bytea"])
                for row in rows:
                    copy.write_row(row)
        return run(copy_all, conn.info.backend_pid)[1]


def progress_query(dsn: str) -> float:
    """Seconds of the documented per-village progress query on a fresh ingest's data."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute("SELECT prefix, records, live, deleted, conflicts FROM meshsync_progress "
                     "WHERE up = 1 AND collection = 'voters' ORDER BY prefix").fetchall()
        return time.perf_counter() - start


def gateway_sync(n: int, ops: int, dsn: str, tmp: Path) -> tuple[Cost, dict[str, Any]]:
    """The same voters from an enrolled gateway home to an enrolled central daemon on a
    fresh schema, by ``meshsync sync`` over loopback TLS (bench/gateway_ingest.py).
    Cost: the sync process's wall time, the central daemon's CPU as ``client`` and its
    PostgreSQL backends' as ``server``."""
    started = time.perf_counter()
    partitions = sorted({partition_of(i) for i in range(0, n * ops, VOTERS_PER_TPS)})
    homes = gw.make_homes(tmp / "homes", partitions)
    keys = {p: homes.phone_key(p) for p in partitions}
    changes = make_changes(n, ops, keys.__getitem__, int(time.time() * 1000))
    bundle = tmp / "phones.msb"
    write_bundle(bundle, changes, homes.phone_credentials())
    gw.load_gateway(homes, bundle, len(changes))
    setup_s = time.perf_counter() - started
    target = fresh_schema(dsn)
    central_ = gw.Central(homes.central, target, tmp / "central.log")
    try:
        central_.settle()
        sync = gw.timed_sync(homes.gateway, central_.port, central_, tmp / "sync.json")
    finally:
        central_.stop()
    held = gw.check_central(target, len(changes), n * ops, [k.public_key for k in keys.values()])
    cost = Cost(sync["wall_s"], sync["central_cpu_s"] or 0.0, sync["central_pg_cpu_s"])
    return cost, {**sync, "held": held, "phones": len(partitions), "setup_s": setup_s}


# -- the run -------------------------------------------------------------------------------


def without_signatures(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with Change.verify a no-op (to see what the rest costs)."""
    saved = change_mod.Change.verify
    change_mod.Change.verify = lambda self: None  # type: ignore[method-assign]
    SETTINGS["verifier"] = False
    try:
        return fn()
    finally:
        change_mod.Change.verify = saved  # type: ignore[method-assign]
        SETTINGS["verifier"] = True


GATEWAY_ROW = "gateway -> central: meshsync sync, TLS"


def measure(n: int, ops: int, dsn: str, profile: bool, sqlite: bool,
            gateway: bool = True) -> dict[str, Any]:
    changes = make_changes(n, ops)
    steps: dict[str, Cost] = {}
    via_gateway: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="meshsync-bench-") as tmp:
        bundle = Path(tmp) / "gateway.msb"
        write_bundle(bundle, changes)
        steps["COPY baseline (feed, seq, hash, body, sig)"] = copy_baseline(dsn, changes)
        _, prof, steps["import_bundle -> PostgresStore"] = pg_ingest(dsn, bundle, profile)
        steps["  same, signature checks off"] = without_signatures(
            lambda: pg_ingest(dsn, bundle))[2]
        steps["  MemoryStore, signature checks off"] = without_signatures(
            lambda: run(lambda: ingest(MemoryStore(), bundle)))[1]
        steps["  Ed25519 verify alone, one thread"] = run(
            lambda: [c.verify() for c in changes])[1]
        items = [(c.author, c.sig, SIGN_CONTEXT + c.body) for c in changes]
        pool = shared_verifier()
        if pool is not None:
            steps["  Ed25519 verify alone, all cores"] = run(lambda: pool(items))[1]
        if gateway:
            steps[GATEWAY_ROW], via_gateway = gateway_sync(n, ops, dsn, Path(tmp))
        if sqlite:
            lite = SQLiteStore(Path(tmp) / "central.sqlite")
            steps["import_bundle -> SQLiteStore (for scale)"] = run(
                lambda: ingest(lite, bundle))[1]
            lite.close()
        target = fresh_schema(dsn)
        PostgresStore(target).close()
        ingest(PostgresStore(target), bundle)
        progress_s = progress_query(target)
        return {"changes": len(changes), "records": n * ops,
                "feeds": len({c.feed for c in changes}), "bundle_bytes": bundle.stat().st_size,
                "steps": {k: vars(v) for k, v in steps.items()},
                "progress_query_s": progress_s, "profile": prof, "gateway": via_gateway}


def print_table(r: dict[str, Any]) -> None:
    n, steps = r["changes"], {k: Cost(**v) for k, v in r["steps"].items()}
    print(f"{n:,} changes ({r['records']:,} records, {r['feeds']} feeds), "
          f"bundle {r['bundle_bytes'] / 2**20:.1f} MiB")
    print(f"{'step':<44}{'wall s':>8}{'client':>8}{'server':>8}{'changes/s':>11}"
          f"{'per CPU-s':>11}")
    for name, c in steps.items():
        server = f"{c.server:8.2f}" if c.server is not None else f"{'-':>8}"
        print(f"{name:<44}{c.wall:8.2f}{c.client:8.2f}{server}{n / c.wall:11,.0f}"
              f"{n / c.cpu:11,.0f}")
    copy, pg = steps["COPY baseline (feed, seq, hash, body, sig)"], \
        steps["import_bundle -> PostgresStore"]
    nosig, mem = steps["  same, signature checks off"], \
        steps["  MemoryStore, signature checks off"]
    own = nosig.cpu - mem.cpu
    print(f"ingest rate / COPY rate: {copy.wall / pg.wall:.3f} by wall time, "
          f"{copy.cpu / pg.cpu:.3f} by CPU time (goal: >= 0.5)")
    print(f"PostgresStore's own cost (PostgreSQL ingest minus MemoryStore, both without "
          f"signature checks): {own / n * 1e6:.0f} CPU-us/change, COPY "
          f"{copy.cpu / n * 1e6:.1f} CPU-us/change: store-only / COPY = "
          f"{copy.cpu / own:.2f}")
    if (g := r.get("gateway")) is not None:
        sync = steps[GATEWAY_ROW]
        central_cpu = "?" if g["central_cpu_s"] is None else f"{g['central_cpu_s']:.2f}"
        pg_cpu = "?" if g["central_pg_cpu_s"] is None else f"{g['central_pg_cpu_s']:.2f}"
        central_rss = "?" if g.get("central_rss_mb") is None else f"{g['central_rss_mb']:.0f}"
        held = g["held"]
        print(f"gateway -> central ({g['phones']} enrolled phones, set up in "
              f"{g['setup_s']:.0f} s, untimed): {n / sync.wall:,.0f} changes/s = "
              f"{copy.wall / sync.wall:.3f} of the COPY rate by wall time; session "
              f"{g['session_s']:.2f} s of {sync.wall:.2f} s, "
              f"{g['bytes_sent'] / 2**20:.1f} MiB sent")
        print(f"  CPU s: central daemon {central_cpu}, its PostgreSQL {pg_cpu}, gateway sync "
              f"process {g['gateway_cpu_s']:.2f}; peak RSS: central daemon {central_rss} MB, "
              f"gateway {g['gateway_rss_mb']:.0f} MB")
        print(f"  central's schema afterwards (SQL): {held['changes']:,} changes, "
              f"{held['distinct_feed_seq']:,} distinct (feed, seq), {held['distinct_hash']:,} "
              f"distinct hashes, {held['records']:,} records, {held['refusals']} refusals")
    print(f"meshsync_progress per village over {r['records']:,} records: "
          f"{r['progress_query_s'] * 1000:.0f} ms")
    if r["profile"]:
        print(r["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--ops-per-change", type=int, default=1,
                        help="puts per change (an officer's edit is usually one)")
    parser.add_argument("--dsn", default=os.environ.get("MESHSYNC_BENCH_PG_DSN"))
    parser.add_argument("--sqlite", action="store_true", help="also import into SQLite")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile the ingest")
    parser.add_argument("--no-gateway", action="store_true",
                        help="skip the gateway -> central sync row (its set-up enrols a "
                             "phone per TPS: about a second each)")
    args = parser.parse_args()
    with server(args.dsn) as dsn:
        result = measure(args.changes, args.ops_per_change, dsn, args.profile, args.sqlite,
                         not args.no_gateway)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
