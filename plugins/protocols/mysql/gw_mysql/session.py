"""One proxied MySQL session after authentication: read a command, decide, forward, relay the answer.

MySQL's protocol is half-duplex (one command, then its whole answer), so the session is one loop, plus a
reader task that keeps reading the client while a command runs -- to notice a client that vanishes mid-query
(gw then kills the upstream query) and to bound what a client may buffer -- and a terminator task that ends
the session when gw wants it ended (token expiry, revocation, shutdown).

What gw keeps in step with the server (see docs/plugins/mysql.md):

* **How statements are read**: ``character_set_client`` and ``sql_mode``, as the server reports them.  After a
  statement that may change them, gw asks the server (``SELECT @@character_set_client, @@sql_mode``) before
  relaying the statement's final packet; a setting gw cannot follow is restored and the statement answered
  with an error.  In a multi-statement text, such a statement must come last.
* **Prepared statements**: an id exists for gw once the server confirmed it (COM_STMT_PREPARE's answer); an
  execute of any other id is refused without reaching the server.  Each execute is classified, audited and
  approved as the prepared text, with its bound parameters (long data included).
* **Connection ids**: clients see gw's own; ``KILL [QUERY] <id>`` and COM_PROCESS_KILL are translated to the
  upstream's, and only for sessions of the same identity.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from gw.model import (
    Channel,
    Column,
    Command,
    DenyCode,
    Kind,
    Measurement,
    Outcome,
    OutcomeStatus,
    SessionEnd,
    Verdict,
)
from gw.pipeline import CommandRun, SessionRuntime
from gw.stage import RowFilter
from gw_sqlanalysis import Classification, Classifier
from gw_sqlanalysis.mysql import (
    Decoded,
    MySQLMode,
    Unfollowable,
    decode_statement,
)
from gw_sqlanalysis.mysql import session_mode as mysql_session_mode

from . import errors as E
from . import measure as measuring
from .codec import CLOSED, NEED_DATA, Packet, PacketCodec, encode_packet, fragments_of, with_seq
from .columns import STRING_TYPES, build_columns
from .constants import Capability as C
from .constants import ColumnFlag
from .constants import Command as Com
from .errors import ProtocolError, UpstreamError
from .errortext import redact_values
from .messages import (
    OK,
    ColumnDefinition,
    Err,
    Execute,
    LongData,
    binary_value_text,
    decode_binary_row,
    decode_error,
    decode_text_row,
    encode_binary_row,
    encode_text_row,
)
from .results import Ev, ResponseReader
from .upstream import RECEIVE_SIZE, UpstreamConnection

if TYPE_CHECKING:
    from .handler import MySQLHandler

log = logging.getLogger("gw.mysql")

_ERR_BY_DENY = {
    DenyCode.POLICY: E.SPECIFIC_ACCESS_DENIED,
    DenyCode.APPROVAL_REQUIRED: E.SPECIFIC_ACCESS_DENIED,
    DenyCode.APPROVAL_DENIED: E.SPECIFIC_ACCESS_DENIED,
    DenyCode.APPROVAL_TIMEOUT: E.QUERY_INTERRUPTED,
    DenyCode.UNAVAILABLE: E.UNKNOWN_ERROR,
    DenyCode.INTERNAL: E.UNKNOWN_ERROR,
}
CONNECTION_KILLED = E.Code(1927, "70100")  # ER_CONNECTION_KILLED
#: gw's own query for the session's reading of statements.
STATE_QUERY = "SELECT @@session.character_set_client, @@session.sql_mode, DATABASE()"
_KILL = re.compile(r"(?is)\s*kill\s+(?:(?:hard|soft)\s+)?(?:(query|connection)\s+)?(\d+)\s*;?\s*")
#: Most long data gw keeps per parameter for showing it to stages (the server gets all of it).
LONG_DATA_SHOWN = 64 * 1024
MAX_STATEMENTS = 10_000


def refusal(verdict: Verdict) -> Err:
    code = _ERR_BY_DENY.get(verdict.code or DenyCode.POLICY, E.SPECIFIC_ACCESS_DENIED)
    message = verdict.reason or "gw policy does not allow this statement"
    if verdict.request_id and verdict.request_id not in message:
        message += f" (approval request {verdict.request_id})"
    who = f"gw stage {verdict.stage!r}" if verdict.stage else "gw"
    message += f" [refused by {who}" + (f", rule {verdict.rule!r}]" if verdict.rule else "]")
    return Err.of(code, message)


@dataclass(slots=True)
class Prepared:
    """A prepared statement the server confirmed."""

    statement_id: int
    decoded: Decoded
    classification: Classification
    params: int
    columns: int
    mode: MySQLMode
    database: str | None
    changes_mode: bool
    param_types: tuple[int, ...] | None = None
    param_unsigned: tuple[bool, ...] = ()
    long_data: dict[int, bytearray] = field(default_factory=dict)
    #: An open cursor: its column types and row filter, for COM_STMT_FETCH.
    cursor: tuple[list[int], RowFilter | None, list[int]] | None = None


@dataclass(slots=True)
class _Answer:
    """What the session does with one command's answer."""

    run: CommandRun | None = None
    outcome: Outcome | None = None
    #: Text-protocol rows (COM_QUERY) or binary rows (COM_STMT_EXECUTE / FETCH).
    binary: bool = False
    wants_rows: bool = False
    #: Lineage per result (statement index) of a COM_QUERY text, computed lazily.
    text: str = ""
    lineage_ok: bool = True
    #: Ask the server how it now reads statements before relaying the final packet.
    check_mode: bool = False
    #: Replace the final packet with this error (LOAD DATA LOCAL asked for a file ...).
    replace_final: Err | None = None
    prepared: Prepared | None = None
    classifier: Classifier | None = None

    @property
    def command(self) -> Command | None:
        return self.run.command if self.run is not None else None


class _Context:
    """The CommandContext stages get.  MySQL has no way to show a message in the middle of a command, so
    notices are appended to the info text of the command's final OK packet (what ``mysql`` prints after
    ``Rows matched: ...``)."""

    __slots__ = ("command", "measured", "notices", "open", "payload", "session")

    def __init__(self, session: ProxySession | None = None, payload: bytes | None = None) -> None:
        self.notices: list[str] = []
        self.session = session
        #: A COM_QUERY payload gw may run measured (``rows_over``); None for other commands.
        self.payload = payload
        self.command: Command | None = None
        self.measured: Measurement | None = None
        self.open: measuring.Pending | None = None

    async def notice(self, message: str) -> None:
        self.notices.append(message)

    @property
    def cancel_reason(self) -> str:
        """Why the session ends under a decision in progress (``client_disconnected``, ``token_expired`` ...)."""
        return (self.session._ending or "") if self.session is not None else ""

    async def measure(self) -> Measurement:
        """The write's row count as the server reports it, the write left uncommitted until the verdict
        (:class:`gw.stage.CommandContext`)."""
        if self.measured is None:
            self.measured = await self._measure()
        return self.measured

    async def _measure(self) -> Measurement:
        cmd, session = self.command, self.session
        if cmd is None or session is None or self.payload is None:
            return Measurement(None, "gw counts rows of COM_QUERY statements only")
        why = measuring.unmeasurable(cmd.kind.value, cmd.verb, cmd.flags, cmd.verbs)
        if why is not None:
            return Measurement(None, why)
        pending = await measuring.run(session.up, self.payload, cmd.objects, database=session.database)
        if pending.answer:
            self.open = pending
        if pending.rows is None and not pending.open and pending.answer:
            return Measurement(0, "the statement failed")  # its error goes to the client; nothing changed
        return Measurement(pending.rows, pending.reason)

    async def discard(self) -> None:
        pending, self.open = self.open, None
        self.measured = None
        if pending is not None and self.session is not None:
            await measuring.undo(self.session.up, pending)


class ProxySession:
    """Relays one authenticated client to its upstream connection until either side ends."""

    def __init__(self, handler: MySQLHandler, client: trio.abc.Stream, codec: PacketCodec,
                 upstream: UpstreamConnection, sr: SessionRuntime, capabilities: int, mode: MySQLMode,
                 sql_mode: str, database: str | None, connection_id: int) -> None:
        self.handler = handler
        self.client = client
        self.codec = codec
        self.up = upstream
        self.sr = sr
        self.capabilities = capabilities
        self.mode = mode
        self.sql_mode = sql_mode
        self.database = database
        self.connection_id = connection_id
        self.multi_statements = bool(capabilities & C.MULTI_STATEMENTS)
        self.statements: dict[int, Prepared] = {}
        self.busy = False
        #: A command waits for the pipeline's decision (an approval hold): a client that leaves cancels it.
        self.deciding = False
        self._ending: str | None = None
        self._scope: trio.CancelScope | None = None
        self._wakeup = trio.Event()
        self._consumed = trio.Event()
        self._seq = 0
        self._message_timeout = handler.options.message_timeout.total_seconds()
        self._buffer_limit = handler.options.max_packet_size + RECEIVE_SIZE
        self._pending_completion: tuple[CommandRun, Outcome] | None = None
        self._final_error: Err | None = None

    # -- lifetime --------------------------------------------------------------------------------------------
    async def run(self) -> str:
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._guard, self._client_reader)
                nursery.start_soon(self._guard, self._serve)
                nursery.start_soon(self._guard, self._terminator)
        finally:
            with trio.CancelScope(shield=True):
                reason = self._ending or "cancelled"
                await self._teardown(reason)
        return reason

    def _finish(self, reason: str) -> None:
        if self._ending is None:
            self._ending = reason
        if self._scope is not None:
            self._scope.cancel()

    async def _guard(self, task: Any) -> None:
        try:
            await task()
        except ProtocolError as e:
            await self._send_error(Err.of(e.code, str(e)))
            self._finish(f"error: {e}")
        except UpstreamError as e:
            await self._send_error(Err.of(e.code, str(e)))
            self._finish("upstream_closed" if e.code == E.SERVER_LOST else f"error: {e}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            self._finish("client_disconnected_mid_query" if self.busy else "client_disconnected")
        except trio.Cancelled:
            raise
        except Exception as e:
            log.exception("mysql session %s failed", self.sr.session.id)
            await self._send_error(Err.of(E.UNKNOWN_ERROR, f"gw hit an internal error ({type(e).__name__}) and "
                                          "closed the session; reconnect, and tell the gateway operator if it "
                                          "happens again"))
            self._finish(f"error: internal {type(e).__name__}")

    async def _send_error(self, err: Err) -> None:
        """Best effort: an ERR as the answer to what the client waits for (it may already be gone)."""
        with trio.move_on_after(1):
            try:
                await self.client.send_all(encode_packet(err.encode(), self._seq or 1))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _terminator(self) -> None:
        reason = await self.sr.wait_terminated()
        if reason is SessionEnd.SHUTDOWN:
            while self.busy:
                await trio.sleep(0.05)
        code = E.SERVER_SHUTDOWN if reason is SessionEnd.SHUTDOWN else CONNECTION_KILLED
        self._final_error = Err.of(code, reason.message)
        self._finish(reason)

    async def _teardown(self, reason: str) -> None:
        if self.busy and not reason.startswith("upstream"):
            # The client is gone (or must go) while the upstream still works for it: stop that work.
            with trio.move_on_after(3):
                await self.handler.kill_upstream(self.up.login, self.up.thread_id, query_only=True)
        if self._final_error is not None:
            await self._send_error(self._final_error)
        if not reason.startswith("upstream"):
            await self.up.quit()
        await self.up.aclose()
        if self._pending_completion is not None:
            run, outcome = self._pending_completion
            self._pending_completion = None
            outcome.status = OutcomeStatus.CANCELLED
            outcome.error_message = outcome.error_message or f"session ended: {reason}"
            await run.complete(outcome)
        await self.sr.end(reason)

    # -- reading the client ----------------------------------------------------------------------------------
    async def _client_reader(self) -> None:
        while True:
            while self.codec.buffered > self._buffer_limit:
                self._consumed = trio.Event()
                await self._consumed.wait()
            try:
                data = await self.client.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            self.codec.receive_data(data)
            self._wakeup.set()
            if not data:
                if self.busy:
                    self._finish("client_disconnected_mid_query")
                elif self.deciding:
                    # A held command lives and dies with its session: nothing runs after the client left.
                    self._finish("client_disconnected")
                return

    async def _next_client_packet(self) -> Packet | None:
        while True:
            p = self.codec.next_packet()
            if isinstance(p, Packet):
                self._consumed.set()
                return p
            if p is CLOSED:
                return None
            assert p is NEED_DATA
            self._wakeup = trio.Event()
            if self.codec.buffered:
                with trio.move_on_after(self._message_timeout) as scope:
                    await self._wakeup.wait()
                if scope.cancelled_caught:
                    raise ProtocolError(f"gw waited {self._message_timeout:g}s for the rest of a packet and closed "
                                        "the connection (the client stalled in the middle of a packet)",
                                        code=E.NET_READ_INTERRUPTED)
            else:
                await self._wakeup.wait()

    # -- commands --------------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        while True:
            p = await self._next_client_packet()
            if p is None:
                self._finish("client_disconnected")
                return
            if p.seq != 0:
                raise ProtocolError(f"packets out of order: a command must start with sequence id 0, got {p.seq}",
                                    code=E.NET_PACKETS_OUT_OF_ORDER)
            self._seq = p.next_seq
            if not p.payload:
                raise ProtocolError("an empty packet is not a command", code=E.UNKNOWN_COMMAND)
            if await self._command(p):
                return

    async def _command(self, p: Packet) -> bool:
        """Handle one command; True when the session is over (COM_QUIT)."""
        com = p.payload[0]
        if com == Com.QUERY:
            await self._query(p)
        elif com == Com.STMT_PREPARE:
            await self._prepare(p)
        elif com == Com.STMT_EXECUTE:
            await self._execute(p)
        elif com == Com.STMT_FETCH:
            await self._fetch(p)
        elif com == Com.STMT_SEND_LONG_DATA:
            await self._long_data(p)
        elif com == Com.STMT_CLOSE:
            await self._close_statement(p)
        elif com == Com.STMT_RESET:
            await self._reset_statement(p)
        elif com == Com.QUIT:
            await self.up.quit()
            self._finish("client_closed")
            return True
        elif com == Com.PING:
            await self._forward(p, _Answer())
        elif com == Com.INIT_DB:
            await self._init_db(p)
        elif com == Com.FIELD_LIST:
            await self._field_list(p)
        elif com == Com.STATISTICS:
            await self._simple_command(p, "statistics", "STATISTICS")
        elif com == Com.SET_OPTION:
            await self._set_option(p)
        elif com == Com.RESET_CONNECTION:
            await self._reset_connection(p)
        elif com == Com.PROCESS_KILL:
            if len(p.payload) != 5:
                await self._reply(Err.of(E.WRONG_ARGUMENTS, "malformed COM_PROCESS_KILL"))
            else:
                await self._kill(int.from_bytes(p.payload[1:5], "little"), query_only=False)
        elif com == Com.CHANGE_USER:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, "gw does not allow COM_CHANGE_USER: a session's identity "
                                     "comes from its token and cannot change; open a new connection instead"))
        elif com in (Com.BINLOG_DUMP, Com.BINLOG_DUMP_GTID, Com.REGISTER_SLAVE, Com.TABLE_DUMP, Com.CONNECT_OUT,
                     Com.SUBSCRIBE_GROUP_REPLICATION_STREAM, Com.CLONE):
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, "gw does not proxy replication, binlog or clone "
                                     "streams; connect a replica to the server directly"))
        elif com in (Com.CREATE_DB, Com.DROP_DB, Com.REFRESH, Com.SHUTDOWN, Com.PROCESS_INFO, Com.DEBUG):
            sql = {Com.CREATE_DB: "CREATE DATABASE", Com.DROP_DB: "DROP DATABASE", Com.REFRESH: "FLUSH",
                   Com.SHUTDOWN: "SHUTDOWN", Com.PROCESS_INFO: "SHOW PROCESSLIST"}.get(Com(com), "a statement")
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, f"gw does not accept the legacy command "
                                     f"{Com(com).name}; send the SQL statement ({sql}) instead"))
        elif com == Com.STMT_BULK_EXECUTE:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, "gw does not accept bulk executes "
                                     "(COM_STMT_BULK_EXECUTE); execute the statement once per row"))
        else:
            await self._reply(Err.of(E.UNKNOWN_COMMAND, f"unknown command 0x{com:02x}"))
        return False

    async def _reply(self, packet: Err | OK) -> None:
        payload = packet.encode() if isinstance(packet, Err) else packet.encode(self.capabilities)
        await self.client.send_all(encode_packet(payload, self._seq))

    # -- pipeline ----------------------------------------------------------------------------------------------
    def _classifier(self, mode: MySQLMode | None = None, database: str | None = None) -> Classifier:
        return self.handler.classifier(mode or self.mode, database if database is not None else self.database)

    def _command_for(self, decoded: Decoded, cls: Classification | None, *, params: Sequence[Any] = (),
                     attributes: dict[str, Any] | None = None, verb: str | None = None) -> Command:
        if cls is None:
            return self.sr.command(decoded.display, language="sql", verb=verb or "",
                                   flags=frozenset({"unparsed"}), params=params, attributes=attributes)
        attrs = dict(attributes or {})
        if len(cls.verbs) > 1:
            attrs["verbs"] = cls.verbs
        return self.sr.command(decoded.display, language="sql", kind=cls.kind, verb=verb or cls.verb,
                               objects=cls.objects, flags=cls.flags, params=params, attributes=attrs,
                               verbs=cls.verbs)

    async def _decide(self, cmd: Command, context: _Context) -> tuple[CommandRun, Err | None]:
        """The command's run, and the error to answer with when it was refused (the run is then complete)."""
        self.deciding = True
        try:
            run = await self.sr.decide(cmd, context)
        finally:
            self.deciding = False
        if run.allowed:
            return run, None
        err = refusal(run.verdict)
        log.info("session %s: refused command %d (%d): %s", cmd.session.id, cmd.seq, err.number, err.message)
        await run.complete(Outcome(status=OutcomeStatus.DENIED, error_code=str(err.number),
                                   error_message=err.message))
        return run, err

    # -- COM_QUERY -----------------------------------------------------------------------------------------------
    async def _query(self, p: Packet) -> None:
        raw = p.payload[1:]
        decoded = decode_statement(raw, self.mode)
        if decoded.ambiguous:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, _AMBIGUOUS.format(cs=self.mode.charset)))
            return
        facts = self.handler.text_facts(decoded.analysis, self.mode)
        if facts.kill:
            await self._kill_statement(decoded, facts.statements)
            return
        if facts.mode_change_not_last:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, _MODE_IN_MULTI))
            return
        classifier = self._classifier()
        cls = classifier.classify(decoded.analysis)
        if "local_infile" in cls.flags:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, _LOCAL_INFILE))
            return
        check_mode = facts.changes_mode
        context = _Context(self, bytes(p.payload))
        cmd = self._command_for(decoded, cls)
        context.command = cmd
        run, refused = await self._decide(cmd, context)
        if refused is not None:
            await context.discard()
            await self._reply(refused)
            return
        if context.open is not None:
            await self._keep_measured(run, context)
            return
        answer = _Answer(run, Outcome(), wants_rows=run.wants_rows, text=decoded.analysis, check_mode=check_mode,
                         classifier=classifier)
        answer.lineage_ok = not facts.opaque
        await self._forward(p, answer, context)

    async def _keep_measured(self, run: CommandRun, context: _Context) -> None:
        """The verdict allows a write gw already ran measured: keep it and relay its answer (the OK's status
        flags as they are once gw's transaction or savepoint is gone)."""
        pending, context.open = context.open, None
        assert pending is not None
        outcome = Outcome(rows=pending.rows)
        if pending.open:
            await measuring.keep(self.up, pending)
        raw = pending.answer[0]
        payload = raw[4:]
        if payload[:1] == b"\x00":
            ok = OK.decode(payload, self.up.capabilities)
            info = ok.info
            if context.notices:
                info = info + (b"; " if info else b"") + "; ".join(context.notices).encode()
            ok = dataclasses.replace(ok, status=self.up.status, info=info)
            outcome.tag = f"OK {ok.affected_rows}"
            await self._reply(ok)
        else:
            err = decode_error(payload)
            outcome.status, outcome.error_code = OutcomeStatus.ERROR, str(err.number)
            outcome.error_message = err.message
            outcome.rows = 0
            await self._reply(err)
        await run.complete(outcome)

    async def _kill_statement(self, decoded: Decoded, statements: int) -> None:
        m = _KILL.fullmatch(decoded.analysis)
        if statements != 1 or m is None:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, "gw only accepts KILL [QUERY | CONNECTION] <id> as a "
                                     "statement of its own, with a connection id gw gave out (the one your "
                                     "client shows, not CONNECTION_ID())"))
            return
        await self._kill(int(m.group(2)), query_only=(m.group(1) or "").lower() == "query")

    async def _kill(self, target: int, *, query_only: bool) -> None:
        err = await self.handler.kill(self.sr.session.identity, target, query_only=query_only,
                                      requester=self.connection_id)
        await self._reply(err if err is not None else OK(status=self.up.status))

    # -- prepared statements -----------------------------------------------------------------------------------
    async def _prepare(self, p: Packet) -> None:
        decoded = decode_statement(p.payload[1:], self.mode)
        if decoded.ambiguous:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, _AMBIGUOUS.format(cs=self.mode.charset)))
            return
        facts = self.handler.text_facts(decoded.analysis, self.mode)
        if facts.kill:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, "gw does not prepare KILL statements; send KILL "
                                     "[QUERY] <id> as a plain statement"))
            return
        classifier = self._classifier()
        cls = classifier.classify(decoded.analysis)
        if "local_infile" in cls.flags:
            await self._reply(Err.of(E.NOT_SUPPORTED_YET, _LOCAL_INFILE))
            return
        answer = _Answer()
        answer.prepared = Prepared(0, decoded, cls, 0, 0, self.mode, self.database, facts.changes_mode)
        await self._forward(p, answer)

    def _statement(self, payload: bytes) -> Prepared | None:
        if len(payload) < 5:
            return None
        return self.statements.get(int.from_bytes(payload[1:5], "little"))

    async def _execute(self, p: Packet) -> None:
        st = self._statement(p.payload)
        if st is None:
            await self._reply(Err.of(E.UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler given to "
                                     "mysqld_stmt_execute (gw has no statement the server confirmed with this "
                                     "id); prepare it first"))
            return
        try:
            ex = Execute.decode(p.payload, st.params, st.param_types, set(st.long_data))
        except ProtocolError as e:
            await self._reply(Err.of(E.WRONG_ARGUMENTS, f"malformed COM_STMT_EXECUTE: {e}"))
            return
        if ex.new_params_bound or st.param_types is None:
            st.param_types = ex.types
        params: list[Any] = []
        for i, value in enumerate(ex.values):
            if i in st.long_data and value is not None:
                params.append(bytes(st.long_data[i]).decode("utf-8", "surrogateescape"))
            else:
                t = st.param_types[i] if st.param_types else 0
                params.append(binary_value_text(t & 0xFF, value, bool(t & 0x8000)))
        context = _Context(self)
        cmd = self._command_for(st.decoded, st.classification, params=params,
                                attributes={"statement": st.statement_id})
        run, refused = await self._decide(cmd, context)
        st.long_data.clear()
        if refused is not None:
            await self._reply(refused)
            return
        answer = _Answer(run, Outcome(), binary=True, wants_rows=run.wants_rows, text=st.decoded.analysis,
                         check_mode=st.changes_mode, prepared=st,
                         classifier=self._classifier(st.mode, st.database))
        await self._forward(p, answer, context, cursor=bool(ex.flags & 0x07))

    async def _fetch(self, p: Packet) -> None:
        st = self._statement(p.payload)
        if st is None or st.cursor is None:
            await self._reply(Err.of(E.UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler given to "
                                     "mysqld_stmt_fetch (no open cursor gw knows of)"))
            return
        await self._forward(p, _Answer(binary=True, prepared=st))

    async def _long_data(self, p: Packet) -> None:
        """Forwarded as it is (the server sends no answer); gw keeps a bounded copy to show stages."""
        st = self._statement(p.payload)
        if st is not None:
            try:
                ld = LongData.decode(p.payload)
            except ProtocolError:
                ld = None
            if ld is not None and ld.param < st.params:
                buf = st.long_data.setdefault(ld.param, bytearray())
                if len(buf) < LONG_DATA_SHOWN:
                    buf += ld.data[:LONG_DATA_SHOWN - len(buf)]
        await self.up.send(p.raw)

    async def _close_statement(self, p: Packet) -> None:
        if len(p.payload) >= 5:
            self.statements.pop(int.from_bytes(p.payload[1:5], "little"), None)
        await self.up.send(p.raw)  # no answer

    async def _reset_statement(self, p: Packet) -> None:
        st = self._statement(p.payload)
        if st is not None:
            st.long_data.clear()
            st.cursor = None
        await self._forward(p, _Answer())

    # -- other commands ----------------------------------------------------------------------------------------
    async def _init_db(self, p: Packet) -> None:
        name = p.payload[1:].decode("utf-8", "surrogateescape")
        decoded = Decoded(f"USE `{name}`", f"USE `{name.replace('`', '``')}`")
        cls = Classification(kind=Kind.READ, verb="use",
                             objects=(f"{name}.*",), flags=frozenset(), verbs=("use",))
        cmd = self._command_for(decoded, cls, attributes={"command": "COM_INIT_DB"})
        context = _Context(self)
        run, refused = await self._decide(cmd, context)
        if refused is not None:
            await self._reply(refused)
            return
        answer = _Answer(run, Outcome(), check_mode=True)
        await self._forward(p, answer, context)

    async def _field_list(self, p: Packet) -> None:
        table = p.payload[1:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        qualified = f"{self.database}.{table}" if self.database else table
        cls = Classification(kind=Kind.READ, verb="show", objects=(qualified,), flags=frozenset(), verbs=("show",))
        cmd = self._command_for(Decoded("", f"SHOW COLUMNS FROM `{table}`"), cls,
                                attributes={"command": "COM_FIELD_LIST"})
        context = _Context(self)
        run, refused = await self._decide(cmd, context)
        if refused is not None:
            await self._reply(refused)
            return
        await self._forward(p, _Answer(run, Outcome()), context)

    async def _simple_command(self, p: Packet, verb: str, text: str) -> None:
        cls = Classification(kind=Kind.READ, verb=verb, objects=(), flags=frozenset(), verbs=(verb,))
        cmd = self._command_for(Decoded(text, text), cls, attributes={"command": f"COM_{text}"})
        context = _Context(self)
        run, refused = await self._decide(cmd, context)
        if refused is not None:
            await self._reply(refused)
            return
        await self._forward(p, _Answer(run, Outcome()), context)

    async def _set_option(self, p: Packet) -> None:
        if len(p.payload) != 3:
            await self._reply(Err.of(E.WRONG_ARGUMENTS, "malformed COM_SET_OPTION"))
            return
        option = int.from_bytes(p.payload[1:3], "little")
        await self._forward(p, _Answer())
        if option in (0, 1):  # MYSQL_OPTION_MULTI_STATEMENTS_ON / _OFF
            self.multi_statements = option == 0

    async def _reset_connection(self, p: Packet) -> None:
        await self._forward(p, _Answer(check_mode=True))
        self.statements.clear()

    # -- relaying an answer ------------------------------------------------------------------------------------
    async def _forward(self, p: Packet, answer: _Answer, context: _Context | None = None, *,
                       cursor: bool = False) -> None:
        """Send the client's packet upstream and relay the whole answer."""
        com = p.payload[0]
        reader = ResponseReader(com, self.up.capabilities, cursor=cursor,
                                columns=answer.wants_rows or com == Com.FIELD_LIST)
        if answer.run is not None and answer.outcome is not None:
            self._pending_completion = (answer.run, answer.outcome)
        # ``busy`` stays set when the relay is cancelled (the client vanished, gw ends the session): teardown
        # then stops the query upstream.
        self.busy = True
        await self.up.send(p.raw)
        await self._relay(reader, answer, context)
        self.busy = False
        if self._pending_completion is not None:
            run, outcome = self._pending_completion
            self._pending_completion = None
            await run.complete(outcome)

    async def _relay(self, reader: ResponseReader, answer: _Answer, context: _Context | None) -> None:
        up = self.up
        out: list[bytes] = []
        filt: RowFilter | None = None
        types: list[int] = []
        unsigned: list[bool] = []
        string_cols: list[bool] = []
        result_index = 0
        rows = 0
        st = answer.prepared
        if reader.command == Com.STMT_FETCH and st is not None and st.cursor is not None:
            types, filt, _ = st.cursor
            string_cols = [t in STRING_TYPES for t in types]
        held: Packet | None = None
        while True:
            pk = up.codec.next_packet()
            if pk is NEED_DATA:
                if out:
                    await self.client.send_all(b"".join(out))
                    out.clear()
                data = await up.receive_some()
                if not data:
                    raise UpstreamError(f"gw lost its connection to the upstream server {up.target.describe()} "
                                        "(it closed the connection); reconnect", code=E.SERVER_LOST)
                up.codec.receive_data(data)
                continue
            if pk is CLOSED:
                raise UpstreamError("the upstream server closed the connection", code=E.SERVER_LOST)
            assert isinstance(pk, Packet)
            try:
                ev = reader.feed(pk.payload)
            except ProtocolError as e:
                raise UpstreamError(f"the upstream server sent invalid protocol data ({e}); gw closed the "
                                    "session", code=E.SERVER_LOST) from None
            payload: bytes | None = None  # a replacement payload
            drop = False
            if ev is Ev.ROW:
                rows += 1
                if filt is not None:
                    payload = self._filter_row(pk.payload, filt, answer.binary, types, string_cols)
            elif ev is Ev.COLUMNS_DONE:
                if reader.command in (Com.QUERY, Com.STMT_EXECUTE) and answer.wants_rows \
                        and answer.command is not None:
                    filt = await self._open_rows(answer, reader.columns, result_index)
                types = [d.type for d in reader.columns]
                unsigned = [bool(d.flags & ColumnFlag.UNSIGNED) for d in reader.columns]
                string_cols = [t in STRING_TYPES for t in types]
                if reader.done and st is not None and reader.command == Com.STMT_EXECUTE:
                    st.cursor = (types, filt, [int(u) for u in unsigned])  # rows come with COM_STMT_FETCH
            elif ev is Ev.RESULT_DONE or ev is Ev.OK:
                if ev is Ev.OK and reader.ok is not None:
                    rows += reader.ok.affected_rows
                result_index += 1
                filt = None
            elif ev is Ev.ERROR:
                payload = self._error_payload(pk.payload, answer)
            elif ev is Ev.LOCAL_INFILE:
                # The server wants a client file; gw never gives it one (an empty file ends the request).
                await up.send(encode_packet(b"", pk.next_seq))
                reader.local_infile_answered()
                answer.replace_final = Err.of(E.NOT_SUPPORTED_YET, _LOCAL_INFILE)
                drop = True
            elif ev is Ev.PREPARED and st is not None and reader.prepared is not None:
                pass
            if reader.done:
                self._finish_outcome(answer, reader, rows)
                if reader.command == Com.STMT_PREPARE and st is not None and reader.prepared is not None \
                        and ev is not Ev.ERROR:
                    self._confirm_prepared(st, reader)
                if answer.replace_final is not None:
                    out.append(encode_packet(answer.replace_final.encode(), self._seq))
                    self._seq = (self._seq + 1) & 0xFF
                    break
                if answer.check_mode or (context is not None and context.notices and ev is Ev.OK):
                    held = pk if payload is None else Packet(pk.seq, payload, encode_packet(payload, pk.seq))
                    break
            if drop:
                continue
            if payload is None:
                out.append(pk.raw if pk.seq == self._seq else with_seq(pk, self._seq))
                self._seq = (self._seq + pk.fragments) & 0xFF
            else:
                out.append(encode_packet(payload, self._seq))
                self._seq = (self._seq + fragments_of(len(payload))) & 0xFF
            if reader.done:
                break
        if held is not None:
            out.append(await self._final_packet(held, answer, context))
        if out:
            await self.client.send_all(b"".join(out))
        self.up.status = reader.status or self.up.status

    def _confirm_prepared(self, st: Prepared, reader: ResponseReader) -> None:
        assert reader.prepared is not None
        st.statement_id = reader.prepared.statement_id
        st.params = reader.prepared.params
        st.columns = reader.prepared.columns
        st.param_unsigned = ()
        self.statements.pop(st.statement_id, None)
        self.statements[st.statement_id] = st
        if len(self.statements) > MAX_STATEMENTS:
            del self.statements[next(iter(self.statements))]

    async def _final_packet(self, held: Packet, answer: _Answer, context: _Context | None) -> bytes:
        """The answer's last packet, after gw learnt how the server now reads statements."""
        payload = held.payload
        if answer.check_mode:
            err = await self._refresh_mode()
            if err is not None:
                if answer.outcome is not None:
                    answer.outcome.status, answer.outcome.error_code = OutcomeStatus.ERROR, str(err.number)
                    answer.outcome.error_message = err.message
                payload = err.encode()
        if context is not None and context.notices and payload[:1] == b"\x00":
            ok = OK.decode(payload, self.capabilities)
            info = ok.info + (b"; " if ok.info else b"") + "; ".join(context.notices).encode()
            payload = OK(ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings, info).encode(self.capabilities)
        data = encode_packet(payload, self._seq)
        self._seq = (self._seq + fragments_of(len(payload))) & 0xFF
        return data

    async def _refresh_mode(self) -> Err | None:
        """Ask the server how it now reads this session's statements; restore and refuse what gw cannot
        follow."""
        result = await self.up.query(STATE_QUERY)
        row = result.rows[0] if result.rows else [None, None, None]
        cs = (row[0] or b"").decode("ascii", "replace")
        sql_mode = (row[1] or b"").decode("ascii", "replace")
        db = row[2].decode("utf-8", "surrogateescape") if row[2] is not None else None
        try:
            mode = mysql_session_mode(cs, sql_mode)
        except Unfollowable as e:
            log.warning("session %s: restoring %s after an unfollowable change (%s)", self.sr.session.id,
                        self.mode.describe(), e)
            await self.up.query(f"SET character_set_client = '{self.mode.charset}', sql_mode = "
                                f"'{self.sql_mode}'")
            return Err.of(E.NOT_SUPPORTED_YET, f"{e}. gw restored the previous setting "
                          f"({self.mode.describe()}); the statement itself ran")
        self.mode, self.sql_mode, self.database = mode, sql_mode, db
        return None

    def _finish_outcome(self, answer: _Answer, reader: ResponseReader, rows: int) -> None:
        outcome = answer.outcome
        if outcome is None:
            return
        outcome.rows = rows
        if answer.command is not None:
            outcome.tag = f"{(answer.command.verb or 'ok').upper()} {rows}"

    async def _open_rows(self, answer: _Answer, definitions: list[ColumnDefinition], index: int
                         ) -> RowFilter | None:
        lineage = None
        if answer.lineage_ok and answer.text and answer.classifier is not None:
            try:
                lineage = answer.classifier.column_sources(answer.text, statement=index)
            except Exception:  # noqa: BLE001 - lineage is best effort; the wire still gives plain references
                lineage = None
        columns = build_columns(definitions, lineage, binary_rows=answer.binary)
        assert answer.command is not None
        if lineage is None and any(c.column is None for c in columns):
            columns = await self._attribute_untraceable(answer.command, columns)
        assert answer.run is not None
        filt = answer.run.rows(columns)
        if answer.command.verb == "show" and _DIAGNOSTICS.search(answer.text or ""):
            # SHOW WARNINGS / SHOW ERRORS: their Message column quotes row values like error texts do.
            return _RedactMessages(len(columns) - 1, filt)
        return filt

    async def _attribute_untraceable(self, cmd: Command, columns: list[Column]) -> list[Column]:
        """Columns gw cannot trace (no origin on the wire, no lineage) derive, for all gw knows, from any
        column of any table the statement names: attribute them to all of those (fail closed).  When the
        catalog is unreachable they are attributed to every table's every column name it can guess: none,
        so the rows are withheld by raising (the command fails, the session survives)."""
        tables = [o for o in cmd.objects if not o.endswith(".*")]
        if not tables:
            return columns
        try:
            known = await self.handler.catalog.columns(tables, self.database)
        except UpstreamError as e:
            log.error("session %s: cannot attribute untraceable columns: %s", self.sr.session.id, e)
            raise ProtocolError("gw could not determine which table columns this result comes from (the catalog "
                                "lookup failed), so it withheld the rows as policy requires; retry in a moment",
                                code=E.UNKNOWN_ERROR) from None
        everything = tuple(f"{table}.{col}" for table, cols in known.items() for col in cols)
        return [c if c.column is not None else Column(c.name, None, None, c.type_name, c.binary,
                                                      tuple(dict.fromkeys((*c.sources, *everything))))
                for c in columns]

    def _filter_row(self, payload: bytes, filt: RowFilter, binary: bool, types: list[int],
                    string_cols: list[bool]) -> bytes | None:
        if not binary:
            values = decode_text_row(payload, len(types))
            new = filt.row(values)
            return None if new is values else encode_text_row(new)
        values = decode_binary_row(payload, types)
        new = filt.row(values)
        if new is values:
            return None
        fixed = [v if (v is None or v is values[i] or string_cols[i]) else None for i, v in enumerate(new)]
        return encode_binary_row(fixed, types)

    def _error_payload(self, payload: bytes, answer: _Answer) -> bytes | None:
        err = decode_error(payload)
        if answer.outcome is not None:
            answer.outcome.status = OutcomeStatus.ERROR
            answer.outcome.error_code = str(err.number)
        message = err.message
        run = answer.run
        if run.wants_rows if run is not None else self.sr.wants_rows:
            message = redact_values(message)
            if run is not None:
                stream = run.stream(Channel.ERROR, "text/plain; charset=utf-8")
                if stream is not None:
                    data = stream.feed(message.encode("utf-8", "surrogateescape")) + stream.finish()
                    message = data.decode("utf-8", "surrogateescape")
        if answer.outcome is not None:
            answer.outcome.error_message = message
        if message == err.message:
            return None
        return Err(err.number, err.sqlstate, message).encode()


_DIAGNOSTICS = re.compile(r"(?i)^\s*show\s+(?:count\s*\(\s*\*\s*\)\s+)?(?:warnings|errors)\b")


class _RedactMessages:
    """Row filter for SHOW WARNINGS / SHOW ERRORS: values quoted in the Message column are redacted (as in
    error packets), then the pipeline's own filter runs."""

    __slots__ = ("index", "inner")

    def __init__(self, index: int, inner: RowFilter | None) -> None:
        self.index = index
        self.inner = inner

    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        message = values[self.index] if 0 <= self.index < len(values) else None
        if message is not None:
            text = message.decode("utf-8", "surrogateescape")
            redacted = redact_values(text)
            if redacted != text:
                values = list(values)
                values[self.index] = redacted.encode("utf-8", "surrogateescape")
        return self.inner.row(values) if self.inner is not None else values


_AMBIGUOUS = ("gw refused this statement: read in this session's character set ({cs}) it has a different structure "
              "than read byte by byte, because a multibyte character ends in a backslash or another ASCII "
              "punctuation byte (this is how character-set injection works). Use utf8mb4 (SET NAMES utf8mb4) or "
              "rewrite the text")
_MODE_IN_MULTI = ("gw refused this multi-statement text: a statement that may change the character set or sql_mode "
                  "(SET NAMES, SET sql_mode, CALL ...) must be the last statement of a text, because the server "
                  "reads the statements after it differently. Send it on its own")
_LOCAL_INFILE = ("gw does not allow LOAD DATA LOCAL INFILE: it lets the server read files from the client. Load "
                 "the rows with INSERT statements instead")
