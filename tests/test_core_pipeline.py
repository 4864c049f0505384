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


def test_the_pipeline_conceals_parameters_through_every_stage_in_order() -> None:
    from gw.model import Command, Identity, Session
    from gw.pipeline import Pipeline
    from gw.stage import ParamValues, Stage

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

    class Shows(Stage):
        name = "shows"

    session = Session("s", "l", "lines", Identity("a"), "127.0.0.1:1", "u", 0.0)
    command = Command(session, 1, "update t set v = $1 where id = $2", "sql", params=("secret-1", "7"))
    hide, mark, shows = Hide(None, None), Mark(None, None), Shows(None, None)  # type: ignore[arg-type]
    assert shows.concealed(command, ["secret-1", "7"]) == ["secret-1", "7"]  # in no pipeline: nothing to apply
    pipeline = Pipeline("p", [shows, hide, mark])
    assert pipeline.conceal(command, ["secret-1", "7", None]) == ["<***>", "<7>", None]
    # A stage that shows parameters (approve) gets every stage's concealment, its own pipeline's.
    assert shows.concealed(command, ["secret-1", "7"]) == ["<***>", "<7>"]
    assert Pipeline("p", [shows]).conceal(command, ["secret-1"]) == ["secret-1"]
    Pipeline("retired", [hide], bind=False)
    assert shows.concealed(command, ["secret-2"]) == ["secret-2"]
    assert hide.concealed(command, ["secret-2"]) == ["<***>"]  # a retired pipeline does not rebind its stages
