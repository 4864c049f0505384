"""The ``approve`` stage: commands matching a ``require`` rule need a human approver's yes.

``mode = "hold"`` keeps the command waiting (the client gets a notice with the request id and the command that
approves it) until it is approved, denied or times out.  ``mode = "retry"`` refuses it at once with the request
id; the same identity re-sending the same statement on the same listener after approval runs it once.

Requests live in the store, so the gateway holding a command, the approver's ``gw approvals`` CLI and other
replicas sharing the store all see one state.  The holding side polls the store every ``poll_interval``: one
small read per held command, and it works across processes without any other channel.

Cost on the data path: commands that match no rule pay for the rule checks only (no I/O).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import trio
from gw.config import Duration
from gw.logs import log_context
from gw.model import Command, DenyCode, Kind, Measurement, Verdict, cancel_reason_text
from gw.stage import CommandContext, ParamValues, Stage, StageOptions
from gw_rules import Rule, first_match, first_match_measured, measure, rows_over_explained
from pydantic import Field, field_validator, model_validator

from . import decisions
from .ledger import ApprovalLedger
from .notify import WebhookNotifier, request_payload
from .records import ApprovalRequest, Status
from .text import human_duration, param_text, snippet

if TYPE_CHECKING:
    from gw.runtime import Services

log = logging.getLogger("gw.approve")

#: Longest a cancelled hold may spend writing down that its client went away.
_ABANDON_DEADLINE = 5.0


class ApproveOptions(StageOptions):
    """Keys of ``{ use = "approve", ... }`` (docs/plugins/approve.md has one example per key)."""

    #: Groups whose members may approve (and deny, and grant).  At least one.
    approvers: list[str]
    #: Rules (gw_rules: kind, verb, objects, flags, text, groups, except_groups, message, name); the first
    #: that matches makes the command need approval.
    require: list[Rule]
    #: How long a request waits for a decision.
    timeout: Duration = timedelta(minutes=10)
    mode: Literal["hold", "retry"] = "hold"
    #: Distinct approvers needed.
    min_approvals: int = Field(default=1, ge=1, le=20)
    #: Retry mode: how long after approval the re-sent statement may run (default: ``timeout``).
    retry_window: Duration | None = None
    #: How often a held command looks for a decision in the store.
    poll_interval: Duration = timedelta(milliseconds=250)
    #: Longest ``gw approvals grant --for`` accepted on listeners of this pipeline.
    max_grant: Duration = timedelta(hours=12)
    #: Webhook URL that receives each new request as JSON (Slack-compatible ``text`` included).
    notify: str | None = None
    #: Delivery attempts per request (first try included) before the webhook is given up on.
    notify_attempts: int = Field(default=5, ge=1, le=20)
    #: Pause before the first retry; doubles after each failure (up to 60s).
    notify_backoff: Duration = timedelta(seconds=1)
    #: Limit on one webhook HTTP request.
    notify_timeout: Duration = timedelta(seconds=10)

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, v: list[str]) -> list[str]:
        groups = [g.strip() for g in v if g.strip()]
        if not groups:
            raise ValueError('name at least one approver group, for example approvers = ["dba"]')
        return groups

    @field_validator("require")
    @classmethod
    def _require(cls, v: list[Rule]) -> list[Rule]:
        if not v:
            raise ValueError('give at least one rule, for example require = [{ kind = "write", '
                             'flags = ["no_where"] }]; use require = [{}] to hold every command')
        return v

    @field_validator("timeout", "max_grant", "notify_backoff", "notify_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() <= 0:
            raise ValueError("must be longer than zero, for example \"10m\"")
        return v

    @field_validator("poll_interval")
    @classmethod
    def _poll(cls, v: timedelta) -> timedelta:
        if not 0.01 <= v.total_seconds() <= 10:
            raise ValueError("expected between \"10ms\" and \"10s\" (a held command reads the store this often)")
        return v

    @field_validator("notify")
    @classmethod
    def _notify(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// webhook URL, such as "
                                 "\"https://hooks.slack.com/services/...\"")
        return v

    @model_validator(mode="after")
    def _window(self) -> ApproveOptions:
        if self.retry_window is not None and self.retry_window.total_seconds() <= 0:
            raise ValueError("retry_window must be longer than zero")
        return self


def match_key(command: Command) -> str:
    """What makes a re-send "the same statement by the same identity": listener, subject, exact text and the
    exact bound parameter values (an approval never releases other values)."""
    s = command.session
    named = command.attributes.get("named_params") if command.attributes else None
    values = json.dumps([named if isinstance(named, Mapping) else None,
                         [None if v is None else [type(v).__name__, param_text(v)] for v in command.params]],
                        sort_keys=True, default=str)
    raw = f"{s.listener}\0{s.identity.subject}\0{command.text}\0{values}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def who_decides(approvers: tuple[str, ...] | list[str], min_approvals: int) -> str:
    groups = " or ".join(approvers)
    if min_approvals == 1:
        return f"a member of {groups}"
    return f"{min_approvals} different approvers from {groups}"


class ApproveStage(Stage):
    """Holds (or refuses until approved) commands that match a ``require`` rule."""

    name = "approve"
    Options = ApproveOptions

    def __init__(self, options: ApproveOptions, services: Services, *, pipeline: str = "",
                 index: int = 0) -> None:
        super().__init__(options, services, pipeline=pipeline, index=index)
        self.options: ApproveOptions = options
        # Checked when the file is loaded (gw check), not at the first held command.
        self.ledger = ApprovalLedger(services.require_store("the approve stage"))
        self.rules: list[Rule] = list(options.require)
        #: Every installed detector: a request is persisted (and shown, and sent to the webhook) with what they
        #: find replaced by ``***``, like an audit record.
        self._detectors = list(services.detectors("all"))
        #: Commands this stage holds now, waiting for a decision (``gw_approvals_pending``).
        self.holding = 0
        self.notifier: WebhookNotifier | None = None
        if options.notify:
            self.notifier = WebhookNotifier(options.notify, attempts=options.notify_attempts,
                                            backoff=options.notify_backoff.total_seconds(),
                                            timeout=options.notify_timeout.total_seconds(),
                                            spawn=services.spawn)

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.aclose()

    # -- decisions -------------------------------------------------------------------------------------------
    def evaluate(self, command: Command) -> Verdict | None:
        for rule in self.rules:
            if not rule.matches(command):
                continue
            if rule.rows_over is not None:
                if command.kind in (Kind.READ, Kind.TRANSACTION):
                    continue  # changes no rows
                return Verdict.pending("(new)", f"{rows_over_explained(rule)}; above it, needs approval by "
                                                f"{self._who()}", stage=self.name, rule=rule.label())
            return Verdict.pending("(new)", f"needs approval by {self._who()}", stage=self.name,
                                   rule=rule.label())
        return None

    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        if first_match(self.rules, command) is None:
            return None  # the common case: no rule can match, nothing to measure or look up
        identity = command.identity
        grant = await self.ledger.active_grant(identity.subject, command.session.listener, time.time())
        if grant is not None:
            return Verdict.allow(stage=self.name, rule=f"grant {grant.id}",
                                 reason=f"just-in-time grant {grant.id} by {grant.granted_by} (approval "
                                        "rules not applied)")
        rule, measured = await first_match_measured(self.rules, command, context)
        if rule is None:
            return None
        if measured is not None and rule.rows_over is not None:
            # Nothing stays changed (and no lock stays held) while people decide.
            discard = getattr(context, "discard", None)
            if discard is not None:
                await discard()
        else:
            measured = None
        if self.options.mode == "retry":
            return await self._retry(command, rule, measured, context)
        return await self._hold(command, rule, context, measured)

    # -- hold mode -------------------------------------------------------------------------------------------
    async def _hold(self, command: Command, rule: Rule, context: CommandContext,
                    measured: Measurement | None) -> Verdict:
        while True:
            request = await self.ledger.open_request(self._new_request(command, context, rule, measured=measured))
            log_context.set({**(log_context.get() or {}), "request_id": request.id})  # JSON log lines name it
            self._announce(request)
            try:
                await context.notice(
                    f"gw: approval required ({self._why(rule, measured)}). Request {request.id} is waiting for "
                    f"{self._who()}: {self._approve_command(request.id)} (expires in "
                    f"{human_duration(request.expires - request.created)})")
                self.holding += 1
                try:
                    verdict = await self._wait(request)
                finally:
                    self.holding -= 1
            except BaseException as e:
                # Cancelled (client gone, shutdown) or failed: nobody waits any more, so nobody may approve it.
                code = getattr(context, "cancel_reason", "") or ""
                await self._abandon(request, cancel_reason_text(code) if isinstance(e, trio.Cancelled)
                                    else f"gw failed while holding it ({type(e).__name__}: {e})")
                raise
            if not verdict.allowed or measured is None or measured.rows is None:
                return verdict
            # Approved for the count the approvers saw: run it for real, measured again; a larger count is a
            # different command and needs its own approval.
            again = await measure(command, context)
            if not again.over(measured.rows):
                return verdict
            discard = getattr(context, "discard", None)
            if discard is not None:
                await discard()
            measured = Measurement(again.rows, f"grew from the {measured.describe()} approved in request "
                                               f"{request.id}" if again.rows is not None else again.reason)

    async def _wait(self, request: ApprovalRequest) -> Verdict:
        interval = self.options.poll_interval.total_seconds()
        beat_every = request.lease / 3
        while True:
            current = await self.ledger.require(request.id)
            now = time.time()
            status = current.effective_status(now)
            if (status is Status.PENDING and beat_every and current.heartbeat is not None
                    and now - current.heartbeat >= beat_every):
                # Tell every gateway this command is still held here (see ApprovalRequest.holder_gone).
                current = await self.ledger.change(request.id, lambda r: decisions.beat(r, time.time()))
                status = current.effective_status(time.time())
            if status is Status.EXPIRED:
                # Write it down, unless an approver decided in the last moment (then the loop sees that).
                current = await self.ledger.change(request.id, lambda r: decisions.expire(r, time.time()))
                status = current.effective_status(time.time())
                if status is Status.EXPIRED:
                    return self._timed_out(current)
                continue
            if status is Status.APPROVED:
                return Verdict.allow(stage=self.name, rule=current.rule, request_id=current.id,
                                     approved_by=current.approved_by,
                                     reason=f"approved by {', '.join(current.approved_by)}")
            if status is Status.CANCELLED and current.status is Status.PENDING:
                return Verdict.deny(
                    f"gw: request {current.id} was given up: this gateway could not renew its hold in the store "
                    f"for more than {current.lease:g}s, so no approval can release it; the command was not run. "
                    "Send it again", code=DenyCode.APPROVAL_DENIED, stage=self.name, rule=current.rule,
                    request_id=current.id)
            if status is not Status.PENDING:
                return self._refused(current)
            await trio.sleep(max(0.0, min(interval, current.expires - now)))

    async def _abandon(self, request: ApprovalRequest, reason: str) -> None:
        with trio.move_on_after(_ABANDON_DEADLINE) as scope:
            scope.shield = True
            try:
                await self.ledger.change(request.id, lambda r: decisions.cancel(r, time.time(), reason))
            except Exception as e:  # noqa: BLE001 -- best effort while the command is already ending
                log.error("approve: could not mark request %s cancelled (%s); it stays pending until it expires",
                          request.id, e)

    # -- retry mode ------------------------------------------------------------------------------------------
    async def _retry(self, command: Command, rule: Rule, measured: Measurement | None,
                     context: CommandContext) -> Verdict:
        key = match_key(command)
        latest = await self.ledger.latest_for(key)
        if latest is not None:
            now = time.time()
            status = latest.effective_status(now)
            if status is Status.APPROVED and measured is not None and latest.rows is not None:
                # Approved for the count the approvers saw: measure the re-sent command against it.
                again = await measure(command, context)
                if again.over(latest.rows):
                    discard = getattr(context, "discard", None)
                    if discard is not None:
                        await discard()
                    measured = again
                    status = Status.EXPIRED  # not usable for this count: a new request below
                    latest = None
            if latest is not None and status is Status.APPROVED:
                by = f"{command.session.id}/{command.seq}"
                latest = await self.ledger.change(latest.id, lambda r: decisions.use(r, time.time(), by))
                if latest.status is Status.USED and latest.used_by == by:
                    return Verdict.allow(stage=self.name, rule=latest.rule, request_id=latest.id,
                                         approved_by=latest.approved_by,
                                         reason=f"approved by {', '.join(latest.approved_by)}; used once")
                status = latest.effective_status(time.time())
            if latest is not None and status is Status.PENDING:
                return Verdict.deny(
                    f"gw: request {latest.id} for `{snippet(latest.text)}` is still waiting for {self._who()} "
                    f"(expires in {human_duration(latest.expires - now)}); the command was not run. Ask for "
                    f"approval ({self._approve_command(latest.id)}) and send the same statement again",
                    code=DenyCode.APPROVAL_REQUIRED, stage=self.name, rule=latest.rule, request_id=latest.id)
            if latest is not None and status is Status.DENIED and now < latest.expires:
                return self._refused(latest)
            if latest is not None and latest.status is Status.PENDING:  # expired without anyone writing it
                await self.ledger.change(latest.id, lambda r: decisions.expire(r, time.time()))
        request = await self.ledger.open_request(self._new_request(command, context, rule, key, measured=measured))
        self._announce(request)
        return Verdict.deny(
            f"gw: approval required ({self._why(rule, measured)}); the command was not run. Request {request.id} for "
            f"`{snippet(request.text)}` is waiting for {self._who()}: {self._approve_command(request.id)}. "
            f"Send the same statement again once it is approved; it will run once (the request expires in "
            f"{human_duration(request.expires - request.created)})",
            code=DenyCode.APPROVAL_REQUIRED, stage=self.name, rule=request.rule, request_id=request.id)

    # -- shared ----------------------------------------------------------------------------------------------
    def _new_request(self, command: Command, context: CommandContext, rule: Rule, key: str = "", *,
                     measured: Measurement | None = None) -> ApprovalRequest:
        s = command.session
        now = time.time()
        opts = self.options
        window = opts.retry_window or opts.timeout
        return ApprovalRequest(
            id="", listener=s.listener, pipeline=self.pipeline, session=s.id, subject=s.identity.subject,
            groups=s.identity.groups, client_address=s.client_address, text=self._redact(command.text),
            language=command.language, kind=command.kind.value, verb=self._redact(command.verb),
            objects=tuple(self._redact(o) for o in command.objects),
            flags=tuple(sorted(command.flags)), rule=rule.label(), message=rule.message or "", mode=opts.mode,
            approvers=tuple(opts.approvers), min_approvals=opts.min_approvals, created=now,
            expires=now + opts.timeout.total_seconds(), match_key=key, use_within=window.total_seconds(),
            gateway=self.services.gateway_name, params=self._params(command, context),
            heartbeat=now if opts.mode == "hold" else None,
            lease=self.services.config.model.gateway.chain_lease.total_seconds() if opts.mode == "hold" else 0.0,
            rows=measured.rows if measured is not None else None,
            rows_note=self._redact(measured.describe()) if measured is not None else "")

    def _params(self, command: Command, context: CommandContext) -> Any:
        """The bound values as approvers see them: text or None, in order (an object of named arguments for
        protocols that have them), concealed by the stages of the pipeline deciding the command (a mask stage's
        column rules) and redacted like the text."""
        named = command.attributes.get("named_params") if command.attributes else None
        values: ParamValues
        if isinstance(named, Mapping):
            values = {str(k): None if v is None else param_text(v) for k, v in named.items()}
            shown = context.conceal(command, values)
            if not isinstance(shown, dict):
                raise TypeError("a stage's conceal changed named parameters into a list")
            return {self._redact(k): None if v is None else self._redact(v) for k, v in shown.items()}
        if not command.params:
            return None
        values = [None if v is None else param_text(v) for v in command.params]
        shown = context.conceal(command, values)
        if not isinstance(shown, list) or len(shown) != len(values):
            raise TypeError("a stage's conceal changed the number or shape of the parameters")
        return [None if v is None else self._redact(v) for v in shown]

    def _redact(self, text: str) -> str:
        """``text`` with what the detectors find replaced by ``***`` (the client's text is never persisted with
        a sensitive value in it)."""
        spans = sorted({(int(s), int(e)) for d in self._detectors for s, e in d.find(text)}) if text else []
        out, pos = [], 0
        for start, end in spans:
            if start >= pos:
                out.append(text[pos:start] + "***")
                pos = end
        return "".join(out) + text[pos:] if spans else text

    def _announce(self, request: ApprovalRequest) -> None:
        log.info("approve: request %s: %s on %s needs approval by %s (rule %s)", request.id, request.subject,
                 request.listener, ", ".join(request.approvers), request.rule)
        if self.notifier is not None:
            self.notifier.submit(request_payload(request, str(self.services.config.path)))

    def _approve_command(self, request_id: str) -> str:
        """The command an approver runs, naming this gateway's pipeline file."""
        return f"gw approvals approve {request_id} -c {shlex.quote(str(self.services.config.path))}"

    def _who(self) -> str:
        return who_decides(self.options.approvers, self.options.min_approvals)

    @staticmethod
    def _why(rule: Rule, measured: Measurement | None = None) -> str:
        why = rule.message or f"rule {rule.label()}"
        if measured is not None and measured.rows is not None:
            why += f"; the database counted {measured.describe()}"
        elif measured is not None:
            why += f"; {measured.describe()}, which counts as over the limit"
        return why

    def _timed_out(self, request: ApprovalRequest) -> Verdict:
        return Verdict.deny(
            f"gw: nobody approved request {request.id} within "
            f"{human_duration(request.expires - request.created)}; the command was not run. Ask "
            f"{self._who()} to watch for it (gw approvals list) and send the command again",
            code=DenyCode.APPROVAL_TIMEOUT, stage=self.name, rule=request.rule, request_id=request.id)

    def _refused(self, request: ApprovalRequest) -> Verdict:
        if request.status is Status.DENIED:
            reason = (f"gw: request {request.id} was denied by {request.decided_by}: {request.reason}. The "
                      "command was not run; change it or talk to the approver before sending it again")
        else:
            reason = (f"gw: request {request.id} is {request.status.value} ({request.reason or 'no reason'}); "
                      "the command was not run")
        return Verdict.deny(reason, code=DenyCode.APPROVAL_DENIED, stage=self.name, rule=request.rule,
                            request_id=request.id)
