"""The ``mysql`` protocol handler: the greeting, TLS, client authentication by identity token, the upstream
log-in with the credentials gw holds, then a :class:`~gw_mysql.session.ProxySession`.

Client authentication: gw's greeting names ``mysql_clear_password`` (the only method in which the server --
here gw -- receives the password itself), and a client that answers with another method is asked to switch.
The password is the identity token; the handshake's user name is recorded but identity comes from the token
alone.  Clients must allow the cleartext plugin (``mariadb --enable-cleartext-plugin``, ...; see
docs/plugins/mysql.md), and TLS (``tls``, ``require_tls``) keeps the token off the network.

Connection ids: the greeting carries gw's own id for the session.  ``KILL QUERY <id>`` from another connection
(what ``mysql`` sends on Ctrl-C) is translated to the upstream's thread id, for sessions of the same identity.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import trio
from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw.model import Command, Identity, Session
from gw.protocol import ListenerOptions, ProtocolHandler
from gw_sqlanalysis import Classifier
from gw_sqlanalysis.lexer import split_tokens
from gw_sqlanalysis.mysql import (
    DEFAULT_MODE,
    MySQLMode,
    Unfollowable,
    decode_statement,
    lex_mysql,
    lexer_for,
    may_change_mode,
    session_mode,
)

from . import errors as E
from .catalog import Catalog
from .codec import CLOSED, NEED_DATA, Packet, PacketCodec, encode_packet
from .constants import CLEAR_PASSWORD, DEFAULT_COLLATION, GW_CAPABILITIES, ServerStatus
from .constants import Capability as C
from .errors import ProtocolError, UpstreamError
from .messages import OK, Err, Handshake, HandshakeResponse, ServerInfo, auth_switch
from .options import MySQLListenerOptions, is_loopback
from .session import STATE_QUERY, ProxySession
from .upstream import FORMAT_CAPABILITIES, Login, UpstreamTarget, connect, probe

if TYPE_CHECKING:
    from gw.runtime import ListenerRuntime

log = logging.getLogger("gw.mysql")

RECEIVE_SIZE = 64 * 1024
#: What gw announces when it could not learn the upstream's version (the upstream is down).
FALLBACK_SERVER = ServerInfo("5.5.5-10.11.0-MariaDB-gw", int(GW_CAPABILITIES | C.SSL), DEFAULT_COLLATION)


class _Replay(trio.abc.Stream):
    """A stream that first yields bytes already read from ``inner`` (used to hand them to TLS)."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self.prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Refused(Exception):
    """The client was sent an ERR packet and must be disconnected."""


@dataclass(frozen=True, slots=True)
class TextFacts:
    """What the protocol must know about a statement text besides its classification (cached per text)."""

    statements: int
    #: A KILL statement: gw translates it (or refuses it), never forwards it.
    kill: bool
    #: A statement that may change how the server reads the rest of the text is not the last one.
    mode_change_not_last: bool
    #: After it runs, gw must ask the server how it now reads statements (and which database is current).
    changes_mode: bool
    #: CALL / EXECUTE: the result sets do not follow the text's statements.
    opaque: bool


def _text_facts(text: str, mode: MySQLMode) -> TextFacts:
    lexed = lex_mysql(text, mode)
    if lexed.error is not None:
        return TextFacts(0, False, False, True, True)
    statements = split_tokens(lexed.tokens)
    first = [s[0].lower() if s else "" for s in statements]
    changes = [may_change_mode(s) for s in statements]
    return TextFacts(len(statements), "kill" in first, any(changes[:-1]),
                     any(changes) or "use" in first, bool({"call", "execute"} & set(first)))


@dataclass
class Connected:
    """A running session, for KILL translation."""

    identity: Identity
    login: Login
    thread_id: int
    session: ProxySession


class _Client:
    """The client side during the handshake: its stream (plain or TLS) and codec."""

    def __init__(self, stream: trio.abc.Stream, codec: PacketCodec) -> None:
        self.stream = stream
        self.codec = codec
        self.tls = False
        self.seq = 0

    async def next_packet(self) -> Packet | None:
        while True:
            p = self.codec.next_packet()
            if p is NEED_DATA:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                self.codec.receive_data(data)
                continue
            if p is CLOSED:
                return None
            assert isinstance(p, Packet)
            self.seq = p.next_seq
            return p

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(encode_packet(payload, self.seq))
        self.seq = (self.seq + 1) & 0xFF
        self.codec.expected_seq = self.seq

    async def error(self, code: E.Code, message: str) -> None:
        with trio.move_on_after(1):
            try:
                await self.stream.send_all(encode_packet(Err.of(code, message).encode(), self.seq))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


class MySQLHandler(ProtocolHandler):
    """One ``protocol = "mysql"`` listener."""

    name = "mysql"
    Options = MySQLListenerOptions
    #: The certificate is loaded at start; every other key (upstream, roles ...) is read per session.
    restart_keys = frozenset({"tls"})

    def __init__(self, listener: ListenerRuntime) -> None:
        super().__init__(listener)
        self.target = UpstreamTarget.from_options(self.opts.upstream, self.listener.services.resolve_path)
        self.ssl_context: ssl.SSLContext | None = None
        self.server_info: ServerInfo | None = None
        self._classifiers: dict[tuple[MySQLMode, str | None], Classifier] = {}
        self._facts: dict[tuple[str, MySQLMode], TextFacts] = {}
        self.catalog = Catalog(lambda: connect(self.target, self._default_login()))
        #: gw connection id -> running session (for KILL).
        self.connections: dict[int, Connected] = {}
        self._probe_lock = trio.Lock()

    @property
    def opts(self) -> MySQLListenerOptions:
        """The listener's current options (a reload replaces them for the next session)."""
        return cast(MySQLListenerOptions, self.listener.options)

    @property
    def options(self) -> MySQLListenerOptions:
        return self.opts

    async def reconfigure(self, previous: ListenerOptions) -> None:
        self.target = UpstreamTarget.from_options(self.opts.upstream, self.listener.services.resolve_path)
        if cast(MySQLListenerOptions, previous).upstream != self.opts.upstream:
            self.server_info = None  # probed again from the new upstream
            self.catalog.forget()
            await self.catalog.aclose()

    # -- lifetime --------------------------------------------------------------------------------------------
    async def open(self) -> None:
        tls = self.opts.tls
        if tls is not None:
            services = self.listener.services
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(services.resolve_path(tls.cert)), str(services.resolve_path(tls.key)))
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"listener {self.listener.name!r}: cannot load tls.cert / tls.key: {e}") from None
            self.ssl_context = ctx

    async def close(self) -> None:
        await self.catalog.aclose()

    def describe_upstream(self) -> str:
        return self.target.describe()

    def upstream_address(self) -> tuple[str, int] | None:
        """Where ``/readyz`` checks that the upstream accepts connections."""
        return None if self.target.host.startswith("/") else (self.target.host, self.target.port)

    def warnings(self) -> list[str]:
        host, _ = self.opts.address
        if not self.opts.require_tls and not is_loopback(host):
            return [(f"listener {self.listener.name!r} accepts connections on {self.opts.listen} (not loopback) "
                     "without require_tls = true: tokens may cross the network in the clear; add "
                     "tls = { cert, key } and require_tls = true")]
        return []

    def classifier(self, mode: MySQLMode, database: str | None) -> Classifier:
        key = (mode, database)
        c = self._classifiers.get(key)
        if c is None:
            if len(self._classifiers) > 64:
                self._classifiers.clear()
            c = Classifier(dialect="mysql", default_schema=database, lexer=lexer_for(mode))
            self._classifiers[key] = c
        return c

    def text_facts(self, text: str, mode: MySQLMode) -> TextFacts:
        key = (text, mode)
        facts = self._facts.get(key)
        if facts is None:
            facts = _text_facts(text, mode)
            if len(text) <= 16384:
                if len(self._facts) >= 4096:
                    self._facts.clear()
                self._facts[key] = facts
        return facts

    def classify(self, text: str, *, session: Session) -> Command:
        decoded = decode_statement(text.encode("utf-8", "surrogateescape"), DEFAULT_MODE)
        c = self.classifier(DEFAULT_MODE, self.target.database).classify(decoded.analysis)
        return Command(session, 0, text, "sql", c.kind, c.verb, c.objects, c.flags, verbs=c.verbs)

    def login_for(self, identity: Identity) -> Login | None:
        """The upstream account for this identity: the first ``roles`` entry sharing a group, else ``user``;
        None when neither applies."""
        up = self.opts.upstream
        for role in up.roles:
            if identity.in_any(role.groups):
                return Login(role.user, role.password_env)
        if up.user is None:
            return None
        return Login(up.user, up.password_env)

    def _default_login(self) -> Login:
        up = self.opts.upstream
        if up.user is not None:
            return Login(up.user, up.password_env)
        return Login(up.roles[0].user, up.roles[0].password_env)

    async def _server(self) -> ServerInfo:
        """The upstream's version and capabilities, learnt once (and refreshed by every session's log-in)."""
        if self.server_info is not None:
            return self.server_info
        async with self._probe_lock:
            if self.server_info is None:
                try:
                    self.server_info = await probe(self.target, self._default_login())
                except UpstreamError as e:
                    log.warning("listener %s: cannot learn the upstream's version yet (%s)", self.listener.name, e)
                    return FALLBACK_SERVER
        return self.server_info

    def _new_connection_id(self) -> int:
        while True:
            cid = secrets.randbelow(2**31 - 2) + 1
            if cid not in self.connections:
                return cid

    # -- KILL ------------------------------------------------------------------------------------------------
    async def kill(self, identity: Identity, target: int, *, query_only: bool, requester: int) -> Err | None:
        """``KILL [QUERY] target`` from a session of ``identity``: translated to the upstream thread, or an
        error when ``target`` is not a gw connection id or belongs to another identity."""
        entry = self.connections.get(target)
        if entry is None:
            return Err.of(E.NO_SUCH_THREAD, f"Unknown thread id: {target} (use the connection id gw gave your "
                          "client; CONNECTION_ID() shows the upstream server's, which gw does not accept)")
        mine = entry.identity.subject == identity.subject and entry.identity.provider == identity.provider
        if not mine:
            log.warning("listener %s: %s tried to kill connection %d of %s", self.listener.name, identity.subject,
                        target, entry.identity.subject)
            return Err.of(E.KILL_DENIED, f"You are not owner of thread {target}: it belongs to another identity")
        log.info("listener %s: %s kills %s of connection %d (upstream thread %d)", self.listener.name,
                 identity.subject, "the query" if query_only else "the connection", target, entry.thread_id)
        if target == requester and not query_only:
            entry.session._finish("killed")
            return None
        try:
            await self.kill_upstream(entry.login, entry.thread_id, query_only=query_only)
        except UpstreamError as e:
            return Err.of(E.UNKNOWN_ERROR, f"gw could not reach the upstream server to kill the query ({e})")
        return None

    async def kill_upstream(self, login: Login, thread_id: int, *, query_only: bool) -> None:
        """Run ``KILL [QUERY] thread_id`` on a fresh upstream connection as ``login`` (an account may always
        kill its own threads)."""
        conn = await connect(self.target, login)
        try:
            await conn.query(f"KILL {'QUERY ' if query_only else ''}{int(thread_id)}")
        except UpstreamError as e:
            if e.code.number != E.NO_SUCH_THREAD.number:
                raise
        finally:
            await conn.quit()
            await conn.aclose()

    # -- one connection --------------------------------------------------------------------------------------
    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        codec = PacketCodec(max_packet_size=self.opts.max_packet_size, peer="client")
        client = _Client(stream, codec)
        timeout = self.listener.handshake_timeout
        connection_id = self._new_connection_id()
        try:
            with trio.fail_after(timeout):
                ready = await self._handshake(client, client_address, connection_id)
        except trio.TooSlowError:
            await client.error(E.HANDSHAKE_ERROR, f"gw waited {timeout:g}s for the handshake and authentication to "
                               "finish and closed the connection")
            return
        except ProtocolError as e:
            log.info("listener %s: %s: %s", self.listener.name, client_address, e)
            await client.error(e.code, str(e))
            return
        except Refused:
            return
        if ready is None:
            return
        upstream, sr, caps, mode, sql_mode, database = ready
        session = ProxySession(self, client.stream, codec, upstream, sr, caps, mode, sql_mode, database,
                               connection_id)
        self.connections[connection_id] = Connected(sr.session.identity, upstream.login, upstream.thread_id,
                                                    session)
        try:
            reason = await session.run()
            log.debug("session %s ended: %s", sr.session.id, reason)
        finally:
            self.connections.pop(connection_id, None)
            if client.stream is not stream:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    try:
                        await client.stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass

    async def _handshake(self, client: _Client, client_address: str, connection_id: int) -> Any:
        info = await self._server()
        listener = self.listener
        offered = (GW_CAPABILITIES & info.capabilities) | C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH \
            | C.LONG_PASSWORD | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
        if self.ssl_context is not None:
            offered |= C.SSL
        scramble = bytes(secrets.choice(range(33, 127)) for _ in range(20))
        greeting = Handshake(info.server_version, connection_id, scramble, int(offered),
                             info.collation or DEFAULT_COLLATION, ServerStatus.AUTOCOMMIT, CLEAR_PASSWORD)
        await client.send(greeting.encode())
        first = await client.next_packet()
        if first is None:
            return None
        hello = HandshakeResponse.decode(first.payload)
        user = hello.user

        async def refuse(code: E.Code, message: str, reason: str) -> Refused:
            await listener.refused(client_address=client_address, claimed_user=user, reason=reason, message=message)
            await client.error(code, message)
            return Refused()

        if hello.ssl_request:
            if self.ssl_context is None:
                raise ProtocolError("this listener does not offer TLS; connect without it (for example "
                                    "--skip-ssl / ssl_disabled=True)", code=E.HANDSHAKE_ERROR)
            # Clients start the TLS handshake right after the request, without waiting for an answer: bytes
            # already read belong to the TLS layer (anything that is not TLS fails the handshake).
            raw: trio.abc.Stream = _Replay(client.stream, client.codec.take_buffered())
            tls = trio.SSLStream(raw, self.ssl_context, server_side=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as e:
                raise ProtocolError(f"TLS handshake failed ({e.__cause__ or e})") from None
            client.stream = tls
            client.tls = True
            second = await client.next_packet()
            if second is None:
                return None
            hello = HandshakeResponse.decode(second.payload)
            user = hello.user
            if hello.ssl_request:
                raise ProtocolError("a second TLS request inside TLS")
        if self.opts.require_tls and not client.tls:
            raise await refuse(E.ACCESS_DENIED, f"listener {listener.name!r} requires TLS; connect with TLS "
                               "(mariadb --ssl, PyMySQL ssl={...}, ssl_mode=REQUIRED)", "tls_required")
        if hello.capabilities & C.COMPRESS:
            raise await refuse(E.NOT_SUPPORTED_YET, "gw does not support the compressed protocol; connect "
                               "without compression", "compression")
        caps = hello.capabilities & offered
        token = await self._token(client, hello)
        if token is None:
            return None
        if not token:
            raise await refuse(E.ACCESS_DENIED, "no token: pass your gw token as the password, with the cleartext "
                               "plugin enabled (mariadb --enable-cleartext-plugin; see gw's MySQL docs)", "no_token")
        try:
            identity = await listener.authenticate(Credential("token", token, username=user),
                                                   client_address=client_address, claimed_user=user)
        except AuthenticationError as e:
            code = E.DBACCESS_DENIED if isinstance(e, AccessDenied) and False else E.ACCESS_DENIED
            await client.error(code, str(e))
            raise Refused() from None
        login = self.login_for(identity)
        if login is None:
            groups = ", ".join(identity.groups) or "none"
            raise await refuse(E.ACCESS_DENIED, f"no upstream account of listener {listener.name!r} is mapped to "
                               f"your groups ({groups}); request a token with a group listed in upstream.roles",
                               "no_role")
        database = hello.database or self.target.database
        try:
            upstream = await connect(self.target, login, client_capabilities=caps, collation=hello.collation,
                                     database=database, attributes=hello.attributes)
        except UpstreamError as e:
            raise await refuse(e.code, str(e), "upstream_unavailable") from None
        try:
            h = upstream.handshake
            self.server_info = ServerInfo(h.server_version, h.capabilities, h.collation, h.status)
            if (caps & FORMAT_CAPABILITIES) != (upstream.capabilities & FORMAT_CAPABILITIES):
                raise await refuse(E.HANDSHAKE_ERROR, "the upstream server's capabilities changed since gw greeted "
                                   "you; reconnect", "upstream_changed")
            state = await upstream.query(STATE_QUERY)
            row = state.rows[0]
            cs = (row[0] or b"").decode("ascii", "replace")
            sql_mode = (row[1] or b"").decode("ascii", "replace")
            db = row[2].decode("utf-8", "surrogateescape") if row[2] is not None else None
            try:
                mode = session_mode(cs, sql_mode)
            except Unfollowable as e:
                raise await refuse(E.NOT_SUPPORTED_YET, str(e), "unfollowable_mode") from None
            attributes = {"database": db or "", "upstream_user": login.user, "tls": "yes" if client.tls else "no",
                          "connection_id": str(connection_id)}
            program = dict(hello.attributes).get("program_name")
            if program:
                attributes["program_name"] = program
            try:
                sr = await listener.start_session(identity, client_address=client_address, claimed_user=user,
                                                  attributes=attributes)
            except Exception as e:  # a stage could not record the session start: fail closed, say so
                log.exception("listener %s: could not start a session for %s", listener.name, client_address)
                await client.error(E.UNKNOWN_ERROR, f"gw could not start the session ({type(e).__name__}: {e}); try "
                                   "again later or tell the gateway operator")
                raise Refused() from None
            await client.send(OK(status=upstream.status or ServerStatus.AUTOCOMMIT).encode(caps))
            client.codec.expected_seq = None
        except BaseException:
            await upstream.quit()
            await upstream.aclose()
            raise
        return upstream, sr, caps, mode, sql_mode, db

    async def _token(self, client: _Client, hello: HandshakeResponse) -> str | None:
        """The password the client sent, switching it to mysql_clear_password when it chose another method."""
        if hello.auth_plugin == CLEAR_PASSWORD or (not hello.capabilities & C.PLUGIN_AUTH and hello.auth_response
                                                    and hello.auth_plugin == ""):
            raw = hello.auth_response
        elif hello.capabilities & C.PLUGIN_AUTH:
            await client.send(auth_switch(CLEAR_PASSWORD, b""))
            answer = await client.next_packet()
            if answer is None:
                return None
            raw = answer.payload
        else:
            raise ProtocolError("this client does not support pluggable authentication, which gw needs to receive "
                                "the token; use a current MySQL or MariaDB client", code=E.ACCESS_DENIED)
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        return raw.decode("utf-8", "replace")


__all__ = ["MySQLHandler"]
