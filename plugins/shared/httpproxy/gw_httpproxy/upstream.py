"""The upstream side: resolving the configured credential, connecting (TCP or TLS) and speaking HTTP/1.1 as
client (through :class:`gw_httpproxy.codec.ClientCodec`).

Everything here is driven by :class:`~gw_httpproxy.options.UpstreamOptions`, so a protocol that subclasses it
(the Kubernetes plugin: an API server's CA in ``ca_file``, a client certificate, a bearer token in
``headers``) gets the same connection handling.  Failures become :class:`UpstreamError` with a short
``reason`` code and a message for the agent; the proxy turns them into 502/504 replies.  Messages name the
upstream's address but never a credential.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio
from gw.errors import ConfigError

from .codec import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PAUSED,
    ClientCodec,
    Event,
    HeaderSeq,
    Informational,
    ProtocolError,
    Response,
    client_codec,
)
from .headers import ForwardingRules
from .options import ENV_REFERENCE, ProxyListenerOptions, UpstreamOptions
from .sending import Sender

RECEIVE_SIZE = 256 * 1024
#: Secrets shorter than this are not scrubbed from responses: replacing every occurrence of a 3-byte value
#: would corrupt ordinary data and protect nothing.
MIN_SCRUB_LENGTH = 6


class UpstreamError(Exception):
    """The upstream could not be reached or misbehaved.  ``status`` is what the client gets (502 / 504)."""

    def __init__(self, message: str, *, reason: str, status: int = 502) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class UpstreamClosed(UpstreamError):
    """The upstream closed the connection before a complete response (a stale keep-alive connection when it
    happens before the first response byte)."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message, reason="upstream_closed")
        self.before_response = before_response


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where to connect and how, resolved at start-up (credentials expanded, TLS context loaded)."""

    scheme: str
    host: str
    port: int
    base_path: str
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    read_timeout: float
    max_header_bytes: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def describe(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.base_path}"


def describe_url(url: str) -> str:
    """A credential-free form of the configured URL (URLs cannot hold credentials; see options)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _expand(value: str, env: Mapping[str, str], where: str, listener: str, file: str) -> str:
    def sub(match: object) -> str:
        name = match.group(1)  # type: ignore[attr-defined]
        if name not in env:
            raise ConfigError(f"listener {listener!r}: {where} refers to ${{{name}}}, which is not set in "
                              f"gw's environment; export {name} before starting gw", file=file)
        return env[name]

    return ENV_REFERENCE.sub(sub, value)


def resolve_credentials(options: ProxyListenerOptions, env: Mapping[str, str], file: str
                        ) -> tuple[list[tuple[str, str]], list[bytes]]:
    """The headers to inject (``${VAR}`` expanded, basic auth encoded) and the secret byte strings that must
    never reach a client.  Raises :class:`ConfigError` naming a missing variable."""
    return resolve_upstream_credentials(options.upstream, options.name, env, file)


def resolve_upstream_credentials(up: UpstreamOptions, listener: str, env: Mapping[str, str], file: str
                                 ) -> tuple[list[tuple[str, str]], list[bytes]]:
    """:func:`resolve_credentials` for an upstream table of any protocol (the MCP plugin's upstream table
    holds an :class:`UpstreamOptions` beside its stdio keys)."""
    injected: list[tuple[str, str]] = []
    secrets: list[bytes] = []
    for name, template in up.headers.items():
        value = _expand(template, env, f"upstream.headers.{name}", listener, file)
        injected.append((name, value))
        if ENV_REFERENCE.search(template):
            secrets.append(value.encode("latin-1"))
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():  # "Bearer abc": the bare credential may be echoed too
                secrets.append(credential.encode("latin-1"))
    if up.basic_auth is not None:
        var = up.basic_auth.password_env
        if var not in env:
            raise ConfigError(f"listener {listener!r}: upstream.basic_auth.password_env names {var}, "
                              f"which is not set in gw's environment; export {var} before starting gw",
                              file=file)
        password = env[var]
        pair = base64.b64encode(f"{up.basic_auth.user}:{password}".encode()).decode("ascii")
        injected.append(("Authorization", f"Basic {pair}"))
        secrets.extend([pair.encode("ascii"), password.encode("utf-8")])
    scrubbed = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LENGTH}, key=len, reverse=True)
    return injected, scrubbed


def upstream_ssl_context(options: ProxyListenerOptions, path: Callable[[str], Path], file: str
                         ) -> ssl.SSLContext:
    """The client TLS context for an https upstream; ``path`` resolves file names against the pipeline
    file's directory."""
    return upstream_tls_context(options.upstream, options.name, path, file)


def upstream_tls_context(up: UpstreamOptions, listener: str, path: Callable[[str], Path], file: str
                         ) -> ssl.SSLContext:
    """:func:`upstream_ssl_context` for an upstream table of any protocol."""
    try:
        ctx = ssl.create_default_context(cafile=str(path(up.ca_file)) if up.ca_file else None)
        if up.client_cert:
            key = str(path(up.client_key)) if up.client_key else None
            ctx.load_cert_chain(str(path(up.client_cert)), key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"listener {listener!r}: cannot load the upstream TLS files: {e}",
                          file=file) from None
    if not up.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def build_target(options: ProxyListenerOptions, ssl_context: ssl.SSLContext | None) -> UpstreamTarget:
    return upstream_target(options.upstream, ssl_context, options.max_header_bytes)


def upstream_target(up: UpstreamOptions, ssl_context: ssl.SSLContext | None, max_header_bytes: int
                    ) -> UpstreamTarget:
    """Where an upstream table points, for :meth:`UpstreamConnection.open`."""
    parts = urlsplit(up.url)
    scheme = parts.scheme
    return UpstreamTarget(
        scheme=scheme, host=parts.hostname or "", port=parts.port or (443 if scheme == "https" else 80),
        base_path=parts.path.rstrip("/"), ssl_context=ssl_context,
        connect_timeout=up.connect_timeout.total_seconds(),
        read_timeout=up.read_timeout.total_seconds(),
        max_header_bytes=max_header_bytes)


def forwarding_rules(options: ProxyListenerOptions, target: UpstreamTarget, injected: list[tuple[str, str]],
                     secrets: list[bytes], extra_drop: tuple[str, ...] = ()) -> ForwardingRules:
    return ForwardingRules.build(token_header=options.token_header, injected=injected,
                                 upstream_host=target.host_header, secrets=secrets,
                                 secret_headers=options.secret_headers, extra_drop=extra_drop)


def _os_reason(exc: OSError) -> str:
    """The first concrete reason (``Connection refused``) under trio's "all attempts failed" error."""
    pending: list[BaseException] = [exc]
    while pending:
        e = pending.pop(0)
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        if e.__cause__ is not None:
            pending.append(e.__cause__)
    return str(exc)


def _without_data(error: ProtocolError) -> str:
    """The parser's complaint without the bytes it quotes (``illegal header line: b'X-Ssn: ...'``): the message
    reaches the agent, the audit trail and recordings, where response data must not go unmasked."""
    return str(error).split(":", 1)[0].strip() or "malformed"


def _tls_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
        if isinstance(cause, ssl.SSLError):
            return cause.reason or str(cause)
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


class UpstreamConnection:
    """One connection to the upstream, reused for the requests of one client connection while both sides
    keep it alive."""

    def __init__(self, target: UpstreamTarget, stream: trio.abc.Stream) -> None:
        self.target = target
        self.stream = stream
        self.codec: ClientCodec = client_codec(target.max_header_bytes)
        #: Requests completed on this connection (a reused connection may be stale; see UpstreamClosed).
        self.completed = 0
        #: Response bytes received in the current request/response cycle.
        self.received = 0
        #: The response head arrived: a protocol error now means the body ended early.
        self.in_body = False
        self.closed = False
        self._sender = Sender(stream)

    @classmethod
    async def open(cls, target: UpstreamTarget) -> UpstreamConnection:
        where = target.address
        try:
            with trio.fail_after(target.connect_timeout):
                tcp = await trio.open_tcp_stream(target.host, target.port)
                if target.ssl_context is None:
                    return cls(target, tcp)
                tls = trio.SSLStream(tcp, target.ssl_context, server_hostname=target.host,
                                     https_compatible=True)
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError) as e:
                    await trio.aclose_forcefully(tcp)
                    raise UpstreamError(f"the TLS handshake with upstream {where} failed: {_tls_reason(e)}; "
                                        "check upstream.url, upstream.ca_file and the upstream's certificate",
                                        reason="upstream_tls") from None
                return cls(target, tls)
        except trio.TooSlowError:
            raise UpstreamError(f"the upstream {where} did not accept a connection within "
                                f"{target.connect_timeout:g}s", reason="upstream_timeout",
                                status=504) from None
        except OSError as e:
            raise UpstreamError(f"cannot connect to the upstream {where}: {_os_reason(e)}; the service may "
                                "be down, retry later", reason="upstream_unreachable") from None

    async def _send_bytes(self, data: bytes) -> None:
        if not data:
            return
        try:
            done = await self._sender.send(data, self.target.read_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise UpstreamClosed(f"the upstream {self.target.address} closed the connection while gw was "
                                 "sending the request", before_response=True) from None
        if not done:
            raise UpstreamError(f"the upstream {self.target.address} stopped accepting the request body",
                                reason="upstream_timeout", status=504)

    async def send_request(self, method: bytes, target: bytes, headers: HeaderSeq) -> None:
        await self._send_bytes(self.codec.send_request(method, target, headers))

    async def send_data(self, data: bytes | bytearray) -> None:
        await self._send_bytes(self.codec.send_data(data))

    async def send_end(self) -> None:
        await self._send_bytes(self.codec.send_end())

    async def next_event(self, before_wait: Callable[[], Awaitable[None]] | None = None) -> Event:
        """The next response event (:class:`~gw_httpproxy.codec.Informational`, ``Response``, ``Data``,
        ``EndOfMessage``); raises :class:`UpstreamError` on timeout, close or protocol error.
        ``before_wait`` runs before gw blocks on the upstream socket (the proxy flushes client output)."""
        codec = self.codec
        while True:
            try:
                event = codec.next_event()
            except ProtocolError as e:
                if self.in_body:
                    raise UpstreamClosed(f"the upstream {self.target.address} ended the response early: "
                                         f"{_without_data(e)}", before_response=False) from None
                if codec.peer_closed and not self.received:
                    raise UpstreamClosed(f"the upstream {self.target.address} closed the connection without "
                                         "responding", before_response=True) from None
                raise UpstreamError(f"the upstream {self.target.address} sent a malformed HTTP response: "
                                    f"{_without_data(e)}", reason="upstream_protocol") from None
            if event is not NEED_DATA:
                if event is CONNECTION_CLOSED or event is PAUSED:
                    raise UpstreamClosed(f"the upstream {self.target.address} closed the connection without "
                                         "responding", before_response=not self.received)
                if type(event) is Response:
                    self.in_body = True
                return event  # type: ignore[return-value]
            if before_wait is not None:
                await before_wait()
            data = b""
            # A bare cancel scope, not trio.fail_after (a generator per use): it runs for every response.
            scope = trio.CancelScope(deadline=trio.current_time() + self.target.read_timeout)
            try:
                with scope:
                    data = bytes(await self.stream.receive_some(RECEIVE_SIZE))  # no copy for bytes
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if scope.cancelled_caught:
                raise UpstreamError(f"the upstream {self.target.address} did not respond within "
                                    f"{self.target.read_timeout:g}s (upstream.read_timeout)",
                                    reason="upstream_timeout", status=504)
            self.received += len(data)
            codec.receive_data(data)

    async def response_head(self) -> Response | Informational:
        """The final response head, or ``101 Switching Protocols``; other interim responses (100, 102, 103)
        are skipped: gw answers ``Expect`` itself and relays no hints."""
        while True:
            event = await self.next_event()
            if type(event) is Response:
                return event
            if type(event) is Informational and event.status == 101:
                return event
            if type(event) is not Informational:
                raise UpstreamError(f"the upstream {self.target.address} sent body data before a response "
                                    "head", reason="upstream_protocol")

    def finish_cycle(self) -> bool:
        """After a response: prepare for the next request; False when the connection cannot be reused."""
        if self.codec.start_next_cycle():
            self.completed += 1
            self.received = 0
            self.in_body = False
            return True
        return False

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await trio.aclose_forcefully(self.stream)
