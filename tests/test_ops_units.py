"""The example systemd units of docs/operations.md parse and carry what the guide
promises: ``MESHSYNC_HOME``, a restart policy, the hardening options. With
``systemd-analyze`` on the machine, ``systemd-analyze verify`` accepts them too (the
meshsync program's path replaced by one that exists here)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parent.parent / "examples" / "ops"
UNITS = ["meshsync-central.service", "meshsync-gateway.service"]
PROGRAM = "/opt/meshsync/bin/meshsync"


def parse(path: Path) -> configparser.RawConfigParser:
    """The unit as INI; a key given more than once keeps its last value here."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(path.read_text("utf-8"), source=str(path))
    return parser


@pytest.mark.parametrize("name", UNITS)
def test_unit_has_the_required_keys(name: str) -> None:
    unit = parse(OPS / name)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    lines = (OPS / name).read_text("utf-8").splitlines()
    assert any(line.startswith("Environment=MESHSYNC_HOME=/var/lib/meshsync/")
               for line in lines)
    assert service["ExecStart"].startswith(f"{PROGRAM} daemon --role ")
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/meshsync"
    assert service["User"] == "meshsync"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_each_role_is_the_one_named() -> None:
    assert "--role central" in parse(OPS / UNITS[0])["Service"]["ExecStart"]
    assert "--store postgresql://" in parse(OPS / UNITS[0])["Service"]["ExecStart"]
    gateway = parse(OPS / UNITS[1])["Service"]["ExecStart"]
    assert "--role gateway" in gateway and "--uplink " in gateway


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    program = shutil.which("true") or "/bin/true"
    paths = []
    for name in UNITS:
        copy = tmp_path / name
        copy.write_text((OPS / name).read_text().replace(PROGRAM, program))
        paths.append(str(copy))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
