"""Every store passes the storage conformance suite (tests/store_conformance.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_conformance import StoreConformance

from meshsync.store import MemoryStore, SQLiteStore, Store


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def make_store(self) -> Iterator[Callable[[], Store]]:
        stores: list[Store] = []

        def make() -> Store:
            stores.append(MemoryStore())
            return stores[-1]

        yield make
        for store in stores:
            store.close()


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[Callable[[], Store]]:
        stores: list[Store] = []

        def make() -> Store:
            stores.append(SQLiteStore(tmp_path / f"store-{len(stores)}.sqlite"))
            return stores[-1]

        yield make
        for store in stores:
            store.close()
