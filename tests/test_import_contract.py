"""The import contracts of pyproject.toml (docs/architecture.md §3) hold on the real
tree and catch a deliberately wrong import."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _tree_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("installed_tree",
                                                  ROOT / ".ci" / "installed_tree.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contracts_hold_on_the_real_tree(tmp_path: Path) -> None:
    tool = _tree_tool()
    done = tool.run("lint-imports", tool.build(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "0 broken" in done.stdout


def _lint_with(tmp_path: Path, module: str, line: str) -> tuple[int, str]:
    """lint-imports on a copy of the installed tree where ``module`` (a path under
    meshsync/) ends with ``line``: its exit status and output."""
    tool = _tree_tool()
    tree = tool.build(tmp_path, copy=True)
    path = tree / "meshsync" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    done = tool.run("lint-imports", tree)
    return done.returncode, done.stdout


def test_a_model_module_importing_host_breaks_the_layers(tmp_path: Path) -> None:
    status, out = _lint_with(tmp_path, "model/limits.py", "import meshsync.host")
    assert status != 0
    assert "Layers: each folder imports only the folders below it BROKEN" in out
    assert "meshsync.model.limits -> meshsync.host" in out


def test_the_library_importing_the_examples_is_refused(tmp_path: Path) -> None:
    status, out = _lint_with(tmp_path, "daemon/config.py", "import meshsync.coklit")
    assert status != 0
    assert "The library never imports the examples (only the command line may) BROKEN" in out


def test_the_daemon_importing_the_command_line_is_refused(tmp_path: Path) -> None:
    status, out = _lint_with(tmp_path, "daemon/config.py", "import meshsync.cli.common")
    assert status != 0
    assert "The daemon never imports the command line BROKEN" in out
