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


def test_a_model_module_importing_host_breaks_the_layers(tmp_path: Path) -> None:
    tool = _tree_tool()
    tree = tool.build(tmp_path, copy=True)
    limits = tree / "meshsync" / "model" / "limits.py"
    limits.write_text(limits.read_text() + "\nimport meshsync.host  # wrong way up\n")
    done = tool.run("lint-imports", tree)
    assert done.returncode != 0
    assert "Layers: each folder imports only the folders below it BROKEN" in done.stdout
    assert "meshsync.model.limits -> meshsync.host" in done.stdout


def test_the_library_importing_the_examples_is_refused(tmp_path: Path) -> None:
    tool = _tree_tool()
    tree = tool.build(tmp_path, copy=True)
    runner = tree / "meshsync" / "daemon" / "config.py"
    runner.write_text(runner.read_text() + "\nimport meshsync.coklit\n")
    done = tool.run("lint-imports", tree)
    assert done.returncode != 0
    assert "The library never imports the examples (only the command line may) BROKEN" \
        in done.stdout
