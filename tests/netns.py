"""A Wi-Fi access point in Linux network namespaces, for daemon tests (docs/architecture.md §10.5).

One namespace holds a bridge (the access point); every host gets its own namespace
and a veth pair whose far end is a bridge port. Addresses are in 10.77.0.0/24,
inside namespaces this module created; nothing is routed anywhere else. Everything
is deleted by :meth:`Lab.close` (deleting a namespace deletes its links).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

SUBNET = "10.77.0"


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (CI runs as root)"
    if shutil.which("ip") is None or shutil.which("bridge") is None:
        return "iproute2 (ip, bridge) is not installed"
    probe = f"msprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def run(*args: str) -> str:
    """Run a command; raise with its stderr if it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Host:
    """One namespace on the access point."""

    name: str
    ns: str
    address: str
    port: str  # the bridge port (in the AP namespace)

    def exec_args(self, *args: str) -> list[str]:
        """Command line running ``args`` inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *args]


@dataclass
class Lab:
    """The access point and its hosts. Use as a context manager."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    @property
    def ap(self) -> str:
        return f"msap{self.tag}"

    def __enter__(self) -> Lab:
        self._netns(self.ap)
        run("ip", "-n", self.ap, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.ap, "link", "set", "br0", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _netns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str, octet: int, gateway: str | None = None) -> Host:
        """A host with address 10.77.0.OCTET on eth0; default route via ``gateway``."""
        ns = f"ms{name}{self.tag}"
        port = f"p{octet}{self.tag}"
        self._netns(ns)
        run("ip", "link", "add", port, "netns", self.ap, "type", "veth", "peer", "name",
            "eth0", "netns", ns)
        run("ip", "-n", self.ap, "link", "set", port, "master", "br0")
        run("ip", "-n", self.ap, "link", "set", port, "up")
        run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        if gateway is not None:
            run("ip", "-n", ns, "route", "add", "default", "via", gateway)
        host = Host(name, ns, f"{SUBNET}.{octet}", port)
        self.hosts[name] = host
        return host

    def bridge_port(self, host: Host, *settings: str) -> None:
        """``bridge link set dev PORT SETTINGS`` on the access point."""
        run("ip", "netns", "exec", self.ap, "bridge", "link", "set", "dev", host.port,
            *settings)

    def link(self, host: Host, state: str) -> None:
        """Take a host's bridge port ``up`` or ``down``."""
        run("ip", "-n", self.ap, "link", "set", host.port, state)

    def close(self) -> None:
        """Delete every namespace this lab made (and with them, all its links)."""
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.namespaces.clear()

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (should be none after close)."""
        listed = run("ip", "netns", "list")
        return [line.split()[0] for line in listed.splitlines() if self.tag in line]
