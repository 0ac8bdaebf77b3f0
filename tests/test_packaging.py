"""The installed package holds every module: pyproject lists packages by hand (cli/,
daemon/ and examples/coklit/ are mapped under meshsync.*), so check the list."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _packages_on_disk() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {v: k for k, v in config["package-dir"].items()}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix()
        if folder.startswith((".venv", "tests", "build")):
            continue
        for path, name in sorted(mapped.items(), key=lambda kv: -len(kv[0])):
            if folder == path or folder.startswith(path + "/"):
                found.add(name + folder[len(path):].replace("/", "."))
                break
        else:
            found.add(folder.replace("/", "."))
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    assert _packages_on_disk() == listed
