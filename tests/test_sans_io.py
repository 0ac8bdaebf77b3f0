"""The sans-I/O rule (docs/architecture.md §3.2), checked on the source: the core
(meshsync/model, store, trust, replica, protocol, and testing) imports no network, event
loop, clock or process module, and only the stores touch files or databases.

``model/codec.py``'s ``threading.local`` is the one stdlib threading use allowed (a
per-thread encoder cache; no I/O).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ("model", "store", "trust", "replica", "protocol", "testing")
#: Modules no core module imports (nor any submodule of them).
FORBIDDEN = ("trio", "socket", "ssl", "zeroconf", "asyncio", "time", "urllib", "http",
             "selectors", "subprocess")
#: Pure submodules of forbidden packages (string handling, no I/O): trust/profile.py
#: percent-encodes scopes in certificate URIs with urllib.parse.
ALLOWED = ("urllib.parse",)
#: Modules only meshsync/store may import (a store is a database or files).
STORE_ONLY = ("sqlite3", "psycopg", "psycopg_pool", "os", "pathlib", "shutil", "tempfile")
#: File reads and writes: ``open(...)``, ``Path.read_*``/``write_*``, ``.open(...)``.
FILE_CALLS = ("read_text", "read_bytes", "write_text", "write_bytes")


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module]
    return []


def _file_call(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "open":
        return "open("
    if isinstance(func, ast.Attribute) and func.attr in FILE_CALLS:
        return f".{func.attr}("
    return None


def problems(package: Path) -> list[str]:
    """Every breach of the rule in the core folders under ``package`` (meshsync/), as
    ``path:line: what``."""
    found = []
    for layer in CORE:
        for path in sorted((package / layer).rglob("*.py")):
            in_store = layer == "store"
            for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
                where = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"
                for name in _imported(node):
                    top = name.split(".")[0]
                    if name in ALLOWED:
                        continue
                    if top in FORBIDDEN or (top in STORE_ONLY and not in_store):
                        found.append(f"{where}: imports {name}")
                call = _file_call(node)
                if call and not in_store:
                    found.append(f"{where}: calls {call}")
    return found


def test_the_core_does_no_io() -> None:
    assert problems(ROOT / "meshsync") == []


@pytest.mark.parametrize(("layer", "line"), [("replica", "import trio"),
                                             ("protocol", "from time import monotonic"),
                                             ("model", "import sqlite3"),
                                             ("trust", "data = open('x').read()")])
def test_an_injected_breach_is_found(tmp_path: Path, layer: str, line: str) -> None:
    copy = tmp_path / "meshsync"
    for name in CORE:
        shutil.copytree(ROOT / "meshsync" / name, copy / name)
    (copy / layer / "injected.py").write_text(f"{line}\n", "utf-8")
    assert [p.split(": ", 1)[0].split(":")[0] for p in problems(copy)] == \
        [f"meshsync/{layer}/injected.py"]
