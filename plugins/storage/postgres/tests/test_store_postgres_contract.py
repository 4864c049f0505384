"""The storage contract (gw_storagekit.StoreContract) against the real PostgreSQL: two stores on one schema are two
gateways sharing the database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gw.store import Store
from gw_storagekit import StoreContract
from gw_store_postgres import PostgresStore


class TestPostgresContract(StoreContract):
    @pytest.fixture
    def store_factory(self, make_pg_store: Callable[..., PostgresStore]) -> Callable[[], Store]:
        return make_pg_store
