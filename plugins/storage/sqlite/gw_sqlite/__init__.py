"""gw-sqlite: the embedded SQLite storage backend (``[storage] use = "sqlite"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .store import SqliteOptions, SqliteStore

__all__ = ["SqliteOptions", "SqliteStore"]


@hookimpl
def gw_register_storage(register: Callable[[type[Any]], None]) -> None:
    register(SqliteStore)

