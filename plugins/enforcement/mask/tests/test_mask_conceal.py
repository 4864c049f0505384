"""Bound parameter values as approvers see them (the stage's ``conceal``): redacted whenever the command may
touch a column a column rule covers, in clear (detectors applied) otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw.model import Command, Identity, Kind, Session

SESSION = Session(id="sess-conceal", listener="db", protocol="postgresql", identity=Identity("agent-7", ("agents",)),
                  client_address="127.0.0.1:5555", upstream="127.0.0.1:5432", started_at=0.0)

_seq = iter(range(1000, 10**6))


def sql(text: str, objects: tuple[str, ...], reads: list[str] | None, writes: tuple[str, ...] = ()) -> Command:
    return Command(SESSION, next(_seq), text, "sql", Kind.WRITE, "update", objects,
                   attributes={"sql.reads": reads, "sql.writes": writes})


def test_every_value_is_redacted_when_a_rule_may_cover_a_column_of_the_command(
        mask_stage: Callable[[str], Any]) -> None:
    stage = mask_stage('columns = ["users.ssn"], detectors = ["email"]')
    update = "update users set ssn = $1 where id = $2"
    assert stage.conceal(sql(update, ("users",), ["public.users.id"]), ["219-09-9998", "7"]) == ["***", "***"]
    assert stage.conceal(sql(update, ("public.users",), ["public.users.id"]), ["x", None]) == ["***", None]
    # Facts the protocol could not learn, or a read of a covered column: fail closed.
    assert stage.conceal(sql("select $1", (), None), ["x"]) == ["***"]
    assert stage.conceal(sql("select $1", ("t",), ["public.users.ssn"]), ["x"]) == ["***"]
    # No rule covers the table: values in clear, the detectors still apply.
    plain = sql("update orders set note = $1 where id = $2", ("orders",), ["public.orders.id"])
    assert stage.conceal(plain, ["mail a@example.com", "7"]) == ["mail ***", "7"]
    assert stage.conceal(plain, {"note": "x"}) == {"note": "x"}


def test_a_rule_without_a_table_covers_every_table(mask_stage: Callable[[str], Any]) -> None:
    stage = mask_stage('columns = ["ssn"]')
    plain = sql("update orders set note = $1 where id = $2", ("orders",), ["public.orders.id"])
    assert stage.conceal(plain, ["x", "7"]) == ["***", "***"]


def test_named_arguments_are_masked_by_the_rule_on_their_name(mask_stage: Callable[[str], Any]) -> None:
    stage = mask_stage('strategy = "partial", columns = ["card_number"]')
    call = Command(SESSION, next(_seq), "tools/call pay", "mcp", Kind.WRITE, "pay")
    shown = stage.conceal(call, {"card_number": "4111111111111111", "amount": "10"})
    assert shown["amount"] == "10" and "4111111111111111" not in shown["card_number"]
    assert stage.conceal(call, ["4111111111111111"]) == ["***"]  # positional outside SQL: fail closed
    assert mask_stage('detectors = ["email"]').conceal(call, ["7"]) == ["7"]
