"""Hostile neighbours on the Wi-Fi: spoofed and flooded beacons (issue 14, item 1).

An advert is a hint (docs/architecture.md §7): anyone on the Wi-Fi can send a beacon
naming any device id and port, without credentials. Two real daemons, a phone ``v``
(the victim) and a phone ``p`` (enrolled, honest), on a bridge in network namespaces;
a third process inside ``p``'s namespace sends beacons that advertise ``p``'s sync port
under device ids nobody holds.

1. One spoofed beacon: a bounded number of sessions follow, not an endless loop.
2. 5,000 beacons, each with a new random id: bounded peer entries and dials.

Printed per phase: sessions on each side, victim's peer entries, CPU seconds of both
daemons. Needs root; skipped otherwise. The namespaces are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Host, Lab, skip_reason
from test_netns import MESHSYNC, Daemons, cli, wait_for

REASON = skip_reason()
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

MESH = "hostile-test"
VILLAGE = "mimika/jila/diloa"
SYNC_PORT = 7420
BEACON_PORT = 7422

SPOOF = textwrap.dedent("""
    import os, socket, sys, time
    from meshsync.model.identity import device_id
    from meshsync.net.discovery.codec import encode_beacon
    from meshsync.net.discovery.model import Advert
    count, per_second, target = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    for i in range(count):
        advert = Advert(device_id(os.urandom(32)), %(mesh)r, "pantarlih", %(port)d, 3, "ab")
        sock.sendto(encode_beacon(advert), (target, %(beacon)d))
        if per_second:
            time.sleep(1 / per_second)
""") % {"mesh": MESH, "port": SYNC_PORT, "beacon": BEACON_PORT}


def write_config(home: Path) -> None:
    lines = {
        "partition": (home / "partition").read_text().strip(), "mesh": MESH,
        "listen": f"0.0.0.0:{SYNC_PORT}", "api": "127.0.0.1:7421",
        "discovery": ["broadcast"], "interfaces": ["eth0"], "beacon_port": BEACON_PORT,
        "beacon_interval_s": 1.0, "anti_entropy_s": 60.0,
        "backoff_min_s": 2.0, "backoff_max_s": 300.0,
    }
    (home / "config.toml").write_text("".join(f"{k} = {json.dumps(v)}\n"
                                              for k, v in lines.items()))


def cpu_seconds(home: Path) -> float:
    """User plus system CPU seconds of the daemon running on ``home`` (its daemon.json)."""
    pid = json.loads((home / "daemon.json").read_text())["pid"]
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections(home: Path) -> int:
    """Connections the daemon on ``home`` logged: sessions, failed ones and refusals."""
    text = (home / "daemon.log").read_text(errors="replace")
    return sum(text.count(word) for word in (" synced with ", " session with ", " refused "))


class Meter:
    """Sessions, peer entries and CPU of both daemons, as differences from a start."""

    def __init__(self, d: Daemons) -> None:
        self.d = d
        self.start = self.read()

    def read(self) -> dict[str, float]:
        victim = self.d.api("v", "GET", "/api/status")
        honest = self.d.api("p", "GET", "/api/status")
        return {"victim_sessions": victim["sessions"], "honest_sessions": honest["sessions"],
                "victim_peers": victim["peers"],
                "honest_connections": connections(self.d.homes["p"]),
                "victim_cpu_s": cpu_seconds(self.d.homes["v"]),
                "honest_cpu_s": cpu_seconds(self.d.homes["p"])}

    def since_start(self) -> dict[str, float]:
        now = self.read()
        out = {k: round(now[k] - self.start[k], 2) for k in now}
        out["victim_peers"] = now["victim_peers"]
        return out


def spoof(host: Host, count: int, per_second: float) -> None:
    subprocess.run(host.exec_args(sys.executable, "-c", SPOOF, str(count), str(per_second),
                                  "10.77.0.255"), check=True, timeout=120)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Lab, Daemons]]:
    kpu = tmp_path / "kpu"
    cli("authority", "init", "--home", str(kpu), "--name", "KPU Uji")
    homes: dict[str, Path] = {}
    for i, name in enumerate(["v", "p"]):
        home, partition = tmp_path / name, f"{VILLAGE}/tps-00{i + 1}"
        cli("init", "--home", str(home), "--partition", partition)
        (home / "partition").write_text(partition)
        cli("authority", "issue", "--home", str(kpu), str(home / "device.csr"), "--role",
            "pantarlih", "--scope", VILLAGE, "-o", str(tmp_path / f"{name}.crt"))
        cli("enroll", "--home", str(home), str(tmp_path / f"{name}.crt"))
        write_config(home)
        homes[name] = home
    with Lab() as the_lab:
        hosts = {"v": the_lab.add_host("v", 21), "p": the_lab.add_host("p", 22)}
        daemons = Daemons(homes, hosts)
        try:
            yield the_lab, daemons
        finally:
            daemons.stop()
    assert not the_lab.leftovers(), "the lab left namespaces behind"


def start(d: Daemons) -> None:
    """Both daemons up, one honest session done, then quiet."""
    for name, home in d.homes.items():
        with (home / "daemon.log").open("ab") as log:
            d.procs[name] = subprocess.Popen(
                d.hosts[name].exec_args(*MESHSYNC, "daemon", "--home", str(home), "-v"),
                stdout=log, stderr=log)
    wait_for(lambda: all((h / "daemon.json").exists() for h in d.homes.values()), 30,
             "daemons to start")
    d.put("p", "p-1")
    wait_for(lambda: "p-1" in d.keys("v"), 30, "the honest phone to sync")
    time.sleep(2)


def measure(d: Daemons, seconds: float, phase: str, action: Callable[[], None]
            ) -> dict[str, float]:
    """Run ``action``, wait until ``seconds`` after its start, return the meter's figures."""
    meter = Meter(d)
    until = time.monotonic() + seconds
    action()
    time.sleep(max(0.0, until - time.monotonic()))
    figures = meter.since_start()
    print(f"{phase}: {json.dumps(figures)}")
    return figures


def test_spoofed_and_flooded_beacons_cost_bounded_sessions_and_cpu(
        pair: tuple[Lab, Daemons]) -> None:
    the_lab, d = pair
    start(d)
    attacker = the_lab.hosts["p"]  # the datagrams come from p's address, as spoofed ones do
    one = measure(d, 30, "one spoofed beacon, 30 s", lambda: spoof(attacker, 1, 0))
    flood = measure(d, 40, "5,000 random-id beacons, 40 s",
                    lambda: spoof(attacker, 5000, 500))
    d.put("p", "p-2")  # the honest peer still syncs
    wait_for(lambda: "p-2" in d.keys("v"), 30, "the honest phone to sync after the flood")

    assert one["victim_sessions"] <= 5, one
    assert one["honest_connections"] <= 5, one
    assert one["victim_cpu_s"] < 3, one
    assert flood["victim_peers"] <= 70, flood
    assert flood["honest_connections"] <= 40, flood
    assert flood["victim_cpu_s"] < 8, flood
