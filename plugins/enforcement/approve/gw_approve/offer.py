"""The ``"approvals"`` offer (docs/plugin-hooks.md): what the web console shows and does.

The same logic as ``gw approvals``, for an approver the caller authenticated (the console, with its own
listener's identity providers); values are the ``--json`` shapes of the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from gw.model import Identity
from gw.runtime import Runtime

from . import cli, decisions
from .ledger import ApprovalError
from .records import Status
from .stage import ApproveStage


class ApprovalsOffer:
    name = "approvals"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def requests(self, *, statuses: tuple[str, ...] = (), everything: bool = False,
                       limit: int | None = 100) -> list[dict[str, Any]]:
        now = time.time()
        found = await cli.list_requests(self.runtime, statuses=statuses, everything=everything, limit=limit)
        return [r.to_json(now) for r in found]

    async def request(self, request_id: str) -> dict[str, Any] | None:
        found = await cli.ledger_of(self.runtime).get(request_id)
        return None if found is None else found.to_json(time.time())

    def may_decide(self, request: dict[str, Any], identity: Identity) -> bool:
        if request.get("status") != Status.PENDING.value or identity.subject == request.get("subject"):
            return False
        return identity.in_any(list(request.get("approvers") or ()))

    async def approve(self, request_id: str, approver: Identity, *, reason: str = "") -> dict[str, Any]:
        done = await cli.decide_as(self.runtime, request_id, approver,
                                   lambda r, who, now: decisions.approve(r, who, reason, now))
        return done.to_json(time.time())

    async def deny(self, request_id: str, approver: Identity, *, reason: str) -> dict[str, Any]:
        why = reason.strip() or f"denied by {approver.subject}"
        done = await cli.decide_as(self.runtime, request_id, approver,
                                   lambda r, who, now: decisions.deny(r, who, why, now))
        return done.to_json(time.time())

    async def grants(self, *, everything: bool = False) -> list[dict[str, Any]]:
        now = time.time()
        return [g.to_json(now) for g in await cli.list_grants(self.runtime, everything=everything)]

    async def grant(self, granter: Identity, *, subject: str, listener: str, duration: float,
                    reason: str = "") -> dict[str, Any]:
        if listener not in self.runtime.listeners:
            raise ApprovalError(f"there is no listener {listener!r}")
        made = await cli.grant_as(self.runtime, granter, subject=subject, listener=listener,
                                  duration=duration, reason=reason)
        return made.to_json(time.time())

    async def revoke(self, grant_id: str, revoker: Identity) -> dict[str, Any]:
        done = await cli.revoke_as(self.runtime, grant_id, revoker)
        return done.to_json(time.time())

    def approver_groups(self) -> set[str]:
        return {g for p in self.runtime.pipelines.values() for s in p.stages if isinstance(s, ApproveStage)
                for g in s.options.approvers}


