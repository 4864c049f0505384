"""One API key as the store keeps it: who it is for, what it grants, its verifier, and its life so far."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .keys import Grant, is_key_id


class DamagedRecord(ValueError):
    """A stored key record lacks a field or has one of the wrong type (edited by hand, or another program)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key record.  ``verifier`` is emptied when the key is revoked, so a revoked key can never verify
    again -- not even if someone later flips ``revoked_at`` back in the store."""

    id: str
    namespace: str
    subject: str
    groups: tuple[str, ...]
    created: float
    #: Unix time, whole seconds (it is part of the verifier's input, so it must round-trip exactly).
    expires: int
    verifier: str
    description: str = ""
    created_by: str = ""
    revoked_at: float | None = None
    revoked_by: str = ""
    #: Last successful authentication, recorded at most once per ``last_used_interval``.
    last_used: float | None = None
    #: The store's optimistic version of this record (not persisted inside it).
    version: int = field(default=0, compare=False)

    @property
    def grant(self) -> Grant:
        return Grant(self.namespace, self.id, self.subject, self.groups, self.expires)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked:
            return "revoked"
        return "expired" if now >= self.expires else "active"

    def to_data(self) -> dict[str, Any]:
        """The persisted form (the verifier included, never the secret)."""
        return {"id": self.id, "namespace": self.namespace, "subject": self.subject, "groups": list(self.groups),
                "created": self.created, "expires": self.expires, "verifier": self.verifier,
                "description": self.description, "created_by": self.created_by, "revoked_at": self.revoked_at,
                "revoked_by": self.revoked_by, "last_used": self.last_used}

    def to_json(self, now: float, provider: str) -> dict[str, Any]:
        """What ``gw keys list --json`` prints: everything but the verifier, plus the effective status."""
        data = self.to_data()
        del data["verifier"]
        return {**data, "provider": provider, "status": self.status(now)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], version: int = 0) -> ApiKey:
        """Rebuild a record, refusing anything that does not have the exact shape :meth:`to_data` writes:
        a record gw cannot read fully is never half-trusted."""
        def text(name: str) -> str:
            value = data.get(name, "")
            if not isinstance(value, str):
                raise DamagedRecord(f"field {name!r} is not text")
            return value

        def moment(name: str, *, optional: bool) -> float | None:
            value = data.get(name)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DamagedRecord(f"field {name!r} is not a Unix time")
            return float(value)

        key_id = text("id")
        if not is_key_id(key_id):
            raise DamagedRecord("field 'id' is not a key id")
        groups = data.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise DamagedRecord("field 'groups' is not a list of group names")
        expires = data.get("expires")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise DamagedRecord("field 'expires' is not a whole Unix time")
        subject = text("subject")
        if not subject:
            raise DamagedRecord("field 'subject' is empty")
        created = moment("created", optional=False)
        assert created is not None
        return cls(id=key_id, namespace=text("namespace"), subject=subject, groups=tuple(groups),
                   created=created, expires=expires, verifier=text("verifier"),
                   description=text("description"), created_by=text("created_by"),
                   revoked_at=moment("revoked_at", optional=True), revoked_by=text("revoked_by"),
                   last_used=moment("last_used", optional=True), version=version)
