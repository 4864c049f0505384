"""The storage contract against the in-memory reference store (gw_storagekit.MemoryStore)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gw.store import Store
from gw_storagekit import MemoryData, MemoryStore, StoreContract


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store_factory(self) -> Callable[[], Store]:
        data = MemoryData()
        return lambda: MemoryStore(data=data)
