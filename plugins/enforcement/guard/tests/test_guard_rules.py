"""The guard stage, built from a pipeline file through the installed plugin: the canonical pipeline of the
enforcement issue, non-SQL commands, messages, and configuration errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gw.errors import ConfigError
from gw.model import Command, Decision, DenyCode, Identity, Kind, Session
from gw.pipeline import Pipeline
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_guard import Guard
from gw_sqlanalysis import Classifier

CANONICAL = """
[pipelines.agents]
stages = [
  { use = "guard", deny = [
      { kind = "ddl", except_groups = ["dba"] },
      { verb = "truncate" },
      { kind = "unknown", message = "statement not recognised; rewrite it in plain SQL" },
  ] },
]

[pipelines.http]
stages = [
  { use = "guard", deny = [
      { kind = "exec", text = "rm\\\\s+-rf", message = "recursive deletes are not allowed" },
      { verb = "DELETE", objects = ["/api/v1/customers/*"], name = "no-customer-deletes" },
  ], message = "refused by {rule} ({kind} {verb}); ask #platform" },
]
"""

classifier = Classifier("postgres")


def session(*groups: str, protocol: str = "postgres") -> Session:
    return Session("s1", "orders", protocol, Identity("alice", groups, provider="tokens"), "127.0.0.1:5555",
                   "db:5432", time.time())


def sql(text: str, *groups: str) -> Command:
    c = classifier.classify(text)
    return Command(session(*groups), 1, text, "sql", c.kind, c.verb, c.objects, c.flags,
                   attributes={"verbs": c.verbs})


@pytest.fixture
def pipelines(tmp_path: Path) -> dict[str, Pipeline]:
    return Runtime.build(write_pipeline(tmp_path, CANONICAL)).pipelines


def guard(pipelines: dict[str, Pipeline], name: str = "agents") -> Guard:
    stage = pipelines[name].stages[0]
    assert isinstance(stage, Guard)
    return stage


def test_drop_table_is_denied_for_agents_and_passes_for_dba(pipelines: dict[str, Pipeline]) -> None:
    g = guard(pipelines)
    verdict = g.evaluate(sql("DROP TABLE payments", "agents"))
    assert verdict is not None and verdict.decision is Decision.DENY
    assert verdict.code is DenyCode.POLICY and verdict.stage == "guard"
    assert verdict.rule == '{ kind = "ddl", except_groups = ["dba"] }'
    assert verdict.rule in verdict.reason and "(ddl, drop)" in verdict.reason
    assert "ask a gateway operator" in verdict.reason
    assert g.evaluate(sql("DROP TABLE payments", "agents", "dba")) is None


def test_truncate_is_denied_even_for_dba(pipelines: dict[str, Pipeline]) -> None:
    verdict = guard(pipelines).evaluate(sql("TRUNCATE payments", "dba"))
    assert verdict is not None and verdict.rule == '{ verb = "truncate" }'


@pytest.mark.parametrize("text", [
    "DO $$ BEGIN DELETE FROM t; END $$", "EXECUTE p", "SELECT my_func()", "SELECT 'a\\'; DROP TABLE t; --'",
    "garbage", "SELECT 'unterminated",
])
def test_unknown_is_denied_with_the_rules_message(pipelines: dict[str, Pipeline], text: str) -> None:
    verdict = guard(pipelines).evaluate(sql(text, "agents", "dba"))
    assert verdict is not None
    assert verdict.reason == "statement not recognised; rewrite it in plain SQL"


@pytest.mark.parametrize("text", ["SELECT * FROM payments WHERE id = 1", "DELETE FROM t", "BEGIN",
                                  "SET application_name = 'x'", "GRANT SELECT ON t TO bob"])
def test_other_commands_pass(pipelines: dict[str, Pipeline], text: str) -> None:
    assert guard(pipelines).evaluate(sql(text, "agents")) is None


def test_a_denied_verb_cannot_hide_behind_another_statement(pipelines: dict[str, Pipeline]) -> None:
    """``SELECT 1; DELETE ...; TRUNCATE t`` is a write whose reported verb is delete; the protocol lists every
    verb in ``attributes["verbs"]`` and verb rules see them all."""
    cmd = sql("SELECT 1; DELETE FROM t; TRUNCATE t", "dba")
    assert cmd.verb == "delete" and "truncate" in cmd.attributes["verbs"]
    verdict = guard(pipelines).evaluate(cmd)
    assert verdict is not None and verdict.rule == '{ verb = "truncate" }'


async def test_the_pipeline_refuses_with_the_guard_verdict(pipelines: dict[str, Pipeline]) -> None:
    class Context:
        async def notice(self, message: str) -> None:
            raise AssertionError("guard never notifies")

    verdict = await pipelines["agents"].decide(sql("DROP TABLE t", "agents"), Context())
    assert verdict.decision is Decision.DENY and verdict.stage == "guard"
    assert [(s.name, v is not None) for s, v in pipelines["agents"].explain(sql("DROP TABLE t", "dba"))] == [
        ("guard", False)]


def exec_command(text: str) -> Command:
    return Command(session("agents", protocol="ssh"), 1, text, "shell", Kind.EXEC, text.split()[0])


def http_command(method: str, path: str) -> Command:
    kind = Kind.READ if method == "GET" else Kind.WRITE
    return Command(session("agents", protocol="http"), 1, f"{method} {path}", "http", kind, method, (path,))


def test_non_sql_commands(pipelines: dict[str, Pipeline]) -> None:
    g = guard(pipelines, "http")
    refused = g.evaluate(exec_command("rm  -rf /var/lib/postgresql"))
    assert refused is not None and refused.reason == "recursive deletes are not allowed"
    assert g.evaluate(exec_command("ls -la /tmp")) is None
    assert g.evaluate(exec_command("rm file.txt")) is None

    refused = g.evaluate(http_command("DELETE", "/api/v1/customers/42"))
    assert refused is not None and refused.rule == "no-customer-deletes"
    assert refused.reason == 'refused by no-customer-deletes (write DELETE); ask #platform'
    assert g.evaluate(http_command("delete", "/api/v1/customers/42")) is not None  # verbs ignore case
    assert g.evaluate(http_command("GET", "/api/v1/customers/42")) is None
    assert g.evaluate(http_command("DELETE", "/api/v1/orders/42")) is None


def test_empty_guard_has_no_opinion(tmp_path: Path) -> None:
    rt = Runtime.build(write_pipeline(tmp_path, '[pipelines.p]\nstages = [{ use = "guard" }]\n'))
    assert guard(rt.pipelines, "p").evaluate(sql("DROP TABLE t")) is None


@pytest.mark.parametrize(("stage", "path", "words"), [
    ('{ use = "guard", deny = [{ knd = "ddl" }] }', "pipelines.p.stages[0].deny[0].knd", "unknown key"),
    ('{ use = "guard", deny = [{ kind = "dll" }] }', "pipelines.p.stages[0].deny[0].kind", "unknown kind"),
    ('{ use = "guard", deny = [{ text = "(" }] }', "pipelines.p.stages[0].deny[0].text", "regular expression"),
    ('{ use = "guard", deny = { kind = "ddl" } }', "pipelines.p.stages[0].deny", "list"),
    ('{ use = "guard", allow = [] }', "pipelines.p.stages[0].allow", "unknown key"),
])
def test_configuration_errors_name_the_key(tmp_path: Path, stage: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Runtime.build(write_pipeline(tmp_path, f"[pipelines.p]\nstages = [{stage}]\n"))
    assert path in str(info.value)
    assert words in str(info.value).lower()
