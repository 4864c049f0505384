"""Index rows are written in bulk: an entry's indexed fields travel with it, ``entry_fields`` catches up every
``INDEX_EVERY`` entries, and a filtered scan answers the same before, across and after a catch-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from gw_sqlite import SqliteStore
from gw_sqlite import store as store_module


async def test_filtered_scans_see_entries_before_and_after_the_index_caught_up(
        store: SqliteStore, raw: Callable[..., sqlite3.Connection], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "INDEX_EVERY", 10)
    conn = raw(store)
    written: list[tuple[int, dict[str, str]]] = []

    def expected(where: dict[str, str], after: int | None = None, before: int | None = None,
                 limit: int | None = None, newest_first: bool = False) -> list[int]:
        seqs = [seq for seq, fields in written if all(fields.get(f) == v for f, v in where.items())
                and (after is None or seq > after) and (before is None or seq < before)]
        seqs = seqs[::-1] if newest_first else seqs
        return seqs[:limit] if limit is not None else seqs

    for i in range(35):
        fields = {"k": str(i % 3), "all": "x"} if i % 5 else {"k": str(i % 3)}
        [seq] = await store.append("audit", [{"i": i}], index=[fields])
        written.append((seq, fields))
        await store.append("other", [{"i": i}], index=[{"k": str(i % 3), "all": "x"}])  # another stream
        for where in ({"k": "1"}, {"k": "2", "all": "x"}, {"all": "x"}):
            assert [e.seq for e in await store.scan("audit", where=where)] == expected(where)
    [seq] = await store.append("audit", [{"i": 35}], index=[{"all": "x"}])
    written.append((seq, {"all": "x"}))
    through = conn.execute("SELECT through FROM index_state").fetchone()[0]
    indexed = conn.execute("SELECT count(DISTINCT seq) FROM entry_fields").fetchone()[0]
    assert 0 < through < written[-1][0]  # caught up (several times), with a tail left past the index
    assert indexed == conn.execute("SELECT count(*) FROM entries WHERE seq <= ?", (through,)).fetchone()[0]
    mid = written[17][0]
    for kwargs in ({"after": mid}, {"before": mid}, {"limit": 4}, {"limit": 4, "newest_first": True},
                   {"after": written[3][0], "before": written[-2][0], "newest_first": True}):
        got = [e.seq for e in await store.scan("audit", where={"all": "x"}, **kwargs)]  # type: ignore[arg-type]
        assert got == expected({"all": "x"}, **kwargs), kwargs  # type: ignore[arg-type]
    assert [e.data for e in await store.scan("audit", where={"k": "1"}, limit=1, newest_first=True)] == [{"i": 34}]
    assert [e.data for e in await store.scan("audit", where={"all": "x"}, limit=1, newest_first=True)] == [{"i": 35}]
    assert await store.scan("audit", where={"k": "nope"}) == []


async def test_a_reopened_store_continues_from_the_index_it_left(
        make_store: Callable[..., SqliteStore], raw: Callable[..., sqlite3.Connection],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "INDEX_EVERY", 4)
    s = make_store()
    await s.open()
    for i in range(3):
        await s.append("audit", [{"i": i}], index=[{"k": "a"}])
    await s.close()
    again = make_store()
    await again.open()
    try:
        assert [e.data["i"] for e in await again.scan("audit", where={"k": "a"})] == [0, 1, 2]
        await again.append("audit", [{"i": 3}], index=[{"k": "a"}])  # with the 3 left unindexed: catch up
        assert raw(again).execute("SELECT count(*) FROM entry_fields").fetchone()[0] == 4
        await again.append("audit", [{"i": 4}], index=[{"k": "a"}])
        assert raw(again).execute("SELECT count(*) FROM entry_fields").fetchone()[0] == 4
        assert [e.data["i"] for e in await again.scan("audit", where={"k": "a"})] == [0, 1, 2, 3, 4]
    finally:
        await again.close()
