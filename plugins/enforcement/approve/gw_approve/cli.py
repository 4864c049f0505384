"""``gw approvals``: list, show, approve and deny requests; give, list and revoke just-in-time grants.

The approver proves who they are with a token (``--token`` or ``$GW_TOKEN``), checked by the identity
provider(s) of the listener the request came from, the same providers that admitted the requester.  The
listener's ``allow_groups`` are *not* applied: approvers need not be allowed to connect there themselves, only
be in the approver groups.

Each command is a thin click wrapper around an ``async`` function taking the opened
:class:`~gw.runtime.Runtime`, so tests and other tools can call the same logic in-process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import click
from gw.cli import config_option, format_time, json_option, print_json, print_table, with_runtime
from gw.config import parse_duration
from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw.model import Identity
from gw.runtime import Runtime
from gw.text import escape_visible

from . import decisions
from .ledger import ApprovalError, ApprovalLedger
from .records import ApprovalRequest, Grant, Status
from .stage import ApproveStage
from .text import human_duration, params_text, snippet

# ---------------------------------------------------------------------------------------------------------------
# The logic, callable in-process
# ---------------------------------------------------------------------------------------------------------------


def ledger_of(rt: Runtime) -> ApprovalLedger:
    return ApprovalLedger(rt.services.require_store("gw approvals"))


async def authenticate_approver(rt: Runtime, listener: str, token: str | None) -> Identity:
    """Who holds ``token``, according to the first identity provider of ``listener`` that accepts it.

    The listener's ``deny_subjects`` / ``deny_groups`` apply (they revoke people without touching the identity
    provider, approvers included); its ``allow_groups`` do not (approvers need not be allowed to connect)."""
    if not token:
        raise ApprovalError("give your approver token with --token TOKEN or in $GW_TOKEN")
    lr = rt.listener(listener)
    credential = Credential("token", token)
    providers = [p for p in lr.providers() if p.accepts(credential)]
    if not providers:
        raise ApprovalError(f"no identity provider of listener {listener!r} accepts tokens, so nobody can "
                            "approve its requests from the CLI")
    problems = []
    for provider in providers:
        try:
            identity = await provider.authenticate(credential)
        except AuthenticationError as e:
            problems.append(f"{provider.instance_name}: {e}")
            continue
        try:
            lr.check_revoked(identity)
        except AccessDenied as e:
            raise ApprovalError(f"{e} (so it cannot decide this listener's requests)") from None
        return identity
    raise ApprovalError(f"your token was refused by the identity provider(s) of listener {listener!r} "
                        f"({'; '.join(problems)}); get a fresh token from your identity provider")


Decide = Callable[[ApprovalRequest, Identity, float], ApprovalRequest]


async def _decide_with_token(rt: Runtime, request_id: str, token: str | None, decide: Decide
                             ) -> ApprovalRequest:
    ledger = ledger_of(rt)
    request = await ledger.require(request_id)
    decisions.check_open(request, time.time())  # no point authenticating for a request that is over
    approver = await authenticate_approver(rt, request.listener, token)
    return await ledger.change(request.id, lambda r: decide(r, approver, time.time()))


async def decide_as(rt: Runtime, request_id: str, approver: Identity, decide: Decide) -> ApprovalRequest:
    """Apply ``decide`` for an approver authenticated elsewhere (the console, by its own listener's identity
    providers and revocation rules).  The revocation rules of the request's listener apply too."""
    ledger = ledger_of(rt)
    request = await ledger.require(request_id)
    if request.listener in rt.listeners:
        try:
            rt.listener(request.listener).check_revoked(approver)
        except AccessDenied as e:
            raise ApprovalError(f"{e} (so it cannot decide this listener's requests)") from None
    return await ledger.change(request.id, lambda r: decide(r, approver, time.time()))


async def approve_request(rt: Runtime, request_id: str, *, token: str | None, reason: str = ""
                          ) -> ApprovalRequest:
    """Add the token holder's approval to a pending request (see :func:`gw_approve.decisions.approve`)."""
    return await _decide_with_token(rt, request_id, token,
                                    lambda r, who, now: decisions.approve(r, who, reason, now))


async def deny_request(rt: Runtime, request_id: str, *, token: str | None, reason: str) -> ApprovalRequest:
    """End a pending request with ``reason``, which the requester is shown."""
    if not reason.strip():
        raise ApprovalError("give a reason with --reason; the requester is shown it")
    return await _decide_with_token(rt, request_id, token,
                                    lambda r, who, now: decisions.deny(r, who, reason, now))


#: Stored statuses whose requests may have a given effective status (pending ones expire without a write).
_STORED_AS = {Status.EXPIRED: (Status.PENDING, Status.APPROVED, Status.EXPIRED)}


async def list_requests(rt: Runtime, *, statuses: Iterable[str] = (), everything: bool = False,
                        limit: int | None = 100) -> list[ApprovalRequest]:
    """Requests by effective status (default: pending), newest first."""
    ledger = ledger_of(rt)
    now = time.time()
    wanted = {Status(s) for s in statuses} or (set(Status) if everything else {Status.PENDING})
    if wanted == set(Status):
        found = await ledger.requests()
    else:
        stored = {s for w in wanted for s in _STORED_AS.get(w, (w,))}
        found = [r for s in sorted(stored) for r in await ledger.requests(status=s.value)]
    found = sorted((r for r in found if r.effective_status(now) in wanted), key=lambda r: r.created,
                   reverse=True)
    return found[:limit] if limit else found


def _approve_stages(rt: Runtime, listener: str) -> list[ApproveStage]:
    stages = [s for s in rt.listener(listener).pipeline.stages if isinstance(s, ApproveStage)]
    if not stages:
        raise ApprovalError(f"listener {listener!r} has no approve stage in its pipeline "
                            f"{rt.listener(listener).options.pipeline!r}, so a grant would change nothing")
    return stages


async def grant_access(rt: Runtime, *, subject: str, listener: str, duration: float, token: str | None,
                       reason: str = "") -> Grant:
    """Let ``subject`` skip approval on ``listener`` for ``duration`` seconds.  The granter must be an
    approver of that listener's approve stage(s) and cannot grant themselves."""
    _approve_stages(rt, listener)
    granter = await authenticate_approver(rt, listener, token)
    return await grant_as(rt, granter, subject=subject, listener=listener, duration=duration, reason=reason)


async def grant_as(rt: Runtime, granter: Identity, *, subject: str, listener: str, duration: float,
                   reason: str = "") -> Grant:
    """:func:`grant_access` for a granter authenticated elsewhere (the console)."""
    stages = _approve_stages(rt, listener)
    approvers = sorted({g for s in stages for g in s.options.approvers})
    longest = max(s.options.max_grant.total_seconds() for s in stages)
    if duration <= 0:
        raise ApprovalError("--for must be longer than zero, for example --for 30m")
    if duration > longest:
        raise ApprovalError(f"--for {human_duration(duration)} is longer than max_grant "
                            f"({human_duration(longest)}) of listener {listener!r}; ask for less")
    if granter.subject == subject:
        raise ApprovalError(f"{granter.subject} cannot grant themselves; another member of "
                            f"{', '.join(approvers)} must do it")
    decisions.check_approver(approvers, granter, what=f"grants on listener {listener!r}")
    now = time.time()
    return await ledger_of(rt).add_grant(Grant(id="", subject=subject, listener=listener,
                                               granted_by=granter.subject, reason=reason, created=now,
                                               expires=now + duration))


async def revoke_grant(rt: Runtime, grant_id: str, *, token: str | None) -> Grant:
    """End a grant before it expires (any approver of its listener may)."""
    grant = await ledger_of(rt).require_grant(grant_id)
    _approve_stages(rt, grant.listener)
    revoker = await authenticate_approver(rt, grant.listener, token)
    return await revoke_as(rt, grant_id, revoker)


async def revoke_as(rt: Runtime, grant_id: str, revoker: Identity) -> Grant:
    """:func:`revoke_grant` for a revoker authenticated elsewhere (the console)."""
    ledger = ledger_of(rt)
    grant = await ledger.require_grant(grant_id)
    stages = _approve_stages(rt, grant.listener)
    decisions.check_approver(sorted({g for s in stages for g in s.options.approvers}), revoker,
                             what=f"grants on listener {grant.listener!r}")

    def revoke(current: Grant) -> Grant | None:
        if current.revoked is not None:
            raise ApprovalError(f"grant {current.id} was already revoked by {current.revoked_by}")
        return replace(current, revoked=time.time(), revoked_by=revoker.subject)

    return await ledger.change_grant(grant.id, revoke)


async def list_grants(rt: Runtime, *, everything: bool = False) -> list[Grant]:
    now = time.time()
    return [g for g in await ledger_of(rt).grants() if everything or g.active(now)]


# ---------------------------------------------------------------------------------------------------------------
# The click commands
# ---------------------------------------------------------------------------------------------------------------

token_option = click.option("--token", envvar="GW_TOKEN", metavar="TOKEN",
                            help="Your approver token (default: $GW_TOKEN).")


def _progress(request: ApprovalRequest) -> str:
    return f"{len(request.approvals)}/{request.min_approvals}"


@click.group(name="approvals")
def approvals() -> None:
    """Approval requests of the approve stage, and just-in-time grants."""


@approvals.command(name="list")
@config_option
@json_option
@click.option("--all", "everything", is_flag=True, help="Every request, decided or not.")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in Status]),
              help="Only requests in this status (repeatable).  Default: pending.")
@click.option("--limit", default=100, show_default=True, help="Newest N requests.")
def list_cmd(config: Path, as_json: bool, everything: bool, statuses: tuple[str, ...], limit: int) -> None:
    """List approval requests (pending ones unless --all / --status)."""
    found = with_runtime(config, lambda rt: list_requests(rt, statuses=statuses, everything=everything,
                                                          limit=limit))
    now = time.time()
    if as_json:
        print_json([r.to_json(now) for r in found])
        return
    rows = [(r.id, r.effective_status(now).value, format_time(r.created), escape_visible(r.listener),
             escape_visible(r.subject),
             _progress(r), format_time(r.expires), "-" if r.rows is None else str(r.rows),
             snippet(r.text + _params_suffix(r), 50)) for r in found]
    print_table(rows, ["id", "status", "created", "listener", "subject", "approvals", "expires", "rows",
                       "command"])


def _params_suffix(request: ApprovalRequest) -> str:
    if not request.params:
        return ""
    return f" [{params_text(request.params)}]"




@approvals.command(name="show")
@config_option
@json_option
@click.argument("request_id", metavar="ID")
def show_cmd(config: Path, as_json: bool, request_id: str) -> None:
    """Show one request: the command, who asked, the rule, and every approval."""
    request = with_runtime(config, lambda rt: ledger_of(rt).require(request_id))
    now = time.time()
    if as_json:
        print_json(request.to_json(now))
        return
    lines = [
        ("id", request.id), ("status", request.effective_status(now).value),
        ("listener", request.listener), ("subject", request.subject),
        ("groups", ", ".join(request.groups) or "-"), ("client", request.client_address or "-"),
        ("session", request.session), ("mode", request.mode), ("rule", request.rule),
        ("classification", (f"{request.kind} {request.verb} {', '.join(request.objects) or '-'} "
                            f"[{', '.join(request.flags)}]")),
        ("approvers", f"{', '.join(request.approvers)} ({request.min_approvals} needed)"),
        ("created", format_time(request.created)), ("expires", format_time(request.expires)),
    ]
    if request.rows is not None or request.rows_note:
        lines.append(("rows", request.rows_note or str(request.rows)))
    for a in request.approvals:
        lines.append(("approved by", f"{a.who} at {format_time(a.at)}" + (f": {a.reason}" if a.reason else "")))
    if request.status.final:
        decided = f"{format_time(request.decided)} by {request.decided_by or 'gw'}: {request.reason or '-'}"
        lines.append(("decided", decided))
    for key, value in lines:
        click.echo(f"{key + ':':<16}{escape_visible(value)}")
    # Continuation lines are indented, so a command's own line breaks cannot start a line that looks like
    # one of the fields above.
    click.echo(f"{'command:':<16}" + escape_visible(request.text, keep="\n").replace("\n", "\n" + " " * 16))
    if request.params is not None:
        click.echo(f"{'parameters:':<16}{params_text(request.params)}")


@approvals.command(name="approve")
@config_option
@token_option
@click.option("--reason", default="", help="Why (kept with the approval).")
@click.argument("request_id", metavar="ID")
def approve_cmd(config: Path, token: str | None, reason: str, request_id: str) -> None:
    """Approve request ID (you must be in its approver groups and not its requester)."""
    request = with_runtime(config, lambda rt: approve_request(rt, request_id, token=token, reason=reason),
                           identity=True)
    if request.status is not Status.APPROVED:
        missing = request.min_approvals - len(request.approvals)
        click.echo(f"recorded your approval of {request.id}; it needs {missing} more from other members of "
                   f"{', '.join(request.approvers)}")
    elif request.mode == "retry":
        click.echo(f"approved {request.id}: {request.subject} may now send the statement again; it runs once "
                   f"(within {human_duration(request.use_within)})")
    else:
        click.echo(f"approved {request.id}: the held command of {request.subject} runs now")


@approvals.command(name="deny")
@config_option
@token_option
@click.option("--reason", required=True, help="Why; the requester is shown it.")
@click.argument("request_id", metavar="ID")
def deny_cmd(config: Path, token: str | None, reason: str, request_id: str) -> None:
    """Deny request ID; the requester sees your reason."""
    request = with_runtime(config, lambda rt: deny_request(rt, request_id, token=token, reason=reason),
                           identity=True)
    click.echo(f"denied {request.id} ({request.subject}: {snippet(request.text, 60)})")


@approvals.command(name="grant")
@config_option
@token_option
@click.option("--user", "subject", required=True, metavar="SUBJECT", help="Identity subject to trust.")
@click.option("--listener", required=True, metavar="NAME", help="Listener on which approval is skipped.")
@click.option("--for", "duration", required=True, metavar="DURATION", help="How long, e.g. 30m or 2h.")
@click.option("--reason", default="", help="Why (kept with the grant).")
def grant_cmd(config: Path, token: str | None, subject: str, listener: str, duration: str, reason: str) -> None:
    """Let SUBJECT skip approval on a listener for a while (a just-in-time grant)."""
    try:
        seconds = parse_duration(duration).total_seconds()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--for") from None
    grant = with_runtime(config, lambda rt: grant_access(rt, subject=subject, listener=listener,
                                                         duration=seconds, token=token, reason=reason),
                         identity=True)
    click.echo(f"granted {grant.subject} on listener {grant.listener} until {format_time(grant.expires)} UTC "
               f"(grant {grant.id}; end it early with: gw approvals revoke-grant {grant.id})")


@approvals.command(name="grants")
@config_option
@json_option
@click.option("--all", "everything", is_flag=True, help="Include expired and revoked grants.")
def grants_cmd(config: Path, as_json: bool, everything: bool) -> None:
    """List just-in-time grants (active ones unless --all)."""
    found = with_runtime(config, lambda rt: list_grants(rt, everything=everything))
    now = time.time()
    if as_json:
        print_json([g.to_json(now) for g in found])
        return
    rows = [(g.id, g.state(now), g.subject, g.listener, g.granted_by, format_time(g.expires), g.reason or "-")
            for g in found]
    print_table(rows, ["id", "state", "subject", "listener", "granted_by", "expires", "reason"])


@approvals.command(name="revoke-grant")
@config_option
@token_option
@click.argument("grant_id", metavar="ID")
def revoke_grant_cmd(config: Path, token: str | None, grant_id: str) -> None:
    """End a just-in-time grant now."""
    grant = with_runtime(config, lambda rt: revoke_grant(rt, grant_id, token=token), identity=True)
    click.echo(f"revoked grant {grant.id} ({grant.subject} on {grant.listener})")
