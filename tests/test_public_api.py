"""``meshsync``'s public API: every name of ``__all__`` resolves, lazily."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import meshsync


@pytest.mark.parametrize("name", meshsync.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(meshsync, name)
    assert value is not None
    if isinstance(value, types.ModuleType):
        assert value.__name__ == "meshsync.model.errors"
    elif name != "__version__":
        assert value.__name__ == name  # the object itself, not a same-named module


def test_public_names_are_the_layers_own_objects() -> None:
    from meshsync.host.local import open_node
    from meshsync.model.errors import UsageError
    from meshsync.replica.node import Node

    assert meshsync.open_node is open_node and meshsync.Node is Node
    assert meshsync.errors.UsageError is meshsync.UsageError is UsageError


def test_dir_lists_the_public_names_and_unknown_names_fail() -> None:
    assert set(meshsync.__all__) <= set(dir(meshsync))
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = meshsync.nothing_here  # type: ignore[attr-defined]


def test_importing_meshsync_loads_no_layer() -> None:
    code = ("import sys, meshsync; "
            "print(sorted(m for m in sys.modules if m.startswith('meshsync.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
