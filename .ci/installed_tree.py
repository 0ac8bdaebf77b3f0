"""Run a checker on the package as it is installed: ``meshsync`` with ``meshsync.cli``,
``meshsync.daemon`` and ``meshsync.coklit`` inside it.

pyproject.toml installs ``cli/``, ``daemon/`` and ``examples/coklit/`` under those names
(``[tool.setuptools.package-dir]``), which mypy and import-linter cannot follow from a
source checkout. This script builds that layout in a temporary folder from symbolic
links (nothing is copied, so line numbers and edits are the checkout's own), runs the
checker there and prints its output with the checkout's paths.

Usage (from anywhere; exits with the checker's status)::

    python .ci/installed_tree.py mypy            # mypy strict on the whole installed tree
    python .ci/installed_tree.py lint-imports    # the import contracts of pyproject.toml
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def mapped(repo: Path = REPO) -> dict[str, str]:
    """Installed subpackage name -> its folder in ``repo``, from pyproject.toml's
    ``[tool.setuptools.package-dir]`` (e.g. ``{"cli": "cli", "coklit": "examples/coklit"}``)."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    return {name.removeprefix("meshsync."): folder
            for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def build(dest: Path, repo: Path = REPO, *, copy: bool = False) -> Path:
    """Lay out ``dest/meshsync`` as the installed package and return ``dest``.

    Each entry of ``repo/meshsync`` and each folder of :func:`mapped` becomes a symbolic
    link, or with ``copy`` a copy (for a test that edits the tree). ``dest`` must not
    exist or be empty. Raises :class:`FileExistsError` if ``dest/meshsync`` exists.
    """
    package = dest / "meshsync"
    package.mkdir(parents=True)
    sources = {entry.name: entry for entry in (repo / "meshsync").iterdir()
               if entry.name != "__pycache__"}
    sources |= {name: repo / folder for name, folder in mapped(repo).items()}
    for name, source in sources.items():
        target = package / name
        if not copy:
            target.symlink_to(source)
        elif source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return dest


def command(tool: str, tree: Path, repo: Path = REPO) -> list[str]:
    """The command line that runs ``tool`` (``mypy`` or ``lint-imports``) on ``tree``
    with ``repo``'s pyproject.toml. Raises :class:`ValueError` for another tool."""
    config = str(repo / "pyproject.toml")
    if tool == "mypy":
        return [sys.executable, "-m", "mypy", "--config-file", config,
                "--cache-dir", str(repo / ".mypy_cache" / "installed"), str(tree / "meshsync")]
    if tool == "lint-imports":
        return [str(Path(sys.executable).parent / "lint-imports"), "--no-logo", "--no-cache",
                config]
    raise ValueError(f"unknown tool {tool!r} (mypy or lint-imports)")


def run(tool: str, tree: Path, repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``tool`` on ``tree`` (built by :func:`build`), importing ``meshsync`` from it.

    Returns the finished process with its output as text (stdout and stderr merged).
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(command(tool, tree, repo), cwd=tree, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def checkout_paths(output: str, repo: Path = REPO) -> str:
    """``output`` with the tree's ``meshsync/cli/...`` paths written as the checkout's
    (``cli/...``), so that an error points at the file to edit."""
    for name, folder in mapped(repo).items():
        output = output.replace(f"meshsync/{name}/", f"{folder}/")
    return output


def main(argv: list[str]) -> int:
    """Entry point: ``argv`` is ``[tool]``; returns the tool's exit status."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="meshsync-tree-") as tmp:
        done = run(argv[0], build(Path(tmp)))
        sys.stdout.write(checkout_paths(done.stdout).replace(tmp + "/", ""))
        return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
