"""CommandRun: what core guarantees about one command between its decision and its completion."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from gw.model import Column, Command, Identity, Outcome, OutcomeStatus, Session, Verdict
from gw.pipeline import Pipeline, SessionRuntime
from gw.plugins import make_plugin_manager
from gw.stage import CommandContext, RowFilter, Stage


class Seen(Stage):
    """Counts each command's row filters in its per-command state and notes the count at completion."""

    name = "seen"

    def __init__(self) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.completions: list[tuple[int, Outcome, list[str] | None]] = []

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        self.state(command, list).extend(c.name for c in columns)
        return None

    async def completed(self, command: Command, outcome: Outcome) -> None:
        self.completions.append((command.seq, outcome, self.state_if_any(command, list)))


class Hold(Stage):
    name = "hold"

    def __init__(self) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.holding = trio.Event()

    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        self.holding.set()
        await trio.sleep_forever()
        return None


class Context:
    cancel_reason = ""

    async def notice(self, message: str) -> None:
        pass


class Listener:
    """Stands in for a ListenerRuntime: the pipeline it has now, a plugin manager for the command hooks."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.runtime = SimpleNamespace(pm=make_plugin_manager(load_entrypoints=False))
        self.ended: list[str] = []

    async def session_ended(self, rt: SessionRuntime, reason: str) -> None:
        self.ended.append(reason)


def session_with(*stages: Stage) -> tuple[SessionRuntime, Listener]:
    listener = Listener(Pipeline("p", stages))
    identity = Identity("alice", ("agents",))
    session = Session("s1", "lines", "lines", identity, "127.0.0.1:1", "upstream", 0.0)
    return SessionRuntime(listener, session), listener  # type: ignore[arg-type]


async def test_completion_is_recorded_exactly_once() -> None:
    seen = Seen()
    sr, _ = session_with(seen)
    run = await sr.decide(sr.command("select 1", language="sql"), Context())
    assert run.allowed and not run.completed
    assert await run.complete(Outcome(rows=1)) is True
    assert await run.complete(Outcome(status=OutcomeStatus.ERROR)) is False
    await sr.end("client_closed")
    assert [(seq, o.status) for seq, o, _ in seen.completions] == [(1, OutcomeStatus.OK)]


@pytest.mark.parametrize("raised", [RuntimeError("bug"), KeyError("x")])
async def test_a_run_left_by_an_exception_is_completed_as_an_error(raised: Exception) -> None:
    seen = Seen()
    sr, _ = session_with(seen)
    with pytest.raises(type(raised)):
        async with await sr.decide(sr.command("select 1", language="sql"), Context()):
            raise raised
    [(_, outcome, _)] = seen.completions
    assert outcome.status is OutcomeStatus.ERROR
    assert outcome.error_message == f"gw stopped handling the command ({type(raised).__name__})"


async def test_a_cancelled_run_is_completed_as_cancelled_with_the_protocols_reason() -> None:
    seen = Seen()
    sr, _ = session_with(seen)
    context = Context()
    with trio.CancelScope() as scope:
        async with await sr.decide(sr.command("select 1", language="sql"), context):
            context.cancel_reason = "client_disconnected"
            scope.cancel()
            await trio.sleep(1)
    [(_, outcome, _)] = seen.completions
    assert outcome.status is OutcomeStatus.CANCELLED
    assert outcome.error_message == "the command was cancelled: the client disconnected"


async def test_runs_open_when_the_session_ends_are_completed_as_cancelled() -> None:
    seen = Seen()
    sr, listener = session_with(seen)
    first = await sr.decide(sr.command("select 1", language="sql"), Context())
    await sr.decide(sr.command("select 2", language="sql"), Context())
    await first.complete(Outcome(rows=1))
    await sr.end("token_expired")
    assert [(seq, o.status) for seq, o, _ in seen.completions] == [(1, OutcomeStatus.OK),
                                                                  (2, OutcomeStatus.CANCELLED)]
    assert seen.completions[1][1].error_message == (
        "the command did not finish before its session ended (token_expired)")
    assert listener.ended == ["token_expired"]


async def test_a_decision_cancelled_midway_is_recorded_once_and_not_again_at_the_end() -> None:
    seen, hold = Seen(), Hold()
    sr, _ = session_with(hold, seen)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sr.decide, sr.command("hold", language="sql"), Context())
        await hold.holding.wait()
        nursery.cancel_scope.cancel()
    await sr.end("client_closed")
    [(_, outcome, _)] = seen.completions
    assert outcome.status is OutcomeStatus.CANCELLED


async def test_stage_state_belongs_to_one_run_and_is_dropped_at_completion() -> None:
    seen = Seen()
    sr, _ = session_with(seen)
    one = await sr.decide(sr.command("select a", language="sql"), Context())
    two = await sr.decide(sr.command("select b", language="sql"), Context())
    one.rows([Column("a")])
    two.rows([Column("b"), Column("c")])
    one.rows([Column("d")])
    await two.complete(Outcome())
    await one.complete(Outcome())
    assert [(seq, state) for seq, _, state in seen.completions] == [(2, ["b", "c"]), (1, ["a", "d"])]
    assert one.command.stage_state == {} and two.command.stage_state == {}


async def test_a_reload_mid_command_keeps_the_pipeline_that_decided_it() -> None:
    old, new = Seen(), Seen()
    sr, listener = session_with(old)
    run = await sr.decide(sr.command("select 1", language="sql"), Context())
    listener.pipeline = Pipeline("p", [new])
    run.rows([Column("a")])
    await run.complete(Outcome())
    assert [seq for seq, _, _ in old.completions] == [1] and new.completions == []
    later = await sr.decide(sr.command("select 2", language="sql"), Context())
    await later.complete(Outcome())
    assert [seq for seq, _, _ in new.completions] == [2]


async def test_the_completed_hook_runs_once_per_command() -> None:
    completed: list[Any] = []

    class Hooks:
        from gw import hookimpl

        @hookimpl
        def gw_command_completed(self, command: Command, outcome: Outcome) -> None:
            completed.append((command.seq, outcome.status))

    sr, listener = session_with(Seen())
    listener.runtime.pm.register(Hooks(), "hooks")
    run = await sr.decide(sr.command("select 1", language="sql"), Context())
    await run.complete(Outcome())
    await run.complete(Outcome())
    await sr.decide(sr.command("select 2", language="sql"), Context())
    await sr.end("shutdown")
    assert completed == [(1, OutcomeStatus.OK), (2, OutcomeStatus.CANCELLED)]
