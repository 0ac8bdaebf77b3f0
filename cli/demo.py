"""``meshsync demo``: a small district, run with real processes on 127.0.0.1.

The KPU authority enrols a district laptop and two Pantarlih phones of one
village; each phone
records made-up voters; the phones sync with the laptop over mutual TLS (so the
second phone receives the first's changes through the laptop, multi-hop); two
officers edit the same voter concurrently (a visible conflict); the laptop carries
a bundle to central by sneakernet. The report says whether everyone converged.
Every step is a real ``meshsync`` process; names and NIK numbers are invented.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from meshsync.cli.common import echo_json, json_option

DISTRICT = "mimika/jila"
VILLAGE = f"{DISTRICT}/diloa"
TPS = {"phone-a": f"{VILLAGE}/tps-001", "phone-b": f"{VILLAGE}/tps-002"}
VOTERS = [("Yosina Contoh", "3609014107800001"), ("Ma'ruf Contoh", "3609011203850002"),
          ("Natalis Uji", "3609010101900003")]


class Demo:
    """Runs the steps in ``root`` and records what happened."""

    def __init__(self, root: Path, quiet: bool) -> None:
        self.root, self.quiet = root, quiet
        self.steps: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(text, err=True)

    def run(self, *args: str) -> Any:
        cmd = [sys.executable, "-m", "meshsync.cli.main", *args]
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, check=False,
                              timeout=120)
        self.steps.append({"command": " ".join(args[:2]), "rc": proc.returncode,
                           "seconds": round(time.monotonic() - started, 3)})
        if proc.returncode != 0:
            raise click.ClickException(f"`meshsync {' '.join(args)}` failed: "
                                       f"{proc.stderr.strip() or proc.stdout.strip()}")
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    def enrol(self) -> None:
        self.say("authority: KPU Mimika creates its root; enrols the laptop and two phones")
        self.run("authority", "init", "--home", "kpu", "--name", "KPU Mimika (demo)")
        self.run("init", "--home", "laptop", "--partition", DISTRICT)
        self.run("authority", "issue", "--home", "kpu", "laptop/device.csr", "--role",
                 "gateway", "--scope", DISTRICT, "-o", "laptop.crt")
        self.run("enroll", "--home", "laptop", "laptop.crt")
        for phone, tps in TPS.items():
            self.run("init", "--home", phone, "--partition", tps)
            self.run("authority", "issue", "--home", "kpu", f"{phone}/device.csr", "--role",
                     "pantarlih", "--scope", VILLAGE, "-o", f"{phone}.crt")
            self.run("enroll", "--home", phone, f"{phone}.crt")

    def coklit(self) -> None:
        self.say("coklit: officers record voters on their phones")
        for phone in TPS:
            for i, (name, nik) in enumerate(VOTERS):
                self.run("put", "--home", phone, "voters", f"{phone[-1]}-{i:04d}",
                         f"nama={name}", f"nik={nik}", "status=MS", "tahun_lahir:=1980")

    def sync_all(self, port: int) -> list[dict[str, Any]]:
        self.say(f"sync: phones sync with the laptop over mutual TLS on 127.0.0.1:{port}")
        server = subprocess.Popen(
            [sys.executable, "-m", "meshsync.cli.main", "serve", "--home", "laptop",
             "--listen", f"127.0.0.1:{port}"], cwd=self.root, stderr=subprocess.PIPE, text=True)
        try:
            _wait_port(port)
            results = []
            for phone in [*TPS, *TPS]:  # second round carries each phone's data to the other
                results.append(self.run("sync", "--home", phone, f"127.0.0.1:{port}", "--json"))
            self.say("conflict: both officers edit voter a-0001 before syncing again")
            self.run("put", "--home", "phone-a", "voters", "a-0001", "status=TMS",
                     "alasan=pindah domisili")
            self.run("put", "--home", "phone-b", "voters", "a-0001", "status=ubah")
            for phone in [*TPS, *TPS]:
                results.append(self.run("sync", "--home", phone, f"127.0.0.1:{port}", "--json"))
            return results
        finally:
            server.terminate()
            server.wait(timeout=10)

    def sneakernet(self) -> None:
        self.say("bundle: the laptop's data goes to central on a USB stick")
        self.run("init", "--home", "central", "--partition", "mimika")
        self.run("authority", "issue", "--home", "kpu", "central/device.csr", "--role",
                 "central", "--scope", "", "-o", "central.crt")
        self.run("enroll", "--home", "central", "central.crt")
        self.run("bundle", "export", "--home", "laptop", "-o", "jila.bundle")
        self.run("bundle", "import", "--home", "central", "jila.bundle")

    def views(self) -> dict[str, Any]:
        return {home: self.run("ls", "--home", home, "voters", "--json")
                for home in ["laptop", "central", *TPS]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException(f"the laptop's sync server did not start on port {port}")


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Keep the demo homes here [default: a temporary dir].")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
@json_option
def demo(directory: Path | None, report: Path | None, as_json: bool) -> None:
    """Run a small district on this machine and report whether it converged."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="meshsync-demo-") as tmp:
        root = directory or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        d = Demo(root, quiet=as_json)
        d.enrol()
        d.coklit()
        sessions = d.sync_all(_free_port())
        d.sneakernet()
        views = d.views()
    first = json.dumps(views["laptop"], sort_keys=True)
    converged = all(json.dumps(v, sort_keys=True) == first for v in views.values())
    conflicts = [r["key"] for r in views["laptop"] if r["conflicts"]]
    result = {"converged": converged, "records": len(views["laptop"]),
              "conflicts": conflicts, "sessions": len(sessions),
              "bytes": sum(s["bytes_sent"] + s["bytes_received"] for s in sessions),
              "seconds": round(time.monotonic() - started, 2), "steps": len(d.steps)}
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{'converged' if converged else 'NOT converged'}: {result['records']} "
                   f"voters on laptop, central and both phones; conflicts on {conflicts}; "
                   f"{result['sessions']} TLS sessions, {result['bytes']} bytes; "
                   f"{result['seconds']} s")
    if not converged:
        sys.exit(1)


COMMANDS = [demo]
