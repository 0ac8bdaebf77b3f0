"""Daemons on a simulated Wi-Fi access point (issue 5; field failures B02, B03).

A Linux bridge in its own namespace is the access point; the district laptop
(gateway, 10.77.0.1) and three phones are namespaces on it, each running a real
``meshsync daemon``. Phases, one lab, all addresses inside it:

1. mDNS only, no static peers: everyone converges.
2. Multicast blocked on every bridge port (``mcast_flood off``): daemons restarted
   with the whole cascade converge through the broadcast beacon and the gateway.
3. Client isolation on the phones' ports (``isolated on``): every phone still
   converges with the gateway, and says ``isolation_suspected``.
4. A phone's link down, edits elsewhere, link up: it catches up.

Needs root; skipped with the reason otherwise. The lab is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Host, Lab, skip_reason

REASON = skip_reason()
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

MESHSYNC = [sys.executable, "-m", "meshsync.cli.main"]
VILLAGE = "mimika/jila/diloa"
PHONES = {"p1": 11, "p2": 12, "p3": 13}


def cli(*args: str) -> str:
    proc = subprocess.run([*MESHSYNC, *args], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


def config(home: Path, discovery: list[str]) -> None:
    lines = {
        "partition": (home / "partition").read_text().strip(),
        "mesh": "netns-test", "listen": "0.0.0.0:7420", "api": "127.0.0.1:7421",
        "discovery": discovery, "interfaces": ["eth0"], "beacon_port": 7422,
        "anti_entropy_s": 4.0, "beacon_interval_s": 1.0,
        "backoff_min_s": 0.5, "backoff_max_s": 3.0,
    }
    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in lines.items())
    (home / "config.toml").write_text(text)


class Daemons:
    """Starts and stops one daemon per host; talks to each through its API."""

    def __init__(self, homes: dict[str, Path], hosts: dict[str, Host]) -> None:
        self.homes, self.hosts = homes, hosts
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, discovery: list[str]) -> None:
        for name, home in self.homes.items():
            config(home, discovery)
            with (home / "daemon.log").open("ab") as log:
                self.procs[name] = subprocess.Popen(
                    self.hosts[name].exec_args(*MESHSYNC, "daemon", "--home", str(home), "-v"),
                    stdout=log, stderr=log)
        wait_for(lambda: all((h / "daemon.json").exists() for h in self.homes.values()),
                 30, "daemons to start")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for home in self.homes.values():
            assert not (home / "daemon.json").exists(), "daemon did not clean up on SIGTERM"

    def api(self, name: str, method: str, path: str, body: Any = None) -> Any:
        home = self.homes[name]
        script = (
            "import json,sys,urllib.request as u\n"
            f"h={str(home)!r}\n"
            "a=json.load(open(h+'/daemon.json'))['api']; t=open(h+'/api.token').read().strip()\n"
            "d=sys.stdin.read().encode() or None\n"
            f"r=u.Request('http://'+a+{path!r},data=d,method={method!r},"
            "headers={'Authorization':'Bearer '+t})\n"
            "print(u.urlopen(r,timeout=10).read().decode())\n")
        proc = subprocess.run(self.hosts[name].exec_args(sys.executable, "-c", script),
                              input=json.dumps(body) if body is not None else "",
                              capture_output=True, text=True, check=False, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def put(self, name: str, key: str) -> None:
        self.api(name, "PUT", f"/api/records/voters/{key}",
                 {"fields": {"nama": f"Contoh {key}", "dari": name}})

    def keys(self, name: str) -> set[str]:
        page = self.api(name, "GET", "/api/records/voters?limit=5000")
        return {r["key"] for r in page["records"]}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def converge(d: Daemons, expected: set[str], names: list[str], timeout: float) -> float:
    def done() -> bool:
        return all(expected <= d.keys(n) for n in names)
    try:
        return wait_for(done, timeout, f"{names} to hold {sorted(expected)}")
    except AssertionError:
        state = {n: sorted(d.keys(n)) for n in names}
        raise AssertionError(f"not converged: {state}; peers: "
                             f"{ {n: d.api(n, 'GET', '/api/peers') for n in names} }") from None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, Daemons]]:
    kpu = tmp_path / "kpu"
    cli("authority", "init", "--home", str(kpu), "--name", "KPU Uji")
    homes: dict[str, Path] = {}
    for name, role, scope, partition in [
            ("gw", "gateway", "mimika/jila", "mimika/jila"),
            *[(p, "pantarlih", VILLAGE, f"{VILLAGE}/tps-00{i + 1}")
              for i, p in enumerate(PHONES)]]:
        home = tmp_path / name
        cli("init", "--home", str(home), "--partition", partition)
        (home / "partition").write_text(partition)
        cli("authority", "issue", "--home", str(kpu), str(home / "device.csr"), "--role", role,
            "--scope", scope, "-o", str(tmp_path / f"{name}.crt"))
        cli("enroll", "--home", str(home), str(tmp_path / f"{name}.crt"))
        homes[name] = home
    with Lab() as the_lab:
        hosts = {"gw": the_lab.add_host("gw", 1)}
        for name, octet in PHONES.items():
            hosts[name] = the_lab.add_host(name, octet, gateway="10.77.0.1")
        daemons = Daemons(homes, hosts)
        try:
            yield the_lab, daemons
        finally:
            daemons.stop()
    assert not the_lab.leftovers(), "the lab left namespaces behind"


def test_daemons_converge_on_a_bridge_whatever_the_access_point_does(
        lab: tuple[Lab, Daemons]) -> None:
    the_lab, d = lab
    everyone = ["gw", *PHONES]
    timings: dict[str, float] = {}

    # 1. mDNS only, no static peers.
    d.start(["mdns"])
    for name in everyone:
        d.put(name, f"a-{name}")
    timings["mdns"] = converge(d, {f"a-{n}" for n in everyone}, everyone, 60)
    d.stop()

    # 2. Multicast blocked on every port: the beacon and the gateway probe carry it.
    for host in the_lab.hosts.values():
        the_lab.bridge_port(host, "mcast_flood", "off")
    d.start(["mdns", "broadcast", "gateway"])
    for name in everyone:
        d.put(name, f"b-{name}")
    expected = {f"{p}-{n}" for p in "ab" for n in everyone}
    timings["no-multicast"] = converge(d, expected, everyone, 60)
    def discovery(name: str) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in d.api(name, "GET", "/api/status")["discovery"]}

    for name in everyone:  # the bridge really dropped multicast: nothing came by mDNS,
        # and the beacon did reach every node (a phone may converge through the
        # gateway probe before its first beacon arrives: wait a few intervals for it)
        wait_for(lambda n=name: discovery(n)["broadcast"]["candidates"] > 0, 15,
                 f"a broadcast beacon to reach {name}")
        assert discovery(name)["mdns"]["candidates"] == 0, (name, discovery(name)["mdns"])

    # 3. Client isolation on the phones' ports; the gateway's port stays open.
    for name in PHONES:
        the_lab.bridge_port(the_lab.hosts[name], "isolated", "on")
    for name in PHONES:
        d.put(name, f"c-{name}")
    expected |= {f"c-{n}" for n in PHONES}
    timings["isolation"] = converge(d, expected, everyone, 90)
    # Each phone must first fail to reach the others (TCP connects to isolated ports time
    # out, then back off): on a loaded two-core CI machine that can take a minute.
    try:
        timings["isolation-diagnosis"] = wait_for(
            lambda: all(d.api(n, "GET", "/api/status")["diagnosis"] == "isolation_suspected"
                        for n in PHONES), 120, "phones to report isolation_suspected")
    except AssertionError:
        seen = {n: (d.api(n, "GET", "/api/status")["diagnosis"],
                    [{k: p.get(k) for k in ("device_id", "role", "failures", "last_sync_ms",
                                            "last_error", "addresses")}
                     for p in d.api(n, "GET", "/api/peers")])
                for n in PHONES}
        raise AssertionError(f"phones did not report isolation_suspected: {seen}") from None
    assert d.api("gw", "GET", "/api/status")["diagnosis"] != "isolation_suspected"

    # 4. A phone's link goes down and comes back.
    for name in PHONES:
        the_lab.bridge_port(the_lab.hosts[name], "isolated", "off")
    the_lab.link(the_lab.hosts["p3"], "down")
    d.put("p1", "d-p1")
    d.put("gw", "d-gw")
    converge(d, expected | {"d-p1", "d-gw"}, ["gw", "p1", "p2"], 60)
    assert "d-p1" not in d.keys("p3")
    the_lab.link(the_lab.hosts["p3"], "up")
    timings["heal"] = converge(d, expected | {"d-p1", "d-gw"}, everyone, 60)
    print("convergence seconds per phase:", json.dumps(timings))


def test_lab_is_removed(tmp_path: Path) -> None:
    with Lab() as the_lab:
        the_lab.add_host("x", 5)
        tag = the_lab.tag
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True, check=False).stdout.split()
                if tag in n]
    assert os.geteuid() == 0
