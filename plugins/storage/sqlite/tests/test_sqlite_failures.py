"""Real SQLite failures become StoreError with a message that says what happened and what to do.

Disk full is produced with ``PRAGMA max_page_count`` (SQLite then fails exactly as on a full disk, SQLITE_FULL);
read-only with ``PRAGMA query_only`` (SQLITE_READONLY: chmod does not stop root, who runs these tests in CI);
a lock with a second connection that holds a write transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from gw.errors import StoreError
from gw_sqlite import SqliteStore


def writer(store: SqliteStore) -> sqlite3.Connection:
    assert store._writer is not None
    return store._writer


async def test_disk_full(store: SqliteStore) -> None:
    await store.append("audit", [{"i": 0}])
    pages = writer(store).execute("PRAGMA page_count").fetchone()[0]
    writer(store).execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="the disk is full .* while writing; free space"):
        await store.append("audit", [{"blob": "x" * 100_000}])
    writer(store).execute("PRAGMA max_page_count = 1073741823")
    await store.append("audit", [{"i": 1}])  # the store recovers once there is room again
    assert [e.data for e in await store.scan("audit")] == [{"i": 0}, {"i": 1}]


async def test_read_only(store: SqliteStore) -> None:
    writer(store).execute("PRAGMA query_only = 1")
    with pytest.raises(StoreError, match="is read-only .* gw needs write access"):
        await store.put("grants", "g", {"a": 1})


async def test_locked_past_the_timeout(make_store: Callable[..., SqliteStore],
                                       raw: Callable[..., sqlite3.Connection]) -> None:
    s = make_store('busy_timeout = "100ms"')
    await s.open()
    try:
        other = raw(s)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError, match=r"stayed locked by another process for more than 0.1s"):
            await s.append("audit", [{"i": 1}])
        other.execute("ROLLBACK")
        assert await s.append("audit", [{"i": 2}])
    finally:
        await s.close()


async def test_unusable_directory(make_store: Callable[..., SqliteStore], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    s = make_store('path = "file/gw.db"')
    with pytest.raises(StoreError, match="cannot create the directory .*file"):
        await s.open()


async def test_closed_store(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    with pytest.raises(StoreError, match="is not open"):
        await s.scan("audit")
    await s.open()
    await s.close()
    with pytest.raises(StoreError, match="is not open"):
        await s.append("audit", [{"i": 1}])
