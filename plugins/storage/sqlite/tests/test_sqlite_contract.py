"""The storage contract (gw_storagekit.StoreContract) against SQLite: two stores on one file are two gateways."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gw.runtime import Runtime
from gw.store import Store
from gw.testing import write_pipeline
from gw_storagekit import StoreContract


class TestSqliteContract(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], Store]:
        path = write_pipeline(tmp_path, '[storage]\nuse = "sqlite"\n')

        def make() -> Store:
            store = Runtime.build(path).store
            assert store is not None
            return store

        return make
