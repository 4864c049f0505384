"""What runs on one session channel: an exec command or a shell (:class:`CommandRelay`), or the sftp subsystem
(:class:`SftpRelay`).  Each is one :class:`~gw.model.Command` decided by the pipeline before anything reaches
the target; sftp adds one command per file operation.

Output goes through the pipeline's stream filters (mask, then record) on the trio thread: ``stdout`` and
``stderr`` for commands without a terminal, ``pty`` for terminals.  Text filters hold back what may be the start
of a sensitive value split across reads; when output pauses gw tells them so (``feed(b"")`` after
:data:`IDLE_FIRST`, then every :data:`IDLE_EVERY` for :data:`IDLE_FOR`), and they release what cannot be the
start of a value (prompts, acknowledgements) -- never, on a pause, what can.  The output of file-transfer
programs (legacy scp, rsync and git transports) is carried unchanged, like sftp file contents.  Input is only
observed (``stdin`` / ``pty-input``, recorded when the record stage has ``record_input = true``) and is
forwarded exactly as typed.

The target's end of a command reaches the client in OpenSSH's order: exit status, then end of output, then
close (a client multiplexing sessions over one connection needs the status first).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from gw.model import Channel, Command, Kind, ObjectSyntax, Outcome, OutcomeStatus, Verdict
from gw.pipeline import CommandRun
from gw.stage import StreamFilter
from gw_shellanalysis import escape, normalise
from gw_shellanalysis.paths import climbs, collapse, process_relative

from . import sftp
from .bridge import ServerChannel, UpstreamChannel
from .commands import Plan
from .events import (
    ChannelClosedError,
    ChannelEvent,
    Closed,
    Data,
    Eof,
    ExitSignal,
    ExitStatus,
    SessionRequest,
    SignalRequest,
    UpstreamError,
    WindowChange,
)
from .options import NEVER_PASSED_ENV

if TYPE_CHECKING:
    from .session import ConnectionSession

log = logging.getLogger("gw.ssh")

#: Output filters are told the stream is idle after this long without output ...
IDLE_FIRST = 0.05
#: ... then this often ...
IDLE_EVERY = 0.25
#: ... until this long after the last output.
IDLE_FOR = 3.0
UNAVAILABLE = 255


#: sftp operations that give what is under a path another path.
_MOVES = frozenset({"rename", "link", "symlink"})


class _FilterFailed(Exception):
    """A stream filter raised: the rest of the output is withheld (fail closed)."""


def _feed(f: StreamFilter | None, data: bytes) -> bytes:
    if f is None:
        return data
    try:
        return f.feed(data)
    except Exception as e:
        raise _FilterFailed(str(e) or type(e).__name__) from e


def _finish(f: StreamFilter | None) -> bytes:
    if f is None:
        return b""
    try:
        return f.finish()
    except Exception as e:
        raise _FilterFailed(str(e) or type(e).__name__) from e


def _refusal_text(verdict: Verdict) -> str:
    reason = verdict.reason or "gw policy refused this command"
    return reason if reason.startswith("gw") else f"gw: {reason}"


def _environment(request: SessionRequest, accepted: list[str]) -> list[tuple[str, str]]:
    out = []
    for name, value in request.env:
        if NEVER_PASSED_ENV.match(name):
            continue
        if any(name == a or (a.endswith("*") and name.startswith(a[:-1])) for a in accepted):
            out.append((name, value))
    return out


def _idle(f: StreamFilter | None) -> bytes:
    return _feed(f, b"") if f is not None else b""


class StderrNotices:
    """The ``CommandContext`` stages get: notices (approval holds ...) become lines on the client's stderr."""

    __slots__ = ("_reason", "chan", "session")

    def __init__(self, chan: ServerChannel, session: Any = None) -> None:
        self.chan = chan
        self.session = session
        self._reason = ""

    @property
    def cancel_reason(self) -> str:
        """Why a decision in progress was cancelled (:class:`gw.stage.CommandContext`): the client closed the
        channel, or the session ended (its ``end_reason``: ``token_expired``, ``shutdown`` ...)."""
        if self.session is not None and getattr(self.session, "closing", None):
            return str(getattr(self.session, "end_reason", "") or "") or self._reason
        return self._reason

    def client_left(self) -> None:
        self._reason = self._reason or "client_disconnected"

    async def notice(self, message: str) -> None:
        try:
            await self.chan.send(message.rstrip("\n").encode("utf-8", "replace") + b"\n", stderr=True)
        except ChannelClosedError:
            pass


class _Relay:
    """What command and sftp relays share: the decision, refusals and the upstream channel."""

    def __init__(self, session: ConnectionSession, chan: ServerChannel, request: SessionRequest) -> None:
        self.session = session
        self.sr = session.sr
        self.chan = chan
        self.request = request
        self.refused_status = session.options.refused_exit_status

    async def _open_upstream(self, cmd: Command, outcome: Outcome, **kwargs: Any) -> UpstreamChannel | None:
        assert self.session.upstream is not None
        try:
            return await self.session.upstream.open_session(
                env=_environment(self.request, self.session.options.accept_env), **kwargs)
        except UpstreamError as e:
            log.warning("session %s: %s", self.sr.session.id, e)
            outcome.status, outcome.error_message = OutcomeStatus.ERROR, str(e)
            await self.session.refuse(self.chan, f"gw: {e}", UNAVAILABLE)
            return None

    async def _decided(self, cmd: Command, outcome: Outcome) -> tuple[CommandRun | None, list[ChannelEvent]]:
        """Decide; on refusal tell the client and fill ``outcome``.  The run (None when the client left
        meanwhile: the command is recorded already); the command may run when ``run.allowed``."""
        run, early = await self.session.decide(
            self.chan, cmd, "the client closed the channel while the command was being decided")
        if run is None:
            return None, early
        verdict = run.verdict
        if not verdict.allowed:
            text = _refusal_text(verdict)
            reasons = cmd.attributes.get("unknown") if cmd.kind is Kind.UNKNOWN else None
            if reasons:
                text += ("\ngw: gw reads this line as kind \"unknown\": " + "; ".join(reasons) +
                         ". Send commands whose programs and arguments are written out literally")
            outcome.status, outcome.error_message = OutcomeStatus.DENIED, verdict.reason
            outcome.error_code = verdict.code.value if verdict.code else None
            await self.session.refuse(self.chan, text, self.refused_status)
        return run, early

    async def _complete(self, run: CommandRun | None, outcome: Outcome) -> None:
        if run is None:
            return
        with trio.CancelScope(shield=True):
            if outcome.status == "cancelled" and not outcome.error_message:
                outcome.error_message = self.session.cancel_reason()
            await run.complete(outcome)

    async def _relay_exit(self, exit_event: ExitStatus | ExitSignal | None, outcome: Outcome,
                          what: str) -> None:
        if isinstance(exit_event, ExitStatus):
            status = exit_event.status
            outcome.tag = f"exit {status}"
            outcome.notes["exit_status"] = status
            if status == 0:
                outcome.status = OutcomeStatus.OK
            else:
                outcome.status, outcome.error_code = OutcomeStatus.ERROR, f"exit {status}"
                outcome.error_message = f"the {what} exited with status {status}"
            await self.chan.exit(status)
        elif isinstance(exit_event, ExitSignal):
            outcome.status = OutcomeStatus.ERROR
            outcome.tag = outcome.error_code = f"signal {exit_event.signal}"
            outcome.error_message = f"the {what} was killed by signal {exit_event.signal}" + (
                " (core dumped)" if exit_event.core_dumped else "")
            outcome.notes["signal"] = exit_event.signal
            if exit_event.core_dumped:
                outcome.notes["core_dumped"] = True
            await self.chan.exit_signal(exit_event.signal, exit_event.core_dumped, exit_event.message)
        else:
            outcome.status = OutcomeStatus.ERROR
            outcome.error_message = f"the target ended the {what} without an exit status"
            await self.session.refuse(self.chan, f"gw: {outcome.error_message} (the connection to it may have "
                                                 "been lost)", UNAVAILABLE)


@dataclass
class _RelayState:
    exit: ExitStatus | ExitSignal | None = None
    client_gone: bool = False
    filter_error: str | None = None


class CommandRelay(_Relay):
    """An exec request or a shell: decided, then relayed to the same request on the target."""

    plan: Plan | None = None

    async def command(self) -> Command:
        request = self.request
        attributes: dict[str, Any] = {}
        if request.terminal is not None:
            attributes.update(term=request.terminal.term, cols=request.terminal.cols, rows=request.terminal.rows)
        if request.kind == "shell":
            return self.sr.command("shell", language="shell", kind=Kind.EXEC, verb="shell",
                                   attributes=attributes)
        text = request.command or ""
        plan = self.plan
        assert plan is not None
        a = plan.analysis
        attributes["verbs"] = list(plan.verbs)
        if a.reasons:
            attributes["unknown"] = list(a.reasons)
        if plan.transfer:
            attributes["transfer"] = plan.transfer
        return self.sr.command(text, language="shell", kind=a.kind, verb=a.verb, objects=plan.objects,
                               flags=a.flags, attributes=attributes, verbs=plan.verbs,
                               object_syntax=ObjectSyntax.PATH)

    async def listener_refusal(self) -> str | None:
        """Why this listener refuses the request before any policy sees it (``shell = "deny"``), or None."""
        if self.session.options.shell != "deny" or self.request.kind != "exec":
            return None
        name = self.session.listener.name
        if self.request.terminal is not None:
            return (f"gw: terminals (ssh -t) are not available on listener {name!r} (shell = \"deny\"): on a "
                    "terminal, programs open pagers and prompts that run commands gw never sees. Run the command "
                    "without -t")
        assert self.plan is not None
        if self.plan.analysis.interactive:
            what = "; ".join(self.plan.analysis.interactive)
            return (f"gw: interactive programs are not allowed on listener {name!r} (shell = \"deny\"): {what}. "
                    "Run each command directly as ssh HOST 'COMMAND', with its program in a file on the target "
                    "if it is a script")
        return None

    async def run(self) -> None:
        if self.request.kind == "exec":
            try:
                self.plan = await self.session.plan(self.request.command or "")
            except UpstreamError as e:
                log.warning("session %s: %s", self.sr.session.id, e)
                await self.session.refuse(self.chan, f"gw: {e}", UNAVAILABLE)
                return
            if self.plan.sftp_server:
                # The sftp server run as a command is an sftp session: the same listener setting and per
                # operation decisions apply.
                if self.session.options.sftp == "deny":
                    await self.session.refuse(self.chan, f"gw: sftp is not allowed on listener "
                                              f"{self.session.listener.name!r} (sftp = \"deny\"), also not by "
                                              "running the sftp server as a command", self.refused_status)
                    return
                await SftpRelay(self.session, self.chan, self.request).run()
                return
            refusal = await self.listener_refusal()
            if refusal is not None:
                log.info("listener %s: refused an interactive exec for %s (session %s)",
                         self.session.listener.name, self.session.login.identity.subject, self.sr.session.id)
                await self.session.refuse(self.chan, refusal, self.refused_status)
                return
        cmd = await self.command()
        outcome = Outcome(status=OutcomeStatus.CANCELLED)
        started = time.perf_counter()
        run: CommandRun | None = None
        try:
            run, early = await self._decided(cmd, outcome)
            if run is None or not run.allowed:
                return
            up = await self._open_upstream(cmd, outcome, command=self.request.command,
                                           terminal=self.request.terminal)
            if up is None:
                return
            started = time.perf_counter()
            try:
                await self._relay(run, up, early, outcome)
            except trio.Cancelled:
                # The client's connection is gone (or gw ended the session): stop the command on the target.
                outcome.status, outcome.error_message = OutcomeStatus.CANCELLED, self.session.cancel_reason()
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await up.signal("HUP")
                raise
            finally:
                up.close()
        finally:
            if outcome.status != "denied":
                outcome.duration = time.perf_counter() - started
            await self._complete(run, outcome)

    async def _relay(self, run: CommandRun, up: UpstreamChannel, early: list[ChannelEvent], outcome: Outcome
                     ) -> None:
        pty = self.request.terminal is not None
        transfer = self.plan is not None and self.plan.transfer is not None
        out = None if transfer else run.stream(Channel.PTY if pty else Channel.STDOUT, "text/plain")
        err = run.stream(Channel.STDERR, "text/plain")
        typed = None if transfer else run.stream(Channel.PTY_INPUT if pty else Channel.STDIN, "text/plain")
        resize = run.stream(Channel.PTY_RESIZE) if pty else None
        state = _RelayState()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_upstream, up, early, typed, resize, state, nursery.cancel_scope)
                await self._upstream_to_client(up, out, err, state)
                nursery.cancel_scope.cancel()
        except ChannelClosedError:
            state.client_gone = True
        except _FilterFailed as e:
            state.filter_error = str(e)
        finally:
            if typed is not None:
                try:
                    typed.finish()
                except Exception:
                    log.exception("session %s: input filter failed", self.sr.session.id)
        if state.client_gone:
            outcome.status, outcome.error_message = OutcomeStatus.CANCELLED, self.session.cancel_reason()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await up.signal("HUP")
            return
        if state.filter_error is not None:
            outcome.status = OutcomeStatus.ERROR
            outcome.error_message = f"output filter failed: {state.filter_error}"
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await up.signal("TERM")
            await self.session.refuse(self.chan, f"gw could not filter this command's output "
                                                 f"({state.filter_error}); the rest of it was withheld",
                                      self.refused_status)
            return
        await self._relay_exit(state.exit, outcome, "shell" if self.request.kind == "shell" else "command")

    async def _client_to_upstream(self, up: UpstreamChannel, early: list[ChannelEvent], typed: StreamFilter | None,
                                  resize: StreamFilter | None, state: _RelayState, scope: trio.CancelScope) -> None:
        forwarding = True
        pending = list(early)
        while True:
            event = pending.pop(0) if pending else await self.chan.receive()
            if isinstance(event, Data):
                if typed is not None:
                    typed.feed(event.data)  # observed only: the target gets exactly what was sent
                if forwarding:
                    try:
                        await up.send(event.data)
                    except ChannelClosedError:
                        forwarding = False  # the command stopped reading; keep watching for window changes
            elif isinstance(event, Eof):
                try:
                    await up.send_eof()
                except ChannelClosedError:
                    pass
            elif isinstance(event, WindowChange):
                await up.resize(event)
                if resize is not None:
                    resize.feed(f"{event.cols}x{event.rows}".encode())
            elif isinstance(event, SignalRequest):
                await up.signal(event.name)
            elif isinstance(event, Closed):
                state.client_gone = True
                scope.cancel()
                return

    async def _upstream_to_client(self, up: UpstreamChannel, out: StreamFilter | None, err: StreamFilter | None,
                                  state: _RelayState) -> None:
        """Relay output until the target closes the channel.  Its end of output only flushes the filters:
        the client's EOF follows the exit status (:meth:`_relay_exit`)."""
        chan = self.chan
        filtered = out is not None or err is not None
        last_output: float | None = None
        next_idle = IDLE_FIRST
        while True:
            event: ChannelEvent | None = None
            if filtered and last_output is not None:
                with trio.move_on_after(next_idle):
                    event = await up.receive()
                if event is None:
                    await chan.send(_idle(out))
                    await chan.send(_idle(err), stderr=True)
                    next_idle = IDLE_EVERY
                    if trio.current_time() - last_output > IDLE_FOR:
                        last_output = None
                    continue
            else:
                event = await up.receive()
            if isinstance(event, Data):
                last_output = trio.current_time()
                next_idle = IDLE_FIRST
                if event.stderr:
                    await chan.send(_feed(err, event.data), stderr=True)
                else:
                    await chan.send(_feed(out, event.data))
            elif isinstance(event, Eof):
                await self._flush(out, err)
                out = err = None
                filtered = False
            elif isinstance(event, (ExitStatus, ExitSignal)):
                state.exit = event
            elif isinstance(event, Closed):
                break
        await self._flush(out, err)

    async def _flush(self, out: StreamFilter | None, err: StreamFilter | None) -> None:
        await self.chan.send(_finish(out))
        await self.chan.send(_finish(err), stderr=True)


@dataclass
class _OpenFile:
    """A handle the target returned for a decided open/opendir, completed when it is closed."""

    run: CommandRun
    path: str
    read: int = 0
    written: int = 0


@dataclass
class _SftpState:
    #: request id -> the decided command waiting for its answer
    pending: dict[int, CommandRun] = field(default_factory=dict)
    #: request id -> the path the client named (for handles opened by it)
    paths: dict[int, str] = field(default_factory=dict)
    #: request id -> handle, for reads (DATA answers count bytes) and closes
    reads: dict[int, bytes] = field(default_factory=dict)
    closes: dict[int, bytes] = field(default_factory=dict)
    handles: dict[bytes, _OpenFile] = field(default_factory=dict)
    exit: ExitStatus | ExitSignal | None = None
    client_closed: bool = False
    error: str | None = None


class SftpRelay(_Relay):
    """The sftp subsystem, relayed packet by packet; each file operation is a command of its own."""

    async def run(self) -> None:
        cmd = self.sr.command("sftp", language="sftp", kind=Kind.EXEC, verb="sftp")
        outcome = Outcome(status=OutcomeStatus.CANCELLED)
        state = _SftpState()
        run: CommandRun | None = None
        try:
            run, early = await self._decided(cmd, outcome)
            if run is None or not run.allowed:
                return
            up = await self._open_upstream(cmd, outcome, subsystem="sftp")
            if up is None:
                return
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._client_to_upstream, up, early, state, nursery.cancel_scope)
                    await self._upstream_to_client(up, state)
                    nursery.cancel_scope.cancel()
            except sftp.SftpProtocolError as e:
                state.error = str(e)
            except ChannelClosedError:
                state.client_closed = True
            finally:
                up.close()
                await self._complete_open(state)
            if state.error is not None:
                outcome.status = OutcomeStatus.ERROR
                outcome.error_message = f"SFTP protocol error: {state.error}"
                await self.session.refuse(self.chan, f"gw: closed the sftp session: {state.error}",
                                          UNAVAILABLE)
            elif state.client_closed:
                outcome.status, outcome.tag = OutcomeStatus.OK, "client closed"
            else:
                await self._relay_exit(state.exit, outcome, "sftp session")
        finally:
            await self._complete(run, outcome)

    async def _complete_open(self, state: _SftpState) -> None:
        """Operations still waiting for an answer, and files never closed, complete with the session."""
        with trio.CancelScope(shield=True):
            for run in state.pending.values():
                await run.complete(Outcome(status=OutcomeStatus.CANCELLED, error_message="the sftp session ended first"))
            for f in state.handles.values():
                await f.run.complete(Outcome(status=OutcomeStatus.OK, tag="not closed", notes=_byte_notes(f)))
            state.pending.clear()
            state.handles.clear()

    async def _client_to_upstream(self, up: UpstreamChannel, early: list[ChannelEvent], state: _SftpState,
                                  scope: trio.CancelScope) -> None:
        framer = sftp.PacketFramer()
        pending = list(early)
        while True:
            event = pending.pop(0) if pending else await self.chan.receive()
            if isinstance(event, Data):
                framer.receive_data(event.data)
                batch: list[bytes] = []
                while (packet := framer.next_packet()) is not sftp.NEED_DATA:
                    assert isinstance(packet, bytes)
                    request = sftp.parse_request(packet)
                    handle_path = None
                    if request.handle is not None and request.handle in state.handles:
                        handle_path = state.handles[request.handle].path
                    op = sftp.operation(request, handle_path)
                    if op is not None:
                        if batch:
                            await up.send(b"".join(batch))
                            batch = []
                        allowed, later = await self._decide_operation(request, op, state)
                        pending[:0] = later
                        if state.client_closed:
                            scope.cancel()
                            return
                        if not allowed:
                            continue
                    else:
                        self._track_request(request, state)
                    batch.append(packet)
                if batch:
                    await up.send(b"".join(batch))
            elif isinstance(event, Eof):
                try:
                    await up.send_eof()
                except ChannelClosedError:
                    pass
            elif isinstance(event, Closed):
                state.client_closed = True
                scope.cancel()
                return

    async def _objects(self, paths: tuple[str, ...], *, trees: bool = False) -> tuple[str, ...]:
        """An operation's paths as the target sees them: relative to the home directory (where the sftp
        server starts), normalised, plus where the target says they lead (symbolic links followed)."""
        home = await self.session.home()
        base = escape(home) if home else "*"
        objects = []
        physical = []
        for p in paths:
            pattern = escape(p)
            full = pattern if p.startswith("/") else (f"{base.rstrip('/')}/{pattern}" if base != "*" else
                                                      f"*/{pattern}")
            objects.append(normalise(full))
            objects.extend(process_relative(normalise(full), [base]) or ())
            if full.startswith("/") and climbs(full):
                physical.append(collapse(full))
        if trees:
            # renaming or linking a directory moves (or exposes) everything under it
            objects.extend([o.rstrip("/") + "/*" for o in objects if o != "*"])
        return await self.session.resolve_objects(tuple(dict.fromkeys(objects)), tuple(physical))

    async def _decide_operation(self, request: sftp.Request, op: sftp.Operation,
                                state: _SftpState) -> tuple[bool, list[ChannelEvent]]:
        """Decide one operation while watching the channel: (allowed, events that arrived meanwhile).  A
        client that closes the channel during an approval hold cancels it."""
        try:
            objects = await self._objects(op.objects, trees=op.verb in _MOVES)
        except UpstreamError as e:
            assert request.id is not None
            await self.chan.send(sftp.status_packet(request.id, sftp.Status.FAILURE, f"gw: {e}"))
            await self.chan.send(f"gw: {e}\n".encode("utf-8", "replace"), stderr=True)
            return False, []
        cmd = self.sr.command(op.text, language="sftp", kind=op.kind, verb=op.verb, objects=objects,
                              flags=op.flags, object_syntax=ObjectSyntax.PATH)
        run, early = await self.session.decide(
            self.chan, cmd, "the client closed the sftp session while the operation was being decided")
        assert request.id is not None
        if run is None:
            state.client_closed = True
            return False, early
        verdict = run.verdict
        if verdict.allowed:
            state.pending[request.id] = run
            state.paths[request.id] = op.objects[0] if op.objects else ""
            return True, early
        text = _refusal_text(verdict)
        await self.chan.send(sftp.status_packet(request.id, sftp.Status.PERMISSION_DENIED, text))
        await self.chan.send(text.encode("utf-8", "replace") + b"\n", stderr=True)
        await run.complete(Outcome(status=OutcomeStatus.DENIED, error_message=verdict.reason,
                                   error_code=verdict.code.value if verdict.code else None))
        return False, early

    def _track_request(self, request: sftp.Request, state: _SftpState) -> None:
        if request.id is None or request.handle is None:
            return
        if request.type == sftp.T.READ:
            state.reads[request.id] = request.handle
        elif request.type == sftp.T.WRITE:
            f = state.handles.get(request.handle)
            if f is not None:
                f.written += request.size
        elif request.type == sftp.T.CLOSE:
            state.closes[request.id] = request.handle

    async def _upstream_to_client(self, up: UpstreamChannel, state: _SftpState) -> None:
        framer = sftp.PacketFramer()
        while True:
            event = await up.receive()
            if isinstance(event, Data):
                if event.stderr:
                    await self.chan.send(event.data, stderr=True)
                    continue
                framer.receive_data(event.data)
                batch: list[bytes] = []
                done: list[tuple[CommandRun, Outcome]] = []
                while (packet := framer.next_packet()) is not sftp.NEED_DATA:
                    assert isinstance(packet, bytes)
                    self._track_response(sftp.parse_response(packet), state, done)
                    batch.append(packet)
                if batch:
                    await self.chan.send(b"".join(batch))
                for run, outcome in done:
                    await run.complete(outcome)
            elif isinstance(event, Eof):
                pass  # the client's EOF follows the exit status (_relay_exit)
            elif isinstance(event, (ExitStatus, ExitSignal)):
                state.exit = event
            elif isinstance(event, Closed):
                return

    def _track_response(self, response: sftp.Response, state: _SftpState,
                        done: list[tuple[CommandRun, Outcome]]) -> None:
        rid = response.id
        if rid is None:
            return
        run = state.pending.pop(rid, None)
        if run is not None:
            path = state.paths.pop(rid, "")
            if response.type == sftp.T.HANDLE and response.handle is not None:
                state.handles[response.handle] = _OpenFile(run, path)
            elif response.type == sftp.T.STATUS and response.status != sftp.Status.OK:
                done.append((run, Outcome(status=OutcomeStatus.ERROR, error_code=_status_name(response.status),
                                          error_message=response.message or None)))
            else:
                done.append((run, Outcome(status=OutcomeStatus.OK)))
            return
        handle = state.reads.pop(rid, None)
        if handle is not None:
            f = state.handles.get(handle)
            if f is not None and response.type == sftp.T.DATA:
                f.read += response.size
            return
        handle = state.closes.pop(rid, None)
        if handle is not None:
            f = state.handles.pop(handle, None)
            if f is not None:
                done.append((f.run, Outcome(status=OutcomeStatus.OK, tag="closed", notes=_byte_notes(f))))


def _byte_notes(f: _OpenFile) -> dict[str, Any]:
    notes: dict[str, Any] = {}
    if f.read:
        notes["bytes_read"] = f.read
    if f.written:
        notes["bytes_written"] = f.written
    return notes


def _status_name(code: int | None) -> str:
    try:
        return sftp.Status(code).name.lower() if code is not None else "unknown"
    except ValueError:
        return f"status {code}"
