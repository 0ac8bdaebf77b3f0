"""The console script runs a plain ``meshsync get`` without click (cli/start.py), and
prints exactly what the click command prints, on every command line: those it runs
itself and those it hands to click (errors, other forms, output click would change)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from meshsync.cli.main import main
from meshsync.cli.start import PlainGet, plain_get

BY_START = "from meshsync.cli.start import run; run()"
BY_CLICK = "from meshsync.cli.main import run; run()"
MODULES_AFTER = ("import sys\nfrom meshsync.cli.start import run\nrun()\n"
                 "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a record, a deleted record, one whose field name holds an escape
    sequence, and a key held in two partitions."""
    path = tmp_path_factory.mktemp("plain") / "phone"
    for args in (["init", "--partition", "a/b"],
                 ["put", "voters", "v-1", "nama=Yosina Ödön", "umur:=41", "foto:=null"],
                 ["put", "voters", "v-2", "nama=X"], ["delete", "voters", "v-2"],
                 ["put", "voters", "v-3", "\x1b[31mmerah=1"],
                 ["put", "voters", "v-4", "nama=A"],
                 ["put", "voters", "v-4", "nama=B", "--partition", "a/c"]):
        result = CliRunner().invoke(main, [*args, "--home", str(path)])
        assert result.exit_code == 0, result.output
    return path


def _run(code: str, args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("MESHSYNC_HOME", "MESHSYNC_LANG")}
    return {**base, "LANG": "C.UTF-8", **extra}


def _cases(home: Path) -> list[tuple[list[str], dict[str, str]]]:
    h = str(home)
    return [
        (["get", "--home", h, "voters", "v-1"], _env()),
        (["get", "voters", "v-1", "--json", "--home", h], _env()),
        (["--lang", "id", "get", "--home", h, "voters", "v-2"], _env()),
        (["--lang", "EN", "get", "--home", h, "--partition", "a/c", "voters", "v-4"], _env()),
        (["get", "voters", "v-1"], _env(MESHSYNC_HOME=h)),
        (["get", "--home", h, "voters", "v-4"], _env()),  # several partitions: an error
        (["get", "--home", h, "voters", "nobody"], _env()),
        (["--lang", "id", "get", "--home", h, "voters", "nobody"], _env()),
        (["get", "--home", h, "--partition", "A/B", "voters", "v-1"], _env()),
        (["get", f"--home={h}", "voters", "v-1"], _env()),
        (["get", "--home", h, "voters"], _env()),
        (["get", "--home", h, "--json", "--json", "voters", "v-1"], _env()),
        (["get", "--home", h, "voters", "v-3"], _env()),  # click strips the escape
        (["get", "--home", str(home / "config.toml"), "voters", "v-1"], _env()),
        (["get", "--home", str(home.parent / "none"), "voters", "v-1"], _env()),
    ]


def test_plain_get_prints_what_click_prints(home: Path) -> None:
    for args, env in _cases(home):
        assert _run(BY_START, args, env) == _run(BY_CLICK, args, env), args


def test_plain_get_runs_without_click(home: Path) -> None:
    for args in (["get", "--home", str(home), "voters", "v-1"],
                 ["--lang", "id", "get", "--json", "--home", str(home), "voters", "v-2"]):
        code, _, err = _run(MODULES_AFTER, args, _env())
        loaded = set(err.splitlines()[-1].split()[1:])
        assert code == 0 and "meshsync.cli.show" in loaded
        assert {"click", "cryptography", "hashlib", "meshsync.cli.main"} & loaded == set()
    # an error goes to click, which reports it (and exits before MODULES is printed)
    code, _, err = _run(MODULES_AFTER, ["get", "--home", str(home), "voters", "x"], _env())
    assert (code, err) == (1, "meshsync: error: no record voters/x\n")


def test_what_counts_as_a_plain_get() -> None:
    assert plain_get(["get", "c", "k"]) == PlainGet(None, None, None, False, "c", "k")
    assert plain_get(["--lang", "Id", "get", "--partition", "p/q", "c", "k", "--json",
                      "--home", "/nowhere"]) == PlainGet("id", Path("/nowhere"), "p/q",
                                                         True, "c", "k")
    for argv in (["get", "c"], ["get", "c", "k", "x"], ["ls", "c"], ["--help"],
                 ["get", "--help", "c", "k"], ["get", "-h", "c", "k"],
                 ["--lang", "fr", "get", "c", "k"], ["get", "--home", "-x", "c", "k"],
                 ["get", "--home", "a", "--home", "b", "c", "k"], ["get", "c", "k", "--home"],
                 ["get", "--", "c", "k"], ["get", "c", "-k"], ["--version"], []):
        assert plain_get(argv) is None, argv
