"""The ``record`` stage: the session as the agent saw it, for replay and compliance evidence.

It observes (``transforms = False``), so core runs it after transforming stages such as mask: the rows and
bytes it records are the masked ones.  Nothing is written on the command path: events go to a per-session
buffer in memory and a background task writes every session's pending events in one store append -- when a
command completes (at most every ``GATHER`` seconds while commands complete back to back), when a buffer
passes ``flush_bytes``, every ``flush_interval``, at session end (awaited) and at shutdown
(:meth:`Record.close`).  If the store keeps failing and the unwritten events pass
``max_buffer``, new commands are refused (:meth:`Record.check`): recording is policy, and policy fails closed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

import trio
from gw.config import Duration
from gw.errors import PluginError
from gw.model import Column, Command, DenyCode, Outcome, Session, Verdict
from gw.stage import CommandContext, RowFilter, Stage, StageOptions, StreamFilter
from gw.store import Store
from pydantic import Field, field_validator

from .recording import (
    DEFAULT_REDACT_KEYS,
    FORMAT,
    INDEX,
    INPUT_CHANNELS,
    OUTPUT_CHANNELS,
    RESIZE_CHANNEL,
    STREAM,
    TERMINAL_CHANNELS,
    VERSION,
    Attributes,
    EventType,
    Redactor,
    Rows,
    Sent,
    utf8_incomplete_tail,
)

log = logging.getLogger("gw.record")

#: A live session's index document is refreshed (command count) at most this often, in seconds.
INDEX_REFRESH = 10.0
#: While commands complete back to back, their events are written at most this often (seconds): one append
#: carries every command completed in the meantime instead of one store commit per few commands.
GATHER = 0.05
#: An event not yet written: ``(t, type, payload, approximate stored size)``.
_Event = tuple[float, str, dict[str, Any], int]
#: Rough per-event overhead in the stored JSON, for the size thresholds.
_EVENT_OVERHEAD = 48


class RecordOptions(StageOptions):
    """Keys of ``{ use = "record", ... }``; every one is described in docs/plugins/record.md."""

    #: Result rows recorded per command (after masking); the result summary still has the full count.
    max_rows: int = Field(100, ge=0)
    #: Bytes of rows and non-terminal streams (stdout, HTTP bodies ...) recorded per command.
    max_bytes: int = Field(1024 * 1024, ge=0)
    #: Bytes of terminal output (and input, with record_input) recorded per command: an interactive shell is
    #: one command, and asciicast export needs its output.
    max_terminal_bytes: int = Field(64 * 1024 * 1024, ge=0)
    #: Record what is typed into terminals (``pty-input``, ``stdin``).  Off by default: it catches passwords
    #: typed at prompts that do not echo.
    record_input: bool = False
    #: Detectors applied to what the agent sent (command text, parameters, request bodies, typed input) and to
    #: error messages, notices and reasons, which no mask stage rewrites.  ``"all"``: every installed one.
    redact_detectors: list[str] | Literal["all"] = "all"
    #: Keys whose values are never recorded in attributes (HTTP headers ...), added to the built-in list
    #: (authorization, cookie, set-cookie, x-api-key, password, token ...).  Case-insensitive globs.
    redact_keys: list[str] = Field(default_factory=list)
    #: Longest time events wait in memory before they are written.
    flush_interval: Duration = timedelta(seconds=1)
    #: A session buffer this large is written at once; also the largest stored record.
    flush_bytes: int = Field(256 * 1024, ge=1024)
    #: When the store fails and this many bytes wait unwritten, new commands are refused (fail closed).
    max_buffer: int = Field(16 * 1024 * 1024, ge=1024)

    @field_validator("flush_interval")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() <= 0:
            raise ValueError("flush_interval must be longer than 0s (for example \"1s\")")
        return v


class _Channel:
    """Byte counts of one channel of one command, for the result summary."""

    __slots__ = ("content_type", "recorded", "seen", "truncated")

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.seen = 0
        self.recorded = 0
        self.truncated = False

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bytes": self.seen, "recorded": self.recorded}
        if self.content_type:
            out["content_type"] = self.content_type
        return out


class _CommandTape:
    """What is captured for one command until it completes: columns, rows, the byte budgets, open captures."""

    __slots__ = (
        "binary",
        "budget",
        "captures",
        "channels",
        "columns",
        "rows",
        "rows_full",
        "rows_truncated",
        "seq",
        "terminal_budget",
    )

    def __init__(self, seq: int, budget: int, terminal_budget: int) -> None:
        self.seq = seq
        self.columns: list[str] | None = None
        self.binary: tuple[int, ...] = ()
        self.rows: list[list[bytes | None]] = []
        self.rows_full = False
        self.rows_truncated = False
        self.budget = budget
        self.terminal_budget = terminal_budget
        self.channels: dict[str, _Channel] = {}
        self.captures: list[_Capture] = []

    def allow(self, terminal: bool, n: int) -> int:
        """Take up to ``n`` bytes from the command's budget; returns how many may be recorded."""
        if terminal:
            granted = min(n, self.terminal_budget)
            self.terminal_budget -= granted
        else:
            granted = min(n, self.budget)
            self.budget -= granted
        return granted


class _SessionTape:
    """One session's recording in progress: the header, events not yet written, index bookkeeping."""

    __slots__ = (
        "commands",
        "end_reason",
        "ended",
        "events",
        "header",
        "header_stored",
        "index_at",
        "index_commands",
        "index_final",
        "origin",
        "pending_bytes",
        "session",
    )

    def __init__(self, session: Session, origin: float, header: dict[str, Any]) -> None:
        self.session = session
        self.origin = origin
        self.header = header
        self.header_stored = False
        self.events: list[_Event] = []
        self.pending_bytes = 0
        self.commands = 0
        self.ended: float | None = None
        self.end_reason = ""
        self.index_commands = -1
        self.index_at = 0.0
        self.index_final = False

    def index_due(self, now: float) -> bool:
        if not self.header_stored or self.index_final:
            return False
        if self.index_commands < 0 or self.ended is not None:
            return True
        return self.commands != self.index_commands and now - self.index_at >= INDEX_REFRESH

    @property
    def done(self) -> bool:
        return self.index_final and not self.events


class Record(Stage):
    """Records sessions into the store; see the module docstring and docs/plugins/record.md."""

    name = "record"
    Options = RecordOptions

    def __init__(self, options: RecordOptions, services: Any, *, pipeline: str = "", index: int = 0) -> None:
        super().__init__(options, services, pipeline=pipeline, index=index)
        self.store: Store = services.require_store("record")
        self.redactor = Redactor(self._detectors(options.redact_detectors),
                                 [*DEFAULT_REDACT_KEYS, *options.redact_keys])
        #: Monotonic clock for event times (a test may replace it).
        self.clock: Callable[[], float] = time.monotonic
        self._tapes: dict[str, _SessionTape] = {}
        self._pending_total = 0
        self._lock = trio.Lock()
        self._wake = trio.Event()
        #: A buffer passed ``flush_bytes``: write it without waiting for the gathering window.
        self._urgent = False
        self._closing = False
        self._flusher_done: trio.Event | None = None
        #: Why the last write failed, while the store is failing.
        self.failure: str | None = None

    def _detectors(self, names: list[str] | Literal["all"]) -> list[Any]:
        try:
            return self.services.detectors(names)
        except PluginError as e:
            raise ValueError(f"redact_detectors: {e}") from None

    # -- lifetime -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._flusher_done is None:
            self._flusher_done = trio.Event()
            self.services.spawn(self._flush_loop, name=f"gw-record flusher ({self.pipeline})")

    async def close(self) -> None:
        """Write everything still buffered; sessions still open are ended with reason ``gateway_stopped``."""
        self._closing = True
        self._wake.set()
        if self._flusher_done is not None:
            await self._flusher_done.wait()
        for tape in list(self._tapes.values()):
            if tape.ended is None:
                self._end(tape, "gateway_stopped")
        await self.flush()
        lost = sum(len(t.events) for t in self._tapes.values())
        if lost:
            log.error("record: %d event(s) of %d session(s) could not be written before shutdown (%s)", lost,
                      len(self._tapes), self.failure or "store error")

    async def _flush_loop(self) -> None:
        assert self._flusher_done is not None
        interval = self.options.flush_interval.total_seconds()
        last = -GATHER
        try:
            while not self._closing:
                with trio.move_on_after(interval):
                    await self._wake.wait()
                if not (self._urgent or self._closing):
                    await trio.sleep_until(last + GATHER)  # returns at once after a quiet spell
                self._wake, self._urgent = trio.Event(), False
                last = trio.current_time()
                try:
                    await self.flush()
                except Exception:  # a system task must not raise; the next pass retries
                    log.exception("record: flushing recordings failed")
        finally:
            self._flusher_done.set()

    # -- sessions -------------------------------------------------------------------------------------------
    async def session_started(self, session: Session) -> None:
        self._tape(session)
        self._wake.set()  # the index document makes the live session visible to `gw sessions list`

    async def session_ended(self, session: Session, reason: str) -> None:
        tape = self._tape(session)
        self._end(tape, reason)
        await self.flush()

    def _end(self, tape: _SessionTape, reason: str) -> None:
        # Commands still in flight were completed before the session ended (core guarantees it).
        self._emit(tape, EventType.END, {"reason": Sent(reason), "commands": tape.commands})
        tape.ended = time.time()
        tape.end_reason = reason

    def _tape(self, session: Session) -> _SessionTape:
        tape = self._tapes.get(session.id)
        if tape is None:
            # Times are relative to the session's start even when this stage first hears of the session
            # mid-way (a reloaded pipeline takes over existing sessions).
            origin = self.clock() - max(0.0, time.time() - session.started_at)
            tape = _SessionTape(session, origin, self._header(session))
            self._tapes[session.id] = tape
        return tape

    def _header(self, s: Session) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "session": s.id, "listener": s.listener,
            "protocol": s.protocol, "subject": s.identity.subject, "groups": list(s.identity.groups),
            "provider": s.identity.provider, "claimed_user": Sent(s.claimed_user), "client": s.client_address,
            "upstream": s.upstream, "gateway": self.services.gateway_name, "started": s.started_at,
            "attributes": Attributes(dict(s.attributes)),
        }

    def _emit(self, tape: _SessionTape, kind: str, payload: dict[str, Any], size: int = 0) -> None:
        t = round(max(0.0, self.clock() - tape.origin), 6)
        size += _EVENT_OVERHEAD
        tape.events.append((t, kind, payload, size))
        tape.pending_bytes += size
        self._pending_total += size
        if tape.pending_bytes >= self.options.flush_bytes:
            self._urgent = True
            self._wake.set()

    @property
    def refusing(self) -> bool:
        """True while the store fails and too much waits unwritten: new commands are refused."""
        return self.failure is not None and self._pending_total > self.options.max_buffer

    # -- commands -------------------------------------------------------------------------------------------
    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        """Refuse while recordings cannot be written and too much waits in memory (fail closed); deciding
        here rather than raising later lets audit record the refusal as what it is."""
        if not self.refusing:
            return None
        return Verdict.deny(f"gw cannot write session recordings right now ({self.failure}); the command was "
                            "not run because this listener records every session. Retry later or tell the "
                            "gateway operator", code=DenyCode.UNAVAILABLE, rule="recording unavailable")

    async def decided(self, command: Command, verdict: Verdict) -> None:
        tape = self._tape(command.session)
        tape.commands += 1
        query: dict[str, Any] = {
            "seq": command.seq, "text": Sent(command.text), "language": command.language,
            "kind": command.kind.value, "verb": Sent(command.verb),
        }
        if command.objects:
            query["objects"] = [Sent(o) for o in command.objects]
        if command.flags:
            query["flags"] = sorted(command.flags)
        if command.params:
            query["params"] = [Sent(p) if isinstance(p, (str, bytes)) else p for p in command.params]
        if command.attributes:
            query["attributes"] = Attributes(dict(command.attributes))
        self._emit(tape, EventType.QUERY, query, len(command.text))
        decision: dict[str, Any] = {"seq": command.seq, "decision": verdict.decision.value}
        if verdict.stage:
            decision["stage"] = verdict.stage
        if verdict.rule:
            decision["rule"] = verdict.rule
        if verdict.reason:
            decision["reason"] = Sent(verdict.reason)
        if verdict.code is not None:
            decision["code"] = verdict.code.value
        if verdict.request_id:
            decision["request_id"] = verdict.request_id
        if verdict.approved_by:
            decision["approved_by"] = list(verdict.approved_by)
        self._emit(tape, EventType.VERDICT, decision)

    def _command(self, command: Command) -> _CommandTape:
        """What this command has recorded so far: its state, until it completes."""
        return self.state(command, lambda: _CommandTape(command.seq, self.options.max_bytes,
                                                        self.options.max_terminal_bytes))

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        ct = self._command(command)
        ct.columns = [c.name for c in columns]
        ct.binary = tuple(i for i, c in enumerate(columns) if c.binary)
        if self.options.max_rows == 0 or self.refusing:
            return None
        return _RowCapture(ct, self.options.max_rows)

    def stream(self, command: Command, channel: str, content_type: str = "") -> StreamFilter | None:
        if self.refusing or (channel in INPUT_CHANNELS and not self.options.record_input):
            return None
        tape = self._tape(command.session)
        ct = self._command(command)
        if channel == RESIZE_CHANNEL:
            return _ResizeCapture(self, tape, command.seq)
        stats = ct.channels.get(channel)
        if stats is None:
            stats = ct.channels[channel] = _Channel(content_type)
        capture: _Capture
        if channel in OUTPUT_CHANNELS:
            capture = _OutputCapture(self, tape, ct, channel, stats)
        else:
            capture = _SentCapture(self, tape, ct, channel, stats)
        ct.captures.append(capture)
        return capture

    async def completed(self, command: Command, outcome: Outcome) -> None:
        tape = self._tape(command.session)
        ct = self.state_if_any(command, _CommandTape)
        if ct is not None:
            self._close_command(tape, ct)
        seq = command.seq
        for notice in outcome.notices:
            self._emit(tape, EventType.NOTICE, {"seq": seq, "text": Sent(notice)}, len(notice))
        if outcome.error_code or outcome.error_message:
            message = outcome.error_message or ""
            error = {"seq": seq, "code": outcome.error_code, "message": Sent(message)}
            self._emit(tape, EventType.ERROR, error, len(message))
        result: dict[str, Any] = {"seq": seq, "status": outcome.status, "rows": outcome.rows,
                                  "tag": outcome.tag, "duration": round(outcome.duration, 6)}
        if ct is not None:
            if ct.columns is not None:
                result["columns"] = ct.columns
            if ct.channels:
                result["channels"] = {name: c.summary() for name, c in ct.channels.items()}
            if ct.rows_truncated or any(c.truncated for c in ct.channels.values()):
                result["truncated"] = True
        if outcome.notes:
            result["notes"] = Attributes(dict(outcome.notes))
        self._emit(tape, EventType.RESULT, result)
        self._wake.set()

    def _close_command(self, tape: _SessionTape, ct: _CommandTape) -> None:
        """Emit what a command still holds: the tails of its streams, then its rows."""
        for capture in ct.captures:
            capture.finish()
        ct.captures.clear()
        if ct.rows or ct.rows_truncated:
            size = sum(len(v) for r in ct.rows for v in r if v is not None)
            rows = {"seq": ct.seq, "columns": ct.columns or [], "rows": Rows(ct.rows, ct.binary),
                    "truncated": ct.rows_truncated}
            self._emit(tape, EventType.ROWS, rows, size)
            ct.rows = []

    # -- writing --------------------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write every session's pending events in one append, then the index documents that are due.

        Serialised by a lock, so records of a session are stored in the order they happened.  On failure the
        events go back to the front of their buffers and the next flush retries them.
        """
        async with self._lock:
            tapes = [t for t in self._tapes.values()
                     if t.events or not t.header_stored or t.index_due(self.clock())]
            if not tapes:
                return
            taken: list[tuple[_SessionTape, list[_Event], int, bool]] = []
            for tape in tapes:
                taken.append((tape, tape.events, tape.pending_bytes, not tape.header_stored))
                tape.events, tape.pending_bytes = [], 0
            try:
                records: list[dict[str, Any]] = []
                for tape, events, _, header in taken:
                    records.extend(self._records(tape, events, header))
                if records:
                    await self.store.append(STREAM, records,
                                            index=[{"session": r["session"]} for r in records])
            except BaseException as e:
                for tape, events, size, header in taken:
                    tape.events[:0] = events
                    tape.pending_bytes += size
                if isinstance(e, Exception):
                    self.failure = f"{type(e).__name__}: {e}"
                    log.error("record: cannot write recordings (%s); %d bytes wait in memory and are retried",
                              self.failure, self._pending_total)
                    return
                raise
            self.failure = None
            for tape, events, size, header in taken:
                self._pending_total -= size
                tape.header_stored = True
            await self._write_index([t for t in tapes if t.index_due(self.clock())])
            for tape in tapes:
                if tape.done and self._tapes.get(tape.session.id) is tape:
                    del self._tapes[tape.session.id]

    def _records(self, tape: _SessionTape, events: list[_Event],
                 header: bool) -> list[dict[str, Any]]:
        """Store records for a session's events, each at most about ``flush_bytes`` of JSON."""
        sid = tape.session.id
        json = self.redactor.json
        out: list[dict[str, Any]] = []
        if header:
            out.append({"session": sid, "header": json(tape.header)})
        chunk: list[list[Any]] = []
        size = 0
        limit = self.options.flush_bytes
        for t, kind, payload, n in events:
            chunk.append([t, str(kind), json(payload)])
            size += n
            if size >= limit:
                out.append({"session": sid, "events": chunk})
                chunk, size = [], 0
        if chunk:
            out.append({"session": sid, "events": chunk})
        return out

    async def _write_index(self, tapes: list[_SessionTape]) -> None:
        for tape in tapes:
            s = tape.session
            # Taken before the await: the session may move on (more commands, its end) while the put runs.
            commands, ended = tape.commands, tape.ended
            doc = {
                "id": s.id, "listener": s.listener, "protocol": s.protocol, "subject": s.identity.subject,
                "groups": list(s.identity.groups), "client": s.client_address, "upstream": s.upstream,
                "claimed_user": self.redactor.text(s.claimed_user), "gateway": self.services.gateway_name,
                "started": s.started_at,
                "ended": ended, "end_reason": self.redactor.text(tape.end_reason) or None,
                "commands": commands,
            }
            try:
                await self.store.put(INDEX, s.id, doc)
            except Exception as e:
                log.error("record: cannot write the index document of session %s (%s: %s); retried later",
                          s.id, type(e).__name__, e)
                continue
            tape.index_commands = commands
            tape.index_at = self.clock()
            tape.index_final = ended is not None


# -- captures: the filters handed to protocols -----------------------------------------------------------


class _RowCapture:
    """Keeps the first ``limit`` rows of a result (within the byte budget); passes every row on unchanged."""

    __slots__ = ("ct", "limit", "skipped")

    def __init__(self, ct: _CommandTape, limit: int) -> None:
        self.ct = ct
        self.limit = limit
        self.skipped: _RowsSkipped | None = None

    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        ct = self.ct
        if ct.rows_full:
            ct.rows_truncated = True
            return values
        size = 0
        for v in values:
            if v is not None:
                size += len(v)
        if size > ct.budget:
            ct.rows_full = ct.rows_truncated = True
            return values
        ct.budget -= size
        ct.rows.append(list(values))
        if len(ct.rows) >= self.limit:
            ct.rows_full = True
        return values

    def columnwise(self) -> _RowsSkipped | None:
        """Once the rows it keeps are kept, the capture touches no column: the rows that follow can go by a
        batch at a time (gw.stage.ColumnEdits), each batch marking the recording truncated."""
        if not self.ct.rows_full:
            return None
        if self.skipped is None:
            self.skipped = _RowsSkipped(self.ct)
        return self.skipped


class _RowsSkipped:
    """:meth:`_RowCapture.columnwise`: no column is touched; rows going by make the recording truncated."""

    __slots__ = ("constant", "ct", "edited")

    def __init__(self, ct: _CommandTape) -> None:
        self.ct = ct
        self.constant: dict[int, bytes | None] = {}
        self.edited: tuple[int, ...] = ()

    def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
        self.ct.rows_truncated = True
        return {}


class _Capture:
    """Base of the stream observers: budget accounting; ``feed`` always returns its input unchanged."""

    __slots__ = ("channel", "ct", "stage", "stats", "tape", "terminal")

    def __init__(self, stage: Record, tape: _SessionTape, ct: _CommandTape, channel: str,
                 stats: _Channel) -> None:
        self.stage = stage
        self.tape = tape
        self.ct = ct
        self.channel = channel
        self.stats = stats
        self.terminal = channel in TERMINAL_CHANNELS

    def _granted(self, data: bytes) -> bytes:
        n = len(data)
        self.stats.seen += n
        granted = self.ct.allow(self.terminal, n)
        if granted < n and not self.stats.truncated:
            self.stats.truncated = True
            self._record_truncation()
        self.stats.recorded += granted
        return data if granted == n else data[:granted]

    def _record_truncation(self) -> None:
        limit = "max_terminal_bytes" if self.terminal else "max_bytes"
        self.stage._emit(self.tape, EventType.DATA, {"seq": self.ct.seq, "channel": self.channel,
                                                     "truncated": limit})

    def _data(self, chunk: bytes | Sent) -> None:
        size = len(chunk.value) if isinstance(chunk, Sent) else len(chunk)
        payload = {"seq": self.ct.seq, "channel": self.channel, "data": chunk}
        self.stage._emit(self.tape, EventType.DATA, payload, size)

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class _OutputCapture(_Capture):
    """What the agent was shown (after masking): each chunk is an event with its timing.  A UTF-8 character
    split across reads is held back until it is complete, so terminal text stays text."""

    __slots__ = ("carry",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        if data:
            chunk = self._granted(data)
            if chunk:
                if self.carry:
                    chunk, self.carry = self.carry + chunk, b""
                tail = utf8_incomplete_tail(chunk)
                if tail:
                    chunk, self.carry = chunk[:-tail], bytes(chunk[-tail:])
                if chunk:
                    self._data(bytes(chunk))
        return data

    def finish(self) -> bytes:
        if self.carry:
            self._data(self.carry)
            self.carry = b""
        return b""


class _SentCapture(_Capture):
    """What the agent sent (request bodies, typed input): buffered to line ends, so the detectors see a value
    typed key by key or split across reads whole before it is stored."""

    __slots__ = ("buf",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        if data:
            chunk = self._granted(data)
            if chunk:
                cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                if cut < 0:
                    self.buf += chunk
                else:
                    line = bytes(self.buf) + bytes(chunk[:cut + 1])
                    self.buf = bytearray(chunk[cut + 1:])
                    self._data(Sent(line))
        return data

    def finish(self) -> bytes:
        if self.buf:
            self._data(Sent(bytes(self.buf)))
            self.buf = bytearray()
        return b""


_SIZE = re.compile(rb"(\d{1,5})x(\d{1,5})")


class _ResizeCapture:
    """The ``pty-resize`` channel: each chunk is ``b"COLSxROWS"``; malformed chunks are ignored."""

    __slots__ = ("seq", "stage", "tape")

    def __init__(self, stage: Record, tape: _SessionTape, seq: int) -> None:
        self.stage = stage
        self.tape = tape
        self.seq = seq

    def feed(self, data: bytes) -> bytes:
        for part in bytes(data).split():
            m = _SIZE.fullmatch(part)
            if m:
                self.stage._emit(self.tape, EventType.RESIZE,
                                 {"seq": self.seq, "cols": int(m.group(1)), "rows": int(m.group(2))})
            else:
                log.debug("record: ignoring malformed pty-resize chunk %r", part[:40])
        return data

    def finish(self) -> bytes:
        return b""
