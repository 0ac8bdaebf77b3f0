"""``meshsync`` starts fast: ``--help`` imports no command module, ``get`` only what it
uses (bench/cli_start.py times it); the lazy command list matches the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from meshsync.cli import main as cli_main

from meshsync.model.errors import UsageError
from meshsync.model.identity import DeviceKey, _pkcs8_seed

MODULES = ["records", "read", "schema", "bundle", "authority", "rotation", "sync",
           "daemon_cmd", "demo", "login", "coklit", "backup", "wipe"]

SHOW_MODULES = """
import sys
from meshsync.cli.main import run
try:
    run()
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHSYNC_HOME"}
    proc = subprocess.run([sys.executable, "-c", SHOW_MODULES, *args], capture_output=True,
                          text=True, env=env, check=False)
    line = proc.stderr.splitlines()[-1]
    assert line.startswith("MODULES "), proc.stderr
    return set(line.split()[1:])


def test_help_imports_no_command_module_and_no_layer() -> None:
    loaded = _modules_after("--help")
    ours = {m for m in loaded if m.startswith("meshsync.")}
    assert ours == {"meshsync.cli", "meshsync.cli.main"}
    assert "cryptography" not in loaded and "trio" not in loaded


def _enrolled_home(tmp_path: Path) -> str:
    """An enrolled home (root.crt, device.crt, credentials in its store) holding one
    record with a conflict-free value: every part ``open_node`` would load is there."""
    kpu, home = str(tmp_path / "kpu"), str(tmp_path / "phone")
    crt = str(tmp_path / "phone.crt")
    for args in (["authority", "init", "--home", kpu, "--name", "KPU Uji"],
                 ["init", "--home", home, "--partition", "a/b"],
                 ["authority", "issue", "--home", kpu, f"{home}/device.csr",
                  "--role", "pantarlih", "--scope", "a/b", "-o", crt],
                 ["enroll", "--home", home, crt],
                 ["put", "--home", home, "voters", "v-1", "nama=X", "umur:=41"]):
        result = CliRunner().invoke(cli_main.main, args)
        assert result.exit_code == 0, result.output
    return home


#: What a read command must not import: the key and trust machinery (cryptography,
#: X.509), hashing (hashlib loads OpenSSL), the node, the clock, threads, daemon, net.
NOT_FOR_READING = {
    "cryptography", "_hashlib", "hashlib", "trio", "concurrent.futures", "platformdirs",
    "shutil", "importlib.metadata", "meshsync.trust", "meshsync.host.local",
    "meshsync.host.clock", "meshsync.host.verify_pool", "meshsync.replica.node",
    "meshsync.store.memory", "meshsync.protocol", "meshsync.net", "meshsync.daemon",
    "meshsync.coklit", "meshsync.cli.writer",
}


def test_read_commands_open_the_home_without_key_or_trust(tmp_path: Path) -> None:
    home = _enrolled_home(tmp_path)
    for args in (["get", "--home", home, "voters", "v-1"],
                 ["get", "--home", home, "voters", "v-1", "--json"],
                 ["ls", "--home", home, "voters"], ["conflicts", "--home", home]):
        loaded = _modules_after(*args)
        assert "meshsync.host.reading" in loaded, args
        prefixes = tuple(f"{m}." for m in NOT_FOR_READING)
        assert {m for m in loaded if m in NOT_FOR_READING or m.startswith(prefixes)} == set()


def test_get_shows_what_the_node_shows(tmp_path: Path) -> None:
    """The read-only open shows the record exactly as a node opened by open_node."""
    from meshsync.host.local import open_node
    from meshsync.model.values import record_to_json

    home = _enrolled_home(tmp_path)
    shown = CliRunner().invoke(cli_main.main, ["get", "--home", home, "voters", "v-1",
                                               "--json"])
    assert shown.exit_code == 0, shown.output
    with open_node(home) as node:
        record = node.get("voters", "v-1")
        listed = list(node.records("voters"))
    assert record is not None and json.loads(shown.stdout) == record_to_json(record.to_json())
    ls = CliRunner().invoke(cli_main.main, ["ls", "--home", home, "voters", "--json"])
    assert json.loads(ls.stdout) == [record_to_json(r.to_json()) for r in listed]


def test_a_read_refuses_a_leaky_key_and_a_bad_config(tmp_path: Path) -> None:
    """What open_node refuses of a home, the read-only open refuses too."""
    home = tmp_path / "phone"
    for args in (["init", "--partition", "a/b"], ["put", "voters", "v-1", "nama=X"]):
        assert CliRunner().invoke(cli_main.main, [*args, "--home", str(home)]).exit_code == 0
    get = ["get", "--home", str(home), "voters", "v-1"]
    (home / "device.key").chmod(0o644)
    assert "readable by others" in CliRunner().invoke(cli_main.main, get).stderr
    (home / "device.key").chmod(0o600)
    pem = (home / "device.key").read_bytes()
    (home / "device.key").write_bytes(pem.replace(b"PRIVATE KEY-----", b"PRIVATE KEY----"))
    assert "cannot read device key" in CliRunner().invoke(cli_main.main, get).stderr
    (home / "device.key").write_bytes(pem)
    config = (home / "config.toml").read_text()
    (home / "config.toml").write_text(config + "storage_reserve_mb = -1\n")
    assert "storage_reserve_mb" in CliRunner().invoke(cli_main.main, get).stderr
    (home / "config.toml").write_text(config + "partiton = 'x'\n")
    assert "unknown key 'partiton'" in CliRunner().invoke(cli_main.main, get).stderr


def _all_commands() -> dict[str, tuple[str, click.Command]]:
    found = {}
    for name in MODULES:
        for command in cli_main.load_module(name):
            assert command.name is not None
            found[command.name] = (name, command)
    return found


def test_the_lazy_table_lists_every_command_with_its_help() -> None:
    table = {name: (module, text) for name, (module, text) in cli_main.COMMANDS.items()}
    real = {name: (module, command.get_short_help_str(1000))
            for name, (module, command) in _all_commands().items()}
    assert table == real


def test_help_is_the_same_before_and_after_loading_the_commands() -> None:
    env = {"COLUMNS": "80", "MESHSYNC_HOME": ""}
    loading = ("import sys; from meshsync.cli.main import main; main.load_all(); "
               "sys.argv[0] = 'meshsync'; main()")
    outputs = [subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True,
                              text=True, check=True, env={**os.environ, **env}).stdout
               for code in ("import sys; from meshsync.cli.main import run; "
                            "sys.argv[0] = 'meshsync'; run()", loading)]
    assert "delete     Delete a record" in outputs[0]
    assert outputs[0] == outputs[1]


def test_authority_gets_rotate_and_revoke() -> None:
    group = cli_main.main.get_command(click.Context(cli_main.main), "authority")
    assert isinstance(group, click.Group)
    assert {"rotate", "revoke", "issue"} <= set(group.commands)


def test_a_home_key_reads_without_the_serialization_module() -> None:
    from cryptography.hazmat.primitives import serialization

    key = DeviceKey.generate()
    pem = key.to_pem()
    assert _pkcs8_seed(pem) == key.private_key.private_bytes_raw()
    assert DeviceKey.from_pem(pem).public_key == key.public_key
    # anything else still goes through cryptography, with its errors
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    assert _pkcs8_seed(other) is None
    with pytest.raises(UsageError, match="not an Ed25519 key"):
        DeviceKey.from_pem(other)
    with pytest.raises(UsageError, match="cannot read device key"):
        DeviceKey.from_pem(pem.replace(b"PRIVATE KEY-----", b"PRIVATE KEY----"))
