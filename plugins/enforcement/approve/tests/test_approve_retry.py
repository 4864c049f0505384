"""Retry mode: refused at once with a request id; the same statement by the same identity runs once after
approval."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import trio
from gw_approve.cli import approve_request, deny_request, list_requests
from gw_approve.ledger import ApprovalError
from gw_approve.records import Status

RETRY = ('{ use = "approve", approvers = ["dba"], timeout = "10m", mode = "retry", require = [ '
         '{ kind = "write", flags = ["no_where"] }, { verb = ["grant", "revoke"] } ] }')


async def test_refused_with_an_id_then_runs_once_after_approval(approve_gateway: Any) -> None:
    async with approve_gateway(RETRY) as h:
        alice = await h.client("alice")
        first = await alice.run("delete from t")
        assert (first.outcome, first.code, first.notices) == ("DENIED", "approval_required", [])
        rid = first.request_id
        assert first.message == (
            f'gw: approval required (rule {{ kind = "write", flags = ["no_where"] }}); the command was not run. '
            f"Request {rid} for `delete from t` is waiting for a member of dba: gw approvals approve {rid} -c "
            f"{shlex.quote(str(h.runtime.config.path))}. "
            "Send the same statement again once it is approved; it will run once (the request expires in 10m)")

        # A re-send while pending names the same request instead of making another.
        again = await alice.run("delete from t")
        assert (again.code, again.request_id) == ("approval_required", rid)
        assert "is still waiting for a member of dba" in again.message
        assert [r.id for r in await list_requests(h.runtime)] == [rid]

        # Same text by someone else, or different text by alice, are different requests.
        bob = await h.client("bob")
        assert (await bob.run("delete from t")).request_id != rid
        assert (await alice.run("delete from t2")).request_id != rid

        approved = await approve_request(h.runtime, rid, token="dana")
        assert approved.status is Status.APPROVED
        assert (await bob.run("delete from t")).code == "approval_required", "bob's request is not approved"
        assert (await alice.run("delete from t")).ran
        stored = await h.stage.ledger.require(rid)
        assert stored.status is Status.USED and stored.used_by.endswith("/4")  # alice's 4th command

        third = await alice.run("delete from t")
        assert third.code == "approval_required" and third.request_id != rid
        with pytest.raises(ApprovalError, match=f"request {rid} was already approved by dana .* and the "
                                                "command has run"):
            await approve_request(h.runtime, rid, token="erin")
        for c in (alice, bob):
            await c.aclose()


async def test_approval_survives_a_reconnect(approve_gateway: Any) -> None:
    """The identity, not the session, owns a retry-mode approval (agents reconnect between attempts)."""
    async with approve_gateway(RETRY) as h:
        alice = await h.client("alice")
        rid = (await alice.run("revoke select on t from bob")).request_id
        await alice.aclose()
        await approve_request(h.runtime, rid, token="dana")
        alice = await h.client("alice")
        assert (await alice.run("revoke select on t from bob")).ran
        await alice.aclose()


async def test_a_denied_request_answers_re_sends_with_the_reason(approve_gateway: Any) -> None:
    async with approve_gateway(RETRY) as h:
        alice = await h.client("alice")
        rid = (await alice.run("update t set x = 1")).request_id
        await deny_request(h.runtime, rid, token="erin", reason="restore from backup instead")
        reply = await alice.run("update t set x = 1")
        assert (reply.code, reply.request_id) == ("approval_denied", rid)
        assert "denied by erin: restore from backup instead" in reply.message
        await alice.aclose()


async def test_an_unused_approval_expires_after_retry_window(approve_gateway: Any) -> None:
    stage = RETRY.replace('timeout = "10m"', 'timeout = "10m", retry_window = "0.3s"')
    async with approve_gateway(stage) as h:
        alice = await h.client("alice")
        rid = (await alice.run("delete from t")).request_id
        approved = await approve_request(h.runtime, rid, token="dana")
        assert approved.use_within == pytest.approx(0.3)
        await trio.sleep(0.4)
        late = await alice.run("delete from t")
        assert late.code == "approval_required" and late.request_id != rid
        assert (await h.stage.ledger.require(rid)).effective_status(1e12) is Status.EXPIRED
        await alice.aclose()


async def test_a_pending_request_past_its_timeout_is_replaced(approve_gateway: Any) -> None:
    stage = RETRY.replace('timeout = "10m"', 'timeout = "0.2s"')
    async with approve_gateway(stage) as h:
        alice = await h.client("alice")
        rid = (await alice.run("delete from t")).request_id
        await trio.sleep(0.3)
        with pytest.raises(ApprovalError, match="expired at"):
            await approve_request(h.runtime, rid, token="dana")
        new = await alice.run("delete from t")
        assert new.code == "approval_required" and new.request_id != rid
        assert (await h.stage.ledger.require(rid)).status is Status.EXPIRED  # written down on the way
        assert [r.id for r in await list_requests(h.runtime, statuses=["expired"])] == [rid]
        await alice.aclose()


async def test_concurrent_re_sends_use_an_approval_once(approve_gateway: Any) -> None:
    async with approve_gateway(RETRY) as h:
        clients = [await h.client("alice") for _ in range(4)]
        rid = (await clients[0].run("delete from t")).request_id
        await approve_request(h.runtime, rid, token="dana")
        replies: list[Any] = []
        async with trio.open_nursery() as nursery:
            for c in clients:
                async def resend(c: Any = c) -> None:
                    replies.append(await c.run("delete from t"))
                nursery.start_soon(resend)
        assert sum(r.ran for r in replies) == 1
        assert all(r.code == "approval_required" for r in replies if not r.ran)
        for c in clients:
            await c.aclose()
