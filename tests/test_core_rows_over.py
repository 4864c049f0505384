"""``rows_over``: decided on the count the protocol measures, never on syntax; unknown counts match."""

from __future__ import annotations

import trio
from gw.model import Command, Identity, Kind, Measurement, Session
from gw_rules import Rule, first_match_measured, rows_over_explained

SESSION = Session("s", "l", "postgres", Identity("a"), "127.0.0.1:1", "u", 0.0)


def cmd(kind: Kind = Kind.WRITE, verb: str = "delete") -> Command:
    return Command(SESSION, 1, "delete from t where id < 500", "sql", kind=kind, verb=verb, attributes={})


class Counting:
    """A context whose protocol measured ``rows`` (None: could not)."""

    def __init__(self, rows: int | None) -> None:
        self.rows = rows
        self.calls = 0

    async def measure(self) -> Measurement:
        self.calls += 1
        return Measurement(self.rows, "" if self.rows is not None else "COPY FROM cannot be measured")


RULES = [Rule(kind="write", flags=["no_where"]), Rule(kind="write", rows_over=100)]


def match(command: Command, context: object) -> tuple[Rule | None, Measurement | None]:
    return trio.run(first_match_measured, RULES, command, context)


def test_over_the_limit_matches_and_within_does_not() -> None:
    over = Counting(500)
    rule, measured = match(cmd(), over)
    assert rule is RULES[1] and measured == Measurement(500)
    within = Counting(100)
    assert match(cmd(), within) == (None, Measurement(100))
    assert over.calls == within.calls == 1


def test_the_audit_sees_the_measurement() -> None:
    command = cmd()
    match(command, Counting(7))
    assert command.attributes["measured"] == {"rows": 7, "reason": None}


def test_unknown_counts_match_fail_closed() -> None:
    rule, measured = match(cmd(), Counting(None))
    assert rule is RULES[1] and measured is not None and measured.rows is None
    # a protocol that offers no measurement at all
    rule, measured = match(cmd(), object())
    assert rule is RULES[1] and measured is not None and "cannot count" in measured.reason


def test_reads_change_no_rows_and_are_not_measured() -> None:
    context = Counting(10_000)
    assert match(cmd(Kind.READ, "select"), context)[0] is None
    assert context.calls == 0


def test_one_measurement_serves_several_rules() -> None:
    context = Counting(50)
    rules = [Rule(rows_over=10, verb="update"), Rule(rows_over=100), Rule(rows_over=20)]
    rule, _ = trio.run(first_match_measured, rules, cmd(), context)
    assert rule is rules[2] and context.calls == 1


def test_label_and_explanation() -> None:
    assert RULES[1].label() == '{ kind = "write", rows_over = 100 }'
    assert rows_over_explained(RULES[1]) == "rows_over = 100: decided by the database when the statement runs"
