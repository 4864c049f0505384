"""Core end to end with the inline test plugins of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from gw.errors import ConfigError
from gw.runtime import Runtime
from gw.testing import running_gateway, write_pipeline

CONFIG = """
[identity.static]
use = "static"
users = { alice = ["agents"], bob = ["guests"] }

[pipelines.p]
stages = [{ use = "recorder" }, { use = "broken" }, { use = "deny_drop", message = "drops need a DBA" },
          { use = "upper" }]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
allow_groups = ["agents"]
"""


async def test_inline_plugins_run_in_order(tmp_path: Path, inline_pm, recorded_events, line_talk) -> None:  # type: ignore[no-untyped-def]
    path = write_pipeline(tmp_path, CONFIG)
    async with running_gateway(path, pm=inline_pm) as gw:
        port = gw.port("lines")
        assert await line_talk(port, "alice", "select x", "drop table t", "boom") == [
            "OK", "ROW SELECT X", "DENIED drops need a DBA",
            "DENIED gw stage 'broken' failed (RuntimeError); the command was not run. Retry, or ask the "
            "gateway operator to check the gw log"]
        assert (await line_talk(port, "bob"))[0].startswith("ERR identity 'bob' is not in a group allowed")
        assert (await line_talk(port, "mallory")) == ["ERR unknown token; get one from your operator"]
    assert ("decided", ("select x", "allow")) in recorded_events
    assert ("decided", ("drop table t", "deny")) in recorded_events
    assert ("completed", ("drop table t", "denied")) in recorded_events
    assert ("refused", "group_not_allowed") in recorded_events
    assert ("refused", "invalid_token") in recorded_events


def test_unknown_stage_is_a_precise_config_error(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    path = write_pipeline(tmp_path, CONFIG.replace('{ use = "upper" }', '{ use = "uper" }'))
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=inline_pm)
    assert "pipelines.p.stages[3].use" in str(err.value)
    assert "unknown stage 'uper'" in str(err.value)
    assert str(path) in str(err.value)


def test_stage_option_errors_name_the_key_path(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    path = write_pipeline(tmp_path, CONFIG.replace('message = "drops need a DBA"', 'mesage = "x"'))
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=inline_pm)
    assert "pipelines.p.stages[2].mesage: unknown key" in str(err.value)


def test_verb_globs_match_tool_names() -> None:
    from gw.model import Command, Identity, Session
    from gw_rules import Rule

    session = Session("s", "l", "mcp", Identity("a"), "127.0.0.1:1", "u", 0.0)

    def cmd(verb: str) -> Command:
        return Command(session, 1, verb, "mcp", verb=verb)

    rule = Rule(verb="delete_*")
    assert rule.matches(cmd("delete_customer")) and rule.matches(cmd("DELETE_order"))
    assert not rule.matches(cmd("undelete_customer")) and not rule.matches(cmd("lookup"))
    mixed = Rule(verb=["select", "drop_?"])
    assert mixed.matches(cmd("select")) and mixed.matches(cmd("drop_x")) and not mixed.matches(cmd("drop_xy"))
    assert not Rule(verb="select").matches(cmd("select_all"))  # plain verbs still compare exactly


async def test_stages_conceal_parameters_with_the_pipeline_deciding_the_command() -> None:
    """A stage that shows parameters to people (approve) conceals them through the command's context: every
    stage of the pipeline deciding that command, in order.  A reload that keeps a stage object puts it in the
    old pipeline and the new one at once (commands still being decided, a reload that fails after building its
    pipelines); each conceals with its own stages."""
    from gw.model import Command, Identity, Session
    from gw.pipeline import Pipeline
    from gw.stage import CommandContext, ParamValues, Stage

    class Hide(Stage):
        name = "hide"

        def conceal(self, command: Command, values: ParamValues) -> ParamValues:
            assert isinstance(values, list)
            return [None if v is None else ("***" if v.startswith("secret") else v) for v in values]

    class Mark(Stage):
        name = "mark"

        def conceal(self, command: Command, values: ParamValues) -> ParamValues:
            assert isinstance(values, list)
            return [None if v is None else f"<{v}>" for v in values]

    seen: list[tuple[ParamValues, str]] = []
    notices: list[str] = []

    class Shows(Stage):
        name = "shows"

        async def check(self, command: Command, context: CommandContext) -> None:
            await context.notice("showing")
            seen.append((context.conceal(command, list(command.params)), getattr(context, "cancel_reason", "")))

    class Protocol:  # what a protocol hands the pipeline: notices, and an extra of its own
        cancel_reason = "client_cancelled"

        async def notice(self, message: str) -> None:
            notices.append(message)

    session = Session("s", "l", "lines", Identity("a"), "127.0.0.1:1", "u", 0.0)
    command = Command(session, 1, "update t set v = $1 where id = $2", "sql", params=("secret-1", "7"))
    hide, mark, shows = Hide(None, None), Mark(None, None), Shows(None, None)  # type: ignore[arg-type]
    before = Pipeline("p", [shows, hide, mark])
    assert before.conceal(command, ["secret-1", "7", None]) == ["<***>", "<7>", None]
    after = Pipeline("p", [shows, mark])  # a reload kept `shows` and `mark` and dropped `hide`
    assert Pipeline("retired", [hide]).conceal(command, ["secret-1"]) == ["***"]
    for pipeline in (before, after, before):
        assert (await pipeline.decide(command, Protocol())).allowed
    assert seen == [(["<***>", "<7>"], "client_cancelled"), (["<secret-1>", "<7>"], "client_cancelled"),
                    (["<***>", "<7>"], "client_cancelled")]
    assert notices == ["showing"] * 3
