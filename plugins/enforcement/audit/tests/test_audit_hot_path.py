"""What keeps the per-command cost of auditing low: detectors skipped behind a prefilter that does not match,
and records of commands that arrive together written in one batch (one store transaction)."""

from __future__ import annotations

import enum
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import trio
from gw_audit import chain as chain_module
from gw_audit.chain import open_chain
from gw_audit.records import Redactor, json_safe
from gw_audit.verify import verify_store


class CountingDetector:
    """Finds runs of 9 digits and counts its calls; ``prefilter`` like gw-mask's built-ins declare one."""

    def __init__(self, name: str, prefilter: Any = None) -> None:
        self.name = name
        self.calls = 0
        if prefilter is not None:
            self.prefilter = prefilter

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        self.calls += 1
        return [m.span() for m in re.finditer(r"\b\d{9}\b", text)]


def test_detectors_behind_a_prefilter_run_only_when_it_matches() -> None:
    digits = re.compile(r"\d{9}")
    a, b = CountingDetector("a", digits), CountingDetector("b", digits)
    always = CountingDetector("always")  # no prefilter: runs on every text
    odd = CountingDetector("odd", prefilter="not a compiled pattern")  # ignored: treated as no prefilter
    redact = Redactor([a, b, always, odd])

    assert redact("select * from t where id = 42") == "select * from t where id = 42"
    assert (a.calls, b.calls, always.calls, odd.calls) == (0, 0, 1, 1)

    assert redact("select * from t where ssn = '123456789'") == "select * from t where ssn = '***'"
    assert (a.calls, b.calls, always.calls, odd.calls) == (1, 1, 2, 2)


def test_a_prefilter_hides_nothing_the_detectors_would_find() -> None:
    """Redaction with prefilters equals redaction without them (the prefilter is only a shortcut)."""
    digits = re.compile(r"\d{9}")
    texts = ["", "id = 1", "123456789", "a 123456789 b 987654321 c", "12345678", "x1234567890"]
    with_prefilter = Redactor([CountingDetector("a", digits)])
    without = Redactor([CountingDetector("a")])
    assert [with_prefilter(t) for t in texts] == [without(t) for t in texts]


async def test_records_of_commands_arriving_together_share_one_batch(
        open_runtime: Any, db: Callable[[], sqlite3.Connection]) -> None:
    async with open_runtime() as rt:
        chain = await open_chain(rt.store, "gw-test")
        batches, transactions = chain.batches, rt.store.transactions
        async with trio.open_nursery() as nursery:
            for i in range(8):  # all runnable at once, like eight sessions whose commands arrived together
                nursery.start_soon(chain.write, {"type": "command", "i": i}, {"type": "command"})
        assert chain.batches - batches == 1
        assert rt.store.transactions - transactions == 1
        [report] = await verify_store(rt.store)
        assert report.ok and report.verified == 8
    assert db().execute("SELECT count(*) FROM entries").fetchone()[0] == 8


async def test_queued_outcomes_ride_with_the_next_command_and_the_flusher_adds_no_write(
        open_runtime: Any, db: Callable[[], sqlite3.Connection], monkeypatch: Any) -> None:
    """While commands keep coming, each outcome is carried by the next command's batch: the background flusher
    never commits a batch of its own.  The last outcome, with no write after it, is written once it has
    waited ``LINGER``."""
    monkeypatch.setattr(chain_module, "LINGER", 0.2)
    async with open_runtime() as rt:
        chain = await open_chain(rt.store, "gw-test")
        batches = chain.batches
        for i in range(12):  # one session: command, outcome, command, outcome ...
            await chain.write({"type": "command", "i": i}, {"type": "command"})
            chain.enqueue({"type": "outcome", "i": i}, {"type": "outcome"})
            await trio.sleep(0.05)  # the client's round trip: the flusher would have written by now
        assert chain.batches - batches == 12  # one batch per command, none from the flusher
        with trio.fail_after(5):
            while chain.batches - batches < 13:  # the last outcome, alone after its linger
                await trio.sleep(0.02)
        [report] = await verify_store(rt.store)
        assert report.ok and report.verified == 24
    rows = [json.loads(d) for (d,) in db().execute("SELECT data FROM entries ORDER BY seq")]
    assert [(r["type"], r["i"]) for r in rows] == [(t, i) for i in range(12) for t in ("command", "outcome")]


async def test_a_lone_session_hands_its_record_over_without_waiting_for_others(
        open_runtime: Any, monkeypatch: Any) -> None:
    """Once the last batch saw no other writer, the next write goes to the store at once instead of letting
    other tasks run first (a round of the scheduler per command, for nothing)."""
    async with open_runtime() as rt:
        chain = await open_chain(rt.store, "gw-test")
        await chain.write({"type": "command"}, {"type": "command"})  # alone: nothing arrived meanwhile
        others_ran: list[bool] = []
        ran = False
        append = rt.store.append

        async def watched_append(*args: Any, **kwargs: Any) -> Any:
            others_ran.append(ran)
            return await append(*args, **kwargs)

        async def other() -> None:
            nonlocal ran
            ran = True

        monkeypatch.setattr(rt.store, "append", watched_append)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)  # runnable, but not writing
            await chain.write({"type": "command"}, {"type": "command"})
        assert others_ran == [False]

        # Eight at once after a lone write: the first goes at once, the seven that arrived meanwhile share
        # the next batch.
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(chain.write, {"type": "command", "i": i}, {"type": "command"})
        assert len(others_ran) == 1 + 2


class Colour(enum.Enum):
    RED = "red"


class Status(enum.StrEnum):
    OK = "ok"


def test_json_safe_makes_plain_json_of_any_value() -> None:
    """Plain values (the fast path, by exact type) and everything else (by abstract class) come out the same
    way: str keys, lists for sequences and sets, text for bytes, enums as their values, non-finite numbers as
    text, nesting deeper than 16 as the text of what is left."""
    value = {"a": [1, True, None, "s"], 2: ("t", b"b\xff"), "set": {"y", "x"}, "colour": Colour.RED,
             "status": Status.OK, "inf": math.inf, "frozen": frozenset({3}), "other": range(2)}
    assert json_safe(value) == {"a": [1, True, None, "s"], "2": ["t", "b\\xff"], "set": ["x", "y"],
                                "colour": "red", "status": "ok", "inf": "inf", "frozen": [3], "other": [0, 1]}
    deep: Any = ["x"]
    for _ in range(20):
        deep = [deep]
    out = json_safe(deep)
    for _ in range(17):
        out = out[0]
    assert out == "[[[['x']]]]"
    assert json.dumps(json_safe({"k": (1.5, [2])})) == '{"k": [1.5, [2]]}'
