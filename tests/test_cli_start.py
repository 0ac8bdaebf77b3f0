"""``meshsync`` starts fast: ``--help`` imports no command module, ``get`` only what it
uses (bench/cli_start.py times it); the lazy command list matches the commands."""

from __future__ import annotations

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

MODULES = ["records", "schema", "bundle", "authority", "rotation", "sync", "daemon_cmd", "demo",
           "login",
           "coklit", "backup", "wipe"]

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


def test_get_imports_only_what_it_uses(tmp_path: Path) -> None:
    home = str(tmp_path / "phone")
    for args in (["init", "--partition", "a/b"], ["put", "voters", "v-1", "nama=X"]):
        assert CliRunner().invoke(cli_main.main, [*args, "--home", home]).exit_code == 0
    loaded = _modules_after("get", "--home", home, "voters", "v-1")
    assert "meshsync.replica.node" in loaded
    heavy = {"trio", "cryptography.x509", "cryptography.hazmat.primitives.serialization",
             "concurrent.futures", "platformdirs", "meshsync.trust.store",
             "meshsync.trust.issue", "meshsync.protocol",
             "meshsync.net", "meshsync.daemon", "meshsync.coklit", "importlib.metadata"}
    assert heavy & loaded == set()


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
