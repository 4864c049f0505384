"""The agent's side: MCP Streamable HTTP (2025-03-26 and later revisions) on HTTP/1.1, and the listener.

One endpoint (``path``, default ``/mcp``):

* ``POST`` one JSON-RPC message.  A request is answered with ``application/json``, or with an event stream
  when there is something to say before the answer (progress while a call is held for approval, the server's
  own messages about the call); notifications and responses get ``202``.  ``initialize`` without a session
  starts one and returns its ``Mcp-Session-Id``; everything else needs that header.
* ``GET`` the session's event stream (the server's own notifications and, where allowed, requests).
* ``DELETE`` ends the session.

Every request needs the agent's bearer token (``Authorization: Bearer ...``); a missing or refused token is a
``401`` whose ``WWW-Authenticate`` names the protected-resource metadata document
(``/.well-known/oauth-protected-resource``, RFC 9728, served without a token), which names the listener's
authorization servers.  A session belongs to the identity that started it: another identity presenting its
id is told no such session exists.  Browsers' ``Origin`` must match ``Host`` (DNS rebinding).

The HTTP/1.1 codec is the shared proxy library's (:mod:`gw_httpproxy.codec`).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

import trio
from gw.errors import AccessDenied, AuthenticationError, ConfigError
from gw.identity import Credential
from gw.model import Session
from gw.protocol import ProtocolHandler
from gw_httpproxy.codec import (
    NEED_DATA,
    Data,
    EndOfMessage,
    ProtocolError,
    Request,
    ServerCodec,
    server_codec,
)
from gw_httpproxy.headers import HeaderList, Headers, bearer_token, header_value
from gw_httpproxy.options import ENV_REFERENCE
from gw_httpproxy.replies import REASON_PHRASES
from gw_httpproxy.scrub import SecretForms
from gw_httpproxy.upstream import (
    MIN_SCRUB_LENGTH,
    UpstreamTarget,
    describe_url,
    resolve_upstream_credentials,
    upstream_target,
    upstream_tls_context,
)

from . import classify, jsonrpc, sse
from .options import INHERITED_ENV, McpListenerOptions
from .pins import ToolPins
from .session import Call, ClientGone, McpSession, SessionError
from .upstream import HttpUpstream, OnMessage, StdioUpstream, Upstream, UpstreamFailed, stdio_environment

if TYPE_CHECKING:
    from gw.runtime import ListenerRuntime

log = logging.getLogger("gw.mcp")

WELL_KNOWN = "/.well-known/oauth-protected-resource"
RECEIVE_SIZE = 64 * 1024
#: While a call runs gw reads ahead on the agent's connection to notice it leaving; at most this much.
WATCH_READ_LIMIT = 1024 * 1024
#: SSE comment sent on an idle GET stream, so dead agents are noticed and proxies keep it open.
STREAM_KEEPALIVE = 15.0
_ALLOW = b"GET, POST, DELETE"
#: How much larger than ``max_result_size`` a server's message may be (its JSON-RPC envelope, ``_meta``).
SERVER_MESSAGE_SLACK = 64 * 1024


@dataclass(frozen=True, slots=True)
class McpSetup:
    """Everything derived from one version of a listener's options."""

    options: McpListenerOptions
    target: UpstreamTarget | None
    injected: list[tuple[str, str]]
    env: dict[str, str] | None
    cwd: str | None
    secrets: SecretForms | None
    server_tls: ssl.SSLContext | None


def _expand(value: str, env: dict[str, str], where: str, listener: str, file: str) -> tuple[str, bool]:
    used = False

    def sub(match: Any) -> str:
        nonlocal used
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"listener {listener!r}: {where} refers to ${{{name}}}, which is not set in gw's "
                              f"environment; export {name} before starting gw", file=file)
        used = True
        return env[name]

    return ENV_REFERENCE.sub(sub, value), used


class McpHandler(ProtocolHandler):
    """``protocol = "mcp"``."""

    name: ClassVar[str] = "mcp"
    Options: ClassVar[type[McpListenerOptions]] = McpListenerOptions

    def __init__(self, listener: ListenerRuntime) -> None:
        from . import sdk  # noqa: F401  (the SDK is imported when a listener is built, not when gw starts)

        super().__init__(listener)
        self._setup: McpSetup | None = None
        self.sessions: dict[str, McpSession] = {}
        self._pins: ToolPins | None = None

    @property
    def mcp_options(self) -> McpListenerOptions:
        return cast(McpListenerOptions, self.listener.options)

    @property
    def pins(self) -> ToolPins:
        if self._pins is None:
            self._pins = ToolPins(self.listener.services.require_store("an mcp listener (tool pinning)"))
        return self._pins

    def build_setup(self, opts: McpListenerOptions) -> McpSetup:
        services = self.listener.services
        file = str(services.config.path)
        up = opts.upstream
        environ = dict(os.environ)
        target = None
        injected: list[tuple[str, str]] = []
        secrets: list[bytes] = []
        env = None
        cwd = None
        if up.http is not None:
            injected, secrets = resolve_upstream_credentials(up.http, opts.name, environ, file)
            tls = upstream_tls_context(up.http, opts.name, services.resolve_path, file) \
                if up.http.url.startswith("https:") else None
            target = upstream_target(up.http, tls, opts.max_header_bytes)
        else:
            expanded: dict[str, str] = {}
            for name, template in up.env.items():
                value, used = _expand(template, environ, f"upstream.env.{name}", opts.name, file)
                expanded[name] = value
                if used and len(value) >= MIN_SCRUB_LENGTH:
                    secrets.append(value.encode("utf-8"))
            env = stdio_environment(expanded, INHERITED_ENV, environ)
            cwd = str(services.resolve_path(up.cwd)) if up.cwd else str(services.config.path.parent)
        self.pins  # noqa: B018 -- a missing [storage] is a start-up error, not a failure at the first list
        server_tls = None
        if opts.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(services.resolve_path(opts.tls.cert)),
                                    str(services.resolve_path(opts.tls.key)))
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"listener {opts.name!r}: cannot load tls.cert / tls.key: {e}", file=file) \
                    from None
            ctx.set_alpn_protocols(["http/1.1"])
            server_tls = ctx
        forms = SecretForms(sorted(set(secrets), key=len, reverse=True), None, escapes=True) if secrets else None
        return McpSetup(opts, target, injected, env, cwd, forms, server_tls)

    async def open(self) -> None:
        self._setup = self.build_setup(self.mcp_options)

    def setup(self) -> McpSetup:
        current = self._setup
        opts = self.mcp_options
        if current is None or current.options is not opts:
            current = self._setup = self.build_setup(opts)
        return current

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.end("shutdown")

    def describe_upstream(self) -> str:
        up = self.mcp_options.upstream
        if up.url is not None:
            return describe_url(up.url)
        return "stdio:" + Path((up.command or ["?"])[0]).name

    def classify(self, text: str, *, session: Session) -> Any:
        """``gw policy explain``: ``TOOL {arguments}``, ``resources/read URI`` or ``prompts/get NAME {...}``.
        The tool's annotations are not known offline: only ``tool_kinds`` decides the kind here."""
        from gw.model import Command

        head, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        if head == "resources/read":
            spec = classify.resource_read(rest)
        else:
            name = head
            args: Any = {}
            if head == "prompts/get":
                name, _, rest = rest.partition(" ")
            if rest:
                try:
                    args = json.loads(rest)
                except ValueError:
                    raise ValueError("write the arguments as a JSON object: TOOL {\"key\": \"value\"}") from None
            if not isinstance(args, dict):
                raise ValueError("the arguments must be a JSON object")
            spec = classify.prompt_get(name, args) if head == "prompts/get" else \
                classify.tool_call(self.mcp_options, name, args, None)
        return Command(session, 0, spec.text, classify.LANGUAGE, spec.kind, spec.verb, spec.objects, spec.flags)

    def make_upstream(self, setup: McpSetup) -> Callable[[OnMessage], Upstream]:
        opts = setup.options
        # A server's message holds one answer and its envelope: an answer past max_result_size is refused
        # anyway, so nothing much larger is ever read.
        limit = opts.max_result_size + SERVER_MESSAGE_SLACK

        def make(on_message: OnMessage) -> Upstream:
            if setup.target is not None:
                return HttpUpstream(setup.target, setup.injected, on_message, secrets=setup.secrets,
                                    max_message=limit)
            assert opts.upstream.command is not None and setup.env is not None
            return StdioUpstream(list(opts.upstream.command), setup.env, setup.cwd, on_message,
                                 secrets=setup.secrets, max_message=limit,
                                 read_timeout=opts.upstream.read_timeout.total_seconds())

        return make

    def session_ended(self, session: McpSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        try:
            setup = self.setup()
        except ConfigError as e:
            log.error("listener %s: %s", self.listener.name, e)
            return
        client: trio.abc.Stream = stream
        if setup.server_tls is not None:
            tls = trio.SSLStream(stream, setup.server_tls, server_side=True, https_compatible=True)
            try:
                with trio.fail_after(self.listener.handshake_timeout):
                    await tls.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError):
                return
            client = tls
        await McpConnection(self, client, client_address, "https" if setup.server_tls else "http").serve()


class HttpReply:
    """A POST's answer: JSON, or an event stream once something must be said before the answer."""

    def __init__(self, conn: McpConnection, can_stream: bool, extra: HeaderList) -> None:
        self.conn = conn
        self._can_stream = can_stream
        self.extra = extra
        self.started = False
        self.lock = trio.Lock()

    @property
    def can_stream(self) -> bool:
        return self._can_stream

    async def _start(self) -> None:
        if not self.started:
            self.started = True
            await self.conn.send_head(200, [(b"content-type", b"text/event-stream"),
                                            (b"cache-control", b"no-store"), *self.extra])

    async def message(self, msg: dict[str, Any]) -> None:
        async with self.lock:
            await self._start()
            await self.conn.send_body(sse.encode(jsonrpc.dumps(msg)))

    async def comment(self, text: str) -> None:
        async with self.lock:
            await self._start()
            await self.conn.send_body(sse.comment(text))

    async def finish(self, msg: dict[str, Any]) -> None:
        async with self.lock:
            if self.started:
                await self.conn.send_body(sse.encode(jsonrpc.dumps(msg)))
                await self.conn.send_end()
            else:
                await self.conn.send_json(200, msg, self.extra)


class McpConnection:
    """One HTTP/1.1 connection of an agent (several requests, of one or more MCP sessions)."""

    def __init__(self, handler: McpHandler, stream: trio.abc.Stream, client_address: str, scheme: str) -> None:
        self.handler = handler
        self.listener = handler.listener
        self.setup = handler.setup()
        self.stream = stream
        self.client_address = client_address
        self.scheme = scheme
        self.codec: ServerCodec = server_codec(self.setup.options.max_header_bytes)
        self.closing = False
        self.headers: Headers = []
        self.method = ""

    @property
    def opts(self) -> McpListenerOptions:
        return self.setup.options

    # -- I/O ------------------------------------------------------------------------------------------------
    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""

    async def _send(self, data: bytes) -> None:
        try:
            with trio.fail_after(self.opts.send_timeout.total_seconds()):
                await self.stream.send_all(data)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.closing = True
            raise ClientGone(str(e) or type(e).__name__) from None

    async def send_head(self, status: int, headers: HeaderList) -> None:
        if self.closing:
            headers = [*headers, (b"connection", b"close")]
        await self._send(self.codec.send_response(status, headers, REASON_PHRASES.get(status, b"")))

    async def send_body(self, data: bytes) -> None:
        await self._send(self.codec.send_data(data))

    async def send_end(self) -> None:
        await self._send(self.codec.send_end())

    async def send_json(self, status: int, body: Any, extra: HeaderList = ()) -> None:  # type: ignore[assignment]
        if not self.codec.can_respond:
            return
        data = jsonrpc.dumps(body)
        await self.send_head(status, [(b"content-type", b"application/json"),
                                      (b"content-length", str(len(data)).encode()),
                                      (b"cache-control", b"no-store"), *extra])
        if self.method != "HEAD":
            await self.send_body(data)
        await self.send_end()

    async def send_error(self, status: int, code: int, message: str, request_id: Any = None,
                         extra: HeaderList = (), data: Any = None) -> None:  # type: ignore[assignment]
        await self.send_json(status, jsonrpc.error(request_id, code, message, data), extra)

    # -- the connection -------------------------------------------------------------------------------------
    async def serve(self) -> None:
        try:
            while not self.closing:
                request = await self._next_request()
                if request is None:
                    break
                try:
                    await self._exchange(request)
                except ClientGone:
                    break
                if self.closing or not self.codec.start_next_cycle():
                    break
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await trio.aclose_forcefully(self.stream)

    async def _next_request(self) -> Request | None:
        opts = self.opts
        idle = opts.idle_timeout.total_seconds()
        deadline = trio.current_time() + idle
        started = False
        while True:
            try:
                event = self.codec.next_event()
            except ProtocolError as e:
                self.closing = True
                status = e.status_hint if e.status_hint in (400, 431, 501) else 400
                try:
                    await self.send_error(status, jsonrpc.INVALID_REQUEST, f"malformed HTTP request: {e}")
                except ClientGone:
                    pass
                return None
            if type(event) is Request:
                return event
            if event is not NEED_DATA:
                return None
            if self.listener.shutting_down.is_set() and not started:
                return None
            with trio.CancelScope(deadline=deadline) as scope:
                if not started:
                    async with trio.open_nursery() as nursery:
                        async def stop_on_shutdown() -> None:
                            await self.listener.shutting_down.wait()
                            nursery.cancel_scope.cancel()

                        nursery.start_soon(stop_on_shutdown)
                        data = await self._receive()
                        nursery.cancel_scope.cancel()
                else:
                    data = await self._receive()
            if scope.cancelled_caught:
                if started:
                    self.closing = True
                    try:
                        await self.send_error(408, jsonrpc.INVALID_REQUEST, "the request head did not arrive "
                                              f"within {opts.header_timeout.total_seconds():g}s")
                    except ClientGone:
                        pass
                return None
            if not data:
                if self.listener.shutting_down.is_set() and not started:
                    return None
                self.codec.receive_data(b"")
                continue
            if not started:
                started = True
                deadline = trio.current_time() + opts.header_timeout.total_seconds()
            self.codec.receive_data(data)

    async def _read_body(self) -> bytes | None:
        """The request body, or None after an error reply (too large, too slow, malformed)."""
        limit = self.opts.max_message_size
        declared = header_value(self.headers, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            self.closing = True
            await self.send_error(413, jsonrpc.INVALID_REQUEST, f"the message is {int(declared)} bytes; this "
                                  f"listener accepts at most {limit} (max_message_size)")
            return None
        body = bytearray()
        timeout = self.opts.header_timeout.total_seconds()
        while True:
            try:
                event = self.codec.next_event()
            except ProtocolError as e:
                self.closing = True
                await self.send_error(400, jsonrpc.PARSE_ERROR, f"malformed request body: {e}")
                return None
            if type(event) is Data:
                body += event.data
                if len(body) > limit:
                    self.closing = True
                    await self.send_error(413, jsonrpc.INVALID_REQUEST, "the message is larger than "
                                          f"{limit} bytes (max_message_size)")
                    return None
                continue
            if type(event) is EndOfMessage:
                return bytes(body)
            if event is not NEED_DATA:
                self.closing = True
                return None
            with trio.move_on_after(timeout) as scope:
                data = await self._receive()
            if scope.cancelled_caught:
                self.closing = True
                await self.send_error(408, jsonrpc.INVALID_REQUEST, f"the request body stalled for {timeout:g}s")
                return None
            self.codec.receive_data(data)

    # -- one request ----------------------------------------------------------------------------------------
    async def _exchange(self, request: Request) -> None:
        from . import sdk

        self.headers = request.headers
        self.method = request.method.decode("ascii", "replace")
        try:
            self.setup = self.handler.setup()
        except ConfigError as e:
            log.error("listener %s: %s", self.listener.name, e)
            self.closing = True
            await self.send_error(503, jsonrpc.UNAVAILABLE, "gw cannot apply this listener's configuration "
                                  "(the operator was told in the gw log); retry later")
            return
        path = request.target.decode("latin-1").split("?", 1)[0]
        if path in (WELL_KNOWN, WELL_KNOWN + self.opts.path) and self.method in ("GET", "HEAD"):
            await self._discard_body()
            await self.send_json(200, self._resource_metadata())
            return
        body = await self._read_body() if self.method == "POST" else await self._discard_body()
        if body is None:
            return
        if path != self.opts.path:
            await self.send_error(404, jsonrpc.INVALID_REQUEST, f"no MCP endpoint at {path[:100]!r}; this "
                                  f"listener serves {self.opts.path!r}")
            return
        if not self._origin_ok():
            await self.send_error(403, jsonrpc.INVALID_REQUEST, "the Origin header does not match this "
                                  "listener's host; gw refuses cross-origin requests")
            return
        request_id = None
        message: dict[str, Any] | None = None
        if self.method == "POST":
            try:
                message = jsonrpc.parse(body)
            except jsonrpc.MessageError as e:
                if not await self._identity_ok():
                    return
                await self.send_error(400, e.code, str(e), e.request_id)
                return
            request_id = message.get("id")
        elif self.method not in ("GET", "DELETE"):
            await self.send_json(405, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, f"{self.method[:20]} is not "
                                                    "part of MCP; use POST, GET or DELETE"), [(b"allow", _ALLOW)])
            return
        identity_token = await self._authenticate(request_id)
        if identity_token is None:
            return
        identity, token = identity_token
        sid = header_value(self.headers, b"mcp-session-id")
        if message is not None and message.get("method") == "initialize" and jsonrpc.is_request(message):
            if sid is not None:
                await self.send_error(400, jsonrpc.INVALID_REQUEST, "initialize starts a new session: send it "
                                      "without an Mcp-Session-Id header", request_id)
                return
            await self._initialize(message, identity, token)
            return
        if sid is None:
            method = (message or {}).get("method")
            if method == "server/discover" or (method and method != "initialize" and method.startswith("server/")):
                await self.send_error(400, jsonrpc.METHOD_NOT_FOUND, f"gw does not offer {method}; it speaks MCP "
                                      f"{', '.join(sdk.HANDSHAKE_PROTOCOL_VERSIONS)} (start with initialize)",
                                      request_id)
                return
            await self.send_error(400, jsonrpc.INVALID_REQUEST, "this request needs the Mcp-Session-Id header "
                                  "of a session (start one with initialize)", request_id)
            return
        session = self._session(sid.decode("latin-1"), identity.subject)
        if session is None:
            await self.send_error(404, jsonrpc.SESSION_UNKNOWN, "no MCP session with this id is open for your "
                                  "identity (it may have ended: token expiry, idle timeout); start a new one with "
                                  "initialize", request_id)
            return
        version = header_value(self.headers, b"mcp-protocol-version")
        if version is not None and version.decode("latin-1") not in sdk.KNOWN_PROTOCOL_VERSIONS:
            await self.send_error(400, jsonrpc.INVALID_REQUEST, "unsupported MCP-Protocol-Version "
                                  f"{version.decode('latin-1')[:40]!r}; this session speaks "
                                  f"{session.protocol_version}", request_id)
            return
        if self.method == "DELETE":
            await session.end("client_closed")
            await self.send_json(200, {})
            return
        if self.method == "GET":
            await self._event_stream(session)
            return
        assert message is not None
        await self._message(session, message)

    async def _discard_body(self) -> bytes | None:
        while True:
            try:
                event = self.codec.next_event()
            except ProtocolError:
                self.closing = True
                return b""
            if type(event) is EndOfMessage or event is not NEED_DATA and type(event) is not Data:
                return b""
            if event is NEED_DATA:
                with trio.move_on_after(self.opts.header_timeout.total_seconds()) as scope:
                    data = await self._receive()
                if scope.cancelled_caught or not data:
                    self.closing = True
                    return b""
                self.codec.receive_data(data)

    def _origin_ok(self) -> bool:
        origin = header_value(self.headers, b"origin")
        if origin is None:
            return True
        host = header_value(self.headers, b"host") or b""
        try:
            return urlsplit(origin.decode("latin-1")).netloc.lower() == host.decode("latin-1").lower()
        except ValueError:
            return False

    # -- identity -------------------------------------------------------------------------------------------
    def _base_url(self) -> str:
        host = (header_value(self.headers, b"host") or b"").decode("latin-1")
        if not host or any(c in host for c in "/\\ \"@"):
            bound = self.listener.bound[0] if self.listener.bound else self.opts.address
            host = f"{bound[0]}:{bound[1]}"
        return f"{self.scheme}://{host}"

    def _resource_metadata(self) -> dict[str, Any]:
        servers = self.opts.authorization_servers
        if servers is None:
            servers = []
            for provider in self.listener.providers():
                issuer = getattr(provider.options, "issuer", None)
                if isinstance(issuer, str) and issuer not in servers:
                    servers.append(issuer)
        return {"resource": self._base_url() + self.opts.path, "authorization_servers": servers,
                "bearer_methods_supported": ["header"], "resource_name": f"gw listener {self.listener.name}"}

    def _challenge(self, error: str | None) -> HeaderList:
        value = f'Bearer realm="gw", resource_metadata="{self._base_url()}{WELL_KNOWN}{self.opts.path}"'
        if error is not None:
            value += f', error="{error}"'
        return [(b"www-authenticate", value.encode("latin-1"))]

    async def _identity_ok(self) -> bool:
        return await self._authenticate(None) is not None

    async def _authenticate(self, request_id: Any) -> tuple[Any, str] | None:
        token = bearer_token(self.headers, b"authorization")
        if token is None:
            message = ("this gw MCP listener needs an identity token: send 'Authorization: Bearer <token>' (get "
                       "one from your identity provider, e.g. gw token issue)")
            await self.listener.refused(client_address=self.client_address, claimed_user="",
                                        reason="missing_token", message=message)
            await self.send_error(401, jsonrpc.UNAUTHORIZED, message, request_id, self._challenge(None))
            return None
        sid = header_value(self.headers, b"mcp-session-id")
        if sid is not None:
            session = self.handler.sessions.get(sid.decode("latin-1"))
            if session is not None and not session.ended and secrets_equal(session.token, token):
                return session.sr.session.identity, token
        try:
            identity = await self.listener.authenticate(Credential("token", token),
                                                        client_address=self.client_address)
        except AccessDenied as e:
            await self.send_error(403, jsonrpc.UNAUTHORIZED, str(e), request_id,
                                  self._challenge("insufficient_scope"))
            return None
        except AuthenticationError as e:
            await self.send_error(401, jsonrpc.UNAUTHORIZED, str(e), request_id, self._challenge("invalid_token"))
            return None
        return identity, token

    def _session(self, sid: str, subject: str) -> McpSession | None:
        session = self.handler.sessions.get(sid)
        if session is None or session.ended:
            return None
        if session.subject != subject:
            log.warning("listener %s: %s presented the MCP session id of another identity (%s, not %s); refused",
                        self.listener.name, self.client_address, session.subject, subject)
            return None
        return session

    # -- sessions -------------------------------------------------------------------------------------------
    async def _initialize(self, message: dict[str, Any], identity: Any, token: str) -> None:
        request_id = message["id"]
        opts = self.opts
        mine = [s for s in self.handler.sessions.values() if s.subject == identity.subject and not s.ended]
        if len(mine) >= opts.max_sessions:
            await self.send_error(429, jsonrpc.LIMIT_EXCEEDED, f"you have {len(mine)} open MCP sessions on this "
                                  f"listener, the most it allows (max_sessions); end one (DELETE) first",
                                  request_id)
            return
        params = message.get("params") or {}
        client_info = params.get("clientInfo")
        client = client_info if isinstance(client_info, dict) else {}
        attributes = {"mcp_client": str(client.get("name") or "")[:100],
                      "mcp_client_version": str(client.get("version") or "")[:50],
                      "mcp_protocol": str(params.get("protocolVersion") or "")[:40]}
        try:
            sr = await self.listener.start_session(identity, client_address=self.client_address,
                                                   attributes=attributes)
        except Exception as e:  # noqa: BLE001 -- a stage failing session_started (audit store down)
            log.error("listener %s: cannot start a session for %s: %s", self.listener.name, identity.subject, e)
            await self.send_error(503, jsonrpc.UNAVAILABLE, f"gw could not start a session ({type(e).__name__}); "
                                  "retry later or tell the gateway operator", request_id)
            return
        session = McpSession(session_id=McpSession.new_id(), sr=sr, token=token, options=opts,
                             pins=self.handler.pins, make_upstream=self.handler.make_upstream(self.setup),
                             on_end=self.handler.session_ended)
        self.handler.sessions[session.id] = session
        try:
            await session.start()
            with trio.fail_after(opts.upstream.connect_timeout.total_seconds()
                                 + opts.upstream.read_timeout.total_seconds()):
                result = await session.initialize(params)
        except (UpstreamFailed, SessionError, trio.TooSlowError) as e:
            text = str(e) if not isinstance(e, trio.TooSlowError) else "the MCP server did not answer initialize"
            await session.end(f"error: {text[:200]}")
            code = e.code if isinstance(e, SessionError) else jsonrpc.UPSTREAM_ERROR
            await self.send_error(502, code, f"gw could not open a session with the MCP server: {text}",
                                  request_id)
            return
        log.info("listener %s: MCP session %s for %s (%s %s, protocol %s)", self.listener.name, sr.session.id,
                 identity.subject, attributes["mcp_client"], attributes["mcp_client_version"],
                 session.protocol_version)
        await self.send_json(200, jsonrpc.result(request_id, result),
                             [(b"mcp-session-id", session.id.encode("ascii"))])

    async def _message(self, session: McpSession, message: dict[str, Any]) -> None:
        if jsonrpc.is_request(message):
            accept = (header_value(self.headers, b"accept") or b"").lower()
            can_stream = b"text/event-stream" in accept
            reply = HttpReply(self, can_stream, [(b"mcp-session-id", session.id.encode("ascii"))])
            answer = await session.request(message, reply, self._watch)
            if answer is not None:
                await reply.finish(answer)
            return
        try:
            if jsonrpc.is_notification(message):
                await session.notification(message)
            else:
                await session.response(message)
        except SessionError as e:
            await self.send_error(400, e.code, str(e))
            return
        except UpstreamFailed as e:
            await self.send_error(502, jsonrpc.UPSTREAM_ERROR, str(e))
            return
        await self._accepted()

    async def _accepted(self) -> None:
        await self.send_head(202, [(b"content-length", b"0")])
        await self.send_end()

    async def _watch(self, call: Call) -> None:
        """Cancel ``call`` when the agent's connection closes (a held call dies with its client).  Bytes that
        arrive meanwhile (a pipelined request) are kept for the codec."""
        buffered = 0
        while buffered <= WATCH_READ_LIMIT:
            data = await self._receive()
            if not data:
                self.closing = True
                call.cancel("client_disconnected")
                return
            self.codec.receive_data(data)
            buffered += len(data)
        await trio.sleep_forever()

    async def _event_stream(self, session: McpSession) -> None:
        accept = (header_value(self.headers, b"accept") or b"").lower()
        if b"text/event-stream" not in accept:
            await self.send_error(406, jsonrpc.INVALID_REQUEST, "the GET stream is an event stream: send "
                                  "'Accept: text/event-stream'")
            return
        if session.stream_open:
            await self.send_error(409, jsonrpc.INVALID_REQUEST, "this session's event stream is already open "
                                  "on another connection")
            return
        session.stream_open = True
        self.closing = True
        try:
            await self.send_head(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"),
                                       (b"mcp-session-id", session.id.encode("ascii"))])
            async with trio.open_nursery() as nursery:
                async def watch() -> None:
                    while await self._receive():
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                while True:
                    with trio.move_on_after(STREAM_KEEPALIVE):
                        msg = await session.next_outgoing()
                        if msg is None:
                            break
                        await self.send_body(sse.encode(jsonrpc.dumps(msg)))
                        continue
                    await self.send_body(sse.comment("keepalive"))
                nursery.cancel_scope.cancel()
            await self.send_end()
        except ClientGone:
            pass
        finally:
            session.stream_open = False
            session.touch()


def secrets_equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
