"""Schema versions and migrations, and files that are not (or not yet) gw databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from gw.errors import StoreError
from gw_sqlite import SqliteStore
from gw_sqlite.schema import APPLICATION_ID, SCHEMA_VERSION, migrate, schema_version


async def test_a_version_1_database_is_migrated_with_its_data(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    s.path.parent.mkdir(parents=True)
    old = sqlite3.connect(str(s.path), isolation_level=None)
    assert migrate(old, target=1) == (0, 1)
    # what gw-sqlite schema 1 wrote: records (no stream catalogue yet) and a document
    old.execute("INSERT INTO entries (stream, ts, data) VALUES ('audit', 1.0, '{\"i\": 1}'), "
                "('recordings', 2.0, '{\"i\": 2}')")
    old.execute("INSERT INTO entry_fields (seq, field, value, stream) VALUES (1, 'subject', 'alice', 'audit')")
    old.execute("INSERT INTO documents VALUES ('approvals', 'r1', 3, '{\"status\": \"pending\"}', 5.0)")
    old.close()

    await s.open()
    try:
        assert await s.streams() == ["audit", "recordings"]  # the catalogue was filled from the old records
        assert [e.data for e in await s.scan("audit", where={"subject": "alice"})] == [{"i": 1}]
        doc = await s.get("approvals", "r1")
        assert doc is not None and doc.version == 3
        assert (await s.describe())["schema_version"] == SCHEMA_VERSION
        assert await s.append("audit", [{"i": 3}], index=[{"subject": "alice"}]) == [3]
        # the old record from the index, the new one (past the index) from its own fields
        assert [e.data for e in await s.scan("audit", where={"subject": "alice"})] == [{"i": 1}, {"i": 3}]
    finally:
        await s.close()
    check = sqlite3.connect(str(s.path))
    assert schema_version(check) == SCHEMA_VERSION == 3
    assert check.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    check.close()


async def test_reopening_a_current_database_changes_nothing(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    await s.open()
    await s.append("audit", [{"i": 1}])
    await s.close()
    again = make_store()
    await again.open()
    assert [e.data for e in await again.scan("audit")] == [{"i": 1}]
    await again.close()


async def test_a_database_from_a_newer_gw_is_refused(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    await s.open()
    await s.close()
    conn = sqlite3.connect(str(s.path))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, written by a newer gw-sqlite"):
        await make_store().open()


async def test_another_programs_database_is_refused(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    s.path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(s.path))
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="already holds tables of another program \\(invoices\\)"):
        await s.open()
    conn = sqlite3.connect(str(s.path))
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]  # untouched
    conn.close()


async def test_a_file_that_is_not_a_database_is_refused(make_store: Callable[..., SqliteStore]) -> None:
    s = make_store()
    s.path.parent.mkdir(parents=True)
    s.path.write_bytes(b"this is a text file, not SQLite\n" * 200)
    with pytest.raises(StoreError, match="is not a valid SQLite database"):
        await s.open()
