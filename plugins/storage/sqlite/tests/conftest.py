"""Fixtures of the sqlite backend's tests: real database files in ``tmp_path``, built from a pipeline file the
way ``gw serve`` builds them (so path resolution and option validation are the real ones)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_sqlite import SqliteStore


def pipeline_text(storage: str = "") -> str:
    return f'[storage]\nuse = "sqlite"\n{storage}\n'


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., SqliteStore]:
    """``make_store('busy_timeout = "200ms"')``: an unopened store of a pipeline file in tmp_path."""
    def make(storage: str = "", name: str = "pipeline.toml") -> SqliteStore:
        rt = Runtime.build(write_pipeline(tmp_path, pipeline_text(storage), name))
        assert isinstance(rt.store, SqliteStore)
        return rt.store

    return make


@pytest.fixture
async def store(make_store: Callable[..., SqliteStore]) -> AsyncIterator[SqliteStore]:
    """An open store at ``<tmp_path>/.gw/gw.db``."""
    s = make_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def raw() -> Iterator[Callable[[SqliteStore], sqlite3.Connection]]:
    """Independent connections to a store's file (another process's view), closed after the test."""
    opened: list[sqlite3.Connection] = []

    def connect(s: SqliteStore) -> sqlite3.Connection:
        conn = sqlite3.connect(str(s.path), isolation_level=None, timeout=1)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()
