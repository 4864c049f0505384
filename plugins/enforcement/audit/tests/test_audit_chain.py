"""The hash chain under concurrency (order, batching, cancellation) and the verifier's diagnosis on synthetic
chains."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import trio
from gw.model import Outcome
from gw_audit.chain import GENESIS, canonical, open_chain, record_hash, sealed
from gw_audit.verify import ChainVerifier, verify_store
from trio.testing import wait_all_tasks_blocked


def test_the_hash_covers_a_canonical_encoding() -> None:
    a = {"b": 1, "a": [1.5, "é"], "prev": GENESIS}
    b = {"a": [1.5, "é"], "prev": GENESIS, "b": 1}
    assert canonical(a) == canonical(b) == b'{"a":[1.5,"\\u00e9"],"b":1,"prev":"' + GENESIS.encode() + b'"}'
    assert record_hash(a) == record_hash(dict(b, hash="ignored")) != record_hash(dict(a, b=2))


async def test_concurrent_sessions_write_one_ordered_chain_in_batches(
        open_runtime: Any, new_session: Any, new_command: Any, ctx: Any,
        db: Callable[[], sqlite3.Connection]) -> None:
    async with open_runtime() as rt:
        pipeline = rt.pipelines["p"]

        async def agent(i: int) -> None:
            session = new_session(subject=f"agent-{i}")
            await pipeline.session_started(session)
            for seq in range(1, 4):
                cmd = new_command(session, seq, f"select {seq}")
                assert (await pipeline.decide(cmd, ctx)).allowed
                await pipeline.completed(cmd, Outcome(rows=1, tag="SELECT 1"))
            await pipeline.session_ended(session, "client_closed")

        before = rt.store.transactions
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(agent, i)
        records = 30 * (1 + 3 * 2 + 1)
        transactions = rt.store.transactions - before
        assert transactions < records / 3, f"{records} records took {transactions} transactions"
        [report] = await verify_store(rt.store)
        assert report.ok and report.verified == records
    positions = [json.loads(d)["n"] for (d,) in db().execute("SELECT data FROM entries ORDER BY seq")]
    assert positions == list(range(1, records + 1))  # store order is chain order


async def test_a_cancelled_waiting_write_leaves_no_gap(
        open_runtime: Any, db: Callable[[], sqlite3.Connection]) -> None:
    """A write cancelled while queued (its command was cancelled) is dropped; the chain stays contiguous."""
    async with open_runtime() as rt:
        chain = await open_chain(rt.store, "gw-test")
        lock = db()
        lock.execute("BEGIN IMMEDIATE")  # holds the first batch in its commit, so later writes queue
        queued = trio.CancelScope()

        async def cancelled_write() -> None:
            with queued:
                await chain.write({"type": "cancelled"}, {})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(chain.write, {"type": "first"}, {})
            await wait_all_tasks_blocked()
            nursery.start_soon(cancelled_write)
            await wait_all_tasks_blocked()
            nursery.start_soon(chain.write, {"type": "second"}, {})
            await wait_all_tasks_blocked()
            queued.cancel()
            await wait_all_tasks_blocked()
            lock.execute("ROLLBACK")
        await chain.write({"type": "after"}, {})
        [report] = await verify_store(rt.store)
        assert report.ok and report.verified == 3
    types = [json.loads(d)["type"] for (d,) in db().execute("SELECT data FROM entries ORDER BY seq")]
    assert types == ["first", "second", "after"]


# -- verifier diagnosis on synthetic chains -----------------------------------------------------------------


def chain_of(count: int, start: int = 1) -> list[dict[str, Any]]:
    records, prev = [], GENESIS if start == 1 else "f" * 64
    for n in range(start, start + count):
        r: dict[str, Any] = {"type": "command", "chain": "c", "n": n, "prev": prev, "time": 1e9 + n, "text": str(n)}
        prev = r["hash"] = record_hash(r)
        records.append(r)
    return records


def verdict(records: list[dict[str, Any]], ids: list[int] | None = None) -> tuple[int | None, str]:
    v = ChainVerifier("c")
    for i, r in zip(ids or range(1, len(records) + 1), records):
        v.feed(i, r)
    report = v.finish()
    return report.problem_id, report.problem or "OK"


def test_a_forged_twin_after_the_real_record_is_named() -> None:
    real = chain_of(5)
    twin = dict(real[2], text="forged")
    twin["hash"] = record_hash(twin)
    problem_id, problem = verdict(real[:3] + [twin] + real[3:], [1, 2, 3, 50, 4, 5])
    assert problem_id == 50 and "record 50 (position 3, " in problem
    assert "was inserted: it is not part of the chain (record 4 links directly to record 3)" in problem


def test_an_altered_last_record_and_first_record() -> None:
    records = chain_of(3)
    records[2]["text"] = "x"
    assert verdict(records)[0] == 3 and "was altered" in verdict(records)[1]
    records = chain_of(3)
    records[0]["prev"] = "1" * 64
    records[0]["hash"] = record_hash(records[0])
    problem_id, problem = verdict(records)
    assert problem_id == 1 and "claims position 1 but does not start the chain" in problem


def test_a_record_inserted_before_the_first() -> None:
    records = chain_of(3)
    problem_id, problem = verdict([{"type": "command", "text": "junk"}] + records, [7, 8, 9, 10])
    assert problem_id == 7
    assert "record 7 (no time) was inserted: it is not part of the chain (record 8 links directly to the start" \
        in problem


def test_a_chain_whose_start_was_pruned() -> None:
    v = ChainVerifier("c")
    for i, r in enumerate(chain_of(4, start=10), 100):
        v.feed(i, r)
    report = v.finish()
    assert report.ok and not report.complete and (report.first_id, report.first_position) == (100, 10)


@pytest.mark.parametrize("field, value", [("n", "3"), ("prev", None), ("hash", 5)])
def test_records_without_valid_chain_fields(field: str, value: Any) -> None:
    records = chain_of(4)
    records[2][field] = value
    problem_id, problem = verdict(records)
    assert problem_id == 3 and problem.startswith("record 3 (")


def test_a_sealed_record_is_encoded_once_and_reads_back_as_hashed() -> None:
    record = {"b": 1, "a": [1.5, "\u00e9"], "chain": "c", "n": 1, "prev": GENESIS}
    digest, text = sealed(record)
    assert digest == record_hash(record)
    stored = json.loads(text)
    assert stored == dict(record, hash=digest)
    assert record_hash(stored) == digest  # what `gw audit verify` recomputes from the stored text
