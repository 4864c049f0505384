"""Tool pinning: gw remembers each tool's definition the first time it sees it, and a changed definition is
neither advertised nor callable until an operator accepts it (``gw mcp tools accept``).

The attack it stops is the "rug pull": a server (or whoever took it over) swaps a tool's description or input
schema after people approved of the integration -- new instructions hidden in a description the agent's model
reads, a harmless ``lookup`` turned into something else.  The pinned part of a definition is everything that
tells a model or gw what the tool does: name, title, description, input and output schema and annotations
(``readOnlyHint`` decides the command's kind, so flipping it is a change too).

Pins live in the store (collection ``mcp_tools``, one document per listener and tool), so every replica and
the CLI share them; each document keeps the accepted definition and hash, and the changed one waiting for
review.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from gw.store import Document, Store, VersionConflict

COLLECTION = "mcp_tools"
#: The parts of a tool definition that are pinned.
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def pinned_part(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: tool[k] for k in PINNED_FIELDS if k in tool}


def definition_hash(tool: dict[str, Any]) -> str:
    canonical = json.dumps(pinned_part(tool), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def pin_key(listener: str, name: str) -> str:
    return f"{listener}/{name}"


@dataclass(frozen=True, slots=True)
class Pin:
    listener: str
    name: str
    hash: str
    definition: dict[str, Any]
    first_seen: float
    accepted_at: float
    accepted_by: str
    pending_hash: str | None = None
    pending_definition: dict[str, Any] | None = None
    pending_since: float | None = None
    version: int = 0

    @property
    def status(self) -> str:
        return "changed" if self.pending_hash else "accepted"

    def to_data(self) -> dict[str, Any]:
        return {"listener": self.listener, "name": self.name, "hash": self.hash, "definition": self.definition,
                "first_seen": self.first_seen, "accepted_at": self.accepted_at, "accepted_by": self.accepted_by,
                "pending_hash": self.pending_hash, "pending_definition": self.pending_definition,
                "pending_since": self.pending_since, "status": self.status}

    @classmethod
    def from_document(cls, doc: Document) -> Pin:
        d = doc.data
        return cls(str(d["listener"]), str(d["name"]), str(d["hash"]), dict(d.get("definition") or {}),
                   float(d.get("first_seen") or 0), float(d.get("accepted_at") or 0),
                   str(d.get("accepted_by") or ""), d.get("pending_hash"), d.get("pending_definition"),
                   d.get("pending_since"), doc.version)


class ToolPins:
    """Pins of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, listener: str, name: str) -> Pin | None:
        doc = await self.store.get(COLLECTION, pin_key(listener, name))
        return Pin.from_document(doc) if doc is not None else None

    async def check(self, listener: str, tool: dict[str, Any]) -> bool:
        """Whether ``tool`` (as the server lists it now) may be advertised and called.  A tool seen for the
        first time is pinned as it is (trust on first use); a definition differing from the accepted one is
        recorded as pending review and refused."""
        name = str(tool.get("name"))
        digest = definition_hash(tool)
        for _ in range(5):
            pin = await self.get(listener, name)
            now = time.time()
            if pin is None:
                new = Pin(listener, name, digest, pinned_part(tool), now, now, "first use")
                try:
                    await self.store.put(COLLECTION, pin_key(listener, name), new.to_data(), expect_version=0)
                except VersionConflict:
                    continue
                return True
            if pin.hash == digest:
                return True
            if pin.pending_hash == digest:
                return False
            changed = Pin(pin.listener, name, pin.hash, pin.definition, pin.first_seen, pin.accepted_at,
                          pin.accepted_by, digest, pinned_part(tool), now)
            try:
                await self.store.put(COLLECTION, pin_key(listener, name), changed.to_data(),
                                     expect_version=pin.version)
            except VersionConflict:
                continue
            return False
        return False

    async def list(self, listener: str | None = None) -> list[Pin]:
        where = {"listener": listener} if listener else None
        docs = await self.store.query(COLLECTION, where=where)
        return sorted((Pin.from_document(d) for d in docs), key=lambda p: (p.listener, p.name))

    async def accept(self, listener: str, name: str, *, by: str, expected: str | None = None) -> Pin:
        """Make the pending definition the accepted one.  ``expected`` (a hash prefix) guards against
        accepting a definition that changed again after the operator reviewed it."""
        for _ in range(5):
            pin = await self.get(listener, name)
            if pin is None:
                raise LookupError(f"listener {listener!r} has no pinned tool {name!r} (gw mcp tools list)")
            if pin.pending_hash is None:
                raise LookupError(f"tool {name!r} on listener {listener!r} has no changed definition waiting")
            if expected and not pin.pending_hash.startswith(expected.lower()):
                raise LookupError(f"the changed definition of {name!r} is now {pin.pending_hash[:12]}, not "
                                  f"{expected}; review it again (gw mcp tools list --json)")
            accepted = Pin(pin.listener, name, pin.pending_hash, dict(pin.pending_definition or {}),
                           pin.first_seen, time.time(), by)
            try:
                await self.store.put(COLLECTION, pin_key(listener, name), accepted.to_data(),
                                     expect_version=pin.version)
            except VersionConflict:
                continue
            return accepted
        raise LookupError("the pin kept changing while gw tried to accept it; try again")
