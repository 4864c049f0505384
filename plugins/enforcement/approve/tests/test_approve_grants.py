"""Just-in-time grants: an approver lets one identity skip approval on one listener for a while."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from gw.errors import ConfigError
from gw.model import Decision, Kind
from gw_approve.cli import grant_access, list_grants, list_requests, revoke_grant
from gw_approve.ledger import ApprovalError

SHORT = ('{ use = "approve", approvers = ["dba"], mode = "retry", max_grant = "1h", '
         'require = [{ kind = "write", flags = ["no_where"] }] }')


class NoNotices:
    async def notice(self, message: str) -> None:
        raise AssertionError(f"a granted command must not be held: {message}")


async def test_a_grant_skips_approval_until_revoked(approve_gateway: Any) -> None:
    async with approve_gateway(SHORT) as h:
        grant = await grant_access(h.runtime, subject="alice", listener="orders", duration=1800, token="dana",
                                   reason="incident 7")
        assert (grant.subject, grant.listener, grant.granted_by, grant.reason) == (
            "alice", "orders", "dana", "incident 7")
        assert grant.expires - grant.created == pytest.approx(1800)
        alice, bob = await h.client("alice"), await h.client("bob")
        assert (await alice.run("delete from t")).ran
        assert (await bob.run("delete from t")).code == "approval_required", "grants are per identity"
        assert [r.subject for r in await list_requests(h.runtime)] == ["bob"]

        # The verdict names the grant, for the audit trail.
        session = next(s for s in h.runtime.listener("orders").sessions if s.session.identity.subject == "alice")
        cmd = session.command("delete from t", language="sql", kind=Kind.WRITE, verb="delete",
                              objects=("public.t",), flags={"no_where"})
        verdict = await h.stage.check(cmd, NoNotices())
        assert verdict.decision is Decision.ALLOW and verdict.rule == f"grant {grant.id}"

        assert [g.id for g in await list_grants(h.runtime)] == [grant.id]
        with pytest.raises(ApprovalError, match="bob may not approve grants on listener 'orders'"):
            await revoke_grant(h.runtime, grant.id, token="bob")
        revoked = await revoke_grant(h.runtime, grant.id, token="erin")
        assert revoked.revoked_by == "erin" and not revoked.active(revoked.created)
        with pytest.raises(ApprovalError, match=f"grant {grant.id} was already revoked by erin"):
            await revoke_grant(h.runtime, grant.id, token="dana")
        assert (await alice.run("delete from t")).code == "approval_required"
        assert await list_grants(h.runtime) == []
        assert [g.id for g in await list_grants(h.runtime, everything=True)] == [grant.id]
        for c in (alice, bob):
            await c.aclose()


async def test_a_grant_ends_by_itself(approve_gateway: Any) -> None:
    async with approve_gateway(SHORT) as h:
        await grant_access(h.runtime, subject="alice", listener="orders", duration=0.3, token="dana")
        alice = await h.client("alice")
        assert (await alice.run("delete from t")).ran
        await trio.sleep(0.4)
        assert (await alice.run("delete from t")).code == "approval_required"
        await alice.aclose()


async def test_who_may_grant_and_for_how_long(approve_gateway: Any) -> None:
    async with approve_gateway(SHORT) as h:
        rt = h.runtime
        with pytest.raises(ApprovalError, match="bob may not approve grants on listener 'orders': you are in "
                                                "groups agents; approvers for grants on listener 'orders' "
                                                "must be in dba"):
            await grant_access(rt, subject="alice", listener="orders", duration=60, token="bob")
        with pytest.raises(ApprovalError, match="dave cannot grant themselves; another member of dba"):
            await grant_access(rt, subject="dave", listener="orders", duration=60, token="dave")
        with pytest.raises(ApprovalError, match=r"--for 2h is longer than max_grant \(1h\)"):
            await grant_access(rt, subject="alice", listener="orders", duration=7200, token="dana")
        with pytest.raises(ApprovalError, match="--for must be longer than zero"):
            await grant_access(rt, subject="alice", listener="orders", duration=0, token="dana")
        with pytest.raises(ConfigError, match="no listener named 'nope'"):
            await grant_access(rt, subject="alice", listener="nope", duration=60, token="dana")
        with pytest.raises(ApprovalError, match="token was refused"):
            await grant_access(rt, subject="alice", listener="orders", duration=60, token="forged")
        assert await list_grants(rt, everything=True) == []
