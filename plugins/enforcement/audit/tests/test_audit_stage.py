"""The audit stage through core's pipeline: what each record holds, that the command record is durable before
the verdict reaches the protocol, and that a failed write refuses the command (fail closed)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import trio
from gw.errors import ConfigError, StoreError
from gw.model import Decision, DenyCode, Kind, Outcome
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_audit.verify import verify_store


def stored(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [json.loads(d) for (d,) in conn.execute("SELECT data FROM entries WHERE stream = 'audit' ORDER BY seq")]


def writer(rt: Runtime) -> sqlite3.Connection:
    conn = rt.store._writer
    assert isinstance(conn, sqlite3.Connection)
    return conn


async def test_the_command_record_is_durable_when_the_verdict_returns(
        open_runtime: Any, new_session: Any, new_command: Any, ctx: Any,
        db: Callable[[], sqlite3.Connection]) -> None:
    async with open_runtime() as rt:
        pipeline = rt.pipelines["p"]
        session = new_session()
        await pipeline.session_started(session)
        cmd = new_command(session, 1, "DELETE FROM public.users WHERE id = 1", Kind.WRITE,
                          objects=("public.users",), flags=frozenset({"multi_statement", "cte"}))
        verdict = await pipeline.decide(cmd, ctx)
        assert verdict.allowed
        # the protocol would forward now: the record must already be on disk, visible to anyone
        start, record = stored(db())
        assert start["type"] == "session_start" and record["type"] == "command"
        assert {k: record[k] for k in ("gateway", "session", "seq", "listener", "protocol", "subject", "groups",
                                       "client", "claimed_user", "upstream", "text", "language", "kind", "verb",
                                       "objects", "flags", "verdict", "stage", "rule", "pipeline")} == {
            "gateway": "gw-test", "session": session.id, "seq": 1, "listener": "orders", "protocol": "postgres",
            "subject": "alice", "groups": ["agents"], "client": "127.0.0.1:50000", "claimed_user": "agent",
            "upstream": "127.0.0.1:5432/test", "text": "DELETE FROM public.users WHERE id = 1",
            "language": "sql", "kind": "write", "verb": "delete", "objects": ["public.users"],
            "flags": ["cte", "multi_statement"], "verdict": "allowed", "stage": None, "rule": None,
            "pipeline": "p"}
        assert "params" not in record
        assert (record["chain"], record["n"], start["n"]) == ("gw-test", 2, 1)
        assert record["prev"] == start["hash"]

        await pipeline.completed(cmd, Outcome(rows=3, tag="DELETE 3", duration=0.0042, notes={"masked": 2},
                                              notices=["n1"]))
        # the outcome costs no commit of its own: it rides on the next write (here: the session end)
        assert stored(db())[-1]["type"] == "command"
        await pipeline.session_ended(session, "token_expired")
        outcome = stored(db())[-2]
        assert {k: outcome[k] for k in ("type", "session", "seq", "status", "rows", "tag", "error_code",
                                        "duration", "notes", "notices")} == {
            "type": "outcome", "session": session.id, "seq": 1, "status": "ok", "rows": 3, "tag": "DELETE 3",
            "error_code": None, "duration": 0.0042, "notes": {"masked": 2}, "notices": 1}
        end = stored(db())[-1]
        assert (end["type"], end["reason"], end["session"]) == ("session_end", "token_expired", session.id)
        assert start["token_expires_at"] == session.identity.expires_at
        assert start["attributes"] == {"database": "test"}


async def test_denied_pending_and_approved_verdicts(open_runtime: Any, new_session: Any, new_command: Any,
                                                    ctx: Any, db: Callable[[], sqlite3.Connection]) -> None:
    stages = '{ use = "audit" }, { use = "approvals" }, { use = "deny_drops" }'
    async with open_runtime(stages) as rt:
        pipeline = rt.pipelines["p"]
        s = new_session(groups=("agents", "oncall"))
        denied = await pipeline.decide(new_command(s, 1, "DROP TABLE t", Kind.DDL), ctx)
        pending = await pipeline.decide(new_command(s, 2, "hold me", Kind.WRITE), ctx)
        approved = await pipeline.decide(new_command(s, 3, "approved", Kind.WRITE), ctx)
        assert (denied.decision, pending.decision, approved.decision) == (
            Decision.DENY, Decision.PENDING, Decision.ALLOW)
    d, p, a = stored(db())
    assert (d["verdict"], d["stage"], d["rule"], d["code"], d["reason"]) == (
        "denied", "deny_drops", "ddl", "policy", "DDL needs a DBA; ask one")
    assert (p["verdict"], p["stage"], p["request_id"], p["code"]) == (
        "pending", "approvals", "req-1", "approval_required")
    assert (a["verdict"], a["request_id"], a["approved_by"], a["rule"]) == ("allowed", "req-0", ["bob"], "writes")
    assert d["groups"] == ["agents", "oncall"]


async def test_a_failed_write_refuses_the_command(open_runtime: Any, new_session: Any, new_command: Any,
                                                  ctx: Any, db: Callable[[], sqlite3.Connection]) -> None:
    async with open_runtime() as rt:
        pipeline = rt.pipelines["p"]
        s = new_session()
        assert (await pipeline.decide(new_command(s, 1, "select 1"), ctx)).allowed
        pages = writer(rt).execute("PRAGMA page_count").fetchone()[0]
        writer(rt).execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from now on
        refused = await pipeline.decide(new_command(s, 2, "select '" + "x" * 50_000 + "'"), ctx)
        assert refused.decision is Decision.DENY and refused.code is DenyCode.UNAVAILABLE
        assert refused.stage == "audit"
        assert "could not write the audit record" in refused.reason and "disk is full" in refused.reason
        writer(rt).execute("PRAGMA max_page_count = 1073741823")  # space again
        assert (await pipeline.decide(new_command(s, 4, "select 4"), ctx)).allowed
        assert rt.store is not None
        [report] = await verify_store(rt.store)
        assert report.ok and report.verified == 2  # no gap where the failed record would have been
    assert [r["seq"] for r in stored(db())] == [1, 4]


async def test_a_closed_store_refuses_commands_and_sessions(open_runtime: Any, new_session: Any,
                                                            new_command: Any, ctx: Any) -> None:
    async with open_runtime() as rt:
        assert rt.store is not None
        await rt.store.close()
        pipeline = rt.pipelines["p"]
        s = new_session()
        refused = await pipeline.decide(new_command(s, 1, "select 1"), ctx)
        assert refused.code is DenyCode.UNAVAILABLE and "is not open" in refused.reason
        with pytest.raises(StoreError):  # core does not admit a session whose start cannot be audited
            await pipeline.session_started(s)


async def test_refused_sessions_are_recorded(open_runtime: Any, db: Callable[[], sqlite3.Connection]) -> None:
    async with open_runtime() as rt:
        await rt.pipelines["p"].session_refused(
            listener="orders", protocol="postgres", client_address="10.0.0.9:4242", claimed_user="root",
            reason="group_not_allowed", message="identity 'x' is not in a group allowed on listener 'orders'")
    [r] = stored(db())
    assert {k: r[k] for k in ("type", "listener", "client", "claimed_user", "reason")} == {
        "type": "session_refused", "listener": "orders", "client": "10.0.0.9:4242", "claimed_user": "root",
        "reason": "group_not_allowed"}
    assert "not in a group allowed" in r["message"]


async def test_params_text_limits_and_redaction(open_runtime: Any, new_session: Any, new_command: Any,
                                                ctx: Any, db: Callable[[], sqlite3.Connection]) -> None:
    stages = '{ use = "audit", include_params = true, max_text = 64, redact = ["nine_digits"] }'
    async with open_runtime(stages) as rt:
        pipeline = rt.pipelines["p"]
        s = new_session()
        cmd = new_command(s, 1, "select * from people where ssn = '123456789'",
                          params=(b"987654321", 7, None, "ok"))
        await pipeline.decide(cmd, ctx)
        await pipeline.completed(cmd, Outcome(status="error", error_code="23505",
                                              error_message="Key (ssn)=(123456789) already exists"))
        long = "select " + ", ".join(f"c{i}" for i in range(100))
        await pipeline.decide(new_command(s, 2, long), ctx)
    first, outcome, second = stored(db())
    assert first["text"] == "select * from people where ssn = '***'"
    assert first["params"] == ["***", 7, None, "ok"]
    assert outcome["error_message"] == "Key (ssn)=(***) already exists"
    assert second["text"] == long[:64] and second["text_truncated"] is True
    assert second["text_length"] == len(long) and len(second["text_sha256"]) == 64
    raw = (db().execute("SELECT group_concat(data) FROM entries").fetchone()[0])
    assert "123456789" not in raw and "987654321" not in raw


async def test_every_pipeline_writes_one_chain(open_runtime: Any, new_session: Any, new_command: Any,
                                               ctx: Any) -> None:
    extra = '\n[pipelines.q]\nstages = [{ use = "audit", include_params = true }]\n'
    async with open_runtime(extra=extra) as rt:
        s = new_session()
        for i in range(1, 7):
            await rt.pipelines["pq"[i % 2]].decide(new_command(s, i, f"select {i}"), ctx)
        assert rt.store is not None
        [report] = await verify_store(rt.store)
        assert report.ok and report.chain == "gw-test" and report.verified == 6


@pytest.mark.parametrize("stages, storage, message", [
    ('{ use = "audit" }', False, r"pipelines\.p\.stages\[0\]: audit needs a \[storage\] table"),
    ('{ use = "audit", redact = ["nope"] }', True, r"pipelines\.p\.stages\[0\]: redact: unknown detector 'nope'"),
    ('{ use = "audit", max_text = 10 }', True, r"pipelines\.p\.stages\[0\]\.max_text"),
    ('{ use = "audit", chain = "" }', True, r"pipelines\.p\.stages\[0\]\.chain"),
    ('{ use = "audit", include_parms = true }', True, r"pipelines\.p\.stages\[0\]\.include_parms: unknown key"),
])
def test_configuration_errors_name_the_key(tmp_path: Any, audit_pm: Any, stages: str, storage: bool,
                                           message: str) -> None:
    text = f'[pipelines.p]\nstages = [{stages}]\n'
    if storage:
        text = '[storage]\nuse = "sqlite"\n' + text
    with pytest.raises(ConfigError, match=message):
        Runtime.build(write_pipeline(tmp_path, text), pm=audit_pm)


async def test_outcome_is_flushed_without_a_following_write(
        open_runtime: Any, new_session: Any, new_command: Any, ctx: Any,
        db: Callable[[], sqlite3.Connection]) -> None:
    """A queued outcome reaches the store by itself shortly after, even when nothing else is written."""
    async with open_runtime() as rt:
        pipeline = rt.pipelines["p"]
        session = new_session()
        await pipeline.session_started(session)
        cmd = new_command(session, 1, "select 1", Kind.READ)
        assert (await pipeline.decide(cmd, ctx)).allowed
        await pipeline.completed(cmd, Outcome(rows=1, tag="SELECT 1"))
        for _ in range(100):
            if stored(db())[-1]["type"] == "outcome":
                break
            await trio.sleep(0.01)
        assert stored(db())[-1]["type"] == "outcome"
