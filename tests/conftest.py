"""Shared fixtures. Keep this small and generic: other suites add to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Plain modules imported by test files: rewrite their asserts too, for useful failures.
pytest.register_assert_rewrite("helpers", "store_conformance")

from helpers import Device  # noqa: E402  (must follow register_assert_rewrite)


@pytest.fixture
def make_device(tmp_path: Path) -> Iterator[Callable[..., Device]]:
    """Factory ``make_device(name, kind="memory"|"sqlite", **kwargs)``; closes all at teardown.

    ``kind="sqlite"`` puts the store in a file under ``tmp_path``.
    """
    made: list[Device] = []

    def make(name: str, kind: str = "memory", **kwargs: Any) -> Device:
        if kind == "memory":
            device = Device.memory(name, **kwargs)
        elif kind == "sqlite":
            device = Device.sqlite(name, tmp_path / f"{name}.sqlite", **kwargs)
        else:
            raise ValueError(f"unknown store kind {kind!r}")
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()
