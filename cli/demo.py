"""``meshsync demo``: the coklit district, end to end, with real daemons on 127.0.0.1.

KPU's central server imports a generated voter list (DPT) for one distrik; the
district laptop (gateway) waits for its uplink; when central comes up the laptop
takes the district; three Pantarlih phones receive it through the mesh; officers
record coklit visits (MS, TMS with a reason, ubah; every voter starts belum
dicoklit), two of them edit the same voter while one phone is offline (a visible
conflict); the uplink goes down and comes back; finally a report: converged or not,
"dicoklit X dari Y" per TPS, kampung and distrik at central, conflicts, times and
bytes. Every node is a real ``meshsync daemon`` process with
its own SQLite home, mutual TLS and static peers on loopback (no discovery traffic
leaves the machine). Names and NIK numbers are invented.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import click
from meshsync.cli.common import echo_json, errors_to_exit, json_option

from meshsync.host.home import Home
from meshsync.host.i18n import gettext as _

MESHSYNC = [sys.executable, "-m", "meshsync.cli.main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class District:
    """The demo's homes, daemons and steps. ``say`` reports progress on stderr."""

    def __init__(self, root: Path, distrik: str, voters: int, quiet: bool) -> None:
        self.root, self.distrik, self.voters, self.quiet = root, distrik, voters, quiet
        self.slug = distrik.lower().replace(" ", "-")
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, tuple[int, int]] = {}
        self.started = time.monotonic()
        self.times: dict[str, float] = {}
        self.total = 0

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.monotonic() - self.started:5.1f} s] {text}", err=True)

    def mark(self, phase: str) -> None:
        self.times[phase] = round(time.monotonic() - self.started, 2)

    def run(self, *args: str) -> str:
        proc = subprocess.run([*MESHSYNC, *args], cwd=self.root, capture_output=True,
                              text=True, check=False, timeout=300)
        if proc.returncode != 0:
            raise click.ClickException(f"`meshsync {' '.join(args)}` failed: "
                                       f"{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    # -- setup -------------------------------------------------------------------

    def enrol(self) -> None:
        self.say("KPU creates its authority and enrols central, the laptop and 3 phones")
        self.run("authority", "init", "--home", "kpu", "--name", "KPU Mimika (demo)")
        self._device("central", "central", "", "mimika")
        self._device("laptop", "gateway", f"mimika/{self.slug}", f"mimika/{self.slug}")

    def _device(self, name: str, role: str, scope: str, partition: str) -> None:
        self.run("init", "--home", name, "--partition", partition)
        self.run("authority", "issue", "--home", "kpu", f"{name}/device.csr", "--role", role,
                 "--scope", scope, "-o", f"{name}.crt")
        self.run("enroll", "--home", name, f"{name}.crt")

    def baseline(self) -> None:
        self.say(f"central imports a generated DPT for distrik {self.distrik}")
        csv = self.root / "dpt.csv"
        self.run("coklit", "generate", "--seed", "2024", "--distrik", self.distrik,
                 "--voters-per-tps", str(self.voters), "--tps-per-kampung", "1", "-o", str(csv))
        report = json.loads(self.run("coklit", "import", str(csv), "--home", "central",
                                     "--json"))
        self.total = int(report["imported"])
        village = self._first_village()
        self.phone_village = village
        for name, tps in (("phone-a", 1), ("phone-b", 1), ("phone-c", 1)):
            v = village if name != "phone-c" else self._second_village()
            self._device(name, "pantarlih", v, f"{v}/tps-{tps:03d}")
        self.say(f"central holds {self.total} voters in {len(self._villages())} kampung")

    def _villages(self) -> list[str]:
        from meshsync.host.local import open_node

        with open_node(self.root / "central") as node:
            parts = sorted({r.partition.rpartition("/")[0]
                            for r in node.store.iter_records("voters")})
        return parts

    def _first_village(self) -> str:
        return self._villages()[0]

    def _second_village(self) -> str:
        villages = self._villages()
        return villages[1] if len(villages) > 1 else villages[0]

    # -- daemons -----------------------------------------------------------------

    def configure(self) -> None:
        names = ["central", "laptop", "phone-a", "phone-b", "phone-c"]
        self.ports = {n: (_free_port(), _free_port()) for n in names}
        for name in names:
            home = Home.open(self.root / name)
            values = home.config()
            values.update(mesh="demo", discovery=["static"], anti_entropy_s=3.0,
                          backoff_min_s=0.5, backoff_max_s=2.0,
                          listen=f"127.0.0.1:{self.ports[name][0]}",
                          api=f"127.0.0.1:{self.ports[name][1]}", schema="coklit",
                          static_peers=self._peers_of(name))
            if name == "laptop":
                values["uplink"] = [f"127.0.0.1:{self.ports['central'][0]}"]
            home.write_config(values)

    def _peers_of(self, name: str) -> list[str]:
        if name.startswith("phone"):
            others = ["laptop", *[p for p in ("phone-a", "phone-b", "phone-c") if p != name]]
            return [f"127.0.0.1:{self.ports[o][0]}" for o in others]
        return []

    def start(self, name: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        with log:
            self.daemons[name] = subprocess.Popen(
                [*MESHSYNC, "daemon", "--home", name], cwd=self.root, stdout=log, stderr=log)
        proc = self.daemons[name]

        def started() -> bool:
            if proc.poll() is not None:
                log_text = (self.root / f"{name}.log").read_text(errors="replace")
                raise click.ClickException(f"{name} daemon exited: {log_text.strip()[-500:]}")
            return (self.root / name / "daemon.json").exists()
        self.wait(started, f"{name} to start")

    def stop(self, name: str) -> None:
        proc = self.daemons.pop(name)
        proc.terminate()
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.daemons):
            self.stop(name)

    def api(self, name: str, method: str, path: str, body: Any = None) -> Any:
        token = (self.root / name / "api.token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports[name][1]}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def listing(self, name: str, path: str) -> list[Any]:
        """Every record of a paged listing (``path``), following its ``next`` cursors."""
        records: list[Any] = []
        cursor = None
        while True:
            glue = "&" if "?" in path else "?"
            page = self.api(name, "GET", path + (f"{glue}after={cursor}" if cursor else ""))
            records += page["records"]
            cursor = page["next"]
            if cursor is None:
                return records

    def wait(self, check: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise click.ClickException(f"timed out after {timeout:.0f} s waiting for {what}")

    def count(self, name: str, prefix: str = "") -> int:
        query = f"?partition={prefix}" if prefix else ""
        return len(self.listing(name, f"/api/records/voters{query}"))

    # -- the story -----------------------------------------------------------------

    def uplink_up(self) -> None:
        self.say("the laptop starts with no uplink; the phones start and find the laptop")
        self.start("laptop")
        for phone in ("phone-a", "phone-b", "phone-c"):
            self.start(phone)
        self.say("the uplink comes up (central starts): the laptop takes the district")
        self.start("central")
        self.wait(lambda: self.count("laptop") >= self.total, "the laptop to take the district")
        self.mark("district_at_gateway")
        self.say("phones receive their district through the mesh")
        for phone in ("phone-a", "phone-b", "phone-c"):
            self.wait(lambda p=phone: self.count(p) >= self.total, f"{phone} to get its TPS")
        self.mark("district_on_phones")

    def coklit(self) -> tuple[str, str]:
        self.say("coklit: officers record results; a TMS with its reason; an ubah")
        a_voters = self.listing("phone-a",
                            f"/api/records/voters?partition={self.phone_village}")
        c_village = self._second_village()
        c_voters = self.listing("phone-c", f"/api/records/voters?partition={c_village}")
        for record in a_voters[:5]:
            self.api("phone-a", "PUT", f"/api/records/voters/{record['key']}",
                     {"fields": {"coklit": "MS"}})
        tms = c_voters[0]["key"]
        self.api("phone-c", "PUT", f"/api/records/voters/{tms}",
                 {"fields": {"coklit": "TMS", "tms": "meninggal"}})
        self.api("phone-c", "PUT", f"/api/records/voters/{c_voters[1]['key']}",
                 {"fields": {"coklit": "ubah", "alamat": "Kampung Uji, dekat gereja"}})
        shared = a_voters[5]["key"]
        self.say(f"two officers edit voter {shared} while phone-b is offline")
        self.stop("phone-b")
        self.api("phone-a", "PUT", f"/api/records/voters/{shared}",
                 {"fields": {"coklit": "TMS", "tms": "pindah_domisili"}})
        self.run("put", "--home", "phone-b", "voters", shared, "coklit=ubah",
                 "alamat=Jalan Contoh 7")
        self.start("phone-b")
        return shared, tms

    def flap(self) -> None:
        self.say("the uplink goes down; officers keep working; the uplink comes back")
        self.stop("central")
        self.mark("uplink_down")
        phone_b = self.listing("phone-b",
                           f"/api/records/voters?partition={self.phone_village}")
        for record in phone_b[6:9]:
            self.api("phone-b", "PUT", f"/api/records/voters/{record['key']}",
                     {"fields": {"coklit": "MS"}})
        time.sleep(1.0)
        self.start("central")
        self.mark("uplink_back")

    def converge(self) -> bool:
        self.say("waiting for every node to hold the same district")
        names = ["central", "laptop", "phone-a", "phone-b", "phone-c"]

        def same() -> bool:
            views = [json.dumps(self.listing(n, "/api/records/voters"), sort_keys=True)
                     for n in names]
            return len(set(views)) == 1
        try:
            self.wait(same, "convergence", timeout=60)
        except click.ClickException:
            return False
        self.mark("converged")
        self.say("waiting for central's custody receipts to reach the phones")

        def safe() -> bool:
            return all(f["safe_at_central"] for p in ("phone-a", "phone-b", "phone-c")
                       for f in self.api(p, "GET", "/api/status")["custody"]["feeds"])
        try:
            self.wait(safe, "receipts on the phones", timeout=30)
            self.mark("receipts_on_phones")
        except click.ClickException:
            self.say("receipts did not reach every phone in time")
        return True

    def report(self, converged: bool, shared: str, tms: str) -> dict[str, Any]:
        status = {n: self.api(n, "GET", "/api/status") for n in self.daemons}
        peers = {n: self.api(n, "GET", "/api/peers") for n in self.daemons}
        return {
            "converged": converged, "distrik": self.distrik, "voters": self.total,
            "progress": self.api("central", "GET", "/api/progress"),
            "conflicts": [r["key"] for r in self.listing("central", "/api/conflicts")],
            "conflict_voter": shared, "tms_voter": tms,
            "times_s": self.times,
            "sessions": sum(s["sessions"] for s in status.values()),
            "bytes": sum(p.get("bytes_sent", 0) + p.get("bytes_received", 0)
                         for ps in peers.values() for p in ps),
            "custody_on_phone_a": status["phone-a"].get("custody", {}).get("feeds", []),
        }


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Keep the demo homes here [default: a temporary dir].")
@click.option("--distrik", default="Jila", show_default=True, help="A distrik of Mimika.")
@click.option("--voters-per-tps", default=40, show_default=True, type=click.IntRange(5, 600))
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here [default: report.json in the "
                   "--dir folder with --dir; without --dir the homes are deleted on exit "
                   "and no report file is kept].")
@json_option
@errors_to_exit
def demo(directory: Path | None, distrik: str, voters_per_tps: int, report: Path | None,
         as_json: bool) -> None:
    """Run a coklit district on this machine with real daemons; report convergence
    and progress; exit 1 if the nodes did not converge."""
    from meshsync.coklit.regions import distrik_name

    if distrik_name(distrik) is None:
        raise click.UsageError(f"--distrik {distrik!r} is not a distrik of Mimika")
    if directory is not None and any(directory.iterdir() if directory.exists() else ()):
        raise click.UsageError(f"--dir {directory} is not empty; give a new directory")
    if report is not None:
        _check_report_path(report)
    with tempfile.TemporaryDirectory(prefix="meshsync-demo-") as tmp:
        root = (directory or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        d = District(root, distrik, voters_per_tps, quiet=as_json)
        try:
            d.enrol()
            d.baseline()
            d.configure()
            d.uplink_up()
            shared, tms = d.coklit()
            d.flap()
            converged = d.converge()
            result = d.report(converged, shared, tms)
        finally:
            d.stop_all()
        result["seconds"] = round(time.monotonic() - d.started, 1)
        # without --dir the homes go with the temporary folder: no report file there
        out = report or (root / "report.json" if directory is not None else None)
        result["report"] = str(out) if out is not None else None
        if out is not None:
            out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    _print(result, as_json)
    if not result["converged"]:
        sys.exit(1)


def _check_report_path(report: Path) -> None:
    """Refuse ``--report`` before the demo starts unless it can be written: its folder
    exists and is writable, and it is not a folder itself."""
    folder = report.parent
    if not folder.is_dir():
        raise click.UsageError(f"--report {report}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.UsageError(f"--report {report}: folder {folder} is not writable")
    if report.is_dir():
        raise click.UsageError(f"--report {report} is a folder; give a file name")


def _print(result: dict[str, Any], as_json: bool) -> None:
    from meshsync.coklit.texts import progress_lines

    if as_json:
        echo_json(result)
        return
    line = (_("converged: %(voters)s voters of distrik %(distrik)s on central, the laptop and "
              "3 phones in %(seconds)s s; %(sessions)s sessions, %(bytes)s bytes")
            if result["converged"] else
            _("NOT converged: %(voters)s voters of distrik %(distrik)s on central, the laptop "
              "and 3 phones in %(seconds)s s; %(sessions)s sessions, %(bytes)s bytes"))
    click.echo(line % {k: result[k] for k in ("voters", "distrik", "seconds", "sessions",
                                              "bytes")})
    click.echo(_("conflicts at central: %(n)s") % {"n": result["conflicts"]})
    click.echo(_("coklit progress at central, per distrik and per kampung:"))
    for level in ("district", "village"):
        for line in progress_lines(result["progress"][level]):
            click.echo(f"  {line}")
    if result.get("report"):
        click.echo(_("report: %(file)s") % {"file": result["report"]})


COMMANDS = [demo]
