"""A pytest plugin (``-p purepython``, with ``tests`` on ``PYTHONPATH``) that makes
python-zeroconf import its pure-Python modules, as on a phone without its compiled
ones (docs/android.md; ``.ci/purepython.sh``).

python-zeroconf's wheels ship each Cython module twice, ``_dns.py`` beside
``_dns.cpython-*.so``; Python's import system prefers the extension, and zeroconf
has no run-time switch (``SKIP_CYTHON=1`` only applies when building from the sdist).
This finder hands out the ``.py`` file wherever an extension module of the
``zeroconf`` package would load. msgpack needs nothing here: it honours
``MSGPACK_PUREPYTHON=1`` at import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: Set on this module while the finder is installed (tests/test_purepython.py reads it).
ACTIVE = False


class PurePythonZeroconf(importlib.abc.MetaPathFinder):
    """Find ``zeroconf.*`` modules as source when an extension module would load."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "zeroconf" and not fullname.startswith("zeroconf."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        assert spec.origin is not None
        where = Path(spec.origin).parent
        if Path(spec.origin).name.startswith("__init__."):  # a compiled package
            return importlib.util.spec_from_file_location(
                fullname, where / "__init__.py", submodule_search_locations=[str(where)])
        return importlib.util.spec_from_file_location(
            fullname, where / (fullname.rpartition(".")[2] + ".py"))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (before zeroconf is imported)."""
    global ACTIVE  # noqa: PLW0603 - a plain flag read by the check
    if "zeroconf" in sys.modules:
        raise RuntimeError("zeroconf already imported: load this plugin with -p purepython")
    sys.meta_path.insert(0, PurePythonZeroconf())
    ACTIVE = True


install()
