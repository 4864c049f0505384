"""What keeps the per-command cost of auditing low: detectors skipped behind a prefilter that does not match,
and records of commands that arrive together written in one batch (one store transaction)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import trio
from gw_audit.chain import open_chain
from gw_audit.records import Redactor
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
