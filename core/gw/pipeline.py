"""Runs a listener's stages in the configured order.  The only place that knows the order of checks.

For each command: every stage's ``check`` in order until one denies (approval holds wait here); then every
stage's ``decided`` with the combined verdict (audit writes its durable record here, *before* the protocol
forwards the command; if that fails the command is refused); then result filters; then ``completed``.
A stage that raises denies the command; the session survives.  :class:`CommandRun` is one command from its
decision to its completion, which core records exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self

import trio

from .logs import log_context
from .model import (
    ALLOW,
    Channel,
    Column,
    Command,
    Decision,
    DenyCode,
    Kind,
    ObjectSyntax,
    Outcome,
    OutcomeStatus,
    Session,
    SessionEnd,
    Verdict,
    cancel_reason_text,
)
from .stage import (
    ColumnEdits,
    ParamValues,
    ProtocolContext,
    RowFilter,
    Stage,
    StreamFilter,
)

if TYPE_CHECKING:
    from .runtime import ListenerRuntime

log = logging.getLogger("gw.pipeline")


def _overrides(stage: Stage, method: str) -> bool:
    return getattr(type(stage), method) is not getattr(Stage, method)


class _RowChain:
    __slots__ = ("_edits", "_offers", "filters")

    def __init__(self, filters: Sequence[RowFilter]) -> None:
        self.filters = tuple(filters)
        self._edits: _ChainedEdits | None = None
        # Looked up once (an isinstance() of a runtime-checkable protocol costs microseconds per call).
        offers: list[Callable[[], ColumnEdits | None] | None] = [getattr(f, "columnwise", None) for f in filters]
        self._offers = tuple(o for o in offers if o is not None) if None not in offers else None

    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        for f in self.filters:
            values = f.row(values)
        return values

    def columnwise(self) -> ColumnEdits | None:
        """The chain's work as column edits, when every filter offers them for the rows that come now and at
        most one of them touches a column: a mask filter, then observers that need no more rows (record's,
        once it has kept what it keeps)."""
        if self._offers is None:
            return None
        parts = []
        for offer in self._offers:
            edits = offer()
            if edits is None:
                return None
            parts.append(edits)
        working = [e for e in parts if e.constant or e.edited]
        if len(working) > 1:
            return None
        cached = self._edits  # its parts are one per filter, as these are
        if cached is None or any(a is not b for a, b in zip(cached.parts, parts)):
            cached = self._edits = _ChainedEdits(tuple(parts), working[0] if working else parts[0])
        return cached


class _ChainedEdits:
    """:meth:`_RowChain.columnwise`: the one filter's edits that touch columns; the others' ``edit`` is called
    too (with no values), so an observer learns that rows went by."""

    __slots__ = ("_main", "_others", "constant", "edited", "parts")

    def __init__(self, parts: tuple[ColumnEdits, ...], main: ColumnEdits) -> None:
        self.parts = parts
        self._main = main
        self._others = tuple(e for e in parts if e is not main)
        self.constant = main.constant
        self.edited = main.edited

    def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
        changes = self._main.edit(values, replaced)
        for other in self._others:
            other.edit([], 0)
        return changes


class _StreamChain:
    __slots__ = ("filters",)

    def __init__(self, filters: Sequence[StreamFilter]) -> None:
        self.filters = tuple(filters)

    def feed(self, data: bytes) -> bytes:
        for f in self.filters:
            data = f.feed(data)
        return data

    def finish(self) -> bytes:
        out = b""
        for i, f in enumerate(self.filters):
            tail = f.finish()
            for g in self.filters[i + 1:]:
                tail = g.feed(tail)
            out += tail
        return out


class _Context:
    """The :class:`~gw.stage.CommandContext` of a command: the protocol's, with its pipeline's conceal."""

    def __init__(self, protocol: ProtocolContext, pipeline: Pipeline) -> None:
        self.protocol, self.conceal = protocol, pipeline.conceal

    def __getattr__(self, name: str) -> Any:  # notice, and what else the protocol offers (measure ...)
        return getattr(self.protocol, name)


class Pipeline:
    """The stages of one ``[pipelines.NAME]`` table, instantiated."""

    def __init__(self, name: str, stages: Sequence[Stage]) -> None:
        self.name = name
        self.stages = tuple(stages)
        self._concealers = [s for s in stages if _overrides(s, "conceal")]
        self._checkers = [s for s in stages if _overrides(s, "check") or _overrides(s, "evaluate")]
        self._deciders = [s for s in stages if _overrides(s, "decided")]
        ordered = [s for s in stages if s.transforms] + [s for s in stages if not s.transforms]
        self._row_stages = [s for s in ordered if _overrides(s, "rows")]
        self._wants_sources = any(s.wants_sources for s in self._row_stages)
        self._stream_stages = [s for s in ordered if _overrides(s, "stream")]
        # Transforming stages complete first, so the notes they add (mask counts) reach the audit record.
        self._completers = [s for s in ordered if _overrides(s, "completed")]
        self._session_starters = [s for s in stages if _overrides(s, "session_started")]
        self._session_enders = [s for s in stages if _overrides(s, "session_ended")]
        self._refusers = [s for s in stages if _overrides(s, "session_refused")]

    @property
    def wants_rows(self) -> bool:
        """Whether any stage looks at rows; when not, protocols forward result bytes untouched."""
        return bool(self._row_stages)

    @property
    def wants_sources(self) -> bool:
        """Whether a stage that looks at rows needs each column's sources (:attr:`Stage.wants_sources`)."""
        return self._wants_sources

    def describe(self) -> list[str]:
        return [s.name for s in self.stages]

    async def open(self) -> None:
        for s in self.stages:
            await s.open()

    async def close(self) -> None:
        for s in reversed(self.stages):
            with trio.move_on_after(5) as scope:
                scope.shield = True
                try:
                    await s.close()
                except Exception:
                    log.exception("stage %s failed to close", s.name)

    # -- decisions ------------------------------------------------------------------------------------------
    async def decide(self, command: Command, protocol: ProtocolContext,
                     timings: dict[str, float] | None = None) -> Verdict:
        """The combined verdict; with ``timings``, each stage's seconds are added to it (for metrics)."""
        context = _Context(protocol, self)  # per command: after a reload a stage may be in two pipelines
        verdict = ALLOW
        clock = time.perf_counter
        for stage in self._checkers:
            started = clock()
            try:
                v = await stage.check(command, context)
            except trio.Cancelled:
                raise
            except Exception as e:
                log.exception("stage %s raised while checking command %s/%d", stage.name,
                              command.session.id, command.seq)
                v = Verdict.deny(f"gw stage {stage.name!r} failed ({type(e).__name__}); the command was not "
                                 "run. Retry, or ask the gateway operator to check the gw log",
                                 code=DenyCode.INTERNAL, stage=stage.name)
            if timings is not None:
                timings[f"{stage.name}.check"] = timings.get(f"{stage.name}.check", 0.0) + clock() - started
            if v is None:
                continue
            if not v.stage:
                v = Verdict(v.decision, v.reason, v.code, stage.name, v.rule, v.request_id, v.approved_by)
            if v.decision is not Decision.ALLOW:
                verdict = v
                break
            if v.request_id or v.approved_by or v.rule:
                verdict = v
        return await self._record(command, verdict, timings)

    async def refuse(self, command: Command, verdict: Verdict) -> Verdict:
        """A command the protocol refuses itself, before any stage judges it (a prepared statement the server
        never confirmed, an encoding gw cannot lex): recorded by the stages that record decisions (audit), like a
        refusal of theirs.  Returns the verdict (or one that says the record failed)."""
        return await self._record(command, verdict)

    async def _record(self, command: Command, verdict: Verdict,
                      timings: dict[str, float] | None = None) -> Verdict:
        clock = time.perf_counter
        for stage in self._deciders:
            started = clock()
            try:
                await stage.decided(command, verdict)
            except trio.Cancelled:
                raise
            except Exception as e:  # noqa: BLE001 - a failing record denies (below); the session survives
                log.error("stage %s could not record command %s/%d: %s", stage.name, command.session.id,
                          command.seq, e)
                if verdict.allowed:
                    verdict = Verdict.deny(
                        f"gw could not write the {stage.name} record ({e}); the command was not run "
                        "because policy requires it. Retry later or tell the gateway operator",
                        code=DenyCode.UNAVAILABLE, stage=stage.name)
            if timings is not None:
                key = f"{stage.name}.decided"
                timings[key] = timings.get(key, 0.0) + clock() - started
        return verdict

    async def cancelled(self, command: Command, reason: str) -> None:
        """The decision was cancelled (the client left, cancelled, or its session ended): every stage
        records it as a refusal with code ``cancelled`` and an outcome ``cancelled``; nothing ran."""
        verdict = Verdict.deny(f"the command was cancelled while it was being decided: {reason}",
                               code=DenyCode.CANCELLED)
        for stage in self._deciders:
            try:
                await stage.decided(command, verdict)
            except Exception as e:  # noqa: BLE001 -- nothing runs either way; the record is best effort
                log.error("stage %s could not record cancelled command %s/%d: %s", stage.name,
                          command.session.id, command.seq, e)
        await self.completed(command, Outcome(status=OutcomeStatus.CANCELLED,
                                              error_code=DenyCode.CANCELLED.value, error_message=verdict.reason))

    def conceal(self, command: Command, values: ParamValues) -> ParamValues:
        """``command``'s bound parameter values as people (approvers) may see them: each stage's
        :meth:`Stage.conceal` in configured order.  A stage that raises raises here (the caller fails closed)."""
        for stage in self._concealers:
            values = stage.conceal(command, values)
        return values

    def explain(self, command: Command) -> list[tuple[Stage, Verdict | None]]:
        """Each checking stage's pure decision, in order."""
        return [(stage, stage.evaluate(command)) for stage in self._checkers]

    def plan(self, command: Command) -> list[tuple[Stage, Verdict | None, str | None]]:
        """Every stage in order with its pure decision (None: no opinion, or it does not decide) and what it
        would do besides (``gw policy explain``)."""
        return [(s, s.evaluate(command) if s in self._checkers else None, s.explain(command))
                for s in self.stages]

    # -- results --------------------------------------------------------------------------------------------
    def rows(self, command: Command, columns: Sequence[Column], *, transforming: bool = False) -> RowFilter | None:
        filters = []
        for stage in self._row_stages:
            if transforming and not stage.transforms:
                continue
            f = stage.rows(command, columns)
            if f is not None:
                filters.append(f)
        if not filters:
            return None
        return filters[0] if len(filters) == 1 else _RowChain(filters)

    def stream(self, command: Command, channel: Channel | str, content_type: str = "") -> StreamFilter | None:
        channel = Channel(channel)  # a protocol naming a channel core does not know is a bug: fail loudly
        filters = []
        for stage in self._stream_stages:
            f = stage.stream(command, channel, content_type)
            if f is not None:
                filters.append(f)
        if not filters:
            return None
        return filters[0] if len(filters) == 1 else _StreamChain(filters)

    async def completed(self, command: Command, outcome: Outcome) -> None:
        for stage in self._completers:
            try:
                await stage.completed(command, outcome)
            except trio.Cancelled:
                raise
            except Exception:
                log.exception("stage %s failed on completion of %s/%d", stage.name, command.session.id,
                              command.seq)

    # -- sessions -------------------------------------------------------------------------------------------
    async def session_started(self, session: Session) -> None:
        for stage in self._session_starters:
            await stage.session_started(session)

    async def session_ended(self, session: Session, reason: str) -> None:
        for stage in self._session_enders:
            try:
                await stage.session_ended(session, reason)
            except Exception:
                log.exception("stage %s failed on end of session %s", stage.name, session.id)

    async def session_refused(self, **kw: Any) -> None:
        for stage in self._refusers:
            try:
                await stage.session_refused(**kw)
            except Exception:
                log.exception("stage %s failed to record a refused session", stage.name)


class CommandRun:
    """One command on its way through gw, from :meth:`SessionRuntime.decide` to :meth:`complete`.

    It keeps the pipeline that decided the command (a reload mid-command does not change which stages see its
    results), the verdict, and its start time.  The protocol asks it for row and stream filters and reports the
    outcome once; what a stage keeps about the command lives in :meth:`gw.stage.Stage.state` until then.

    Completion is core's guarantee: a second :meth:`complete` records nothing, and a run its protocol never
    completes is completed by core, ``cancelled`` or ``error`` with the reason, when the ``async with run:``
    block around it exits or, at the latest, when its session ends.
    """

    __slots__ = ("_done", "_session", "command", "context", "pipeline", "started", "verdict")

    def __init__(self, session: SessionRuntime, command: Command, pipeline: Pipeline,
                 context: ProtocolContext | None = None) -> None:
        self._session = session
        self.command = command
        self.pipeline = pipeline
        self.context = context
        self.verdict = ALLOW
        self.started = time.perf_counter()
        self._done = False

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def wants_rows(self) -> bool:
        """Whether any stage of this command's pipeline looks at rows; when not, forward result bytes as they are."""
        return self.pipeline.wants_rows

    @property
    def wants_sources(self) -> bool:
        """Whether a stage of this command's pipeline needs each result column's sources."""
        return self.pipeline.wants_sources

    @property
    def completed(self) -> bool:
        return self._done

    def rows(self, columns: Sequence[Column], *, transforming: bool = False) -> RowFilter | None:
        """The filter for one tabular result of this command (None: forward the rows as they are); with
        ``transforming``, of the stages that may change rows only (whether a result must be masked)."""
        return self.pipeline.rows(self.command, columns, transforming=transforming)

    def stream(self, channel: Channel | str, content_type: str = "") -> StreamFilter | None:
        """The filter for one byte stream of this command (None: forward it as it is)."""
        return self.pipeline.stream(self.command, channel, content_type)

    async def complete(self, outcome: Outcome) -> bool:
        """Record how the command ended: the stages' ``completed``, then ``gw_command_completed``.  Only the
        first call records (and returns True); later ones return False."""
        if self._done:
            return False
        self._done = True
        self._session._runs.pop(self.command.seq, None)
        if not isinstance(outcome.status, OutcomeStatus):
            outcome.status = OutcomeStatus(outcome.status)
        if not outcome.duration:
            outcome.duration = time.perf_counter() - self.started
        try:
            await self.pipeline.completed(self.command, outcome)
            self._session.listener.runtime.pm.hook.gw_command_completed(command=self.command, outcome=outcome)
        finally:
            self.command.stage_state.clear()
        return True

    async def abandon(self, status: OutcomeStatus, reason: str) -> None:
        """Complete a run its protocol left without an outcome, shielded from cancellation."""
        if self._done:
            return
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await self.complete(Outcome(status=status, error_message=reason))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: object) -> None:
        if self._done:
            return
        if error is None:
            await self.abandon(OutcomeStatus.ERROR, "gw ended the command without an outcome")
        elif isinstance(error, trio.Cancelled):
            code = getattr(self.context, "cancel_reason", "") or ""
            await self.abandon(OutcomeStatus.CANCELLED,
                               f"the command was cancelled: {cancel_reason_text(code) if code else 'gw stopped it'}")
        else:
            await self.abandon(OutcomeStatus.ERROR, f"gw stopped handling the command ({type(error).__name__})")


class SessionRuntime:
    """One admitted session: numbers its commands and runs them through the listener's *current* pipeline
    (a reloaded policy applies to the next command of an existing session)."""

    def __init__(self, listener: ListenerRuntime, session: Session) -> None:
        self.listener = listener
        self.session = session
        self._seq = 0
        #: Runs decided and not yet completed, by command number; completed by :meth:`end` if still here.
        self._runs: dict[int, CommandRun] = {}
        self._terminate = trio.Event()
        self.termination_reason = SessionEnd.SHUTDOWN
        self.ended = False
        ident = session.identity
        self._log_context = {"session": session.id, "listener": session.listener, "subject": ident.subject}
        log_context.set(self._log_context)

    @property
    def commands(self) -> int:
        """How many commands this session has sent so far."""
        return self._seq

    # -- commands -------------------------------------------------------------------------------------------
    def command(self, text: str, *, language: str, kind: Kind = Kind.UNKNOWN, verb: str = "",
                objects: Sequence[str] = (), flags: frozenset[str] | Sequence[str] = frozenset(),
                params: Sequence[Any] = (), attributes: dict[str, Any] | None = None,
                verbs: Sequence[str] = (), object_syntax: ObjectSyntax = ObjectSyntax.NAME) -> Command:
        self._seq += 1
        return Command(self.session, self._seq, text, language, kind, verb, tuple(objects), frozenset(flags),
                       tuple(params), attributes if attributes is not None else {}, tuple(verbs), object_syntax)

    async def decide(self, command: Command, context: ProtocolContext) -> CommandRun:
        """Run the pipeline's decision on ``command``; the returned run carries the verdict and is what the
        protocol then asks for filters and completes.  If the decision is cancelled, the command's records
        say so (nothing ran), the run is complete, and the cancellation propagates."""
        pipeline = self.listener.pipeline
        run = CommandRun(self, command, pipeline, context)
        self._runs[command.seq] = run
        log_context.set({**self._log_context, "seq": command.seq})
        hook = self.listener.runtime.pm.hook.gw_command_decided
        timings: dict[str, float] | None = {} if hook.get_hookimpls() else None
        try:
            run.verdict = await pipeline.decide(command, context, timings)
        except trio.Cancelled:
            self._runs.pop(command.seq, None)
            run._done = True
            reason = cancel_reason_text(getattr(context, "cancel_reason", "") or "")
            with trio.move_on_after(5) as scope:
                scope.shield = True
                try:
                    await pipeline.cancelled(command, reason)
                finally:
                    command.stage_state.clear()
            raise
        if run.verdict.request_id:  # what is logged about this command from here on names its approval request
            log_context.set({**self._log_context, "seq": command.seq, "request_id": run.verdict.request_id})
        if timings is not None:
            timings["total"] = time.perf_counter() - run.started
            hook(command=command, verdict=run.verdict, timings=timings)
        return run

    async def refuse(self, command: Command, verdict: Verdict) -> CommandRun:
        """The protocol refuses ``command`` itself; the stages record it.  ``run.verdict`` is ``verdict``, or
        one saying the record failed; complete the run as for a refusal."""
        pipeline = self.listener.pipeline
        run = CommandRun(self, command, pipeline)
        self._runs[command.seq] = run
        run.verdict = await pipeline.refuse(command, verdict)
        return run

    @property
    def wants_rows(self) -> bool:
        """Whether the current pipeline looks at rows (before any command; a run answers for its own)."""
        return self.listener.pipeline.wants_rows

    @property
    def wants_sources(self) -> bool:
        """Whether the current pipeline needs result columns' sources (a run answers for its own)."""
        return self.listener.pipeline.wants_sources

    # -- lifetime -------------------------------------------------------------------------------------------
    @property
    def deadline(self) -> float:
        """Unix time at which gw ends this session (token expiry + grace, ``session_max``), or inf."""
        opts = self.listener.options
        candidates = [math.inf]
        exp = self.session.identity.expires_at
        if exp is not None:
            candidates.append(exp + opts.token_grace.total_seconds())
        if opts.session_max is not None:
            candidates.append(self.session.started_at + opts.session_max.total_seconds())
        return min(candidates)

    def terminate(self, reason: SessionEnd | str) -> None:
        """Ask the protocol to end this session (revocation, shutdown); see :meth:`wait_terminated`."""
        if not self._terminate.is_set():
            self.termination_reason = SessionEnd(reason)
            self._terminate.set()

    async def wait_terminated(self) -> SessionEnd:
        """Return when gw wants this session ended, with the reason: ``token_expired``, ``session_max``,
        ``revoked``, ``shutdown``.  Protocols run this beside the session and close it with a native
        message when it returns (``reason.message`` is the text to show)."""
        deadline = self.deadline
        if math.isfinite(deadline):
            with trio.move_on_after(max(0.0, deadline - time.time())):
                await self._terminate.wait()
                return self.termination_reason
            exp = self.session.identity.expires_at
            grace = self.listener.options.token_grace.total_seconds()
            if exp is not None and exp + grace <= deadline + 1e-6:
                return SessionEnd.TOKEN_EXPIRED
            return SessionEnd.SESSION_MAX
        await self._terminate.wait()
        return self.termination_reason

    async def end(self, reason: str) -> None:
        """The session is over: runs its protocol left open are completed as ``cancelled`` (saying why), then
        the stages and hooks hear of the end."""
        if self.ended:
            return
        self.ended = True
        for run in list(self._runs.values()):
            await run.abandon(OutcomeStatus.CANCELLED, "the command did not finish before its session ended "
                                                       f"({SessionEnd.of(reason).value})")
        await self.listener.session_ended(self, reason)
