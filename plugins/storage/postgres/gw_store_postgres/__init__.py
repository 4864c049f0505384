"""gw-store-postgres: the PostgreSQL storage backend (``[storage] use = "postgres"``), shared by several gateways."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .store import PostgresStore, PostgresStoreOptions

__all__ = ["PostgresStore", "PostgresStoreOptions"]


@hookimpl
def gw_register_storage(register: Callable[[type[Any]], None]) -> None:
    register(PostgresStore)
