"""The write path's cost controls: WAL checkpoints run in the background (never inside a commit), a commit
never blocks the event loop on a lock another process holds, and both ``synchronous`` settings commit
correctly with ids in call order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

import pytest
import trio
from gw_sqlite import SqliteStore
from gw_sqlite import store as store_module
from trio.testing import wait_all_tasks_blocked


def _checkpointed_rows(s: SqliteStore) -> int:
    """Entries in the main database file alone (``immutable`` ignores the WAL): what checkpoints copied."""
    conn = sqlite3.connect(f"file:{s.path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:  # not even the schema was copied yet
        return 0
    finally:
        conn.close()


async def test_checkpoints_run_in_the_background(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 3)
    assert store._writer is not None
    assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # never inside a commit
    for i in range(2):
        await store.append("audit", [{"i": i}])
    assert _checkpointed_rows(store) == 0  # still only in the WAL
    await store.append("audit", [{"i": 2}])  # the third commit starts a checkpoint
    with trio.fail_after(5):
        while store._checkpointing:
            await trio.sleep(0.01)
    assert _checkpointed_rows(store) == 3


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_a_locked_database_does_not_block_the_event_loop(
        make_store: Callable[..., SqliteStore], raw: Callable[..., sqlite3.Connection], synchronous: str) -> None:
    """While another process holds the write lock, the commit waits in a thread: other tasks keep running
    (here: the one that lets the lock go), and the write lands once the lock is free."""
    s = make_store(f'synchronous = "{synchronous}"')
    await s.open()
    try:
        other = raw(s)
        other.execute("BEGIN IMMEDIATE")
        seqs: list[int] = []

        async def write() -> None:
            seqs.extend(await s.append("audit", [{"i": 1}, {"i": 2}], index=[{"k": "a"}, {"k": "b"}]))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await wait_all_tasks_blocked()
                assert seqs == []  # waiting for the lock, without holding up this task
                other.execute("ROLLBACK")
        assert seqs == [seqs[0], seqs[0] + 1]
        assert [e.data for e in await s.scan("audit", where={"k": "b"})] == [{"i": 2}]
    finally:
        await s.close()


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_batched_appends_get_consecutive_ids_in_call_order(
        make_store: Callable[..., SqliteStore], raw: Callable[..., sqlite3.Connection], synchronous: str) -> None:
    s = make_store(f'synchronous = "{synchronous}"')
    await s.open()
    try:
        results: dict[int, list[int]] = {}

        async def write(i: int) -> None:
            results[i] = await s.append("audit", [{"i": i, "part": p} for p in range(3)],
                                        index=[{"writer": str(i)}] * 3)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(write, i)
        for i, seqs in results.items():
            rows = raw(s).execute("SELECT seq, data FROM entries WHERE seq IN (?, ?, ?) ORDER BY seq",
                                  seqs).fetchall()
            assert [json.loads(d) for _, d in rows] == [{"i": i, "part": p} for p in range(3)]
            assert [e.seq for e in await s.scan("audit", where={"writer": str(i)})] == seqs
    finally:
        await s.close()
