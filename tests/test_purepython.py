"""The phone-side pure-Python run (``.ci/purepython.sh``, docs/android.md): the fallbacks
are what really runs, not the compiled modules."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("MSGPACK_PUREPYTHON"),
                                reason="only in the pure-Python run (.ci/purepython.sh)")


def test_msgpack_uses_its_fallback() -> None:
    import msgpack

    assert msgpack.Packer.__module__ == "msgpack.fallback"
    assert msgpack.Unpacker.__module__ == "msgpack.fallback"
    from meshsync.protocol import frames  # the codec meshsync really uses

    assert frames is not None
    assert msgpack.unpackb(msgpack.packb({"a": [1, b"x"]})) == {"a": [1, b"x"]}


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
