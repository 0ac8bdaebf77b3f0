"""The gateway row of bench/central_ingest.py: a real gateway syncs to a real central.

Everything here runs as ``meshsync`` processes on 127.0.0.1, as in the field:

1. **Homes** (untimed), enrolled with the CLI as bench/sync_full.py does: an authority
   (``meshsync authority init``), a central home (role central, every partition), a
   gateway home (role gateway, scope ``mimika/jila``) and one officer phone per TPS
   (role pantarlih, scoped to its TPS): ``init``, ``authority issue``, ``enroll``.
2. **Gateway store** (untimed): the changes, signed with the phones' own device keys
   (read from their homes) and stamped with the current time (certificates are only
   valid from their issue), go into a bundle together with every phone's certificate
   chain; ``meshsync bundle import --home GATEWAY`` loads it. The gateway now holds
   the phones' changes and trusts their authors, as after a day of syncing them.
3. **Central**: ``meshsync daemon --home CENTRAL --role central --store DSN --listen
   127.0.0.1:0`` (``serve`` has no ``--store``), its store a fresh PostgreSQL schema.
4. **Timed**: ``meshsync sync --home GATEWAY 127.0.0.1:PORT --json``, from process
   start to exit (Python start-up, opening the gateway's store, TLS handshake, the
   session both ways; central verifies every signature and authorizes every change
   against the certificates the gateway forwards). Read beside it: CPU of the sync
   process (``wait4``), of the central daemon and of its PostgreSQL backends
   (``/proc/PID/stat`` before and after), and both processes' peak RSS.
5. **Checked** in SQL afterwards: central's schema holds exactly the changes sent, no
   ``(feed, seq)`` and no hash twice, one record per voter, no refusals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from procstat import vm_hwm_mb, wait_with_peak  # bench/procstat.py (on sys.path: bench/)

from meshsync.host.home import Home
from meshsync.model.identity import DeviceKey

MESHSYNC = [sys.executable, "-m", "meshsync.cli.main"]
DISTRICT = "mimika/jila"  # the gateway's scope (bench/voters.py: every TPS is under it)


def cli(*args: object, timeout: float = 1800) -> str:
    """Run ``meshsync ARGS``; raise with its stderr if it fails."""
    proc = subprocess.run([*MESHSYNC, *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"meshsync {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid``, or None."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


# -- homes ---------------------------------------------------------------------------------


@dataclass
class Homes:
    """The enrolled homes of one run."""

    root: Path
    kpu: Path
    central: Path
    gateway: Path
    phones: dict[str, Path] = field(default_factory=dict)  # partition -> home

    def phone_key(self, partition: str) -> DeviceKey:
        """The device key of the officer phone of ``partition``."""
        return Home.open(self.phones[partition]).load_key()

    def phone_credentials(self) -> list[bytes]:
        """Every phone's certificate chain (PEM, as ``enroll`` installed it)."""
        return [Home.open(p).cert_path.read_bytes() for p in self.phones.values()]


def enrol(homes: Homes, home: Path, role: str, scope: str, partition: str) -> None:
    """``init``, ``authority issue`` and ``enroll`` of one device."""
    cli("init", "--home", home, "--partition", partition)
    cert = homes.root / f"{home.name}.crt"
    cli("authority", "issue", "--home", homes.kpu, home / "device.csr", "--role", role,
        "--scope", scope, "-o", cert)
    cli("enroll", "--home", home, cert)


def make_homes(root: Path, partitions: list[str]) -> Homes:
    """An authority, an enrolled central, gateway, and one phone per partition (the
    phones two or more at a time: about a second of CLI runs each)."""
    homes = Homes(root, root / "kpu", root / "central", root / "gateway")
    cli("authority", "init", "--home", homes.kpu, "--name", "KPU Uji")
    enrol(homes, homes.central, "central", "", DISTRICT)
    enrol(homes, homes.gateway, "gateway", DISTRICT, DISTRICT)
    homes.phones = {p: root / f"phone-{i:04d}" for i, p in enumerate(partitions)}
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda p: enrol(homes, homes.phones[p], "pantarlih", p, p),
                      partitions))
    return homes


def load_gateway(homes: Homes, bundle: Path, expect: int) -> dict[str, Any]:
    """``meshsync bundle import`` of ``bundle`` into the gateway; its report."""
    report = json.loads(cli("bundle", "import", "--home", homes.gateway, bundle, "--json"))
    if report.get("applied") != expect or report.get("refused"):
        raise SystemExit(f"gateway import incomplete (expected {expect} applied): "
                         f"{json.dumps(report)[:2000]}")
    return report


# -- central -------------------------------------------------------------------------------


def _meshsync_backends(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = "
                            "'meshsync' AND pid <> pg_backend_pid()").fetchall()
    return {r[0] for r in rows}


class Central:
    """``meshsync daemon --role central --store DSN`` on 127.0.0.1 (port from its
    ``daemon.json``), and the PostgreSQL backends serving it."""

    def __init__(self, home: Path, dsn: str, log: Path) -> None:
        self.log = log
        before = _meshsync_backends(dsn)
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*MESHSYNC, "daemon", "--home", str(home), "--role", "central", "--store", dsn,
                 "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--discovery", "static"],
                stdout=subprocess.DEVNULL, stderr=err)
        runtime, deadline = home / "daemon.json", time.monotonic() + 60
        while not runtime.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"meshsync daemon did not start:\n"
                                 f"{log.read_text('utf-8', 'replace')}")
            time.sleep(0.05)
        host, port = json.loads(runtime.read_text())["listen"].rsplit(":", 1)
        if host != "127.0.0.1":
            self.stop()
            raise SystemExit(f"central listens on {host}, not 127.0.0.1")
        self.port = int(port)
        self.backends = _meshsync_backends(dsn) - before

    def cpu(self) -> tuple[float | None, float | None]:
        """CPU seconds so far of the daemon and of its PostgreSQL backends (None when
        unreadable, e.g. a server on another machine)."""
        pg = [proc_cpu(pid) for pid in self.backends]
        return proc_cpu(self.proc.pid), \
            sum(c for c in pg if c is not None) if pg and None not in pg else None

    def settle(self, quiet_s: float = 1.0, limit_s: float = 20.0) -> None:
        """Wait until the daemon has used no CPU for ``quiet_s`` (start-up done)."""
        deadline, last = time.monotonic() + limit_s, self.cpu()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self.cpu()
            if now == last:
                return
            last = now

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timed_sync(gateway: Path, port: int, central: Central, out: Path) -> dict[str, Any]:
    """``meshsync sync --home GATEWAY 127.0.0.1:PORT --json``, timed, with the CPU of
    each process involved."""
    central_cpu0, pg_cpu0 = central.cpu()
    started = time.perf_counter()
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        proc = subprocess.Popen([*MESHSYNC, "sync", "--home", str(gateway),
                                 f"127.0.0.1:{port}", "--json"], stdout=stdout, stderr=stderr)
        _, usage, peak_mb = wait_with_peak(proc)  # not ru_maxrss: see bench/procstat.py
    wall = time.perf_counter() - started
    central_cpu1, pg_cpu1 = central.cpu()
    rc = proc.returncode
    text = out.read_text("utf-8", "replace")
    if rc != 0:
        raise SystemExit(f"meshsync sync exited {rc}: {text[:2000]}\n"
                         f"{out.with_suffix('.err').read_text('utf-8', 'replace')}")
    summary = json.loads(text)
    return {
        "wall_s": wall, "session_s": summary["seconds"],
        "gateway_cpu_s": usage.ru_utime + usage.ru_stime,
        "gateway_rss_mb": peak_mb,
        "central_cpu_s": central_cpu1 - central_cpu0
        if central_cpu0 is not None and central_cpu1 is not None else None,
        "central_pg_cpu_s": pg_cpu1 - pg_cpu0
        if pg_cpu0 is not None and pg_cpu1 is not None else None,
        "central_rss_mb": vm_hwm_mb(central.proc.pid),
        "changes_sent": summary["changes_sent"], "bytes_sent": summary["bytes_sent"],
        "credentials_sent": summary["credentials_sent"], "converged": summary["converged"],
        "refused": len(summary["refused"]),
    }


def check_central(dsn: str, changes: int, records: int, phones: list[bytes]) -> dict[str, Any]:
    """What central's schema holds, in SQL; SystemExit unless it is exactly the
    phones' ``changes`` (none twice) and ``records`` records, nothing refused."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, keys, hashes = conn.execute(
            "SELECT count(*), count(DISTINCT (feed, seq)), count(DISTINCT hash) "
            "FROM meshsync_changes").fetchone() or (0, 0, 0)
        from_phones = conn.execute(
            "SELECT count(*) FROM meshsync_changes c JOIN meshsync_feeds f ON f.id = c.feed "
            "WHERE f.author = ANY(%s)", [phones]).fetchone()
        held = {
            "changes": total, "distinct_feed_seq": keys, "distinct_hash": hashes,
            "from_phones": from_phones[0] if from_phones else 0,
            "records": conn.execute("SELECT count(*) FROM meshsync_records").fetchone()[0],
            "refusals": conn.execute("SELECT count(*) FROM meshsync_refusals").fetchone()[0],
        }
    expected = {"changes": changes, "distinct_feed_seq": changes, "distinct_hash": changes,
                "from_phones": changes, "records": records, "refusals": 0}
    if held != expected:
        raise SystemExit(f"central holds {held}, expected {expected}")
    return held
