"""One proxied PostgreSQL session after authentication: two pumps and the pipeline calls between them.

* The **client pump** reads frontend messages, turns each simple Query and each extended-protocol Execute into
  one :class:`gw.model.Command`, asks the pipeline, and forwards (or refuses) it.  Messages that need no
  decision are forwarded as the bytes the client sent, batched into one write per received chunk.
* The **upstream pump** reads backend messages and relays them, again as untouched byte runs, decoding only
  what gw must know (command tags, errors, ReadyForQuery; row descriptions and rows when a stage filters
  them).
* A queue of :class:`Pending` entries -- one per response the upstream owes, in order -- connects the two,
  which is what lets clients pipeline (several batches in flight) and what makes error-skips-to-Sync exact.

Refusing a command must leave the upstream in the same state PostgreSQL itself would after an error: gw
forwards, instead of the refused message, an ``Execute`` of a portal that cannot exist.  The upstream answers
with an error (which gw replaces by its own refusal), aborts the current transaction and skips to Sync,
exactly as it would had the statement itself failed.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import select
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from gw.model import Column, Command, DenyCode, Measurement, Outcome, OutcomeStatus, SessionEnd, Verdict
from gw.pipeline import CommandRun, SessionRuntime
from gw.protocol import write_now
from gw.stage import UNKNOWN_SOURCES, ColumnEdits, RowFilter
from gw_sqlanalysis import ANYTHING
from gw_sqlanalysis.encodings import encoding_changes, encoding_is_safe
from gw_sqlanalysis.grammar import MAX_DEPTH
from gw_sqlanalysis.names import NameOp, mentions_names, name_operations

from . import errors as E
from .codec import Role, WireCodec
from .copyout import decode_text_row, encode_text_row, parse_copy_tokens
from .errors import ProtocolError, UpstreamError
from .measure import AUTOCOMMIT, IN_TRANSACTION, Plan, counted, unmeasurable
from .messages import (
    BackendType,
    Bind,
    Close,
    CopyOutResponse,
    Describe,
    ErrorResponse,
    Execute,
    FieldDescription,
    FrontendType,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    Parse,
    Query,
    RowDescription,
    Sync,
    data_row_offsets,
    frame,
    rows_from_tag,
    splice_data_row,
)
from .names import NameTable, Portal, Statement
from .provenance import Provenance, statement_tokens, wire_columns
from .rowbatch import RowBatch, RowShapeChanged
from .servertext import mask_error, mask_notification, mask_parameter
from .upstream import RECEIVE_SIZE, UpstreamConnection, send_cancel

if TYPE_CHECKING:
    from gw_sqlanalysis import Classification

    from .handler import PostgresHandler

log = logging.getLogger("gw.postgres")

#: A portal name no client can have created: executing it makes the upstream fail, abort the transaction and
#: skip to Sync, which is how gw refuses a message without desynchronising the upstream.
REFUSAL_PORTAL = "\x1bgw: refused"
_REFUSE_EXECUTE = Execute(REFUSAL_PORTAL).encode()
_REFUSE_QUERY = _REFUSE_EXECUTE + Sync().encode()

_SQLSTATE_BY_DENY = {
    DenyCode.POLICY: E.INSUFFICIENT_PRIVILEGE,
    DenyCode.APPROVAL_REQUIRED: E.INSUFFICIENT_PRIVILEGE,
    DenyCode.APPROVAL_DENIED: E.INSUFFICIENT_PRIVILEGE,
    DenyCode.APPROVAL_TIMEOUT: E.QUERY_CANCELED,
    DenyCode.UNAVAILABLE: E.SYSTEM_ERROR,
    DenyCode.INTERNAL: E.INTERNAL_ERROR,
}

#: Statements that run server-side code which may PREPARE or DEALLOCATE out of gw's sight: after one runs,
#: gw forgets every name (a later Bind/Execute of one is refused until the client makes it again).
_RUNS_SERVER_CODE = frozenset({"do", "call"})

#: Statements longer than this are classified in a worker thread; at most two at a time per process.
_OFF_LOOP_SIZE = 64 * 1024
#: ... or holding more brackets than this: the parser's cost grows with nesting, not only with size.
_OFF_LOOP_NESTING = 64
_ANALYSIS_THREADS = trio.CapacityLimiter(2)

_DATA_ROW = int(BackendType.DATA_ROW)
#: Messages carrying the server's text, masked when the pipeline masks anything.
_SERVER_TEXT = frozenset({int(BackendType.NOTICE_RESPONSE), int(BackendType.NOTIFICATION_RESPONSE),
                          int(BackendType.PARAMETER_STATUS)})
#: Command attributes shared with the mask stage (docs/plugins/mask.md): what the statement reads and what
#: the values it writes derive from (set here), and how to treat server text (set by the stage).
_READS, _WRITES, _TOUCHES, _TEXT = "sql.reads", "sql.writes", "mask.touches", "mask.text"
_COPY_DATA = int(BackendType.COPY_DATA)
#: Messages that open a result: with a row filter possible, gw resolves the columns first (may await).
_MAY_AWAIT = frozenset({int(BackendType.ROW_DESCRIPTION), int(BackendType.COPY_OUT_RESPONSE)})


def _tag(body: memoryview) -> str:
    """The tag of a CommandComplete body (hot path: no Reader)."""
    if not len(body) or body[-1] != 0:
        raise ProtocolError("malformed CommandComplete message: the tag is not NUL-terminated")
    return bytes(body[:-1]).decode("utf-8", "surrogateescape")


def _query_text(body: memoryview) -> str:
    """The text of a Query body (hot path: no Reader)."""
    data = bytes(body)
    if data.find(b"\0") != len(data) - 1:
        raise ProtocolError("malformed Query message: a string is not NUL-terminated"
                            if b"\0" not in data else "malformed Query message: unexpected trailing bytes")
    return data[:-1].decode("utf-8", "surrogateescape")


def error_message(severity: str, code: str, message: str, *, detail: str | None = None,
                  hint: str | None = None) -> bytes:
    return ErrorResponse.build(severity, code, message, detail=detail, hint=hint).encode()


def refusal(verdict: Verdict) -> tuple[str, str, str | None]:
    """SQLSTATE, message and detail of the ErrorResponse for a refused command."""
    code = _SQLSTATE_BY_DENY.get(verdict.code or DenyCode.POLICY, E.INSUFFICIENT_PRIVILEGE)
    message = verdict.reason or "gw policy does not allow this statement"
    if verdict.request_id and verdict.request_id not in message:
        message += f" (approval request {verdict.request_id})"
    who = f"gw stage {verdict.stage!r}" if verdict.stage else "gw"
    detail = f"refused by {who}" + (f", rule {verdict.rule!r}" if verdict.rule else "")
    return code, message, detail


class Expect(enum.IntEnum):
    """What the upstream owes for one forwarded message."""

    QUERY = 1  # simple Query: everything up to ReadyForQuery
    PARSE = 2
    BIND = 3
    DESCRIBE = 4
    EXECUTE = 5
    CLOSE = 6
    SYNC = 7  # ReadyForQuery
    MEASURE = 8  # a simple Query gw sent itself (measuring a write): collected up to ReadyForQuery, not relayed


@dataclass(slots=True)
class Pending:
    expect: Expect
    run: CommandRun | None = None
    outcome: Outcome | None = None
    #: gw's own ErrorResponse that replaces the upstream's answer (a refused message).
    replacement: bytes | None = None
    #: gw asked for this itself (a Describe to learn a portal's columns): the answer is not relayed.
    internal: bool = False
    portal: Portal | None = None
    statement: Statement | None = None
    #: Names a Query's SQL PREPARE / DECLARE create, confirmed one by one as the CommandComplete with the
    #: tag (``PREPARE``, ``DECLARE CURSOR``) arrives.
    prepares: list[tuple[str, Statement | Portal]] | None = None
    wants_rows: bool = False
    #: Rows must be resolved (columns, filter) before the first DataRow is relayed.
    resolve_rows: bool = False
    filter: RowFilter | None = None
    #: ``filter`` may offer column edits (gw.stage.ColumnwiseRowFilter): rows go to it a received run at a time.
    columnwise: bool = False
    #: The result's number of columns, and the last column edits prepared for it.
    width: int = 0
    batch: RowBatch | None = None
    #: The result's columns could not be resolved: rows are withheld and the command fails (fail closed).
    withhold: str | None = None
    #: In a simple Query: the 0-based index of the statement whose results arrive now.
    statement_index: int = 0
    #: ``MEASURE``: the answer's messages, and the event set when its ReadyForQuery arrived.
    collected: list[tuple[int, bytes]] | None = None
    done: trio.Event | None = None

    @property
    def command(self) -> Command | None:
        return self.run.command if self.run is not None else None


#: Entries without per-message state are shared (the hot path of extended-protocol clients allocates less).
_CLOSE, _SYNC = Pending(Expect.CLOSE), Pending(Expect.SYNC)


@dataclass
class _Ending:
    reason: str
    notify: bytes | None = None


class ClientWriter:
    """Serialises writes to the client so that a notice or a FATAL never lands inside another message."""

    __slots__ = ("_busy", "_waiting", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._busy = False
        # A bare flag plus a parking lot: uncontended writes (nearly all) cost no lock bookkeeping.
        self._waiting = trio.lowlevel.ParkingLot()

    async def send(self, data: bytes | memoryview) -> None:
        if self._busy:
            while self._busy:
                await self._waiting.park()
        else:
            sent = write_now(self.stream, data)  # the socket takes it all, nearly always
            if sent == len(data):
                return
            data = memoryview(data)[sent:]  # the rest, before any other write
        self._busy = True
        try:
            await self.stream.send_all(data)
        finally:
            self._busy = False
            if self._waiting:
                self._waiting.unpark()


@dataclass(slots=True)
class _Measured:
    """A measured write that is neither kept nor rolled back yet: its answer, held back from the client."""

    frames: list[tuple[int, bytes]]
    plan: Plan | None  # None: nothing to keep or undo (the statement failed and changed nothing)
    rows: int | None


class _Decision:
    """The :class:`gw.stage.CommandContext` of one command: notices go to the client as NoticeResponse; a
    simple-query write can be measured (``rows_over``); ``cancel_reason`` says why a decision was cancelled."""

    __slots__ = ("cancel_reason", "command", "measured", "open", "raw", "session")

    def __init__(self, session: ProxySession, command: Command, raw: bytes | None) -> None:
        self.session = session
        self.command = command
        self.raw = raw
        self.cancel_reason = ""
        self.measured: Measurement | None = None
        self.open: _Measured | None = None

    async def notice(self, message: str) -> None:
        await self.session._notice(message)

    async def measure(self) -> Measurement:
        if self.measured is None:
            self.measured = await self.session._measure(self)
        return self.measured

    async def discard(self) -> None:
        await self.session._undo(self)
        self.measured = None


class ProxySession:
    """Relays one authenticated client to its upstream connection until either side ends."""

    def __init__(self, handler: PostgresHandler, client: trio.abc.Stream, codec: WireCodec,
                 upstream: UpstreamConnection, sr: SessionRuntime) -> None:
        self.handler = handler
        self.client = client
        self.codec = codec
        self.up = upstream
        self.sr = sr
        self.writer = ClientWriter(client)
        self.pending: deque[Pending] = deque()
        #: Prepared statements and portals as the server holds them (shared with the stages' result side).
        self.names = NameTable()
        #: The session's encoding and string mode as the server last reported them (ParameterStatus).
        self.client_encoding = upstream.parameters.get("client_encoding", "")
        self.standard_strings = upstream.parameters.get("standard_conforming_strings", "on") == "on"
        #: Set (and replaced) whenever the upstream answered something: what a waiting message waits on.
        self._progress: trio.Event | None = None
        self.status = upstream.status
        self._to_upstream: list[bytes | memoryview] = []
        self._upstream_boundary = False
        self._skipping = False  # a refused extended-protocol message: drop client messages until Sync
        self._rows_slow = False
        self._completions: list[tuple[CommandRun, Outcome]] = []
        self._ending: _Ending | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: The decision in progress, its cancel scope, and the watch on the client while a command is held.
        self._decision: _Decision | None = None
        self._decide_scope: trio.CancelScope | None = None
        self._hold_watch: tuple[trio.CancelScope, trio.Event] | None = None
        #: gw is talking to the upstream itself (measuring): upstream answers go to MEASURE entries.
        self._measuring = False
        self._held_bytes = 0
        self._held_overflow = False
        self._client_gone = False
        self._fatal_relayed = False
        self._message_timeout = handler.options.message_timeout.total_seconds()
        self.provenance = Provenance(handler.classifier, handler.catalog)
        self._last_mask_command: Command | None = None

    # -- lifetime --------------------------------------------------------------------------------------------
    async def run(self) -> str:
        """Serve until the session ends; returns the reason (also given to ``sr.end``)."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._nursery = nursery
                nursery.start_soon(self._guard, self._client_pump)
                nursery.start_soon(self._guard, self._upstream_pump)
                nursery.start_soon(self._guard, self._terminator)
        finally:
            with trio.CancelScope(shield=True):
                reason = self._ending.reason if self._ending else "cancelled"
                await self._teardown(reason)
        return reason

    def _finish(self, reason: str) -> None:
        if self._ending is None:
            self._ending = _Ending(reason)
        if self._scope is not None:
            self._scope.cancel()

    async def _guard(self, task: Any) -> None:
        """Turn every way a pump can end into a session ending with a reason (never an exception group)."""
        try:
            await task()
        except ProtocolError as e:
            await self._fatal(e.sqlstate, str(e), hint=e.hint)
            self._finish(f"error: {e}")
        except UpstreamError as e:
            await self._fatal(e.sqlstate, str(e))
            self._finish(f"error: {e}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            self._finish("client_disconnected" if not self.pending else "client_disconnected_mid_query")
        except trio.Cancelled:
            raise
        except Exception as e:
            log.exception("postgres session %s failed", self.sr.session.id)
            await self._fatal(E.INTERNAL_ERROR, f"gw hit an internal error ({type(e).__name__}) and closed "
                              "the session; reconnect, and tell the gateway operator if it happens again")
            self._finish(f"error: internal {type(e).__name__}")

    async def _fatal(self, code: str, message: str, *, hint: str | None = None) -> None:
        """Best-effort FATAL ErrorResponse to the client (it may already be gone)."""
        with trio.move_on_after(1):
            try:
                await self.writer.send(error_message("FATAL", code, message, hint=hint))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _terminator(self) -> None:
        """Ends the session when gw wants it ended (token expired, session_max, revoked, shutdown)."""
        reason = await self.sr.wait_terminated()
        if reason is SessionEnd.SHUTDOWN:
            # Drain: let the command in flight finish, then close between commands.
            while self.pending:
                await trio.sleep(0.05)
        message = reason.message
        if self._decision is not None:
            self._decision.cancel_reason = reason
        await self._fatal(E.ADMIN_SHUTDOWN, message)
        self._finish(reason)

    async def _teardown(self, reason: str) -> None:
        if self.pending and self.up.backend_key is not None and not reason.startswith("upstream"):
            # The client is gone (or must go) while the upstream still works for it: stop that work.
            with trio.move_on_after(2):
                try:
                    await send_cancel(self.up.target, self.up.backend_key)
                except UpstreamError:
                    pass
        if not reason.startswith("upstream"):
            with trio.move_on_after(0.5):
                try:
                    await self.up.send(b"X\x00\x00\x00\x04")
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        await self.up.aclose()
        for entry in self.pending:
            if entry.run is not None and entry.outcome is not None:
                entry.outcome.status = OutcomeStatus.CANCELLED
                entry.outcome.error_message = entry.outcome.error_message or f"session ended: {reason}"
                self._completions.append((entry.run, entry.outcome))
        self.pending.clear()
        for run, outcome in self._completions:
            await run.complete(outcome)
        self._completions.clear()
        await self.sr.end(reason)

    # -- client -> upstream ----------------------------------------------------------------------------------
    async def _client_pump(self) -> None:
        codec = self.codec
        client = self.client
        while True:
            if codec.buffered:
                with trio.move_on_after(self._message_timeout) as scope:
                    data = await client.receive_some(RECEIVE_SIZE)
                if scope.cancelled_caught:
                    raise ProtocolError(
                        f"gw waited {self._message_timeout:g}s for the rest of a message and closed the "
                        "connection", hint="the client stalled in the middle of a message")
            else:
                data = await client.receive_some(RECEIVE_SIZE)
            if not data:
                self._finish("client_disconnected_mid_query" if self.pending else "client_disconnected")
                return
            codec.receive_data(data)
            while (f := codec.next_frame()) is not None:
                t, start, end = f
                raw = memoryview(codec.buffer)[start:end]
                if await self._from_client(t, raw):
                    await self._flush_upstream()
                    self._finish("client_closed")
                    return
            await self._flush_upstream()

    async def _flush_upstream(self) -> None:
        out = self._to_upstream
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._upstream_boundary = False
            try:
                await self.up.send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                raise UpstreamError(f"gw lost its connection to the upstream database "
                                    f"{self.up.target.describe()} ({e}); reconnect") from None

    def _expect(self, entry: Pending) -> None:
        """Queue what the upstream will owe for a message about to be forwarded."""
        self.pending.append(entry)
        if len(self.pending) == 1:
            self._pop_filter(entry)

    def _forward(self, raw: bytes | memoryview, boundary: bool = False) -> None:
        self._to_upstream.append(raw)
        if boundary:
            self._upstream_boundary = True

    async def _before_decision(self) -> None:
        """Messages already queued that make the upstream answer (Sync, Flush, Query) go out before gw
        waits on a decision, so pipelined earlier batches are not held back by a slow approval."""
        if self._upstream_boundary:
            await self._flush_upstream()

    async def _from_client(self, t: int, raw: memoryview) -> bool:
        """Handle one frontend message; True when the client said Terminate."""
        body = raw[5:]
        if self._skipping and t != FrontendType.SYNC and t != FrontendType.TERMINATE:
            return False  # discarded until Sync, as PostgreSQL does after an error
        if t == FrontendType.QUERY:
            await self._query(raw, _query_text(body))
        elif t == FrontendType.PARSE:
            self._parse(raw, Parse.decode(body))
        elif t == FrontendType.BIND:
            await self._bind(raw, Bind.decode(body))
        elif t == FrontendType.EXECUTE:
            await self._execute(raw, Execute.decode(body))
        elif t == FrontendType.DESCRIBE:
            await self._describe(raw, Describe.decode(body))
        elif t == FrontendType.CLOSE:
            self._close(raw, Close.decode(body))
        elif t == FrontendType.SYNC:
            self._skipping = False
            self.names.sync()
            self._expect(_SYNC)
            self._forward(raw, boundary=True)
        elif t == FrontendType.FLUSH:
            self._forward(raw, boundary=True)
        elif t in (FrontendType.COPY_DATA, FrontendType.COPY_DONE, FrontendType.COPY_FAIL):
            self._forward(raw, boundary=t != FrontendType.COPY_DATA)
        elif t == FrontendType.TERMINATE:
            self._forward(raw, boundary=True)
            return True
        elif t == FrontendType.FUNCTION_CALL:
            self._refuse_function_call()
        else:  # PasswordMessage after authentication
            raise ProtocolError("unexpected authentication message after the session started")
        return False

    async def _analyse(self, text: str, standard_strings: bool | None = None) -> Classification:
        """Classify ``text`` (lexed under ``standard_strings``, see :meth:`_settled_strings`); a long one in a
        worker thread (bounded), so the event loop keeps serving every other session while it is analysed."""
        if len(text) <= _OFF_LOOP_SIZE and (text.count("(") + text.count("[") <= _OFF_LOOP_NESTING):
            return self._classify(text, standard_strings)
        return await trio.to_thread.run_sync(self._classify, text, standard_strings, limiter=_ANALYSIS_THREADS)

    def _settled_strings(self) -> bool | None:
        """``standard_conforming_strings`` as the server will lex the next message, when gw knows it for certain:
        nothing is in flight that could still change it (a SET, set_config, a ROLLBACK undoing one ...; the
        server reports every change before its ReadyForQuery).  None while something is in flight: gw then
        lexes a text both ways and calls it ``unknown`` if they differ."""
        if self.pending or self._to_upstream:
            return None
        return self.standard_strings

    async def _refuse_too_deep(self, text: str, *, query: bool) -> None:
        await self._refuse_unestablished(
            text, E.STATEMENT_TOO_COMPLEX,
            f"statement nested too deeply for gw to analyse (more than {MAX_DEPTH} levels of parentheses or "
            "brackets once redundant ones are dropped): flatten it (fewer nested subqueries, CASEs or "
            "parenthesised expressions) or split it into several statements", query=query)

    async def _refuse_too_large(self, text: str, *, query: bool) -> None:
        limit = self.handler.options.max_analysis_size
        await self._refuse_unestablished(
            text[:200] + f"... ({len(text)} characters)", E.FEATURE_NOT_SUPPORTED,
            f"statement too large for gw to analyse ({len(text)} characters; the listener's max_analysis_size "
            f"is {limit} bytes): split it into smaller statements, or ask the operator to raise "
            "max_analysis_size", query=query)

    def _classify(self, text: str, standard_strings: bool | None = None) -> Classification:
        return self.handler.classifier.classify(text, standard_strings)

    def _command(self, text: str, cls: Classification | None, *, params: Sequence[Any] = (),
                 attributes: dict[str, Any] | None = None) -> Command:
        if cls is None:
            return self.sr.command(text, language="sql", flags=frozenset({"unparsed"}), params=params,
                                   attributes=attributes)
        return self.sr.command(text, language="sql", kind=cls.kind, verb=cls.verb, objects=cls.objects,
                               flags=cls.flags, params=params, attributes=attributes, verbs=cls.verbs)

    async def _decide(self, cmd: Command, raw: bytes | memoryview | None = None
                      ) -> tuple[CommandRun | None, bytes | None, _Decision]:
        """Run the pipeline: the run when allowed, else gw's ErrorResponse (the refusal is completed here).
        The decision's context carries a measured write still waiting to be kept or undone."""
        if self._upstream_boundary:
            await self._before_decision()
        ctx = _Decision(self, cmd, bytes(raw) if raw is not None else None)
        self._decision = ctx
        run: CommandRun | None = None
        try:
            with trio.CancelScope() as scope:
                self._decide_scope = scope
                run = await self.sr.decide(cmd, ctx)
            if _TEXT in cmd.attributes:
                self._last_mask_command = cmd
        finally:
            self._decide_scope = None
            self._decision = None
            await self._stop_hold_watch()
        if self._client_gone:
            # Also when a verdict arrived in the same moment the client left: nobody waits for the answer.
            with trio.move_on_after(5):
                await self._undo(ctx)
                if run is not None:
                    await run.complete(Outcome(status=OutcomeStatus.CANCELLED,
                                               error_message="the client disconnected before the command could run"))
            raise trio.BrokenResourceError("the client disconnected while its command was held")
        if run is None:
            # The client cancelled the held command: nothing ran (the pipeline recorded it).
            await self._undo(ctx)
            return None, error_message("ERROR", E.QUERY_CANCELED, "canceling statement due to user request: "
                                       "gw cancelled the held command and its approval request; nothing ran"), ctx
        if run.allowed:
            return run, None, ctx
        await self._undo(ctx)
        code, message, detail = refusal(run.verdict)
        log.info("session %s: refused command %d (%s): %s", cmd.session.id, cmd.seq, code, message)
        await run.complete(Outcome(status=OutcomeStatus.DENIED, error_code=code, error_message=message))
        return None, error_message("ERROR", code, message, detail=detail), ctx

    async def _facts(self, text: str, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the mask stage needs to know before deciding: the sources the statement reads and those the
        values it writes derive from (expanded through the catalog)."""
        attributes = attributes if attributes is not None else {}
        if not self.sr.wants_sources:
            return attributes
        if len(text) > _OFF_LOOP_SIZE or text.count("(") + text.count("[") > _OFF_LOOP_NESTING:
            # Its lineage is worked out in a worker thread, like its classification: seconds of parsing for a
            # long statement must not stall every other session.
            await trio.to_thread.run_sync(self.provenance.prepare, text, limiter=_ANALYSIS_THREADS)
        try:
            reads, writes = await self.provenance.facts(text)
        except UpstreamError as e:
            log.error("session %s: cannot resolve what a statement reads: %s", self.sr.session.id, e)
            reads, writes = None, (ANYTHING,)
        attributes[_READS] = reads
        attributes[_WRITES] = writes
        return attributes

    async def _query(self, raw: memoryview, text: str) -> None:
        if len(text) > self.handler.options.max_analysis_size:
            await self._refuse_too_large(text, query=True)
            return
        cls = await self._analyse(text, self._settled_strings())
        if "too_deep" in cls.flags:
            await self._refuse_too_deep(text, query=True)
            return
        ops = name_operations(text, not self.standard_strings) if mentions_names(text) else []
        cmd = await self._command_for(text, cls, ops, query=True)
        if cmd is None:
            return
        run, refused, ctx = await self._decide(cmd, raw)
        if run is None:
            self._expect(Pending(Expect.QUERY, replacement=refused))
            self._forward(_REFUSE_QUERY, boundary=True)
            return
        prepares = self._apply_names(ops, cmd)
        entry = Pending(Expect.QUERY, run, Outcome(), wants_rows=run.wants_rows, prepares=prepares)
        if ctx.open is not None:  # measured already: keep it and relay the answer held back
            await self._keep(ctx, entry)
            return
        self._expect(entry)
        self._forward(raw, boundary=True)

    async def _command_for(self, text: str, cls: Classification, ops: list[NameOp] | None, *, query: bool,
                           params: Sequence[Any] = (), attributes: dict[str, Any] | None = None
                           ) -> Command | None:
        """The Command for ``text``; an SQL ``EXECUTE name(args)`` becomes the prepared statement's text and
        classification, with the arguments (or the bound values) as its parameters.  None when refused (the
        refusal is sent)."""
        changes = encoding_changes(text, not self.standard_strings)
        if changes is None or any(c is None or not encoding_is_safe(c) for c in changes):
            bad = next((c for c in changes or () if c is not None and not encoding_is_safe(c)), None)
            await self._refuse_unestablished(
                text, E.FEATURE_NOT_SUPPORTED,
                _encoding_message(bad) if bad is not None else
                "gw cannot tell which client_encoding this statement sets (an expression or a parameter); "
                "set it with a literal of a supported encoding (UTF8, LATIN1 ...)", query=query)
            return None
        executes = [op for op in ops or () if op.op == "execute"]
        if not executes:
            return self._command(text, cls, params=params, attributes=await self._facts(text, attributes))
        if ops is not None and len(ops) > 1 or cls.statements > 1 or not executes[0].name:
            await self._refuse_unestablished(
                text, E.FEATURE_NOT_SUPPORTED,
                "gw runs EXECUTE of a prepared statement only as a statement of its own (not with other "
                "statements in one query string, nor by an expression); send EXECUTE name(...) alone",
                query=query)
            return None
        op = executes[0]
        st = await self._established_statement(op.name)
        if st is None:
            await self._refuse_unestablished(
                text, E.INVALID_SQL_STATEMENT_NAME,
                f"prepared statement {op.name!r} is not known to gw on this session (the server never confirmed "
                "it through gw); PREPARE it again", query=query, name=op.name)
            return None
        if st.classification is None:
            st.classification = await self._analyse(st.text, st.standard_strings)
        inner = st.classification
        attributes = await self._facts(st.text, {**(attributes or {}), "statement": st.name, "execute": text})
        values = tuple(params) if params else op.args
        if op.wrapped:  # EXPLAIN / CREATE TABLE AS around it: the more dangerous of the two decides
            attributes["prepared_text"] = st.text
            return self._command(text, _merge(cls, inner), params=values, attributes=attributes)
        return self._command(st.text, inner, params=values, attributes=attributes)

    def _apply_names(self, ops: list[NameOp] | None, cmd: Command) -> list[tuple[str, Statement | Portal]] | None:
        """An allowed statement is about to run: what it does to names (pending until its tag arrives)."""
        if ops is None or cmd.verb in _RUNS_SERVER_CODE or any(v in _RUNS_SERVER_CODE for v in cmd.verbs):
            self.names.forget()  # it may create or drop names out of gw's sight
        prepares: list[tuple[str, Statement | Portal]] = []
        for op in ops or ():
            if op.op == "prepare":
                prepares.append(("PREPARE", self.names.parse(op.name, op.text, sql=True)))
            elif op.op == "declare" and op.text:
                prepares.append(("DECLARE CURSOR", self.names.declare(op.name, op.text)))
            elif op.op == "deallocate":
                self.names.deallocate(op.name)
            elif op.op == "deallocate_all":
                self.names.deallocate(None)
            elif op.op == "discard_all":
                self.names.forget()
            elif op.op in ("declare", "close"):
                self.names.close_portal(op.name)
            elif op.op == "close_all":
                self.names.close_portal(None)
        return prepares or None

    def _refuse_function_call(self) -> None:
        message = ("gw refuses fast-path function calls (FunctionCall messages): they bypass statement-level "
                   "control; call the function in a SELECT instead")
        log.info("session %s: refused a FunctionCall message", self.sr.session.id)
        self._expect(Pending(Expect.QUERY, replacement=error_message(
            "ERROR", E.FEATURE_NOT_SUPPORTED, message)))
        self._forward(_REFUSE_QUERY, boundary=True)

    def _parse(self, raw: memoryview, msg: Parse) -> None:
        st = self.names.parse(msg.statement, msg.query, msg.param_types)
        st.standard_strings = self._settled_strings()
        self._expect(Pending(Expect.PARSE, statement=st))
        self._forward(raw)

    async def _wait_settled(self, entry: Statement | Portal) -> None:
        """``entry`` is pending from an earlier batch: send what is queued and wait for the server's answer."""
        while self.names.must_wait(entry):
            # Armed before the flush: the answer may arrive, and be relayed, while the flush is sending.
            if self._progress is None:
                self._progress = trio.Event()
            progress = self._progress
            await self._flush_upstream()
            await progress.wait()

    async def _established_statement(self, name: str) -> Statement | None:
        while (st := self.names.statement(name)) is not None and self.names.must_wait(st):
            await self._wait_settled(st)
        return st

    async def _established_portal(self, name: str) -> Portal | None:
        while (portal := self.names.portal(name)) is not None and self.names.must_wait(portal):
            await self._wait_settled(portal)
        return portal

    async def _refuse_unestablished(self, text: str, code: str, message: str, *, query: bool = False,
                                    name: str | None = None, portal: str | None = None) -> None:
        """Refuse a message gw cannot judge (a name the server never confirmed through gw): audited as denied,
        answered like the server's own error (an extended-protocol batch then skips to Sync)."""
        attributes: dict[str, Any] = {}
        if name is not None:
            attributes["statement"] = name
        if portal is not None:
            attributes["portal"] = portal
        cmd = self._command(text, None, attributes=attributes)
        verdict = Verdict.deny(message, code=DenyCode.POLICY, stage="postgres")
        run = await self.sr.refuse(cmd, verdict)
        recorded = run.verdict
        if not recorded.allowed and recorded is not verdict and recorded.reason:
            message = recorded.reason
        log.info("session %s: refused command %d (%s): %s", cmd.session.id, cmd.seq, code, message)
        await run.complete(Outcome(status=OutcomeStatus.DENIED, error_code=code, error_message=message))
        reply = error_message("ERROR", code, message, detail="refused by gw (postgres protocol)")
        if query:
            self._expect(Pending(Expect.QUERY, replacement=reply))
            self._forward(_REFUSE_QUERY, boundary=True)
        else:
            self._expect(Pending(Expect.EXECUTE, replacement=reply))
            self._forward(_REFUSE_EXECUTE)
            self._skipping = True

    async def _bind(self, raw: memoryview, msg: Bind) -> None:
        st = await self._established_statement(msg.statement)
        if st is None:
            await self._refuse_unestablished(
                "", E.INVALID_SQL_STATEMENT_NAME,
                f"prepared statement {msg.statement!r} is not known to gw on this session (the server never "
                "confirmed it through gw); Parse it again", name=msg.statement, portal=msg.portal)
            return
        portal = self.names.bind(msg.portal, st, msg)
        self._expect(Pending(Expect.BIND, portal=portal))
        self._forward(raw)

    async def _describe(self, raw: memoryview, msg: Describe) -> None:
        entry = Pending(Expect.DESCRIBE, wants_rows=self.sr.wants_rows)
        if msg.kind == "P":
            entry.portal = await self._established_portal(msg.name)
            if entry.portal is not None:
                entry.portal.describing = True
        else:
            entry.statement = await self._established_statement(msg.name)
        if entry.portal is None and entry.statement is None:
            what = "portal" if msg.kind == "P" else "prepared statement"
            await self._refuse_unestablished(
                "", E.INVALID_CURSOR_NAME if msg.kind == "P" else E.INVALID_SQL_STATEMENT_NAME,
                f"{what} {msg.name!r} is not known to gw on this session (the server never confirmed it "
                "through gw)", portal=msg.name if msg.kind == "P" else None,
                name=None if msg.kind == "P" else msg.name)
            return
        self._expect(entry)
        self._forward(raw)

    def _close(self, raw: memoryview, msg: Close) -> None:
        self.names.close(msg.kind, msg.name)
        self._expect(_CLOSE)
        self._forward(raw)

    async def _execute(self, raw: memoryview, msg: Execute) -> None:
        portal = await self._established_portal(msg.portal)
        statement = portal.statement if portal is not None else None
        if portal is None or statement is None:
            await self._refuse_unestablished(
                "", E.INVALID_CURSOR_NAME,
                f"portal {msg.portal!r} is not known to gw on this session (the server never confirmed its "
                "Bind through gw); Bind it again", portal=msg.portal)
            return
        attributes: dict[str, Any] = {"portal": msg.portal, "statement": statement.name}
        if len(statement.text) > self.handler.options.max_analysis_size:
            await self._refuse_too_large(statement.text, query=False)
            return
        if statement.classification is None:
            statement.classification = await self._analyse(statement.text, statement.standard_strings)
        if "too_deep" in statement.classification.flags:
            await self._refuse_too_deep(statement.text, query=False)
            return
        if not statement.name_ops_known:
            statement.name_ops = (name_operations(statement.text, not self.standard_strings)
                                  if mentions_names(statement.text) else [])
            statement.name_ops_known = True
        cls = statement.classification
        params = () if statement.sql or portal.bind is None else _params(portal.bind, statement.param_types)
        ops = statement.name_ops
        cmd = await self._command_for(statement.text, cls, ops, query=False, params=params,
                                      attributes=attributes)
        if cmd is None:
            return
        run, refused, _ = await self._decide(cmd)
        if run is None:
            # Like an error of the Execute itself: the upstream aborts and skips to Sync; so does gw.
            self._expect(Pending(Expect.EXECUTE, replacement=refused))
            self._forward(_REFUSE_EXECUTE)
            self._skipping = True
            return
        prepares = self._apply_names(ops, cmd)
        wants_rows = run.wants_rows
        if wants_rows and portal.fields is None and not portal.describing:
            # gw needs the portal's columns to filter its rows; ask without relaying the answer.
            portal.describing = True
            self._expect(Pending(Expect.DESCRIBE, internal=True, portal=portal, wants_rows=True))
            self._forward(Describe("P", msg.portal).encode())
        self._expect(Pending(Expect.EXECUTE, run, Outcome(), portal=portal, wants_rows=wants_rows,
                             resolve_rows=wants_rows, prepares=prepares))
        self._forward(raw)

    # -- held commands ---------------------------------------------------------------------------------------
    async def _notice(self, message: str) -> None:
        """A stage's notice.  One sent while a command is being decided means a stage is about to hold it (the
        approve stage announces its hold this way): from then on gw watches the client, so a client that
        disconnects cancels the hold, and its approval request, at once."""
        await self.writer.send(NoticeResponse.build("NOTICE", "00000", message).encode())
        if self._decide_scope is not None and self._hold_watch is None and self._nursery is not None:
            self._hold_watch = (trio.CancelScope(), trio.Event())
            self._nursery.start_soon(self._watch_held_client, *self._hold_watch)

    async def _watch_held_client(self, scope: trio.CancelScope, done: trio.Event) -> None:
        """Read ahead while a command is held (what arrives is kept for the codec: pipelined messages); the
        end of the stream means the client is gone."""
        try:
            with scope:
                while self.codec.buffered <= HOLD_READ_LIMIT:
                    try:
                        data = await self.client.receive_some(RECEIVE_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        data = b""
                    if not data:
                        break
                    self.codec.receive_data(data)
                else:
                    # Enough read ahead: look for the hang-up without buffering more.
                    while not _hung_up(self.client):
                        await trio.sleep(HOLD_POLL_INTERVAL)
                self._client_gone = True
                self._cancel_decision("client_disconnected")
        finally:
            done.set()

    async def _stop_hold_watch(self) -> None:
        if self._hold_watch is not None:
            scope, done = self._hold_watch
            scope.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()
            self._hold_watch = None

    def _cancel_decision(self, reason: str) -> bool:
        """Cancel the decision in progress (not while gw itself talks to the upstream)."""
        ctx, scope = self._decision, self._decide_scope
        if ctx is None or scope is None or self._measuring:
            return False
        ctx.cancel_reason = reason
        scope.cancel()
        return True

    def cancel_held(self) -> bool:
        """A CancelRequest with this session's key: a held command is cancelled (with its approval request),
        True; False when no command is held (the request goes to the upstream)."""
        if self._hold_watch is None:
            return False
        return self._cancel_decision("client_cancelled")

    # -- measuring writes (rows_over) ------------------------------------------------------------------------
    async def _measure(self, ctx: _Decision) -> Measurement:
        """Run ``ctx``'s statement so that nothing commits yet and count the rows it changes; its answer is
        held in ``ctx.open`` until the verdict keeps or undoes it."""
        if ctx.open is not None:
            return Measurement(ctx.open.rows)
        if ctx.raw is None:
            return Measurement(None, "gw counts rows of simple-query statements only; this one came through "
                                     "the extended query protocol")
        why = unmeasurable(ctx.command)
        if why is not None:
            return Measurement(None, why)
        if self._to_upstream or self._skipping:
            return Measurement(None, "an extended-query batch of the client is still open")
        while self.pending:  # earlier pipelined work of this client finishes first
            await trio.sleep(0.002)
        if self.status == "E":
            return Measurement(0, "the transaction is aborted: the statement cannot change anything")
        plan = AUTOCOMMIT if self.status == "I" else IN_TRANSACTION
        began, answer = await self._exchange(_sql(plan.begin), ctx.raw)
        if any(t == BackendType.ERROR_RESPONSE for t, _ in began):
            raise UpstreamError("gw could not open a transaction to measure a write; it closed the session "
                                "to be safe. Reconnect and retry")
        failed = any(t == BackendType.ERROR_RESPONSE for t, _ in answer)
        if failed:
            # The statement failed: it changed nothing.  In autocommit, end the transaction gw opened; in the
            # client's transaction, leave it aborted, as the failure itself would have.
            if plan is AUTOCOMMIT:
                (ended,) = await self._exchange(_sql(plan.undo))
                answer = [m for m in answer if m[0] != BackendType.READY_FOR_QUERY] + ended[-1:]
            ctx.open = _Measured(answer, None, 0)
            return Measurement(0, "the statement failed")
        tags = [_tag(memoryview(body)[5:]) for t, body in answer if t == BackendType.COMMAND_COMPLETE]
        rows = counted(ctx.command.verb, tags)
        ctx.open = _Measured(answer, plan, rows)
        if self._held_overflow:
            ctx.open.rows = None
            return Measurement(None, f"its RETURNING rows exceed the {MAX_HELD_ANSWER >> 20} MiB gw holds back "
                                     "while it counts")
        if rows is None:
            return Measurement(None, f"the server's answer ({', '.join(tags) or 'no tag'}) does not count the "
                                     "rows changed")
        return Measurement(rows)

    async def _undo(self, ctx: _Decision) -> None:
        """Roll back what was measured (nothing when nothing was)."""
        measured, ctx.open = ctx.open, None
        if measured is None or measured.plan is None:
            return
        with trio.CancelScope(shield=True):
            (answer,) = await self._exchange(_sql(measured.plan.undo))
        if any(t == BackendType.ERROR_RESPONSE for t, _ in answer):
            raise UpstreamError("gw could not roll back a measured write; it closed the session (the server "
                                "rolls back what the session left open). Reconnect and retry")

    async def _keep(self, ctx: _Decision, entry: Pending) -> None:
        """The verdict allows a measured write: keep it (COMMIT in autocommit) and relay its answer."""
        measured, ctx.open = ctx.open, None
        assert measured is not None
        frames = measured.frames
        if measured.plan is not None:
            with trio.CancelScope(shield=True):
                (kept,) = await self._exchange(_sql(measured.plan.keep))
            if any(t == BackendType.ERROR_RESPONSE for t, _ in kept):
                frames = kept  # COMMIT failed (a deferred constraint ...): the client sees that error
            else:
                frames = [m for m in frames if m[0] != BackendType.READY_FOR_QUERY] + kept[-1:]
        self._expect(entry)
        codec = WireCodec(Role.CLIENT)
        codec.receive_data(b"".join(body for _, body in frames))
        await self._relay(codec)

    def _collect(self, t: int, message: bytes) -> None:
        head = self.pending[0]
        assert head.collected is not None and head.done is not None
        if t == _DATA_ROW:
            self._held_bytes += len(message)
            if self._held_bytes > MAX_HELD_ANSWER:
                self._held_overflow = True
                return  # not kept: the measurement is void and the write is rolled back
        head.collected.append((t, message))
        if t == BackendType.READY_FOR_QUERY:
            self.pending.popleft()
            self._measuring = bool(self.pending) and self.pending[0].expect is Expect.MEASURE
            head.done.set()

    async def _exchange(self, *queries: bytes) -> list[list[tuple[int, bytes]]]:
        """Send Query messages of gw's own and return each one's answer (up to its ReadyForQuery), none of it
        relayed to the client.  Only between the client's commands (nothing else is pending)."""
        entries = [Pending(Expect.MEASURE, collected=[], done=trio.Event()) for _ in queries]
        self._held_bytes, self._held_overflow = 0, False
        for entry in entries:
            self.pending.append(entry)
        self._measuring = True
        try:
            await self.up.send(b"".join(queries))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise UpstreamError(f"gw lost its connection to the upstream database {self.up.target.describe()} "
                                f"({e}); reconnect") from None
        for entry in entries:
            assert entry.done is not None
            await entry.done.wait()
        return [entry.collected or [] for entry in entries]

    # -- upstream -> client ----------------------------------------------------------------------------------
    async def _upstream_pump(self) -> None:
        stream = self.up.stream
        codec = self.up.codec
        while True:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, OSError) as e:
                await self._upstream_lost(str(e))
                return
            if not data:
                await self._upstream_lost("it closed the connection")
                return
            codec.receive_data(data)
            await self._relay(codec)

    async def _upstream_lost(self, why: str) -> None:
        if not self._fatal_relayed:
            await self._fatal(E.CONNECTION_FAILURE,
                              f"gw lost its connection to the upstream database {self.up.target.describe()} "
                              f"({why}); reconnect")
        self._finish("upstream_closed")

    async def _relay(self, codec: WireCodec) -> None:
        """Relay every complete message in the upstream buffer: contiguous pass-through messages go out as
        one slice of the received bytes, in one write per chunk."""
        out: list[bytes | memoryview] = []
        buf = codec.buffer
        run_start = run_end = 0
        try:
            while (f := codec.next_frame()) is not None:
                t, start, end = f
                if codec.buffer is not buf:
                    if run_end > run_start:
                        out.append(memoryview(buf)[run_start:run_end])
                    buf = codec.buffer
                    run_start = run_end = start
                verdict: bytes | bool
                if self._measuring and self.pending and self.pending[0].expect is Expect.MEASURE:
                    self._collect(t, buf[start:end])
                    verdict = False
                elif t == _DATA_ROW or t == _COPY_DATA:
                    if not self._rows_slow:
                        verdict = True
                        end = codec.skip_run(t)  # the rest of the rows in this chunk go with it
                    elif t == _DATA_ROW:
                        head = self.pending[0]
                        if head.resolve_rows:
                            verdict = await self._data_row(head, buf[start + 5:end])
                        elif head.columnwise:
                            end = codec.skip_run(t)  # the rest of the rows in this chunk, in one batch
                            verdict = self._filter_rows(head, buf, start, end)
                        else:
                            verdict = self._filter_row(head, buf[start + 5:end])
                    else:
                        verdict = self._copy_data(self.pending[0], memoryview(buf)[start + 5:end])
                elif t in _MAY_AWAIT and self.pending and self.pending[0].wants_rows:
                    verdict = await self._open_result(t, memoryview(buf)[start + 5:end])
                else:
                    verdict = self._on_backend(t, memoryview(buf)[start + 5:end])
                if verdict is True:
                    if run_end != start:
                        if run_end > run_start:
                            out.append(memoryview(buf)[run_start:run_end])
                        run_start = start
                    run_end = end
                    continue
                if run_end > run_start:
                    out.append(memoryview(buf)[run_start:run_end])
                run_start = run_end = end
                if verdict is not False:
                    out.append(verdict)
        except ProtocolError as e:
            raise UpstreamError(f"the upstream database sent invalid protocol data ({e}); gw closed the "
                                "session") from None
        if run_end > run_start:
            out.append(memoryview(buf)[run_start:run_end])
        if self._progress is not None:
            self._progress.set()
            self._progress = None
        if out:
            await self.writer.send(out[0] if len(out) == 1 else b"".join(out))
        if self._completions:
            done, self._completions = self._completions, []
            for run, outcome in done:
                await run.complete(outcome)

    def _pop(self, *, ok: bool = False, skipped: bool = True) -> Pending | None:
        """The head entry is answered: move on to the next.  A Parse or Bind it stood for is established
        (``ok``), rejected, or -- answered by nothing, the default -- skipped by the server."""
        entry = self.pending.popleft() if self.pending else None
        if entry is not None and entry.run is not None and entry.outcome is not None:
            self._completions.append((entry.run, entry.outcome))
        if entry is not None:
            if entry.expect is Expect.PARSE and entry.statement is not None:
                self.names.settle(entry.statement, ok, skipped=skipped)
            elif entry.expect is Expect.BIND and entry.portal is not None:
                self.names.settle(entry.portal, ok, skipped=skipped)
            elif entry.prepares:
                for _, created in entry.prepares:  # the Query ended before these completed
                    self.names.settle(created, False)
                entry.prepares = None
        head = self.pending[0] if self.pending else None
        self._rows_slow = head is not None and (head.filter is not None or head.resolve_rows
                                                or head.withhold is not None)
        return entry

    def _skip_to_sync(self, error: ErrorResponse) -> None:
        """After an error the upstream ignores everything up to Sync; what gw had queued for it will never be
        answered.  Commands among them end with the batch's error."""
        while self.pending and self.pending[0].expect not in (Expect.SYNC, Expect.QUERY):
            entry = self.pending[0]
            if entry.outcome is not None:
                entry.outcome.status = OutcomeStatus.ERROR
                entry.outcome.error_code = error.code
                entry.outcome.error_message = ("not run: an earlier message of the batch failed "
                                               f"({error.message})")
            self._pop()

    async def _open_result(self, t: int, body: memoryview) -> bytes | bool:
        """A result starts while a stage may want its rows: resolve its columns (may await the catalog)."""
        head = self.pending[0]
        if t == BackendType.ROW_DESCRIPTION:
            if head.expect is Expect.QUERY and head.command is not None:
                await self._open_rows(head, RowDescription.decode(body).fields, head.command.text)
                return True
            return self._on_backend(t, body)
        if head.command is not None:  # COPY_OUT_RESPONSE
            await self._open_copy_out(head, body)
        return True

    def _on_backend(self, t: int, body: memoryview) -> bytes | bool:
        """Act on one backend message: True relays it untouched, False drops it, bytes replace it."""
        head = self.pending[0] if self.pending else None
        if t == BackendType.COMMAND_COMPLETE:
            tag = _tag(body)
            if head is not None and head.prepares and tag == head.prepares[0][0]:
                self.names.settle(head.prepares.pop(0)[1], True)
            if head is not None and head.outcome is not None:
                rows = rows_from_tag(tag)
                if rows is not None:
                    head.outcome.rows = (head.outcome.rows or 0) + rows
                head.outcome.tag = tag
            if head is not None and head.withhold is not None:
                reason = head.withhold
                head.withhold = None
                if head.outcome is not None:
                    head.outcome.status, head.outcome.error_code = OutcomeStatus.ERROR, E.SYSTEM_ERROR
                    head.outcome.error_message = reason
                if head.expect is Expect.EXECUTE:
                    self._pop()
                else:
                    head.filter = None
                    self._pop_filter(head)
                return error_message("ERROR", E.SYSTEM_ERROR, reason)
            if head is not None and head.command is not None and head.wants_rows:
                if self.sr.wants_sources:
                    index = head.statement_index if head.expect is Expect.QUERY else None
                    self.provenance.completed(head.command.text, index, tag)
                else:  # nothing reads lineage: only keep the listener's catalog from going stale
                    self.provenance.catalog_changed(tag)
            if head is not None and head.expect is Expect.EXECUTE:
                self._pop()
            elif head is not None:
                head.filter = None
                head.statement_index += 1
                self._pop_filter(head)
            return True
        if t == BackendType.READY_FOR_QUERY:
            self.status = chr(body[0]) if len(body) == 1 else self.status
            while self.pending and self.pending[0].expect not in (Expect.SYNC, Expect.QUERY):
                self._pop()  # answers lost to an error we did not see; keep in step with the upstream
            self._pop()
            return True
        if t == BackendType.ERROR_RESPONSE:
            return self._error(head, ErrorResponse.decode(body))
        if t == BackendType.ROW_DESCRIPTION:
            return self._row_description(head, body)
        if t == BackendType.PARSE_COMPLETE:
            return self._answered(head, Expect.PARSE)
        if t == BackendType.BIND_COMPLETE:
            return self._answered(head, Expect.BIND)
        if t == BackendType.CLOSE_COMPLETE:
            return self._answered(head, Expect.CLOSE)
        if t == BackendType.NO_DATA:
            if head is not None and head.expect is Expect.DESCRIBE:
                if head.portal is not None:
                    head.portal.fields = ()
                    head.portal.describing = False
                internal = head.internal
                self._pop()
                return not internal
            return True
        if t == BackendType.PARAMETER_DESCRIPTION:
            return not (head is not None and head.internal)
        if t in (BackendType.EMPTY_QUERY_RESPONSE, BackendType.PORTAL_SUSPENDED):
            if head is not None and head.expect is Expect.QUERY:
                head.statement_index += 1
            if head is not None and head.expect is Expect.EXECUTE:
                if head.outcome is not None and t == BackendType.PORTAL_SUSPENDED:
                    head.outcome.tag = "SUSPENDED"
                self._pop()
            return True
        if t in _SERVER_TEXT:
            if t == BackendType.PARAMETER_STATUS:
                self._parameter_status(ParameterStatus.decode(body))
            return self._server_text(t, body, head)
        # Never relay upstream keys or authentication requests after start-up; everything else (notices,
        # notifications, parameter status, COPY responses) goes through as it came.
        return t != BackendType.BACKEND_KEY_DATA and t != BackendType.AUTHENTICATION

    def _pop_filter(self, head: Pending) -> None:
        self._rows_slow = head.resolve_rows or head.filter is not None or head.withhold is not None

    def _answered(self, head: Pending | None, expect: Expect) -> bool:
        if head is not None and head.expect is expect:
            internal = head.internal
            self._pop(ok=True)
            return not internal
        log.warning("session %s: upstream sent an unexpected %s; relaying it", self.sr.session.id,
                    expect.name)
        return True

    def _text_policy(self, head: Pending | None) -> tuple[bool, Any, str] | None:
        """(touches a masked column, detector function, the statement's text) for the server text arriving
        now; None when the pipeline masks nothing."""
        command = head.command if head is not None else None
        if command is None or _TEXT not in command.attributes:
            command = self._last_mask_command
        if command is None or _TEXT not in command.attributes:
            return None
        return bool(command.attributes.get(_TOUCHES, True)), command.attributes.get(_TEXT), command.text

    def _parameter_status(self, status: ParameterStatus) -> None:
        """Follow the settings that decide how the server reads statement text.  An encoding gw cannot lex
        ends the session before anything else is forwarded (its statements never reach the lexer)."""
        if status.name == "standard_conforming_strings":
            self.standard_strings = status.value == "on"
        elif status.name == "client_encoding":
            self.client_encoding = status.value
            if not encoding_is_safe(status.value):
                raise UpstreamError(_encoding_message(status.value) + "; gw closed the session",
                                    sqlstate=E.FEATURE_NOT_SUPPORTED)

    def _server_text(self, t: int, body: memoryview, head: Pending | None) -> bytes | bool:
        policy = self._text_policy(head)
        if policy is None:
            return True
        touches, detect, statement = policy
        if t == BackendType.NOTICE_RESPONSE:
            notice = NoticeResponse.decode(body)
            masked = mask_error(notice, touches, detect, statement)
        elif t == BackendType.NOTIFICATION_RESPONSE:
            notification = NotificationResponse.decode(body)
            masked_n = mask_notification(notification, touches, detect)
            if masked_n is notification:
                return True
            return masked_n.encode()
        else:
            parameter = ParameterStatus.decode(body)
            masked_p = mask_parameter(parameter, touches, detect)
            return True if masked_p is parameter else masked_p.encode()
        return True if masked is notice else masked.encode()

    def _error(self, head: Pending | None, err: ErrorResponse) -> bytes | bool:
        if err.severity in ("FATAL", "PANIC"):
            self._fatal_relayed = True
        policy = self._text_policy(head)
        masked_error: bytes | None = None
        if policy is not None:
            masked = mask_error(err, *policy)
            if masked is not err:
                assert isinstance(masked, ErrorResponse)
                err = masked
                masked_error = masked.encode()
        if head is None:
            return masked_error if masked_error is not None else True
        if head.outcome is not None and head.outcome.status == "ok":
            head.outcome.status = OutcomeStatus.ERROR
            head.outcome.error_code = err.code
            head.outcome.error_message = err.message
        replacement = head.replacement
        head.replacement = None
        if head.expect is Expect.QUERY or head.expect is Expect.SYNC:
            # The Query goes on to ReadyForQuery; rows of the failed statement are over, and so are the
            # statements after it.
            if head.prepares:
                for _, created in head.prepares:
                    self.names.settle(created, False)
                head.prepares = None
            head.filter = None
            head.withhold = None
            self._pop_filter(head)
        else:
            if head.portal is not None and head.expect is Expect.DESCRIBE:
                head.portal.describing = False
            internal = head.internal
            self._pop(skipped=False)
            self._skip_to_sync(err)
            if internal and replacement is None:
                return masked_error if masked_error is not None else True  # the client must learn it failed
        if replacement is not None:
            return replacement
        return masked_error if masked_error is not None else True

    def _row_description(self, head: Pending | None, body: memoryview) -> bool:
        """A Describe's answer: remember the columns when a stage may want rows (simple-query results with
        wanted rows go through :meth:`_open_result`)."""
        if head is None:
            return True
        if head.expect is Expect.DESCRIBE:
            internal = head.internal
            if head.wants_rows:
                fields = RowDescription.decode(body).fields
                if head.portal is not None:
                    head.portal.fields = fields
                    head.portal.describing = False
                if head.statement is not None:
                    head.statement.fields = fields
            elif head.portal is not None:
                head.portal.describing = False
            self._pop()
            return not internal
        return True

    async def _open_rows(self, head: Pending, fields: Sequence[FieldDescription], text: str) -> None:
        """Columns and the pipeline's row filter for the result that starts now."""
        assert head.run is not None
        head.resolve_rows = False
        index = head.statement_index if head.expect is Expect.QUERY else None
        if not head.run.wants_sources:  # no stage reads sources: no lineage, no catalog lookup
            head.filter = head.run.rows(wire_columns(fields))
            self._columnwise(head, len(fields))
            self._pop_filter(head)
            return
        try:
            columns = await self.provenance.columns(fields, text, index)
        except UpstreamError as e:
            log.error("session %s: cannot resolve result columns: %s", self.sr.session.id, e)
            head.withhold = ("gw could not determine which table columns this result comes from (the catalog "
                             "lookup failed), so it withheld the rows as policy requires; retry in a moment")
            head.filter = None
        else:
            head.filter = head.run.rows(columns)
            self._columnwise(head, len(fields))
        self._pop_filter(head)

    async def _open_copy_out(self, head: Pending, body: memoryview) -> None:
        """A COPY TO STDOUT starts while a stage may filter rows: learn its columns (the lineage of the very
        statement that runs, as the lexer splits it), then filter text rows, or withhold the data when the
        filter cannot be honoured (fail closed)."""
        assert head.run is not None
        response = CopyOutResponse.decode(body)
        index = head.statement_index if head.expect is Expect.QUERY else None
        tokens = statement_tokens(self.handler.classifier, head.run.command.text, index)
        copy = parse_copy_tokens(tokens) if tokens else None
        width = len(response.column_formats)
        if copy is None or not head.run.wants_sources:
            sources: list[tuple[str, ...]] = [UNKNOWN_SOURCES] * width
        else:
            try:
                sources = await self.provenance.sources(copy.query, None, width)
            except UpstreamError as e:
                log.error("session %s: cannot resolve COPY columns: %s", self.sr.session.id, e)
                head.withhold = ("gw could not determine the columns of this COPY, so it withheld the data as "
                                 "the masking policy requires; use SELECT instead")
                self._pop_filter(head)
                return
        columns = [Column(name=f"column{i + 1}", type_name="text", sources=s) for i, s in enumerate(sources)]
        head.filter = head.run.rows(columns)
        if head.filter is not None and (copy is None or not copy.plain or response.format != 0):
            head.filter = None
            shown = f"COPY {copy.format}" if copy is not None and copy.format != "text" else \
                "this COPY's"
            # Which stage needs the rows: a masking rule, or only a stage that reads them (the session recording).
            why = (f"a masking rule applies to this result and gw cannot mask {shown} output"
                   if head.run.rows(columns, transforming=True) is not None else
                   f"this session's result rows are recorded and gw cannot read {shown} output to record it")
            head.withhold = (f"{why}; use COPY ... TO STDOUT in text format with the default options (no "
                             "DELIMITER, NULL, HEADER), or SELECT")
        self._pop_filter(head)

    def _copy_data(self, head: Pending | None, body: memoryview) -> bytes | bool:
        if head is None:
            return True
        if head.withhold is not None:
            return False
        filt = head.filter
        if filt is None:
            return True
        values = decode_text_row(bytes(body))
        try:
            new = filt.row(values)
        except Exception as e:  # noqa: BLE001 - a failing filter ends the statement, never the session
            # Not log.exception: a traceback could quote the row's values.
            log.error("session %s: a COPY row filter failed (%s)", self.sr.session.id, type(e).__name__)
            self._filter_failed(head)
            return False
        if new is values:
            return True
        return frame(_COPY_DATA, encode_text_row(new))

    async def _data_row(self, head: Pending, data: bytes) -> bytes | bool:
        """The first row of an extended-protocol result: resolve its columns, then filter it."""
        portal = head.portal
        fields = portal.fields if portal is not None else None
        await self._open_rows(head, fields or (), head.command.text if head.command else "")
        return self._filter_row(head, data)

    def _filter_row(self, head: Pending, data: bytes) -> bytes | bool:
        """One DataRow body through the result's filter; only the values the filter changed are re-encoded."""
        if head.withhold is not None:
            return False
        filt = head.filter
        if filt is None:
            return True
        values, offsets = data_row_offsets(data)
        original = tuple(values)  # what is spliced is judged against these, whatever a filter does to its list
        try:
            new = filt.row(values)
        except Exception as e:  # noqa: BLE001 - a failing filter ends the statement, never the session
            # Not log.exception: a traceback could quote the row's values.
            log.error("session %s: a row filter failed (%s)", self.sr.session.id, type(e).__name__)
            self._filter_failed(head)
            return False
        if new is values:
            return True
        return splice_data_row(data, offsets, original, new)

    @staticmethod
    def _columnwise(head: Pending, width: int) -> None:
        # getattr, not isinstance() of the runtime-checkable protocol: microseconds per result otherwise.
        head.columnwise = getattr(head.filter, "columnwise", None) is not None
        head.width = width
        head.batch = None

    def _filter_rows(self, head: Pending, buf: bytes, start: int, end: int) -> bytes | bool:
        """The complete DataRows of ``buf[start:end]`` through the result's filter: in one batch when it
        offers column edits for the rows that come now, else row by row."""
        if head.withhold is not None:
            return False
        filt = head.filter
        if filt is None:
            return True
        try:
            offer: Callable[[], ColumnEdits | None] | None = getattr(filt, "columnwise", None)
            edits = offer() if offer is not None else None
            if edits is None:
                return self._filter_each_row(head, buf, start, end)
            batch = head.batch
            if batch is None or batch.edits is not edits:
                batch = head.batch = RowBatch(edits, head.width)
            edited = batch.apply(buf, start, end)
        except ProtocolError:
            raise
        except RowShapeChanged:  # rows unlike the result's columns: each row through the filter as before
            return self._filter_each_row(head, buf, start, end)
        except Exception as e:  # noqa: BLE001 - a failing filter ends the statement, never the session
            log.error("session %s: a row filter failed (%s)", self.sr.session.id, type(e).__name__)
            self._filter_failed(head)
            return False
        return True if edited is None else edited

    def _filter_each_row(self, head: Pending, buf: bytes, start: int, end: int) -> bytes:
        """The complete DataRows of ``buf[start:end]`` through :meth:`_filter_row`, one at a time."""
        parts: list[bytes] = []
        pos = start
        while pos < end:
            (length,) = struct.unpack_from("!i", buf, pos + 1)
            row_end = pos + 1 + length
            verdict = self._filter_row(head, buf[pos + 5:row_end])
            if verdict is True:
                parts.append(buf[pos:row_end])
            elif verdict is not False:
                parts.append(verdict)
            pos = row_end
        return b"".join(parts)

    def _filter_failed(self, head: Pending) -> None:
        head.filter = None
        head.withhold = ("gw could not apply the masking policy to a row of this result, so it withheld the "
                         "rest of the result as policy requires; simplify the query (plain columns, SELECT "
                         "instead of COPY) and retry")
        self._pop_filter(head)


_BINARY_PARAMS: dict[int, Any] = {
    16: lambda b: b == b"\x01",
    20: lambda b: int.from_bytes(b, "big", signed=True),
    21: lambda b: int.from_bytes(b, "big", signed=True),
    23: lambda b: int.from_bytes(b, "big", signed=True),
    700: lambda b: struct.unpack("!f", b)[0],
    701: lambda b: struct.unpack("!d", b)[0],
    25: lambda b: b.decode("utf-8", "replace"),
    1043: lambda b: b.decode("utf-8", "replace"),
}


def _params(bind: Bind, types: tuple[int, ...]) -> tuple[Any, ...]:
    """Parameters as stages see them: text-format values as str; binary ones decoded when the Parse declared
    a common scalar type (int, bool, float, text), else as bytes."""
    out: list[Any] = []
    for i, v in enumerate(bind.params):
        if v is None:
            out.append(None)
        elif bind.param_format(i) == 0:
            out.append(v.decode("utf-8", "replace"))
        else:
            decode = _BINARY_PARAMS.get(types[i]) if i < len(types) else None
            try:
                out.append(decode(v) if decode is not None else v)
            except (struct.error, ValueError):
                out.append(v)
    return tuple(out)


#: RETURNING rows of a measured write gw holds back at most; beyond, the count counts as unknown (fail closed).
MAX_HELD_ANSWER = 16 << 20
#: While a command is held gw reads ahead this much of what the client sends, then only watches for hang-up.
HOLD_READ_LIMIT = 1 << 20
HOLD_POLL_INTERVAL = 0.5


def _sql(text: str) -> bytes:
    return Query(text).encode()


def _hung_up(stream: trio.abc.Stream) -> bool:
    """Whether the peer closed or reset a TCP (or TLS-over-TCP) stream, without reading from it."""
    inner: Any = stream
    while not isinstance(inner, trio.SocketStream):
        inner = getattr(inner, "transport_stream", None)
        if inner is None:
            return False
    try:
        poller = select.poll()
        poller.register(inner.socket.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


__all__ = ["REFUSAL_PORTAL", "ProxySession", "error_message", "refusal"]


def _merge(outer: Classification, inner: Classification) -> Classification:
    """A statement wrapping a prepared one (EXPLAIN [ANALYZE] / CREATE TABLE AS EXECUTE name): judged as the
    prepared statement (EXPLAIN ANALYZE runs it; a plain EXPLAIN is judged the same, to be safe), raised to
    ``ddl`` for CREATE TABLE AS; the wrapper's verb is added.  The wrapper's own classification is
    ``unknown`` only because of the EXECUTE inside, so it does not count."""
    from gw.model import Kind
    from gw_sqlanalysis.model import KIND_DANGER

    kind = inner.kind
    if outer.verb == "create" and KIND_DANGER[Kind.DDL] > KIND_DANGER[kind]:
        kind = Kind.DDL
    verbs = tuple(v for v in dict.fromkeys((inner.verb, *inner.verbs, outer.verb)) if v)
    return dataclasses.replace(inner, kind=kind, verbs=verbs, flags=inner.flags | {"wraps_execute"},
                               objects=tuple(dict.fromkeys((*inner.objects, *outer.objects))))


def _encoding_message(name: str) -> str:
    return (f"gw does not support client_encoding {name!r}: in it a multibyte character can contain the byte "
            "of a quote or backslash, so gw could not read statements as the server does; use UTF8 (or "
            "another server encoding: LATIN1, WIN1252, EUC_JP ...) and convert on the client")
