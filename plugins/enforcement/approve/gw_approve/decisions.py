"""Who may decide a request, and what each decision does to it.

Pure functions from (request, approver, time) to the new request, raising
:class:`~gw_approve.ledger.ApprovalError` with a message for the approver.  The ledger applies them with
optimistic versions, so they always see the request as it is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from gw.model import Identity

from .ledger import ApprovalError
from .records import Approval, ApprovalRequest, Status
from .text import clock, human_duration


def check_approver(approvers: Iterable[str], identity: Identity, *, what: str) -> None:
    """Refuse an identity outside the approver groups, naming its groups and the ones needed."""
    wanted = list(approvers)
    if not identity.in_any(wanted):
        have = ", ".join(identity.groups) or "no groups"
        raise ApprovalError(f"{identity.subject} may not approve {what}: you are in groups {have}; approvers "
                            f"for {what} must be in {', '.join(wanted)}")


def check_open(request: ApprovalRequest, now: float) -> None:
    """Refuse a request that can no longer be decided, saying what became of it."""
    status = request.effective_status(now)
    if status is Status.PENDING:
        return
    rid = request.id
    if status is Status.EXPIRED and request.status is not Status.APPROVED:
        raise ApprovalError(f"request {rid} expired at {clock(request.expires)} before enough approvers "
                            "decided; the requester has to send the command again")
    if status is Status.EXPIRED:
        raise ApprovalError(f"request {rid} was approved but not used in time and has expired; the "
                            "requester has to send the command again")
    if status is Status.CANCELLED and request.status is Status.PENDING:
        raise ApprovalError(f"request {rid} was cancelled: gateway {request.gateway!r}, which held the command, "
                            f"stopped (no heartbeat since {clock(request.heartbeat or request.created)}); the "
                            "command never ran and nothing is waiting for a decision")
    if status is Status.CANCELLED:
        raise ApprovalError(f"request {rid} was cancelled: {request.reason or 'the client went away'}; "
                            "nothing is waiting for a decision")
    by = f" by {request.decided_by}" if request.decided_by else ""
    when = f" at {clock(request.decided)}" if request.decided is not None else ""
    if status is Status.USED:
        raise ApprovalError(f"request {rid} was already approved{by}{when} and the command has run")
    raise ApprovalError(f"request {rid} was already {status.value}{by}{when}")


def approve(request: ApprovalRequest, approver: Identity, reason: str, now: float) -> ApprovalRequest:
    """Add ``approver``'s approval; the request is approved once ``min_approvals`` distinct approvers said
    yes.  The requester can never approve their own request."""
    check_open(request, now)
    what = f"request {request.id}"
    if approver.subject == request.subject:
        raise ApprovalError(f"{approver.subject} made {what} and cannot approve it; another member of "
                            f"{', '.join(request.approvers)} must approve it")
    check_approver(request.approvers, approver, what=what)
    if approver.subject in request.approved_by:
        missing = request.min_approvals - len(request.approvals)
        raise ApprovalError(f"{approver.subject} already approved {what}; it needs {missing} more approval(s) "
                            f"from other members of {', '.join(request.approvers)}")
    approvals = request.approvals + (Approval(approver.subject, now, reason, approver.groups),)
    if len(approvals) < request.min_approvals:
        return request.evolve(approvals=approvals)
    who = ", ".join(a.who for a in approvals)
    return request.evolve(approvals=approvals, status=Status.APPROVED, decided=now, decided_by=who,
                          reason=reason)


def deny(request: ApprovalRequest, approver: Identity, reason: str, now: float) -> ApprovalRequest:
    """End the request with ``reason``, which the requester is shown.  Any approver may deny (the requester
    too, when they are an approver: saying no to oneself is always safe)."""
    check_open(request, now)
    if not reason.strip():
        raise ApprovalError("give a reason with --reason; the requester is shown it")
    check_approver(request.approvers, approver, what=f"request {request.id}")
    return request.evolve(status=Status.DENIED, decided=now, decided_by=approver.subject, reason=reason.strip())


def expire(request: ApprovalRequest, now: float) -> ApprovalRequest | None:
    """Write down that nobody decided in time (None when it was decided meanwhile or is not yet due)."""
    if request.status is not Status.PENDING or now < request.expires:
        return None
    return request.evolve(status=Status.EXPIRED, decided=now,
                          reason=f"no decision within {human_duration(request.expires - request.created)}")


def cancel(request: ApprovalRequest, now: float, reason: str) -> ApprovalRequest | None:
    """The requester went away: a pending request is closed so nobody approves a command nobody waits for."""
    if request.status is not Status.PENDING:
        return None
    return request.evolve(status=Status.CANCELLED, decided=now, reason=reason)


def beat(request: ApprovalRequest, now: float) -> ApprovalRequest | None:
    """The holding gateway's heartbeat on a request it still holds (pending and not yet given up on)."""
    if request.effective_status(now) is not Status.PENDING:
        return None
    return request.evolve(heartbeat=now)


def use(request: ApprovalRequest, now: float, by: str) -> ApprovalRequest | None:
    """Retry mode: consume an approval for the command ``by`` (``session/seq``).  None when it is not usable
    (a concurrent re-send used it first, or its window passed): the caller sees ``used_by`` is not ``by``."""
    if request.effective_status(now) is not Status.APPROVED:
        return None
    return request.evolve(status=Status.USED, used_at=now, used_by=by)
