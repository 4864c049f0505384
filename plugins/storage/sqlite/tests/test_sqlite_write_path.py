"""The write path's cost controls: WAL checkpoints run between batches (never inside a commit) and keep the WAL
within its bound, a commit never blocks the event loop on a lock another process holds, and both ``synchronous`` settings commit
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


async def test_checkpoints_run_between_batches(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 3)
    assert store._writer is not None
    assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # never inside a commit
    for i in range(2):
        await store.append("audit", [{"i": i}])
    assert _checkpointed_rows(store) == 0  # still only in the WAL
    await store.append("audit", [{"i": 2}])  # the third commit is followed by a checkpoint
    with trio.fail_after(5):
        while store.checkpoints == 0:
            await trio.sleep(0.01)
    assert _checkpointed_rows(store) == 3


def _wal_bytes(s: SqliteStore) -> int:
    try:
        return (s.path.parent / f"{s.path.name}-wal").stat().st_size
    except FileNotFoundError:
        return 0


async def test_the_wal_stays_within_its_bound_under_a_burst(
        store: SqliteStore, raw: Callable[..., sqlite3.Connection], monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of many small commits (audit records from concurrent sessions, with their index fields), with a
    reader querying meanwhile, writes far more WAL frames than the bound; the -wal file never exceeds it."""
    limit = 512 * 1024
    monkeypatch.setattr(store_module, "WAL_LIMIT", limit)
    reader = raw(store)
    largest = written = 0
    text = "select * from accounts where id = 42 " * 200  # 7.4 kB: every record adds two pages to the WAL

    async def session(n: int) -> None:
        nonlocal largest, written
        for i in range(60):
            record = {"session": f"s{n}", "i": i, "text": text}
            await store.append("audit", [record], index=[{"session": f"s{n}", "type": "command", "i": str(i)}])
            written += 1
            largest = max(largest, _wal_bytes(store))
            if i % 10 == 0:
                reader.execute("SELECT count(*) FROM entries").fetchone()

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(session, n)
    assert written * len(text) > 6 * limit  # the burst wrote several times the bound into the WAL
    assert 0 < largest <= limit
    assert written == 480 and reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 480


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


async def test_a_batch_larger_than_one_insert_gets_consecutive_ids(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends go in multi-row INSERTs of ``_ROWS_PER_INSERT`` rows; a larger batch takes several, in order."""
    monkeypatch.setattr(store_module, "_ROWS_PER_INSERT", 3)
    [first] = await store.append("audit", [{"i": -1}])
    seqs = await store.append("audit", [{"i": i} for i in range(7)], index=[{"i": str(i)} for i in range(7)])
    assert seqs == list(range(first + 1, first + 8))
    assert [(e.seq, e.data["i"]) for e in await store.scan("audit", after=first)] == list(zip(seqs, range(7)))
    assert [e.seq for e in await store.scan("audit", where={"i": "5"})] == [seqs[5]]


async def test_a_lone_append_is_one_statement_and_a_batch_is_one_transaction(store: SqliteStore) -> None:
    """An append alone in its batch is its INSERT, committed by SQLite as it runs; writes that share a batch
    (or one that is due for the index catch-up) run in one BEGIN IMMEDIATE ... COMMIT."""
    assert store._writer is not None
    await store.append("audit", [{"i": 0}])  # the stream is catalogued from now on
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    try:
        await store.append("audit", [{"i": 1}, {"i": 2}], index=[{"k": "a"}, {"k": "b"}])
        assert [s.split()[0] for s in statements] == ["INSERT"]
        statements.clear()
        async with trio.open_nursery() as nursery:  # usually one batch; the put is a transaction either way
            nursery.start_soon(store.append, "audit", [{"i": 3}])
            nursery.start_soon(store.put, "docs", "d", {"x": 1})
        begin = statements.index("BEGIN IMMEDIATE")
        assert statements[-1] == "COMMIT" and any(s.startswith("INSERT INTO documents") for s in statements[begin:])
    finally:
        store._writer.set_trace_callback(None)
    assert [e.data["i"] for e in await store.scan("audit")] == [0, 1, 2, 3]
