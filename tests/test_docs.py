"""The repository's documents agree with the code that cites them.

Docstrings and comments cite ``docs/architecture.md §N``, ``docs/failure-cases.md BNN``
and ``docs/protocol.md``; docs/failure-cases.md names the tests that show each case; the
README's Layout and docs/architecture.md list the layer folders. These checks keep those
references true, and keep the repository free of references to design notes kept outside
it (it carries its own design in docs/).
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
THIS = Path(__file__).resolve()
CODE_DIRS = ("meshsync", "cli", "daemon", "examples", "tests", "bench")

ARCH_CITE = re.compile(r"docs/architecture\.md([^\n)]{0,40})")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
CASE_CITE = re.compile(r"docs/failure-cases\.md([^\n)]{0,30})")
CASE_ID = re.compile(r"(?<![\w-])B\d{2}(?!\w)")
HEADING_SECTION = re.compile(r"^#{1,6} (\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
HEADING_CASE = re.compile(r"^#{1,6} (B\d{2})\b", re.MULTILINE)
NAMED_TEST = re.compile(r"`(test_\w+\.py)::(test_\w+)`")
OUTSIDE_NOTES = re.compile(r"\.\./shared|(?<![\w-])(?:design|style|field-failures|glossary-id)\.md")


def python_files() -> list[Path]:
    """Every Python file of the project (not the virtualenv, not this file)."""
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")
                  if p.resolve() != THIS and "__pycache__" not in p.parts)


@cache
def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def citations(pattern: re.Pattern[str], inner: re.Pattern[str]) -> dict[str, list[str]]:
    """``{cited id: ["file:line", ...]}`` for every ``inner`` match right after ``pattern``."""
    found: dict[str, list[str]] = {}
    for path in python_files():
        for match in pattern.finditer(text(path)):
            line = text(path).count("\n", 0, match.start()) + 1
            for cited in inner.findall(match.group(1)):
                found.setdefault(cited, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def section(markdown: str, heading: str) -> str:
    """The text of the ``## heading`` section of ``markdown``, up to the next ``## ``."""
    start = markdown.index(f"## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def layer_folders() -> list[str]:
    """Package folders under meshsync/, relative to it (``net/discovery``)."""
    package = ROOT / "meshsync"
    return sorted(str(p.parent.relative_to(package)) for p in package.rglob("__init__.py")
                  if p.parent != package)


def repository_files() -> list[Path]:
    """Files git tracks or would track (not ignored); every file if git is unavailable."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts
                and ".venv" not in p.parts]
    return [ROOT / name for name in out.splitlines() if (ROOT / name).is_file()]


def test_every_cited_architecture_section_exists() -> None:
    headings = set(HEADING_SECTION.findall(text(DOCS / "architecture.md")))
    cited = citations(ARCH_CITE, SECTION)
    assert cited, "no docs/architecture.md §N citation found: is the pattern still right?"
    missing = {n: where for n, where in cited.items() if n not in headings}
    assert not missing, f"sections cited but not headings of docs/architecture.md: {missing}"


def test_architecture_has_sections_1_to_11() -> None:
    headings = set(HEADING_SECTION.findall(text(DOCS / "architecture.md")))
    assert {str(n) for n in range(1, 12)} <= headings


def test_every_cited_failure_case_exists() -> None:
    cases = set(HEADING_CASE.findall(text(DOCS / "failure-cases.md")))
    cited = citations(CASE_CITE, CASE_ID)
    for path in python_files():  # bare ids too: "(B04)"
        for match in CASE_ID.finditer(text(path)):
            line = text(path).count("\n", 0, match.start()) + 1
            cited.setdefault(match.group(0), []).append(f"{path.relative_to(ROOT)}:{line}")
    assert cited, "no failure case id found in the code: is the pattern still right?"
    missing = {case: where for case, where in cited.items() if case not in cases}
    assert not missing, f"cases cited but not headings of docs/failure-cases.md: {missing}"


def test_every_test_named_in_failure_cases_exists() -> None:
    named = NAMED_TEST.findall(text(DOCS / "failure-cases.md"))
    assert named, "docs/failure-cases.md names no test"
    missing = []
    for file, function in sorted(set(named)):
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
            continue
        defined = {node.name for node in ast.walk(ast.parse(text(path)))
                   if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        if function not in defined:
            missing.append(f"{file}::{function}")
    assert not missing, f"docs/failure-cases.md names tests that do not exist: {missing}"


def test_every_cited_doc_exists() -> None:
    cited = set(re.findall(r"docs/([\w-]+\.md)", "\n".join(text(p) for p in python_files())))
    assert not {name for name in cited if not (DOCS / name).is_file()}


def test_every_layer_folder_is_in_the_readme_layout_and_the_architecture() -> None:
    layout = section(text(ROOT / "README.md"), "Layout")
    architecture = section(text(DOCS / "architecture.md"), "3. Layers")
    missing = []
    for folder in layer_folders():
        top, _, _ = folder.partition("/")
        leaf = folder.rsplit("/", 1)[-1]
        if f"meshsync/{top}/" not in layout or f"{leaf}/" not in layout:
            missing.append(f"README Layout: {folder}")
        if f"{leaf}/" not in architecture:
            missing.append(f"docs/architecture.md §3: {folder}")
    assert not missing, missing


def test_protocol_keeps_the_session_table_markers() -> None:
    states = section(text(DOCS / "protocol.md"), "Session states")
    begin, end = "<!-- session-table:begin -->", "<!-- session-table:end -->"
    assert begin in states and end in states and states.index(begin) < states.index(end)


def test_nothing_refers_to_design_notes_outside_the_repository() -> None:
    offenders = []
    for path in repository_files():
        if path.resolve() == THIS:
            continue
        try:
            content = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files cite nothing
        for match in OUTSIDE_NOTES.finditer(content):
            line = content.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not offenders, ("the repository carries its own design in docs/; cite "
                           f"docs/architecture.md or docs/failure-cases.md instead: {offenders}")


def test_readme_and_architecture_state_what_the_code_does() -> None:
    """Review: the README's table, Library, Layout and Development, the package
    docstring and docs/architecture.md §3 match the code and CI."""
    readme = text(ROOT / "README.md")
    for command in ("get", "delete"):
        assert f"`meshsync {command} COLLECTION KEY [--partition P]`" in readme
    library = " ".join(section(readme, "Library").split())
    assert "import meshsync; meshsync.open_node(...)" in library
    assert "meshsync.__all__" in library
    development = " ".join(section(readme, "Development").split())
    for needed in (".ci/installed_tree.py lint-imports", ".ci/installed_tree.py mypy",
                   "`meshsync.schemas`", "`meshsync.schema_packages`",
                   "`meshsync.schema_importers`"):
        assert needed in development, needed
    layout = " ".join(section(readme, "Layout").split())
    assert "imports only the ones above it in this list" not in layout
    assert "`store` and `trust` are siblings" in layout and "`testing`" in layout
    init = text(ROOT / "meshsync" / "__init__.py")
    assert "except :mod:`meshsync.net`)" not in init
    arch = " ".join(text(ROOT / "docs" / "architecture.md").split())
    assert "meant to be checked in CI" not in arch
    assert "`host/local.py`, `host/clock.py` and `host/lock.py`" in arch
