"""The stage's options as written in pipeline files, and the pure pieces: decisions, records, texts."""

from __future__ import annotations

import time
from pathlib import Path

import pluggy
import pytest
from approve_doubles import USERS
from gw.errors import ConfigError
from gw.model import Identity
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_approve import decisions
from gw_approve.ledger import ApprovalError
from gw_approve.notify import request_payload
from gw_approve.records import ID_ALPHABET, Approval, ApprovalRequest, Grant, Status, new_id
from gw_approve.text import human_duration, snippet

#: The approve stage exactly as the issue writes it, line breaks included.
ISSUE_PIPELINE = """
[storage]
use = "memory"

[identity.static]
use = "static"
users = USERS

[pipelines.agents]
stages = [
  { use = "approve", approvers = ["dba"], timeout = "10m", mode = "hold", require = [
      { kind = "write", flags = ["no_where"] },
      { verb = ["grant", "revoke"] },
      { objects = ["public.payments*"], kind = "write" },
  ] },
]

[[listeners]]
name = "orders"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "agents"
""".replace("USERS", USERS)


def build(tmp_path: Path, pm: pluggy.PluginManager, text: str) -> Runtime:
    return Runtime.build(write_pipeline(tmp_path, text), pm=pm)


def test_the_issue_pipeline_works_as_written(tmp_path: Path, doubles: pluggy.PluginManager) -> None:
    stage = build(tmp_path, doubles, ISSUE_PIPELINE).pipelines["agents"].stages[0]
    opts = stage.options
    assert (opts.approvers, opts.mode, opts.timeout.total_seconds(), opts.min_approvals) == (
        ["dba"], "hold", 600, 1)
    assert [r.label() for r in opts.require] == [
        '{ kind = "write", flags = ["no_where"] }', '{ verb = ["grant", "revoke"] }',
        '{ kind = "write", objects = ["public.payments*"] }']
    assert opts.poll_interval.total_seconds() == 0.25 and opts.notify is None


@pytest.mark.parametrize(("change", "where", "message"), [
    ('approvers = ["dba"]', "approvers", "name at least one approver group"),
    ('approvers = ["dba"], timeout = "10m"', "approvers", "required key is missing"),
    ('mode = "hold"', "mode", "Input should be 'hold' or 'retry'"),
    ('timeout = "10m"', "timeout", "expected a duration"),
    ('timeout = "10m"', "timeout", "must be longer than zero"),
    ('timeout = "10m"', "tiemout", "unknown key"),
    ('mode = "hold"', "notify", "expected an http:// or https:// webhook URL"),
    ('mode = "hold"', "min_approvals", "greater than or equal to 1"),
    ('mode = "hold"', "poll_interval", "between \"10ms\" and \"10s\""),
    ('{ verb = ["grant", "revoke"] }', "require[1].kind", "unknown kind 'writes'"),
])
def test_bad_options_name_the_key(tmp_path: Path, doubles: pluggy.PluginManager, change: str, where: str,
                                  message: str) -> None:
    replacement = {
        "name at least one approver group": 'approvers = [" "]',
        "required key is missing": 'timeout = "10m"',
        "Input should be 'hold' or 'retry'": 'mode = "wait"',
        "expected a duration": 'timeout = "ten minutes"',
        "must be longer than zero": 'timeout = "0s"',
        "unknown key": 'tiemout = "10m"',
        "expected an http:// or https:// webhook URL": 'mode = "hold", notify = "ftp://hooks.example/x"',
        "greater than or equal to 1": 'mode = "hold", min_approvals = 0',
        "between \"10ms\" and \"10s\"": 'mode = "hold", poll_interval = "1m"',
        "unknown kind 'writes'": '{ kind = "writes" }',
    }[message]
    with pytest.raises(ConfigError) as err:
        build(tmp_path, doubles, ISSUE_PIPELINE.replace(change, replacement, 1))
    assert f"pipelines.agents.stages[0].{where}" in str(err.value)
    assert message in str(err.value)


def test_an_empty_require_list_is_refused(tmp_path: Path, doubles: pluggy.PluginManager) -> None:
    text = ISSUE_PIPELINE.replace('require = [', 'require = [], unused = [', 1)
    with pytest.raises(ConfigError, match="unknown key"):
        build(tmp_path, doubles, text)
    start = ISSUE_PIPELINE.index("require = [")
    end = ISSUE_PIPELINE.index("  ] },") + len("  ]")
    with pytest.raises(ConfigError, match=r"stages\[0\].require: give at least one rule"):
        build(tmp_path, doubles, ISSUE_PIPELINE[:start] + "require = []" + ISSUE_PIPELINE[end:])


def test_the_stage_needs_a_store(tmp_path: Path, doubles: pluggy.PluginManager) -> None:
    with pytest.raises(ConfigError) as err:
        build(tmp_path, doubles, ISSUE_PIPELINE.replace('[storage]\nuse = "memory"', ""))
    assert "pipelines.agents.stages[0]: the approve stage needs a [storage] table" in str(err.value)


# -- pure pieces ------------------------------------------------------------------------------------------------


def request(**changes: object) -> ApprovalRequest:
    now = time.time()
    return ApprovalRequest(
        id="abcdefghjk", listener="orders", pipeline="agents", session="s1", subject="alice", groups=("agents",),
        client_address="127.0.0.1:1", text="DELETE FROM t", language="sql", kind="write", verb="delete",
        objects=("public.t",), flags=("no_where",), rule="r", message="", mode="hold", approvers=("dba",),
        min_approvals=1, created=now, expires=now + 600, use_within=600.0).evolve(**changes)


DANA = Identity("dana", ("dba",))


def test_a_request_past_its_expiry_cannot_be_approved_even_before_it_is_written_down() -> None:
    late = request(created=time.time() - 700, expires=time.time() - 100)
    assert late.status is Status.PENDING and late.effective_status(time.time()) is Status.EXPIRED
    with pytest.raises(ApprovalError, match="expired at .* before enough approvers decided"):
        decisions.approve(late, DANA, "", time.time())
    assert decisions.expire(late, time.time()).status is Status.EXPIRED  # type: ignore[union-attr]
    assert decisions.expire(request(), time.time()) is None, "not due yet"


def test_approval_counts_distinct_approvers_and_keeps_reasons() -> None:
    r = request(min_approvals=2)
    r = decisions.approve(r, DANA, "looks fine", 1.0)
    assert r.status is Status.PENDING and r.approvals == (Approval("dana", 1.0, "looks fine", ("dba",)),)
    r = decisions.approve(r, Identity("erin", ("ops", "dba")), "", 2.0)
    assert (r.status, r.decided, r.decided_by) == (Status.APPROVED, 2.0, "dana, erin")


def test_records_survive_the_store() -> None:
    r = decisions.approve(request(), DANA, "ok", 5.0)
    again = ApprovalRequest.from_data(r.to_data(), version=3)
    assert again == r and again.version == 3
    g = Grant("g1", "alice", "orders", "dana", "", 1.0, 2.0)
    assert Grant.from_data(g.to_data()) == g


def test_ids_are_short_and_unambiguous() -> None:
    ids = {new_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 10 and set(i) <= set(ID_ALPHABET) for i in ids)
    assert not set("01ilo") & set(ID_ALPHABET)


def test_messages_use_the_pipeline_file_notation() -> None:
    assert [human_duration(s) for s in (0.6, 1, 1.5, 59, 600, 5400, 86400 + 61)] == [
        "0.6s", "1s", "1.5s", "59s", "10m", "1h30m", "1d1m1s"]
    assert snippet("DELETE\n   FROM t") == "DELETE FROM t"
    assert snippet("x" * 500).endswith("…") and len(snippet("x" * 500)) == 160


def test_webhook_payload() -> None:
    payload = request_payload(request(min_approvals=2))
    assert payload["command"] == "DELETE FROM t" and payload["id"] == "abcdefghjk"
    assert "(2 approvals needed)" in payload["text"] and "in 10m" in payload["text"]
    assert payload["deny_command"] == "gw approvals deny abcdefghjk --reason REASON"
