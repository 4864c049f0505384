"""Hold mode: a matching command waits until approved, denied, timed out, or its client goes away."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import trio
from approve_doubles import LineClient
from gw.model import Kind
from gw_approve.cli import approve_request, deny_request, list_requests
from gw_approve.ledger import ApprovalError
from gw_approve.records import Status

REQUEST_ID = re.compile(r"Request ([a-z0-9]{10}) is waiting")


async def held(client: LineClient, text: str) -> str:
    """Send ``text`` and return the request id from the notice the gateway sends while holding it."""
    await client.send(text)
    notice = await client.readline()
    m = REQUEST_ID.search(notice)
    assert m, notice
    return m.group(1)


async def wait_status(h: Any, request_id: str, status: Status) -> None:
    ledger = h.stage.ledger
    with trio.fail_after(5):
        while (await ledger.require(request_id)).status is not status:
            await trio.sleep(0.02)


async def test_delete_without_where_is_held_until_a_dba_approves(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        alice = await h.client("alice")
        await alice.send("delete from t")
        notice = await alice.readline()
        assert notice.startswith('NOTICE gw: approval required (rule { kind = "write", flags = ["no_where"] }). '
                                 "Request ")
        rid = REQUEST_ID.search(notice).group(1)  # type: ignore[union-attr]
        cfg = shlex.quote(str(h.runtime.config.path))
        assert notice.endswith(f"is waiting for a member of dba: gw approvals approve {rid} -c {cfg} (expires in 10m)")

        request = await h.stage.ledger.require(rid)
        assert (request.status, request.subject, request.listener, request.text) == (
            Status.PENDING, "alice", "orders", "delete from t")
        assert (request.kind, request.verb, request.objects, request.flags) == (
            "write", "delete", ("public.t",), ("no_where",))
        assert request.expires - request.created == pytest.approx(600)
        assert [r.id for r in await list_requests(h.runtime)] == [rid]

        outcome: list[Any] = []
        async with trio.open_nursery() as nursery:
            async def wait_for_reply() -> None:
                outcome.append(await alice.reply())

            nursery.start_soon(wait_for_reply)
            await trio.sleep(0.3)
            assert not outcome, "the command must stay held until someone approves it"
            approved = await approve_request(h.runtime, rid, token="dana", reason="cleanup ticket 42")
            assert approved.status is Status.APPROVED
        assert outcome[0].ran
        stored = await h.stage.ledger.require(rid)
        assert stored.approved_by == ("dana",) and stored.approvals[0].reason == "cleanup ticket 42"
        assert await list_requests(h.runtime) == []

        # A DELETE with a WHERE, and reads, are not held.
        assert (await alice.run("delete from t where id = 1")).notices == []
        assert (await alice.run("select * from t")).ran
        await alice.aclose()


async def test_requester_and_non_approvers_cannot_approve(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        dave = await h.client("dave")  # in dba *and* agents: may connect, may approve others, not himself
        rid = await held(dave, "update payments set amount = 0")
        with pytest.raises(ApprovalError, match=f"dave made request {rid} and cannot approve it; another "
                                                "member of dba must approve it"):
            await approve_request(h.runtime, rid, token="dave")
        with pytest.raises(ApprovalError, match=f"bob may not approve request {rid}: you are in groups agents; "
                                                "approvers for request .* must be in dba"):
            await approve_request(h.runtime, rid, token="bob")
        with pytest.raises(ApprovalError, match="token was refused .*unknown token"):
            await approve_request(h.runtime, rid, token="mallory")
        with pytest.raises(ApprovalError, match="give your approver token"):
            await approve_request(h.runtime, rid, token=None)
        with pytest.raises(ApprovalError, match="there is no approval request 'nosuchid'"):
            await approve_request(h.runtime, "nosuchid", token="dana")
        assert (await h.stage.ledger.require(rid)).approvals == ()

        await approve_request(h.runtime, f"  {rid.upper()} ", token="erin")  # pasted ids are forgiven
        assert (await dave.reply()).ran
        with pytest.raises(ApprovalError, match=f"request {rid} was already approved by erin"):
            await approve_request(h.runtime, rid, token="dana")
        await dave.aclose()


async def test_deny_ends_the_command_with_the_approvers_reason(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        alice = await h.client("alice")
        rid = await held(alice, "grant all on payments to alice")
        with pytest.raises(ApprovalError, match="give a reason"):
            await deny_request(h.runtime, rid, token="dana", reason=" ")
        with pytest.raises(ApprovalError, match="bob may not approve"):
            await deny_request(h.runtime, rid, token="bob", reason="nope")
        await deny_request(h.runtime, rid, token="dana", reason="use the reporting role instead")
        reply = await alice.reply()
        assert reply.outcome == "DENIED" and reply.code == "approval_denied" and reply.request_id == rid
        assert reply.message == (f"gw: request {rid} was denied by dana: use the reporting role instead. The "
                                 "command was not run; change it or talk to the approver before sending it again")
        with pytest.raises(ApprovalError, match=f"request {rid} was already denied by dana"):
            await approve_request(h.runtime, rid, token="erin")
        await alice.aclose()


async def test_timeout_ends_with_approval_timeout(approve_gateway: Any) -> None:
    stage = ('{ use = "approve", approvers = ["dba"], timeout = "0.6s", poll_interval = "50ms", '
             'require = [{ kind = "write", flags = ["no_where"], message = "bulk deletes need a DBA" }] }')
    async with approve_gateway(stage) as h:
        alice = await h.client("alice")
        started = trio.current_time()
        await alice.send("delete from orders")
        reply = await alice.reply()
        assert 0.5 < trio.current_time() - started < 3
        assert reply.notices[0].startswith("gw: approval required (bulk deletes need a DBA). Request ")
        assert (reply.outcome, reply.code) == ("DENIED", "approval_timeout")
        assert reply.message.startswith(f"gw: nobody approved request {reply.request_id} within 0.6s; the "
                                        "command was not run. Ask a member of dba")
        stored = await h.stage.ledger.require(reply.request_id)
        assert stored.status is Status.EXPIRED and stored.reason == "no decision within 0.6s"
        with pytest.raises(ApprovalError, match=f"request {reply.request_id} expired at .* before enough approvers decided"):
            await approve_request(h.runtime, reply.request_id, token="dana")
        await alice.aclose()


async def test_two_approvals_from_different_approvers(approve_gateway: Any) -> None:
    stage = ('{ use = "approve", approvers = ["dba"], min_approvals = 2, poll_interval = "50ms", '
             'require = [{ objects = ["public.payments*"], kind = "write" }] }')
    async with approve_gateway(stage) as h:
        alice = await h.client("alice")
        await alice.send("update payments_2024 set amount = 1 where id = 7")
        notice = await alice.readline()
        assert "is waiting for 2 different approvers from dba" in notice
        rid = REQUEST_ID.search(notice).group(1)  # type: ignore[union-attr]
        first = await approve_request(h.runtime, rid, token="dana")
        assert first.status is Status.PENDING and first.approved_by == ("dana",)
        with pytest.raises(ApprovalError, match=f"dana already approved request {rid}; it needs 1 more"):
            await approve_request(h.runtime, rid, token="dana")
        await trio.sleep(0.2)
        assert alice.buf == b"", "one approval of two must not release the command"
        second = await approve_request(h.runtime, rid, token="erin")
        assert second.status is Status.APPROVED and second.approved_by == ("dana", "erin")
        assert (await alice.reply()).ran
        await alice.aclose()


async def test_a_client_that_goes_away_cancels_its_request(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        alice = await h.client("alice")
        rid = await held(alice, "delete from t")
        await alice.aclose()
        await wait_status(h, rid, Status.CANCELLED)
        stored = await h.stage.ledger.require(rid)
        assert stored.reason == "the client disconnected"
        with pytest.raises(ApprovalError, match=f"request {rid} was cancelled: the client disconnected"):
            await approve_request(h.runtime, rid, token="dana")


async def test_several_held_commands_are_independent(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        alice, bob = await h.client("alice"), await h.client("bob")
        a = await held(alice, "delete from t")
        b = await held(bob, "delete from t")
        assert a != b
        await deny_request(h.runtime, a, token="dana", reason="no")
        await approve_request(h.runtime, b, token="dana")
        assert (await alice.reply()).code == "approval_denied"
        assert (await bob.reply()).ran
        for c in (alice, bob):
            await c.aclose()


async def test_explain_reports_pending_without_side_effects(approve_gateway: Any) -> None:
    async with approve_gateway() as h:
        lr = h.runtime.listener("orders")
        alice = await h.client("alice")
        session = next(iter(lr.sessions))
        cmd = session.command("delete from t", language="sql", kind=Kind.WRITE, verb="delete",
                              objects=("public.t",), flags={"no_where"})
        verdict = h.stage.evaluate(cmd)
        assert verdict.decision.value == "pending" and verdict.request_id == "(new)"
        assert verdict.rule == '{ kind = "write", flags = ["no_where"] }' and verdict.stage == "approve"
        safe = session.command("delete from t where id = 1", language="sql", kind=Kind.WRITE,
                               verb="delete", objects=("public.t",))
        assert h.stage.evaluate(safe) is None
        assert await list_requests(h.runtime, everything=True) == []
        await alice.aclose()
