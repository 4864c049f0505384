"""Approval requests and just-in-time grants as they are kept in the store.

Both are plain documents of gw's collections API, so the gateway that holds a command, the ``gw approvals``
CLI of an approver and every other replica sharing the store see the same state.  Values here are frozen;
a change is a new value written back with the version it was read at (optimistic concurrency).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

#: Request ids: short, case-insensitive and free of look-alikes (no 0/o, 1/l/i), so an approver can read one
#: aloud or type it from a chat message.  10 characters of a 31-letter alphabet: ~49 bits.
ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
ID_LENGTH = 10


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class Status(enum.StrEnum):
    """Where a request is in its lifecycle (docs/plugins/approve.md draws it)."""

    PENDING = "pending"  # waiting for approvers
    APPROVED = "approved"  # enough approvals; a held command runs, a retry-mode command may be re-sent
    DENIED = "denied"  # an approver said no
    EXPIRED = "expired"  # nobody decided before ``expires`` (or a retry approval was not used in time)
    USED = "used"  # retry mode: the approved statement was re-sent and ran (once)
    CANCELLED = "cancelled"  # hold mode: the client went away while waiting

    @property
    def final(self) -> bool:
        return self is not Status.PENDING


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's yes."""

    who: str
    at: float
    reason: str = ""
    groups: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {"who": self.who, "at": self.at, "reason": self.reason, "groups": list(self.groups)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Approval:
        return cls(str(data["who"]), float(data["at"]), str(data.get("reason", "")),
                   tuple(data.get("groups", ())))


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A command waiting for (or decided by) approvers, with the policy that held it.

    The approver groups, ``min_approvals`` and the retry window are copied from the stage's options when the
    request is made, so the CLI decides by the policy the requester was held under, without the stage.
    """

    id: str
    listener: str
    pipeline: str
    session: str
    subject: str
    groups: tuple[str, ...]
    client_address: str
    text: str
    language: str
    kind: str
    verb: str
    objects: tuple[str, ...]
    flags: tuple[str, ...]
    rule: str
    message: str
    mode: str
    approvers: tuple[str, ...]
    min_approvals: int
    created: float
    expires: float
    status: Status = Status.PENDING
    approvals: tuple[Approval, ...] = ()
    decided: float | None = None
    decided_by: str = ""
    reason: str = ""
    #: Retry mode: same listener + subject + statement text, hashed (finds the request a re-send belongs to).
    match_key: str = ""
    #: Retry mode: seconds after approval during which the re-sent statement may run.
    use_within: float = 0.0
    used_at: float | None = None
    #: Retry mode: the ``session/seq`` of the re-sent command that used the approval.
    used_by: str = ""
    gateway: str = ""
    #: The command's bound parameter values as approvers see them: a list (one entry per parameter, in order:
    #: text or None), an object for protocols with named arguments, or None when it has none.  Values the
    #: detectors find are redacted; the approval releases the command with exactly these values.
    params: Any = None
    #: Rows the command changes as the database measured them (``rows_over`` rules); None when not measured
    #: or unknown (``rows_note`` says which).
    rows: int | None = None
    rows_note: str = ""
    #: Hold mode: the holding gateway renews ``heartbeat`` while the command waits; a pending request whose
    #: heartbeat is older than ``lease`` seconds lost its gateway (killed, crashed, cut off from the store) and
    #: is cancelled: nothing is waiting to run it any more.  ``lease`` 0: no heartbeat (retry mode).
    heartbeat: float | None = None
    lease: float = 0.0
    #: The store's version of the document this value was read from (not stored in the document).
    version: int = field(default=0, compare=False)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def effective_status(self, now: float) -> Status:
        """The status as of ``now``: a pending request past ``expires`` is expired even before anyone wrote it,
        and a retry approval not used within its window is expired too."""
        if self.status is Status.PENDING and now >= self.expires:
            return Status.EXPIRED
        if self.status is Status.PENDING and self.holder_gone(now):
            return Status.CANCELLED
        if (self.status is Status.APPROVED and self.mode == "retry" and self.decided is not None
                and now >= self.decided + self.use_within):
            return Status.EXPIRED
        return self.status

    def holder_gone(self, now: float) -> bool:
        """True when the gateway holding this (hold mode) request stopped renewing its heartbeat."""
        return self.lease > 0 and self.heartbeat is not None and now - self.heartbeat > self.lease

    @property
    def approved_by(self) -> tuple[str, ...]:
        return tuple(a.who for a in self.approvals)

    def evolve(self, **changes: Any) -> ApprovalRequest:
        return replace(self, **changes)

    # -- storage ---------------------------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "version":
                continue
            value = getattr(self, f.name)
            if f.name == "approvals":
                value = [a.to_data() for a in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Status):
                value = value.value
            data[f.name] = value
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any], version: int = 0) -> ApprovalRequest:
        known = {f.name for f in fields(cls)} - {"version"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for name in ("groups", "objects", "flags", "approvers"):
            values[name] = tuple(values.get(name) or ())
        values["approvals"] = tuple(Approval.from_data(a) for a in values.get("approvals") or ())
        values["status"] = Status(values.get("status", "pending"))
        return cls(**values, version=version)

    def to_json(self, now: float) -> dict[str, Any]:
        """What ``gw approvals list --json`` / ``show --json`` print: the document plus the effective status."""
        data = self.to_data()
        data["status"] = self.effective_status(now).value
        data.pop("match_key", None)
        return data


@dataclass(frozen=True, slots=True)
class Grant:
    """A just-in-time grant: ``subject`` skips approval on ``listener`` until ``expires`` (or revocation)."""

    id: str
    subject: str
    listener: str
    granted_by: str
    reason: str
    created: float
    expires: float
    revoked: float | None = None
    revoked_by: str = ""
    version: int = field(default=0, compare=False)

    def active(self, now: float) -> bool:
        return self.revoked is None and now < self.expires

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        return "active" if now < self.expires else "expired"

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], version: int = 0) -> Grant:
        known = {f.name for f in fields(cls)} - {"version"}
        return cls(**{k: v for k, v in data.items() if k in known}, version=version)

    def to_json(self, now: float) -> dict[str, Any]:
        return {**self.to_data(), "state": self.state(now)}
