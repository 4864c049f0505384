"""Approval requests and grants in gw's store, changed with optimistic versions.

Every change is read -> decide -> write back with the version read.  When someone else wrote first (another
approver, the gateway expiring the request, another replica), the change is re-applied to the fresh state,
so the decision is always taken on what is actually stored: an approval never lands on an expired or denied
request, and a retry approval is used at most once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from gw.errors import GwError, StoreError
from gw.store import Store, VersionConflict

from .records import ApprovalRequest, Grant, new_id

#: Collection names in the store.
REQUESTS = "approvals"
GRANTS = "approval_grants"

#: How often a change is re-applied after losing a race before giving up.
_ATTEMPTS = 8

R = TypeVar("R", ApprovalRequest, Grant)


class ApprovalError(GwError):
    """An approval action was refused (unknown id, not an approver, already decided ...).  ``str()`` is
    written for the person at the CLI: what happened and what to do."""


def normalize_id(value: str) -> str:
    """Ids are shown lower case; accept what an approver may paste (spaces, upper case)."""
    return value.strip().lower()


class ApprovalLedger:
    """The approve stage's view of the store: requests in ``approvals``, grants in ``approval_grants``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- requests --------------------------------------------------------------------------------------------
    async def open_request(self, request: ApprovalRequest) -> ApprovalRequest:
        """Store a new request under a fresh id (``expect_version=0`` makes a clash impossible to miss)."""
        for _ in range(_ATTEMPTS):
            candidate = request.evolve(id=new_id())
            try:
                version = await self.store.put(REQUESTS, candidate.id, candidate.to_data(), expect_version=0)
            except VersionConflict:
                continue
            return candidate.evolve(version=version)
        raise StoreError("could not allocate an approval request id; the store keeps reporting conflicts")

    async def get(self, request_id: str) -> ApprovalRequest | None:
        doc = await self.store.get(REQUESTS, normalize_id(request_id))
        return None if doc is None else ApprovalRequest.from_data(doc.data, doc.version)

    async def require(self, request_id: str) -> ApprovalRequest:
        found = await self.get(request_id)
        if found is None:
            raise ApprovalError(f"there is no approval request {normalize_id(request_id)!r}; list the pending "
                                "ones with: gw approvals list")
        return found

    async def requests(self, *, status: str | None = None, limit: int | None = None) -> list[ApprovalRequest]:
        """Requests with the stored ``status`` (all when None), newest first."""
        docs = await self.store.query(REQUESTS, where={"status": status} if status else None, limit=limit)
        found = [ApprovalRequest.from_data(d.data, d.version) for d in docs]
        return sorted(found, key=lambda r: r.created, reverse=True)

    async def latest_for(self, match_key: str) -> ApprovalRequest | None:
        """The newest request a retry-mode statement made.  At most one of a key's requests is open at a
        time (a new one is made only when the newest is finished), so the newest is the one that matters."""
        docs = await self.store.query(REQUESTS, where={"match_key": match_key}, limit=4)
        found = [ApprovalRequest.from_data(d.data, d.version) for d in docs]
        return max(found, key=lambda r: r.created, default=None)

    async def change(self, request_id: str,
                     decide: Callable[[ApprovalRequest], ApprovalRequest | None]) -> ApprovalRequest:
        """Apply ``decide`` to the stored request and write the result back.  ``decide`` returns the new value,
        ``None`` to leave the request as it is, or raises :class:`ApprovalError`; it is called again on the
        fresh state when another writer got there first."""
        return await self._change(REQUESTS, request_id, self.require, decide, ApprovalRequest.to_data)

    # -- grants ----------------------------------------------------------------------------------------------
    async def add_grant(self, grant: Grant) -> Grant:
        for _ in range(_ATTEMPTS):
            candidate = replace(grant, id=new_id())
            try:
                version = await self.store.put(GRANTS, candidate.id, candidate.to_data(), expect_version=0)
            except VersionConflict:
                continue
            return replace(candidate, version=version)
        raise StoreError("could not allocate a grant id; the store keeps reporting conflicts")

    async def active_grant(self, subject: str, listener: str, now: float) -> Grant | None:
        docs = await self.store.query(GRANTS, where={"subject": subject, "listener": listener}, limit=32)
        for doc in docs:
            grant = Grant.from_data(doc.data, doc.version)
            if grant.active(now):
                return grant
        return None

    async def grants(self, *, limit: int | None = None) -> list[Grant]:
        docs = await self.store.query(GRANTS, limit=limit)
        return sorted((Grant.from_data(d.data, d.version) for d in docs), key=lambda g: g.created, reverse=True)

    async def require_grant(self, grant_id: str) -> Grant:
        doc = await self.store.get(GRANTS, normalize_id(grant_id))
        if doc is None:
            raise ApprovalError(f"there is no grant {normalize_id(grant_id)!r}; list them with: "
                                "gw approvals grants")
        return Grant.from_data(doc.data, doc.version)

    async def change_grant(self, grant_id: str, decide: Callable[[Grant], Grant | None]) -> Grant:
        return await self._change(GRANTS, grant_id, self.require_grant, decide, Grant.to_data)

    # -- shared ----------------------------------------------------------------------------------------------
    async def _change(self, collection: str, key: str, load: Callable[[str], Awaitable[R]],
                      decide: Callable[[R], R | None], dump: Callable[[R], dict[str, Any]]) -> R:
        for _ in range(_ATTEMPTS):
            current = await load(key)
            updated = decide(current)
            if updated is None:
                return current
            try:
                version = await self.store.put(collection, current.id, dump(updated),
                                               expect_version=current.version)
            except VersionConflict:
                continue
            return replace(updated, version=version)
        raise ApprovalError(f"{normalize_id(key)} keeps being changed by someone else right now; try again")
