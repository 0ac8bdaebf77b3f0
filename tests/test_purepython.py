"""The phone-side pure-Python install (docs/android.md §4), run in every CI run: the core
and sync tests pass with msgpack's pure-Python fallback (``MSGPACK_PUREPYTHON=1``) and
python-zeroconf without its compiled modules (the ``purepython`` plugin,
tests/purepython.py), and the fallbacks are what really ran.

The first test starts that run: a child ``python -m pytest`` on :data:`FILES` in the
fallback environment, which includes this file, whose two checks run only there and
fail if a compiled module was loaded. The child must pass and must report both checks
as passed (not skipped). ``.ci/purepython.sh`` runs a larger set the same way, by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_THE_FALLBACK_RUN = bool(os.environ.get("MSGPACK_PUREPYTHON"))

#: The core and sync tests of the fallback run (about 40 s on 2 idle cores): the codec
#: with hostile input, sessions and their bytes on every store, bundles, and mDNS
#: discovery (zeroconf) on loopback; the two bundle tests that time a 100,000-change
#: import in bounded memory are left to the main run.
FILES = ["tests/test_purepython.py", "tests/test_wire_codec.py", "tests/test_session.py",
         "tests/test_sync_bytes.py", "tests/test_bundle.py", "tests/test_discovery.py"]
DESELECT = "not 100k and not bounded_memory"
#: The checks below, which the child run must report as passed.
CHECKS = ["test_msgpack_uses_its_fallback", "test_zeroconf_modules_are_pure_python"]


@pytest.mark.skipif(IN_THE_FALLBACK_RUN, reason="this is the run the test starts")
def test_core_and_sync_tests_pass_on_the_pure_python_fallbacks() -> None:
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(MSGPACK_PUREPYTHON="1", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "purepython",
         "-rps", *FILES, "-k", DESELECT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-6000:]
    for check in CHECKS:
        assert f"PASSED tests/test_purepython.py::{check}" in report, report[-6000:]


fallback_only = pytest.mark.skipif(not IN_THE_FALLBACK_RUN,
                                   reason="only in the pure-Python run the test above starts")


@fallback_only
def test_msgpack_uses_its_fallback() -> None:
    import msgpack

    assert msgpack.Packer.__module__ == "msgpack.fallback"
    assert msgpack.Unpacker.__module__ == "msgpack.fallback"
    assert "msgpack._cmsgpack" not in sys.modules
    from meshsync.model import codec  # the codec meshsync really uses

    blob = codec.pack({"a": [1, b"x"]})
    assert type(codec._packers.packer).__module__ == "msgpack.fallback"
    assert codec.unpack(blob, max_bytes=100) == {"a": [1, b"x"]}


@fallback_only
def test_zeroconf_modules_are_pure_python() -> None:
    purepython = sys.modules.get("purepython")
    assert purepython is not None and purepython.ACTIVE, "run with -p purepython"
    import zeroconf._cache
    import zeroconf._dns
    import zeroconf._protocol.incoming

    for module in (zeroconf._dns, zeroconf._cache, zeroconf._protocol.incoming):
        assert module.__file__ is not None and module.__file__.endswith(".py"), module
    compiled = [name for name, mod in sys.modules.items()
                if name.startswith("zeroconf") and (getattr(mod, "__file__", "") or "")
                .endswith(".so")]
    assert compiled == []
