"""Group commit: writes that arrive while a transaction commits share the next one, and each call returns only
when its own write is durable.  Behaviour is asserted by counting transactions, never by timing.

To make "arrive while a transaction commits" deterministic, a second connection holds SQLite's write lock (as
another process would): the first write's commit waits for it, the others queue behind, then the lock is let go.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

import pytest
import trio
import trio.lowlevel
from gw.store import VersionConflict
from gw_sqlite import SqliteStore
from trio.testing import wait_all_tasks_blocked


async def writer_took_a_batch(store: SqliteStore, before: int) -> None:
    """Until the writer thread took a batch from its queue (it then waits for the lock with it)."""
    with trio.fail_after(5):
        while store.batches_taken == before:
            await trio.sleep(0.001)


async def test_concurrent_appends_share_transactions(store: SqliteStore,
                                                     raw: Callable[..., sqlite3.Connection]) -> None:
    conn = raw(store)
    lock = raw(store)
    results: dict[int, int] = {}
    called: list[int] = []

    async def writer(i: int) -> None:
        called.append(i)
        [seq] = await store.append("audit", [{"i": i}], index=[{"writer": str(i)}])
        # durable on return: visible to an independent connection right now
        row = conn.execute("SELECT data FROM entries WHERE seq = ?", (seq,)).fetchone()
        assert row is not None and json.loads(row[0]) == {"i": i}
        results[i] = seq

    before = store.transactions
    taken = store.batches_taken
    lock.execute("BEGIN IMMEDIATE")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, 0)
        await writer_took_a_batch(store, taken)  # writer 0 is committing (waiting for the lock)
        for i in range(1, 50):
            nursery.start_soon(writer, i)
        await wait_all_tasks_blocked()  # the other 49 queued behind it
        lock.execute("ROLLBACK")
    assert len(results) == 50
    assert store.transactions - before == 2  # writer 0 alone, then the 49 that queued meanwhile together
    # the order of the calls (trio runs the tasks in any order) is the order in the stream
    assert [results[i] for i in called] == sorted(results.values())


async def test_sequential_appends_commit_one_by_one(store: SqliteStore) -> None:
    before = store.transactions
    for i in range(5):
        await store.append("audit", [{"i": i}])
    assert store.transactions - before == 5


async def test_a_version_conflict_does_not_fail_the_rest_of_the_batch(
        store: SqliteStore, raw: Callable[..., sqlite3.Connection]) -> None:
    await store.put("approvals", "r1", {"status": "pending"})
    outcomes: dict[str, object] = {}
    deciders: list[str] = []

    async def decide(who: str) -> None:
        deciders.append(who)
        try:
            outcomes[who] = await store.put("approvals", "r1", {"status": who}, expect_version=1)
        except VersionConflict as e:
            outcomes[who] = e

    async def log(i: int) -> None:
        outcomes[f"log{i}"] = await store.append("audit", [{"i": i}])

    before = store.transactions
    taken = store.batches_taken
    lock = raw(store)
    lock.execute("BEGIN IMMEDIATE")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log, 0)
        await writer_took_a_batch(store, taken)
        nursery.start_soon(decide, "approved")
        nursery.start_soon(decide, "denied")
        nursery.start_soon(log, 1)
        await wait_all_tasks_blocked()
        lock.execute("ROLLBACK")
    assert store.transactions - before == 2  # both decisions and log 1 shared one transaction
    winner, loser = deciders
    assert outcomes[winner] == 2
    assert isinstance(outcomes[loser], VersionConflict)
    assert "at version 2, not 1" in str(outcomes[loser])
    assert isinstance(outcomes["log1"], list)
    doc = await store.get("approvals", "r1")
    assert doc is not None and doc.data == {"status": winner} and doc.version == 2


async def test_close_commits_queued_writes(make_store: Callable[..., SqliteStore],
                                           raw: Callable[..., sqlite3.Connection]) -> None:
    s = make_store()
    await s.open()
    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(s.append, "audit", [{"i": i}])
        await trio.lowlevel.checkpoint()
        nursery.start_soon(s.close)
    assert raw(s).execute("SELECT count(*) FROM entries").fetchone()[0] == 5
    with pytest.raises(Exception, match="not open"):
        await s.append("audit", [{"i": 9}])


class _Abort(BaseException):
    """Not an Exception: what a write could raise that ordinary error handling would let through."""


async def test_a_write_that_raises_a_base_exception_fails_its_batch_and_the_writer_goes_on(
        store: SqliteStore) -> None:
    def explode(conn: sqlite3.Connection) -> None:
        raise _Abort("boom")

    with trio.fail_after(10), pytest.raises(_Abort):
        await store._write(explode)
    assert await store.append("audit", [{"i": 1}])  # the writer thread is still there
    assert [e.data for e in await store.scan("audit")] == [{"i": 1}]
