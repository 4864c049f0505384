"""Connections from gw to the upstream MySQL/MariaDB server: TLS, log-in with the credentials gw holds
(mysql_native_password, caching_sha2_password with its fast path and its full authentication over TLS or
RSA, MariaDB's client_ed25519, authentication switches), and a minimal text-protocol client for gw's own
queries (the session's character set and sql_mode, KILL, catalog lookups).

Every error raised here is an :class:`~gw_mysql.errors.UpstreamError` whose text is safe for the client: it
names the upstream by ``host:port`` and never contains a credential.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from . import auth
from . import errors as E
from .codec import CLOSED, NEED_DATA, Packet, PacketCodec, encode_packet
from .constants import GW_CAPABILITIES
from .constants import Capability as C
from .constants import Command as Com
from .errors import ProtocolError, UpstreamError
from .messages import (
    OK,
    AuthSwitchRequest,
    ColumnDefinition,
    Err,
    Handshake,
    HandshakeResponse,
    ServerInfo,
    column_count,
    decode_error,
    decode_text_row,
    is_terminator,
)
from .options import UpstreamOptions

log = logging.getLogger("gw.mysql.upstream")

RECEIVE_SIZE = 64 * 1024
#: What gw asks of every upstream besides what the client negotiated.
ALWAYS = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.LONG_PASSWORD
#: Capabilities that change the format of what the server sends: gw asks the upstream for exactly what the
#: client negotiated, so responses can be relayed as they are.
FORMAT_CAPABILITIES = (C.DEPRECATE_EOF | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.MULTI_STATEMENTS | C.FOUND_ROWS
                       | C.IGNORE_SPACE | C.INTERACTIVE | C.ODBC | C.TRANSACTIONS | C.LONG_FLAG)


@dataclass(frozen=True)
class Login:
    """The upstream account gw uses for a session; the password is read from the environment at connect time
    and never stored on this object."""

    user: str
    password_env: str | None = None

    def password(self) -> bytes:
        if not self.password_env:
            return b""
        value = os.environ.get(self.password_env)
        if value is None:  # an account without a password (a test server); the upstream decides
            log.debug("environment variable %s is not set: logging in as %r without a password",
                      self.password_env, self.user)
            return b""
        return value.encode()


@dataclass(frozen=True)
class UpstreamTarget:
    """Where the upstream is and how to reach it (no credentials)."""

    host: str
    port: int
    database: str | None
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    server_public_key: str | None = None
    get_server_public_key: bool = False
    connect_timeout: float = 10.0

    @classmethod
    def from_options(cls, o: UpstreamOptions, resolve: Callable[[str], Path] | None = None) -> UpstreamTarget:
        def path(p: str | None) -> str | None:
            return str(resolve(p)) if (p and resolve is not None) else p

        return cls(o.host, o.port, o.database, o.sslmode, path(o.sslrootcert), path(o.server_public_key),
                   o.get_server_public_key, o.connect_timeout.total_seconds())

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (f"/{self.database}" if self.database else "")

    def ssl_context(self) -> ssl.SSLContext:
        if self.sslmode in ("verify-ca", "verify-full"):
            ctx = ssl.create_default_context(cafile=self.sslrootcert)
            ctx.check_hostname = self.sslmode == "verify-full"
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass
class QueryResult:
    columns: list[ColumnDefinition] = field(default_factory=list)
    rows: list[list[bytes | None]] = field(default_factory=list)
    ok: OK | None = None


@dataclass
class UpstreamConnection:
    """An authenticated connection to the upstream, ready for commands."""

    target: UpstreamTarget
    stream: trio.abc.Stream
    codec: PacketCodec
    handshake: Handshake
    capabilities: int
    login: Login
    tls: bool = False
    status: int = 0

    @property
    def thread_id(self) -> int:
        return self.handshake.connection_id

    @property
    def deprecate_eof(self) -> bool:
        return bool(self.capabilities & C.DEPRECATE_EOF)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise UpstreamError(f"gw lost its connection to the upstream server {self.target.describe()} ({e}); "
                                "reconnect", code=E.SERVER_LOST) from None

    async def receive_some(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise UpstreamError(f"gw lost its connection to the upstream server {self.target.describe()} ({e}); "
                                "reconnect", code=E.SERVER_LOST) from None

    async def next_packet(self) -> Packet:
        """The next packet from the upstream (raises UpstreamError when it closes or breaks the protocol)."""
        while True:
            try:
                p = self.codec.next_packet()
            except ProtocolError as e:
                raise UpstreamError(f"the upstream server {self.target.describe()} sent invalid protocol data "
                                    f"({e})", code=E.SERVER_LOST) from None
            if p is NEED_DATA:
                self.codec.receive_data(await self.receive_some())
                continue
            if p is CLOSED:
                raise UpstreamError(f"the upstream server {self.target.describe()} closed the connection",
                                    code=E.SERVER_LOST)
            assert isinstance(p, Packet)
            return p

    async def query(self, sql: str) -> QueryResult:
        """Run one statement with the text protocol and return its result (gw's own queries).  An ERR
        raises UpstreamError carrying the server's error number."""
        await self.send(encode_packet(bytes((Com.QUERY,)) + sql.encode("utf-8"), 0))
        return await self.read_result()

    async def read_result(self) -> QueryResult:
        result = QueryResult()
        first = await self.next_packet()
        if first.first == 0xFF:
            err = decode_error(first.payload)
            raise UpstreamError(f"upstream query failed: {err.message} ({err.number})",
                                code=E.Code(err.number, err.sqlstate))
        if first.first == 0x00:
            result.ok = OK.decode(first.payload, self.capabilities)
            self.status = result.ok.status
            return result
        n = column_count(first.payload)
        for _ in range(n):
            result.columns.append(ColumnDefinition.decode((await self.next_packet()).payload))
        if not self.deprecate_eof:
            await self.next_packet()
        while True:
            p = await self.next_packet()
            if is_terminator(p.payload, self.deprecate_eof):
                break
            if p.first == 0xFF:
                err = decode_error(p.payload)
                raise UpstreamError(f"upstream query failed: {err.message} ({err.number})",
                                    code=E.Code(err.number, err.sqlstate))
            result.rows.append(decode_text_row(p.payload, n))
        return result

    async def quit(self) -> None:
        with trio.move_on_after(0.5):
            try:
                await self.stream.send_all(encode_packet(bytes((Com.QUIT,)), 0))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def aclose(self) -> None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


async def _tcp(target: UpstreamTarget) -> trio.abc.Stream:
    try:
        return await trio.open_tcp_stream(target.host, target.port)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise UpstreamError(f"gw cannot reach the upstream server {target.describe()} ({reason}); try again later "
                            "or tell the gateway operator", code=E.CONNECTION_ERROR) from None


async def connect(target: UpstreamTarget, login: Login, *, client_capabilities: int = GW_CAPABILITIES,
                  collation: int = 45, database: str | None = None,
                  attributes: tuple[tuple[str, str], ...] = ()) -> UpstreamConnection:
    """Connect and log in.  ``client_capabilities`` are the client's negotiated flags: the upstream is asked
    for the same response formats."""
    with trio.move_on_after(target.connect_timeout) as scope:
        return await _connect(target, login, client_capabilities, collation, database, attributes)
    assert scope.cancelled_caught
    raise UpstreamError(f"the upstream server {target.describe()} did not complete the log-in within "
                        f"{target.connect_timeout:g}s; try again later or tell the gateway operator")


async def _connect(target: UpstreamTarget, login: Login, client_caps: int, collation: int, database: str | None,
                   attributes: tuple[tuple[str, str], ...]) -> UpstreamConnection:
    where = target.describe()
    stream = await _tcp(target)
    codec = PacketCodec(max_packet_size=1 << 30, peer="upstream server")
    conn = None
    try:
        conn = UpstreamConnection(target, stream, codec, Handshake("", 0, b"", 0, 0, 0, ""), 0, login)
        greeting = await conn.next_packet()
        try:
            hello = Handshake.decode(greeting.payload)
        except ProtocolError as e:
            raise UpstreamError(f"the upstream server {where} did not greet gw as a MySQL server does ({e})") from None
        conn.handshake = hello
        server_caps = hello.capabilities
        missing = (C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH) & ~server_caps
        if missing:
            raise UpstreamError(f"the upstream server {where} is too old for gw (it lacks {C(missing)!r})")
        caps = (client_caps & FORMAT_CAPABILITIES & server_caps) | ALWAYS
        caps |= server_caps & C.CONNECT_ATTRS
        db = database if database is not None else target.database
        if db:
            caps |= C.CONNECT_WITH_DB
        seq = greeting.next_seq
        if target.sslmode != "disable":
            if server_caps & C.SSL:
                caps |= C.SSL
                await conn.send(encode_packet(HandshakeResponse(caps, 1 << 24, collation,
                                                                ssl_request=True).encode(), seq))
                seq += 1
                tls = trio.SSLStream(stream, target.ssl_context(), server_hostname=target.host)
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError) as e:
                    raise UpstreamError(f"TLS with the upstream server {where} failed ({e.__cause__ or e})") from None
                conn.stream = tls
                conn.tls = True
            elif target.sslmode != "prefer":
                raise UpstreamError(f"the upstream server {where} does not offer TLS but upstream.sslmode is "
                                    f"{target.sslmode!r}; tell the gateway operator")
        password = login.password()
        plugin = hello.auth_plugin if hello.auth_plugin in (auth.NATIVE, auth.CACHING_SHA2) else auth.NATIVE
        response = auth.first_response(plugin, password, hello.scramble) or b""
        attrs = attributes if caps & C.CONNECT_ATTRS else ()
        answer = HandshakeResponse(caps, 1 << 24, collation, login.user, response, db, plugin, attrs)
        await conn.send(encode_packet(answer.encode(), seq))
        conn.capabilities = caps
        await _authenticate(conn, plugin, password, hello.scramble)
        conn.codec.expected_seq = None
        return conn
    except BaseException:
        if conn is not None:
            await conn.aclose()
        else:
            await stream.aclose()
        raise


async def _authenticate(conn: UpstreamConnection, plugin: str, password: bytes, scramble: bytes) -> None:
    where = conn.target.describe()
    while True:
        p = await conn.next_packet()
        seq = p.next_seq
        if p.first == 0x00:
            conn.status = OK.decode(p.payload, conn.capabilities).status
            return
        if p.first == 0xFF:
            raise _refused(where, conn.login, decode_error(p.payload))
        if p.first == 0xFE:
            switch = AuthSwitchRequest.decode(p.payload)
            plugin, scramble = switch.plugin, switch.data
            if plugin == auth.CLEAR and not conn.tls and not _loopback(conn.target.host):
                raise UpstreamError(f"the upstream server {where} asks for the password in cleartext over an "
                                    "unencrypted connection; gw refuses (configure TLS to the upstream)",
                                    code=E.ACCESS_DENIED)
            data = auth.first_response(plugin, password, scramble)
            if data is None:
                raise UpstreamError(f"the upstream server {where} asks for the authentication method {plugin!r}, "
                                    "which gw does not speak; use mysql_native_password, caching_sha2_password "
                                    "or ed25519 for gw's account", code=E.ACCESS_DENIED)
            await conn.send(encode_packet(data, seq))
            continue
        if p.first == 0x01 and plugin == auth.CACHING_SHA2:
            body = p.payload[1:]
            if body == bytes((auth.FAST_AUTH_SUCCESS,)):
                continue  # an OK follows
            if body == bytes((auth.PERFORM_FULL_AUTH,)):
                await _full_sha2(conn, password, scramble, seq)
                continue
            raise UpstreamError(f"the upstream server {where} sent an unexpected caching_sha2_password message")
        raise UpstreamError(f"the upstream server {where} sent an unexpected packet during log-in "
                            f"(0x{p.first & 0xFF:02x})")


async def _full_sha2(conn: UpstreamConnection, password: bytes, scramble: bytes, seq: int) -> None:
    where = conn.target.describe()
    if conn.tls:
        await conn.send(encode_packet(password + b"\0", seq))
        return
    key: bytes | None = None
    if conn.target.server_public_key:
        try:
            key = Path(conn.target.server_public_key).read_bytes()
        except OSError as e:
            raise UpstreamError(f"gw cannot read upstream.server_public_key ({e.strerror}); tell the gateway "
                                "operator") from None
    elif conn.target.get_server_public_key:
        await conn.send(encode_packet(auth.REQUEST_PUBLIC_KEY, seq))
        answer = await conn.next_packet()
        if answer.first != 0x01:
            raise UpstreamError(f"the upstream server {where} did not send its RSA public key")
        key = answer.payload[1:]
        seq = answer.next_seq
    else:
        raise UpstreamError(f"the upstream server {where} needs caching_sha2_password's full authentication, which "
                            "without TLS needs its RSA public key: configure upstream.sslmode, "
                            "upstream.server_public_key or upstream.get_server_public_key", code=E.ACCESS_DENIED)
    try:
        data = auth.rsa_encrypted_password(password, scramble, key)
    except ValueError as e:
        raise UpstreamError(f"the RSA public key of the upstream server {where} is unusable ({e})") from None
    await conn.send(encode_packet(data, seq))



def _loopback(host: str) -> bool:
    from .options import is_loopback

    return is_loopback(host)


def _refused(where: str, login: Login, err: Err) -> UpstreamError:
    log.error("upstream %s refused gw's log-in as %r: %s (%d)", where, login.user, err.message, err.number)
    if err.number in (1045, 1044, 1698, 1251):
        return UpstreamError(f"the upstream server {where} refused gw's log-in ({err.number}); tell the gateway "
                             "operator (details in the gw log)", code=E.ACCESS_DENIED)
    return UpstreamError(f"the upstream server {where} refused the connection: {err.message} ({err.number})",
                         code=E.Code(err.number, err.sqlstate))


async def probe(target: UpstreamTarget, login: Login) -> ServerInfo:
    """Log in once to learn the server's version and capabilities (for the greeting gw gives clients)."""
    conn = await connect(target, login)
    try:
        hello = conn.handshake
        return ServerInfo(hello.server_version, hello.capabilities, hello.collation, hello.status)
    finally:
        await conn.quit()
        await conn.aclose()
