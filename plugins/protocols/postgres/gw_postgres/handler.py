"""The ``postgres`` protocol handler: start-up, TLS, client authentication by identity token, the upstream
log-in with the credentials gw holds, cancellation, then a :class:`~gw_postgres.session.ProxySession`.

Client authentication: gw asks for a cleartext password (AuthenticationCleartextPassword) and treats the
password as the identity token; the start-up ``user`` is recorded but identity comes from the token alone.
The client's ``database`` must name the upstream database this listener serves (or be left to default to it):
gw never silently connects a client to a database other than the one it asked for.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import TYPE_CHECKING, Any, cast

import trio
from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw.model import Column, Command, Identity, Session
from gw.protocol import ListenerOptions, ProtocolHandler
from gw_sqlanalysis.encodings import encoding_is_safe

from . import errors as E
from .codec import CLOSED, NEED_DATA, PasswordKind, Role, WireCodec
from .columns import Catalog
from .errors import ProtocolError, UpstreamError
from .messages import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    CancelRequest,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
)
from .options import PostgresListenerOptions
from .provenance import Provenance, classifier
from .session import ProxySession, error_message
from .upstream import Login, UpstreamConnection, UpstreamTarget, connect, send_cancel

if TYPE_CHECKING:
    from gw.runtime import ListenerRuntime

#: How long ``gw policy explain`` waits for the upstream to describe a statement.
DESCRIBE_TIMEOUT = 10.0

log = logging.getLogger("gw.postgres")

#: Start-up parameters relayed to the upstream.  Others are dropped: ``options`` could set any GUC (role,
#: search_path ...) without passing through policy, and ``replication`` would open a replication session.
RELAYED_PARAMETERS = frozenset({"application_name", "client_encoding", "datestyle", "timezone",
                                "intervalstyle", "extra_float_digits", "lc_monetary", "lc_numeric",
                                "lc_time"})
TLS_HANDSHAKE_BYTE = 0x16
RECEIVE_SIZE = 64 * 1024


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Refused(Exception):
    """The client was sent a FATAL error and must be disconnected."""


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


class _Client:
    """The client side during the handshake: its stream (plain or TLS) and codec."""

    def __init__(self, stream: trio.abc.Stream, codec: WireCodec) -> None:
        self.stream = stream
        self.codec = codec
        self.tls = False

    async def next_event(self) -> Message | None:
        while True:
            ev = self.codec.next_event()
            if ev is NEED_DATA:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                self.codec.receive_data(data)
                continue
            if ev is CLOSED:
                return None
            assert isinstance(ev, Message)
            return ev

    async def fatal(self, code: str, message: str, *, hint: str | None = None) -> None:
        with trio.move_on_after(1):
            try:
                await self.stream.send_all(error_message("FATAL", code, message, hint=hint))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


class PostgresHandler(ProtocolHandler):
    """One ``protocol = "postgres"`` listener."""

    name = "postgres"
    Options = PostgresListenerOptions
    #: The certificate is loaded at start; every other key (upstream, roles ...) is read per session.
    restart_keys = frozenset({"tls"})

    def __init__(self, listener: ListenerRuntime) -> None:
        super().__init__(listener)
        self.target = UpstreamTarget.from_options(self.opts.upstream, self.listener.services.resolve_path)
        self.classifier = classifier(self.opts.functions)
        self.catalog = Catalog(self._catalog_connection)
        self.ssl_context: ssl.SSLContext | None = None
        #: gw's BackendKeyData handed to clients -> the upstream's, for CancelRequest.
        self.cancel_keys: dict[tuple[int, bytes], BackendKeyData] = {}
        #: gw's BackendKeyData -> the session, so a CancelRequest cancels a held command too.
        self.sessions_by_key: dict[tuple[int, bytes], ProxySession] = {}

    @property
    def opts(self) -> PostgresListenerOptions:
        """The listener's current options (a reload replaces them for the next session)."""
        return cast(PostgresListenerOptions, self.listener.options)

    @property
    def options(self) -> PostgresListenerOptions:
        return self.opts

    async def reconfigure(self, previous: ListenerOptions) -> None:
        target = UpstreamTarget.from_options(self.opts.upstream, self.listener.services.resolve_path)
        self.target = target
        if cast(PostgresListenerOptions, previous).functions != self.opts.functions:
            self.classifier = classifier(self.opts.functions)
        if cast(PostgresListenerOptions, previous).upstream != self.opts.upstream:
            self.catalog.forget()  # another server or database: its tables are not the ones cached
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
                raise ValueError(f"listener {self.listener.name!r}: cannot load tls.cert / tls.key: "
                                 f"{e}") from None
            ctx.set_alpn_protocols(["postgresql"])
            self.ssl_context = ctx
        await self._warn_superusers()

    async def _warn_superusers(self) -> None:
        """Warn when an upstream role gw logs in as is a superuser (the server says so in ParameterStatus
        ``is_superuser``): policy is then the only thing between an agent and COPY ... PROGRAM.  Best effort:
        an upstream that cannot be reached now is not an error here."""
        up = self.opts.upstream
        logins = ([Login(up.user, up.password_env)] if up.user is not None else []) + [
            Login(r.user, r.password_env) for r in up.roles]
        for login in logins:
            with trio.move_on_after(3):
                try:
                    conn = await connect(self.target, login, {"application_name": "gw check"})
                except (UpstreamError, OSError):
                    continue
                try:
                    if conn.parameters.get("is_superuser") == "on":
                        log.warning("listener %s: upstream role %r is a PostgreSQL superuser; agents reach the "
                                    "database with every privilege policy does not deny (COPY ... PROGRAM, "
                                    "pg_read_file, ALTER SYSTEM). Log in as a least-privilege role instead "
                                    "(examples/setup-postgres.sql)", self.listener.name, login.user)
                finally:
                    await conn.aclose()

    async def close(self) -> None:
        await self.catalog.aclose()

    def describe_upstream(self) -> str:
        return self.target.describe()

    def upstream_address(self) -> tuple[str, int] | None:
        """Where ``/readyz`` checks that the upstream accepts connections."""
        return None if self.target.host.startswith("/") else (self.target.host, self.target.port)

    def warnings(self) -> list[str]:
        host, _ = self.opts.address
        if not self.opts.require_tls and not _loopback(host):
            return [f"listener {self.listener.name!r} accepts connections on {self.opts.listen} (not loopback) "
                    "without require_tls = true: tokens may cross the network in the clear; add "
                    "tls = { cert, key } and require_tls = true"]
        return []

    def classify(self, text: str, *, session: Session) -> Command:
        c = self.classifier.classify(text)
        return Command(session, 0, text, "sql", c.kind, c.verb, c.objects, c.flags, verbs=c.verbs)

    async def describe_result(self, command: Command) -> tuple[Column, ...] | str | None:
        """The result's columns for ``gw policy explain``, found as the data path finds them: the upstream
        describes the statement (Parse and Describe; it never runs) and the catalog and lineage give each
        column's sources.  Without the upstream, lineage of the text alone, when the text names every column."""
        if "multi_statement" in command.flags:
            return "several statements, several results: each is decided by the database when it runs"
        catalog = Catalog(self._catalog_connection)
        try:
            with trio.fail_after(DESCRIBE_TIMEOUT):
                fields = await catalog.describe(command.text)
                return tuple(await Provenance(self.classifier, catalog).columns(fields, command.text, None))
        except trio.TooSlowError:
            why = f"it did not answer within {DESCRIBE_TIMEOUT:g}s"
        except (UpstreamError, OSError, ValueError) as e:
            why = str(e)
        finally:
            await catalog.aclose()
        lineage = self.classifier.lineage(command.text)
        if lineage is not None and lineage.columns is not None and lineage.names is not None:
            return tuple(Column(name=n, sources=s) for n, s in zip(lineage.names, lineage.columns))
        return (f"the upstream could not describe the statement ({why.rstrip('.')}) and its text does not name "
                "every column: decided by the database when the statement runs")

    def login_for(self, identity: Identity) -> Login | None:
        """The upstream role for this identity: the first ``roles`` entry sharing a group, else ``user``
        (only when no roles are configured)."""
        up = self.opts.upstream
        for role in up.roles:
            if identity.in_any(role.groups):
                return Login(role.user, role.password_env)
        if up.roles:
            return None
        assert up.user is not None
        return Login(up.user, up.password_env)

    async def _catalog_connection(self) -> UpstreamConnection:
        up = self.opts.upstream
        if up.user is not None:
            login = Login(up.user, up.password_env)
        else:  # roles only: any mapped role can read the catalog
            login = Login(up.roles[0].user, up.roles[0].password_env)
        return await connect(self.target, login, {"application_name": "gw catalog"})

    # -- one connection --------------------------------------------------------------------------------------
    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        client = _Client(stream, WireCodec(Role.SERVER, max_message_size=self.opts.max_message_size))
        timeout = self.listener.handshake_timeout
        try:
            with trio.fail_after(timeout):
                ready = await self._handshake(client, client_address)
        except trio.TooSlowError:
            await client.fatal(E.PROTOCOL_VIOLATION, f"gw waited {timeout:g}s for the start-up and "
                               "authentication to finish and closed the connection")
            return
        except ProtocolError as e:
            log.info("listener %s: %s: %s", self.listener.name, client_address, e)
            await client.fatal(e.sqlstate, str(e), hint=e.hint)
            return
        except Refused:
            return
        if ready is None:
            return
        upstream, sr, key = ready
        session = ProxySession(self, client.stream, client.codec, upstream, sr)
        self.sessions_by_key[key] = session
        try:
            reason = await session.run()
            log.debug("session %s ended: %s", sr.session.id, reason)
        finally:
            self.cancel_keys.pop(key, None)
            self.sessions_by_key.pop(key, None)
            if client.stream is not stream:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    try:
                        await client.stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass

    async def _handshake(self, client: _Client, client_address: str) -> Any:
        startup = await self._startup(client, client_address)
        if startup is None:
            return None
        params = dict(startup.parameters)
        user = params.get("user", "")
        listener = self.listener

        async def refuse(code: str, message: str, reason: str, *, hint: str | None = None) -> Refused:
            await listener.refused(client_address=client_address, claimed_user=user, reason=reason,
                                   message=message)
            await client.fatal(code, message, hint=hint)
            return Refused()

        if self.opts.require_tls and not client.tls:
            raise await refuse(E.INVALID_AUTHORIZATION, f"listener {listener.name!r} requires TLS; connect "
                               "with sslmode=require (or verify-full)", "tls_required")
        if "replication" in params:
            raise await refuse(E.FEATURE_NOT_SUPPORTED, "gw does not proxy replication connections",
                               "replication")
        if not user:
            raise await refuse(E.INVALID_AUTHORIZATION, "no user name in the start-up packet; connect with "
                               "user=<your agent name>", "no_user")
        database = params.get("database") or user
        if database != self.target.database:
            raise await refuse(E.INVALID_CATALOG_NAME,
                               f"database {database!r} is not served by listener {listener.name!r}; it "
                               f"serves {self.target.database!r}: connect with dbname={self.target.database}",
                               "wrong_database")
        out = b""
        unknown = tuple(k for k in params if k.startswith("_pq_."))
        if startup.version != 196608 or unknown:
            out += NegotiateProtocolVersion(0, unknown).encode()
        await client.stream.send_all(out + AuthenticationCleartextPassword().encode())
        client.codec.password_kind = PasswordKind.PASSWORD
        answer = await client.next_event()
        if answer is None or isinstance(answer, Terminate):
            return None
        if not isinstance(answer, PasswordMessage):
            raise ProtocolError(f"expected the password (identity token), got {type(answer).__name__}")
        try:
            identity = await listener.authenticate(Credential("token", answer.password, username=user),
                                                   client_address=client_address, claimed_user=user)
        except AuthenticationError as e:
            code = E.INVALID_AUTHORIZATION if isinstance(e, AccessDenied) else E.INVALID_PASSWORD
            await client.fatal(code, str(e))
            raise Refused() from None
        login = self.login_for(identity)
        if login is None:
            groups = ", ".join(identity.groups) or "none"
            raise await refuse(E.INVALID_AUTHORIZATION,
                               f"no upstream role of listener {listener.name!r} is mapped to your groups "
                               f"({groups}); request a token with a group listed in upstream.roles",
                               "no_role")
        relayed = {k: v for k, v in params.items() if k.lower() in RELAYED_PARAMETERS}
        requested = next((v for k, v in relayed.items() if k.lower() == "client_encoding"), None)
        if requested is not None and not encoding_is_safe(requested):
            raise await refuse(E.FEATURE_NOT_SUPPORTED, _unsafe_encoding(requested), "unsupported_encoding")
        try:
            upstream = await connect(self.target, login, relayed)
        except UpstreamError as e:
            raise await refuse(e.sqlstate, str(e), "upstream_unavailable") from None
        encoding = upstream.parameters.get("client_encoding")
        if encoding is None or not encoding_is_safe(encoding):
            await upstream.aclose()
            raise await refuse(E.FEATURE_NOT_SUPPORTED, _unsafe_encoding(encoding or "(not reported)"),
                               "unsupported_encoding")
        try:
            attributes = {"database": database, "upstream_user": login.user,
                          "tls": "yes" if client.tls else "no"}
            if params.get("application_name"):
                attributes["application_name"] = params["application_name"]
            try:
                sr = await listener.start_session(identity, client_address=client_address, claimed_user=user,
                                                  attributes=attributes)
            except Exception as e:  # a stage could not record the session start: fail closed, say so
                log.exception("listener %s: could not start a session for %s", listener.name, client_address)
                await client.fatal(E.SYSTEM_ERROR, f"gw could not start the session ({type(e).__name__}: {e}); "
                                   "try again later or tell the gateway operator")
                raise Refused() from None
            key = self._cancel_key(upstream)
            hello = [AuthenticationOk().encode()]
            hello += [ParameterStatus(k, v).encode() for k, v in upstream.parameters.items()]
            hello += [BackendKeyData(key[0], key[1]).encode(), ReadyForQuery(upstream.status).encode()]
            await client.stream.send_all(b"".join(hello))
        except BaseException:
            await upstream.aclose()
            raise
        return upstream, sr, key

    def _cancel_key(self, upstream: UpstreamConnection) -> tuple[int, bytes]:
        """gw's own BackendKeyData for the client, mapped to the upstream's (which the client never sees)."""
        while True:
            key = (secrets.randbelow(2**31 - 1) + 1, secrets.token_bytes(4))
            if key not in self.cancel_keys:
                break
        if upstream.backend_key is not None:
            self.cancel_keys[key] = upstream.backend_key
        return key

    async def _startup(self, client: _Client, client_address: str) -> StartupMessage | None:
        """Read up to the StartupMessage, negotiating TLS on the way; None when the client is done."""
        first = await client.stream.receive_some(RECEIVE_SIZE)
        if not first:
            return None
        if first[0] == TLS_HANDSHAKE_BYTE:
            # PostgreSQL 17 direct TLS (sslnegotiation=direct): a TLS ClientHello with no SSLRequest first.
            if self.ssl_context is None:
                raise ProtocolError("this listener does not offer TLS; connect with sslmode=disable",
                                    sqlstate=E.PROTOCOL_VIOLATION)
            await self._start_tls(client, _Replay(client.stream, bytes(first)), direct=True)
        else:
            client.codec.receive_data(first)
        while True:
            ev = await client.next_event()
            if ev is None:
                return None
            if isinstance(ev, SSLRequest):
                if self.ssl_context is not None and not client.tls:
                    if client.codec.buffered:
                        # Plaintext sent after SSLRequest would be read as if it came through TLS
                        # (CVE-2021-23214); PostgreSQL refuses it too.
                        raise ProtocolError("received unencrypted data after SSLRequest; gw closed the "
                                            "connection")
                    await client.stream.send_all(b"S")
                    await self._start_tls(client, client.stream, direct=False)
                else:
                    await client.stream.send_all(b"N")
                continue
            if isinstance(ev, GSSENCRequest):
                await client.stream.send_all(b"N")
                continue
            if isinstance(ev, CancelRequest):
                await self._cancel(ev, client_address)
                return None
            assert isinstance(ev, StartupMessage)
            return ev

    async def _start_tls(self, client: _Client, raw: trio.abc.Stream, *, direct: bool) -> None:
        assert self.ssl_context is not None
        tls = trio.SSLStream(raw, self.ssl_context, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as e:
            raise ProtocolError(f"TLS handshake failed ({e.__cause__ or e})") from None
        client.stream = tls
        client.tls = True
        if direct and tls.selected_alpn_protocol() != "postgresql":
            # PostgreSQL requires ALPN for direct TLS so that a TLS connection meant for another service
            # cannot be replayed against it.
            raise ProtocolError("direct TLS connections must negotiate the ALPN protocol \"postgresql\"")

    async def _cancel(self, request: CancelRequest, client_address: str) -> None:
        session = self.sessions_by_key.get((request.process_id, bytes(request.secret_key)))
        if session is not None and session.cancel_held():
            log.info("listener %s: cancel request from %s cancelled a held command of session %s",
                     self.listener.name, client_address, session.sr.session.id)
            return
        upstream_key = self.cancel_keys.get((request.process_id, bytes(request.secret_key)))
        if upstream_key is None:
            log.warning("listener %s: ignored a CancelRequest from %s with an unknown key (process id %d)",
                        self.listener.name, client_address, request.process_id)
            return
        log.info("listener %s: cancel request from %s for gw process id %d", self.listener.name,
                 client_address, request.process_id)
        try:
            await send_cancel(self.target, upstream_key)
        except UpstreamError as e:
            log.warning("listener %s: could not forward a cancel request: %s", self.listener.name, e)


def _unsafe_encoding(name: str) -> str:
    return (f"gw does not support client_encoding {name!r}: in it a multibyte character can contain the byte "
            "of a quote or backslash, so gw could not read statements as the server does; connect with "
            "client_encoding=UTF8 (PGCLIENTENCODING=UTF8) or another server encoding (LATIN1, WIN1252, EUC_JP ...)")
