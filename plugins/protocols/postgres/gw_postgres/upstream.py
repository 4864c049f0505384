"""Connections from gw to the upstream PostgreSQL: TLS negotiation, log-in with the credentials gw holds
(trust, cleartext, MD5, SCRAM-SHA-256), cancel requests, and a minimal simple-query client for catalog
lookups.

Every error raised here is an :class:`~gw_postgres.errors.UpstreamError` whose text is safe for the client:
it names the upstream by ``host:port/database`` and never contains a credential.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio
from gw.protocol import write_now

from .codec import CLOSED, NEED_DATA, PG_MAX_MESSAGE, Role, WireCodec
from .errors import CONNECTION_FAILURE, CONNECTION_REJECTED, ProtocolError, UpstreamError
from .messages import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationOther,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    CancelRequest,
    CommandComplete,
    DataRow,
    Describe,
    ErrorResponse,
    FieldDescription,
    Message,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    RowDescription,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
)
from .options import UpstreamOptions
from .scram import MECHANISM, ScramClient, md5_password

log = logging.getLogger("gw.postgres.upstream")

RECEIVE_SIZE = 64 * 1024


@dataclass(frozen=True)
class Login:
    """The upstream role gw uses for a session.  ``password_env`` names where the password lives; the
    password itself is read at connect time and never stored on this object."""

    user: str
    password_env: str | None = None

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class UpstreamTarget:
    """Where the upstream is and how to reach it (no credentials)."""

    host: str
    port: int
    database: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    connect_timeout: float = 10.0

    @classmethod
    def from_options(cls, o: UpstreamOptions, resolve: Callable[[str], Path] | None = None) -> UpstreamTarget:
        """``resolve`` turns a relative ``sslrootcert`` into a path relative to the pipeline file."""
        ca = str(resolve(o.sslrootcert)) if (o.sslrootcert and resolve is not None) else o.sslrootcert
        return cls(o.host, o.port, o.database, o.sslmode, ca, o.connect_timeout.total_seconds())

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.database}"

    def ssl_context(self) -> ssl.SSLContext:
        if self.sslmode in ("verify-ca", "verify-full"):
            ctx = ssl.create_default_context(cafile=self.sslrootcert)
            ctx.check_hostname = self.sslmode == "verify-full"
        else:
            # prefer/require: encryption without authentication of the server, as libpq does.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass
class UpstreamConnection:
    """An authenticated connection to the upstream, ready for queries."""

    target: UpstreamTarget
    stream: trio.abc.Stream
    codec: WireCodec
    parameters: dict[str, str] = field(default_factory=dict)
    backend_key: BackendKeyData | None = None
    status: str = "I"
    tls: bool = False
    #: A ``send_all`` is under way (a send now waits its turn there, which raises trio's BusyResourceError).
    sending: bool = False

    async def send(self, data: bytes | memoryview) -> None:
        if self.sending:
            await self.stream.send_all(data)
            return
        sent = write_now(self.stream, data)
        if sent == len(data):
            return
        self.sending = True
        try:
            await self.stream.send_all(memoryview(data)[sent:])
        finally:
            self.sending = False

    async def next_event(self) -> Message:
        """The next message from the upstream (raises UpstreamError when it closes)."""
        while True:
            try:
                ev = self.codec.next_event()
            except ProtocolError as e:
                raise UpstreamError(f"the upstream database {self.target.describe()} sent invalid protocol "
                                    f"data ({e})") from None
            if ev is NEED_DATA:
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, OSError) as e:
                    raise UpstreamError(f"lost the connection to the upstream database "
                                        f"{self.target.describe()} ({e})") from None
                self.codec.receive_data(data)
                continue
            if ev is CLOSED:
                raise UpstreamError(f"the upstream database {self.target.describe()} closed the connection")
            assert isinstance(ev, Message)
            return ev

    async def simple_query(self, sql: str) -> list[list[bytes | None]]:
        """Run one statement and return its rows (text format).  For gw's own catalog lookups."""
        await self.send(Query(sql).encode())
        rows: list[list[bytes | None]] = []
        error: ErrorResponse | None = None
        while True:
            ev = await self.next_event()
            if isinstance(ev, DataRow):
                rows.append(list(ev.values))
            elif isinstance(ev, ErrorResponse):
                error = ev
            elif isinstance(ev, ReadyForQuery):
                break
            elif isinstance(ev, (RowDescription, CommandComplete, NoticeResponse, ParameterStatus)):
                continue
        if error is not None:
            raise UpstreamError(f"upstream query failed: {error.message} ({error.code})", sqlstate=error.code)
        return rows

    async def describe(self, query: str) -> tuple[FieldDescription, ...]:
        """The columns ``query`` would return, without running it (Parse + Describe on the unnamed
        statement); ``()`` when it returns no rows."""
        await self.send(Parse("", query).encode() + Describe("S", "").encode() + Sync().encode())
        fields: tuple[FieldDescription, ...] = ()
        error: ErrorResponse | None = None
        while True:
            ev = await self.next_event()
            if isinstance(ev, RowDescription):
                fields = ev.fields
            elif isinstance(ev, ErrorResponse):
                error = ev
            elif isinstance(ev, ReadyForQuery):
                break
        if error is not None:
            raise UpstreamError(f"upstream could not describe the query: {error.message} ({error.code})",
                                sqlstate=error.code)
        return fields

    async def aclose(self) -> None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


async def _open(target: UpstreamTarget) -> tuple[trio.abc.Stream, WireCodec, bool]:
    """TCP connection plus TLS negotiation per ``sslmode``."""
    where = target.describe()
    try:
        tcp: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise UpstreamError(f"gw cannot reach the upstream database {where} ({reason}); try again later "
                            "or tell the gateway operator") from None
    codec = WireCodec(Role.CLIENT, max_message_size=PG_MAX_MESSAGE)
    if target.sslmode == "disable":
        return tcp, codec, False
    try:
        await tcp.send_all(codec.send(SSLRequest()))
        answer: Message | object = NEED_DATA
        while answer is NEED_DATA:
            data = await tcp.receive_some(1)
            if not data:
                raise UpstreamError(f"the upstream database {where} closed the connection during TLS "
                                    "negotiation")
            codec.receive_data(data)
            answer = codec.next_event()
    except (trio.BrokenResourceError, OSError, ProtocolError) as e:
        await tcp.aclose()
        raise UpstreamError(f"TLS negotiation with the upstream database {where} failed ({e})") from None
    assert isinstance(answer, SSLResponse)
    if not answer.accepted:
        if target.sslmode == "prefer":
            return tcp, codec, False
        await tcp.aclose()
        raise UpstreamError(f"the upstream database {where} does not offer TLS but upstream.sslmode is "
                            f"{target.sslmode!r}; tell the gateway operator")
    if codec.buffered:
        # Bytes after 'S' would be processed as if they came through TLS (CVE-2021-23222): refuse.
        await tcp.aclose()
        raise UpstreamError(f"the upstream database {where} sent unencrypted data after agreeing to TLS; "
                            "gw closed the connection")
    tls = trio.SSLStream(tcp, target.ssl_context(), server_hostname=target.host)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
        await tcp.aclose()
        cause = e.__cause__ or e
        raise UpstreamError(f"TLS handshake with the upstream database {where} failed ({cause}); check "
                            "upstream.sslmode and upstream.sslrootcert") from None
    return tls, codec, True


async def connect(target: UpstreamTarget, login: Login, parameters: Mapping[str, str] | None = None
                  ) -> UpstreamConnection:
    """Open and authenticate a connection; returns once the upstream sent ReadyForQuery."""
    with trio.move_on_after(target.connect_timeout) as scope:
        stream, codec, tls = await _open(target)
        conn = UpstreamConnection(target, stream, codec, tls=tls)
        try:
            await _login(conn, login, parameters or {})
        except BaseException:
            await conn.aclose()
            raise
        return conn
    assert scope.cancelled_caught
    raise UpstreamError(f"gw timed out connecting to the upstream database {target.describe()} after "
                        f"{target.connect_timeout:g}s; try again later or tell the gateway operator")


async def _login(conn: UpstreamConnection, login: Login, parameters: Mapping[str, str]) -> None:
    where = conn.target.describe()
    params = {"user": login.user, "database": conn.target.database, **parameters}
    await conn.send(conn.codec.send(StartupMessage(params)))
    scram: ScramClient | None = None
    while True:
        ev = await conn.next_event()
        if isinstance(ev, AuthenticationOk):
            continue
        if isinstance(ev, ParameterStatus):
            # Every session of a listener gets the same dozen names and (mostly) the same values: interned,
            # a thousand idle sessions hold one copy of each instead of a thousand (about 1.5 kB a session).
            conn.parameters[sys.intern(ev.name)] = sys.intern(ev.value)
        elif isinstance(ev, BackendKeyData):
            conn.backend_key = ev
        elif isinstance(ev, ReadyForQuery):
            conn.status = ev.status
            return
        elif isinstance(ev, ErrorResponse):
            raise _login_refused(where, ev)
        elif isinstance(ev, (NoticeResponse, NegotiateProtocolVersion)):
            continue
        elif isinstance(ev, AuthenticationCleartextPassword):
            await conn.send(PasswordMessage(_password(login, where)).encode())
        elif isinstance(ev, AuthenticationMD5Password):
            answer = md5_password(login.user, _password(login, where), ev.salt)
            await conn.send(PasswordMessage(answer).encode())
        elif isinstance(ev, AuthenticationSASL):
            if MECHANISM not in ev.mechanisms:
                raise UpstreamError(f"the upstream database {where} offers SASL mechanisms "
                                    f"{', '.join(ev.mechanisms)}, none of which gw speaks",
                                    sqlstate=CONNECTION_REJECTED)
            scram = ScramClient(_password(login, where))
            await conn.send(SASLInitialResponse(MECHANISM, scram.client_first()).encode())
        elif isinstance(ev, AuthenticationSASLContinue) and scram is not None:
            await conn.send(SASLResponse(scram.client_final(bytes(ev.data))).encode())
        elif isinstance(ev, AuthenticationSASLFinal) and scram is not None:
            scram.verify_server_final(bytes(ev.data))
        elif isinstance(ev, AuthenticationOther):
            raise UpstreamError(f"the upstream database {where} asks for an authentication method gw does "
                                f"not speak (code {ev.code}); use trust, password, md5 or scram-sha-256 for "
                                "gw's role", sqlstate=CONNECTION_REJECTED)
        else:
            raise UpstreamError(f"the upstream database {where} sent {type(ev).__name__} during log-in")


def _password(login: Login, where: str) -> str:
    password = login.password()
    if password is None:
        if login.password_env:
            log.error("upstream %s asks for a password for role %r but environment variable %s is not set",
                      where, login.user, login.password_env)
        else:
            log.error("upstream %s asks for a password for role %r but no password_env is configured", where,
                      login.user)
        raise UpstreamError(f"the upstream database {where} requires a password that gw does not have; tell "
                            "the gateway operator (details in the gw log)", sqlstate=CONNECTION_REJECTED)
    return password


def _login_refused(where: str, err: ErrorResponse) -> UpstreamError:
    if err.code.startswith("28"):
        log.error("upstream %s refused gw's log-in: %s (%s)", where, err.message, err.code)
        return UpstreamError(f"the upstream database {where} refused gw's log-in ({err.code}); tell the "
                             "gateway operator (details in the gw log)", sqlstate=CONNECTION_REJECTED)
    return UpstreamError(f"the upstream database {where} refused the connection: {err.message} ({err.code})",
                         sqlstate=err.code or CONNECTION_FAILURE)


async def send_cancel(target: UpstreamTarget, key: BackendKeyData) -> None:
    """Ask the upstream to cancel what backend ``key`` runs, on a fresh connection (PostgreSQL sends no
    answer; it closes the connection)."""
    with trio.move_on_after(target.connect_timeout):
        stream, codec, _ = await _open(target)
        try:
            await stream.send_all(codec.send(CancelRequest(key.process_id, key.secret_key)))
            with trio.move_on_after(2):
                while await stream.receive_some(1024):
                    pass
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, OSError):
                    pass
