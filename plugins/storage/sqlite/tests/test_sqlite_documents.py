"""Documents: optimistic versions, queries on top-level fields, deletion."""

from __future__ import annotations

import pytest
import trio
from gw.store import VersionConflict
from gw_sqlite import SqliteStore


async def test_versions_and_conflicts(store: SqliteStore) -> None:
    assert await store.get("grants", "g1") is None
    assert await store.put("grants", "g1", {"user": "alice"}, expect_version=0) == 1
    with pytest.raises(VersionConflict, match="grants/g1 is at version 1, not 0"):
        await store.put("grants", "g1", {"user": "mallory"}, expect_version=0)
    assert await store.put("grants", "g1", {"user": "alice", "until": 5}, expect_version=1) == 2
    assert await store.put("grants", "g1", {"user": "alice", "until": 6}) == 3  # unconditional
    doc = await store.get("grants", "g1")
    assert doc is not None and (doc.key, doc.version, dict(doc.data)) == ("g1", 3, {"user": "alice", "until": 6})
    assert await store.get("other", "g1") is None
    assert await store.delete("grants", "g1") is True
    assert await store.delete("grants", "g1") is False
    assert await store.get("grants", "g1") is None
    assert await store.put("grants", "g1", {"user": "bob"}, expect_version=0) == 1


async def test_query_matches_top_level_values(store: SqliteStore) -> None:
    docs = {
        "a": {"status": "pending", "n": 1, "urgent": True, "tags": ["x"], "note": None},
        "b": {"status": "pending", "n": 2, "urgent": False, "tags": ["y"]},
        "c": {"status": "approved", "n": 1, "urgent": True, "tags": ["x"], "note": "1"},
    }
    for key, data in docs.items():
        await store.put("requests", key, data)
        await trio.sleep(0.002)  # distinct update times; query orders by them

    async def keys(**where: object) -> list[str]:
        return [d.key for d in await store.query("requests", where=where)]

    assert await keys() == ["c", "b", "a"]  # newest update first
    assert await keys(status="pending") == ["b", "a"]
    assert await keys(status="pending", n=1) == ["a"]
    assert await keys(urgent=True) == ["c", "a"]
    assert await keys(n=True) == []  # a boolean is not the number 1
    assert await keys(note=None) == ["a"]
    assert await keys(note=1) == []  # the text "1" is not the number 1
    assert await keys(tags=["x"]) == ["c", "a"]
    assert await keys(status="nope") == []
    assert [d.key for d in await store.query("requests", where={"status": "pending"}, limit=1)] == ["b"]
    assert [d.key for d in await store.query("requests", where={"tags": ["x"]}, limit=1)] == ["c"]
    with pytest.raises(ValueError, match="cannot be queried"):
        await store.query("requests", where={'a"b': 1})
