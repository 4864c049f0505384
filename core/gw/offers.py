"""What plugins offer each other, without importing each other.

A plugin that keeps something others need to show or act on (approval requests, the audit trail, session
recordings) registers an offer class with ``gw_register_offers``; a plugin that needs it (the web console) asks
``runtime.offer(name)`` and talks to the result through the protocol below.  Values cross as the JSON shapes
the CLI prints with ``--json``, so every surface shows the same data.  Authorisation stays with the keeper:
callers pass the authenticated :class:`~gw.model.Identity` of the person acting, never a bare name.
"""

from __future__ import annotations

from typing import Any, Protocol

from .model import Identity

JSON = dict[str, Any]


class ApprovalsOffer(Protocol):
    """Offered as ``"approvals"`` by the approve stage's plugin."""

    async def requests(self, *, statuses: tuple[str, ...] = (), everything: bool = False,
                       limit: int | None = 100) -> list[JSON]:
        """Requests by effective status (default: pending), newest first (``gw approvals list --json``)."""
        ...

    async def request(self, request_id: str) -> JSON | None:
        ...

    def may_decide(self, request: JSON, identity: Identity) -> bool:
        """Whether ``identity`` may approve or deny ``request`` now (an approver, not its requester)."""
        ...

    async def approve(self, request_id: str, approver: Identity, *, reason: str = "") -> JSON:
        """Add ``approver``'s approval; raises :class:`gw.errors.GwError` with a message for the person."""
        ...

    async def deny(self, request_id: str, approver: Identity, *, reason: str) -> JSON:
        ...

    async def grants(self, *, everything: bool = False) -> list[JSON]:
        ...

    async def grant(self, granter: Identity, *, subject: str, listener: str, duration: float,
                    reason: str = "") -> JSON:
        ...

    async def revoke(self, grant_id: str, revoker: Identity) -> JSON:
        ...

    def approver_groups(self) -> set[str]:
        """Every group that approves something in the running configuration."""
        ...


class AuditOffer(Protocol):
    """Offered as ``"audit"`` by the audit stage's plugin."""

    async def search(self, *, subject: str | None = None, listener: str | None = None,
                     verdict: str | None = None, kind: str | None = None, text: str | None = None,
                     since: float | None = None, until: float | None = None,
                     limit: int = 100) -> list[JSON]:
        """Command records, newest first, each with its outcome (``gw audit list --json``)."""
        ...

    async def verify(self) -> list[JSON]:
        """One report per chain (``gw audit verify --json``)."""
        ...

    async def event(self, event: str, identity: Identity, *, details: JSON, client_address: str = "") -> None:
        """Append a record of something a person did outside a proxied session (a console login, a
        decision); durable when this returns."""
        ...


class RecordingsOffer(Protocol):
    """Offered as ``"recordings"`` by the record stage's plugin."""

    async def sessions(self, *, limit: int = 100, subject: str | None = None) -> list[JSON]:
        """Recorded sessions, newest first (``gw sessions list --json``)."""
        ...

    async def export(self, session_id: str, fmt: str) -> str | None:
        """The recording as ``gw sessions export --format FMT`` writes it (``"jsonl"``: the header, then one
        ``[seconds, channel, data]`` event per line, as stored, masked; ``"asciicast"``: asciicast v2), or None
        when there is no such recording."""
        ...
