"""One agent connection: the server codec towards the agent, an upstream connection towards the service.

Per request:

1. read the head (``header_timeout`` from its first byte; malformed -> 400, too large -> 431);
2. check the target and method (path normalisation and refusals, :mod:`gw_httpproxy.targets`; method and
   path overrides, :mod:`gw_httpproxy.overrides`);
3. authenticate the token header (missing/invalid -> 401, not admitted -> 403), open or reuse the session;
4. build the :class:`~gw.model.Command` (the dialect's :meth:`~gw_httpproxy.dialect.ProxyDialect.command`)
   and ask the pipeline (refused -> the dialect's reply; held for approval -> the agent's socket is watched,
   and an agent that leaves cancels the hold);
5. connect upstream, answer ``Expect: 100-continue``, forward head and body (the body streams; stages observe
   it on ``request-body``; a form body naming ``_method`` is abandoned before it completes);
6. relay the response: headers through the ``response-headers`` filter, the body unchanged (the hot path:
   only the credential scrubber looks at it) or through the ``response-body`` filter, which never lets
   unfiltered bytes out -- a filter error is a 502 or a cut connection;
7. a ``101 Switching Protocols`` turns both connections into a WebSocket relay or a raw tunnel
   (:mod:`gw_httpproxy.tunnel`).

One upstream connection serves the requests of one agent connection while both sides keep it alive.  Options
are read from the handler's current setup at each request, so a reload applies to the next request.
"""

from __future__ import annotations

import logging
import select
from typing import TYPE_CHECKING, Any

import trio
from gw.errors import AccessDenied, AuthenticationError, ConfigError
from gw.identity import Credential
from gw.model import Channel, Command, Outcome, OutcomeStatus
from gw.stage import StreamFilter

from . import filtering, replies, tunnel
from .codec import (
    NEED_DATA,
    Data,
    EndOfMessage,
    Informational,
    ProtocolError,
    Request,
    Response,
    server_codec,
)
from .dialect import Refusal, Reply, RequestView
from .filtering import FilterFailed
from .headers import (
    ForwardingRules,
    HeaderList,
    Headers,
    bearer_token,
    comma_tokens,
    header_value,
    header_values,
)
from .overrides import FORM_OVERRIDE_MESSAGE, FormOverrideScanner, OverrideRefused, is_form, requested_method
from .scrub import SecretForms, SecretScrubber, Unscrubbable, check_charset
from .sending import Sender
from .targets import BadTarget, Target, normalize_target
from .upstream import RECEIVE_SIZE, UpstreamClosed, UpstreamConnection, UpstreamError
from .websocket import WebSocketError

if TYPE_CHECKING:
    from gw.pipeline import CommandRun, SessionRuntime

    from .handler import ProxyHandler, ProxySetup
    from .options import ProxyListenerOptions

log = logging.getLogger("gw.http")

#: A refused request's body up to this size is read and discarded so the connection can be kept alive;
#: a larger (or chunked, or 100-continue) one ends the connection instead.
DRAIN_LIMIT = 64 * 1024
#: After gw decides to close with request bytes possibly still in flight, it reads and discards for this
#: long so the client sees the response instead of a reset (RFC 9112 section 9.6, "lingering close").
LINGER_SECONDS = 1.0
#: While a request is held for approval gw reads ahead on the agent connection to notice the agent leaving;
#: it buffers at most this much (a pipelined request, an unread body), then watches the socket for the
#: peer's hang-up instead (every :data:`HOLD_POLL_INTERVAL` seconds).
HOLD_READ_LIMIT = 256 * 1024
HOLD_POLL_INTERVAL = 0.2
#: Form bodies up to this size are read whole before the request goes upstream (see ``_read_small_form``).
FORM_BUFFER = 64 * 1024
#: Methods whose request gw may resend on a fresh upstream connection when a kept-alive one turned out to be
#: closed before any response byte arrived (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_TERMINATION_MESSAGES = {
    "token_expired": "the identity token of this connection expired; send the request again with a fresh "
                     "token",
    "revoked": "the gateway operator revoked this session; ask them before retrying",
    "session_max": "this connection reached the listener's session_max; open a new connection",
}
_ALLOW = b"GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"
_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR if hasattr(select, "poll") else 0


class ClientGone(Exception):
    """The agent closed the connection or stopped reading; nothing more can be sent to it."""


class AbortConnection(Exception):
    """The response cannot be completed correctly (upstream died mid-body, a filter failed after the head was
    sent): the connection is cut so the agent sees a truncated response, never a wrong one."""


class ClientBodyError(Exception):
    """The request body broke a rule (too large, too slow, malformed, shorter than declared, a form naming
    ``_method``)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _request_id_header(request_id: str) -> HeaderList:
    return [(b"x-gw-request-id", request_id.encode("ascii"))]


def _content_type(headers: Headers) -> str:
    """The ``Content-Type`` stages see: several fields joined (unparseable on purpose), none as
    ``application/octet-stream`` (RFC 9110 section 8.3: the recipient may assume it)."""
    values = header_values(headers, b"content-type")
    if not values:
        return "application/octet-stream"
    return b", ".join(values).decode("latin-1")


def _charset(content_type: str) -> str:
    """The ``charset`` parameter, as declared (tolerant: an unparseable type has none)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip()
    return ""


_TEXT_MARKERS = ("text/", "json", "xml", "javascript", "ecmascript", "yaml", "x-www-form-urlencoded", "csv")


def _is_text(content_type: str) -> bool:
    """Whether a body is (probably) text, where an echo could spell the credential with escapes; binary
    downloads skip that search.  Erring towards text costs only time."""
    lowered = content_type.lower()
    return any(marker in lowered for marker in _TEXT_MARKERS)


def _socket_of(stream: trio.abc.Stream) -> object | None:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return getattr(stream, "socket", None)


class ProxyConnection:
    """One agent connection: its codec, its gw session, and its upstream connection."""

    def __init__(self, handler: ProxyHandler, stream: trio.abc.Stream, client_address: str,
                 scheme: str) -> None:
        self.handler = handler
        self.dialect = handler.dialect
        self.listener = handler.listener
        self.setup: ProxySetup = handler.setup()
        self.stream = stream
        self.client_address = client_address
        self.client_ip = client_address.rsplit(":", 1)[0].strip("[]")
        self.scheme = scheme
        self.codec = server_codec(self.setup.options.max_header_bytes)
        self.upstream: UpstreamConnection | None = None
        self.session: SessionRuntime | None = None
        self.session_token: str | None = None
        self.end_reason = "client_closed"
        #: No request after the current one (Connection: close, termination, an unread body ...).
        self.closing = False
        #: Request bytes may still be arriving when gw closes: linger so the agent reads the response.
        self.linger = False
        #: Why gw ended the session under a running request (token_expired, revoked, session_max).
        self.termination: str | None = None
        #: The agent left while its request was held.
        self.client_gone = False
        #: :class:`gw.stage.CommandContext`: why gw cancelled a decision in progress (``client_disconnected``,
        #: ``token_expired``, ``revoked``, ``session_max``), set before it cancels, so a stage holding the request
        #: can say why it ended.
        self.cancel_reason = ""
        self.method = ""
        self.request_headers: Headers = []
        self.response_started = False
        self._out: list[bytes] = []
        self._sender = Sender(stream)
        self._nursery: trio.Nursery | None = None
        self._idle_scope: trio.CancelScope | None = None
        self._exchange_scope: trio.CancelScope | None = None
        self._watch_scope: trio.CancelScope | None = None
        self._decide_scope: trio.CancelScope | None = None
        self._hold_watch: tuple[trio.CancelScope, trio.Event] | None = None
        self._last_forms: tuple[ForwardingRules, str, SecretForms | None] | None = None

    @property
    def opts(self) -> ProxyListenerOptions:
        return self.setup.options

    # -- connection lifetime ------------------------------------------------------------------------------
    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    while not self.closing:
                        request = await self._next_request()
                        if request is None:
                            break
                        await self._exchange(request)
                        if self.closing or not self.codec.start_next_cycle():
                            break
                    if self.linger:
                        await self._linger()
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._drop_upstream()
                if self.session is not None:
                    await self.session.end(self.end_reason)

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _next_request(self) -> Request | None:
        """The next request head, or None when the connection should end (after a 400/408/431 where the
        agent deserves an answer)."""
        opts = self.opts
        self.method = ""
        now = trio.current_time()
        idle_deadline = now + opts.idle_timeout.total_seconds()
        header_deadline = now + opts.header_timeout.total_seconds() if self.codec.unprocessed else None
        while True:
            try:
                event = self.codec.next_event()
            except ProtocolError as e:
                await self._malformed_request(e)
                return None
            if type(event) is Request:
                return event
            if event is not NEED_DATA:
                return None  # ConnectionClosed, or PAUSED after a protocol switch
            if self.closing and header_deadline is None:
                return None
            with trio.CancelScope(deadline=header_deadline or idle_deadline) as scope:
                if header_deadline is None:
                    self._idle_scope = scope
                data = await self._receive()
            self._idle_scope = None
            if scope.cancelled_caught:
                if header_deadline is not None:
                    self.closing = self.linger = True
                    await self._send_error(408, "request_timeout", "the request head did not arrive within "
                                           f"{opts.header_timeout.total_seconds():g}s (header_timeout); send "
                                           "complete requests promptly")
                elif not self.closing:
                    self.end_reason = "idle_timeout"
                return None
            if data and header_deadline is None:
                header_deadline = trio.current_time() + opts.header_timeout.total_seconds()
            self.codec.receive_data(data)

    async def _malformed_request(self, error: ProtocolError) -> None:
        self.closing = self.linger = True
        status = error.status_hint
        if status == 431:
            await self._head_too_large()
            return
        if status == 501:
            message = f"unsupported request framing: {error}; use Content-Length or chunked"
            reason = "not_implemented"
        else:
            message = f"malformed HTTP request: {error}"
            reason = "bad_request"
        await self._send_error(status, reason, message)

    async def _head_too_large(self) -> None:
        self.closing = self.linger = True
        await self._send_error(431, "headers_too_large", "the request head is larger than "
                               f"{self.opts.max_header_bytes} bytes (max_header_bytes); send fewer or "
                               "smaller headers")

    async def _linger(self) -> None:
        try:
            send_eof = getattr(self.stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
            with trio.move_on_after(LINGER_SECONDS):
                discarded = 0
                while discarded < DRAIN_LIMIT * 16:
                    data = await self._receive()
                    if not data:
                        break
                    discarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    # -- sending to the agent -----------------------------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)

    async def _flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        try:
            done = await self._sender.send(data, self.opts.send_timeout.total_seconds())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise ClientGone(str(e)) from None
        if not done:
            raise ClientGone("the agent stopped reading the response (send_timeout)")

    def _with_close(self, headers: HeaderList) -> HeaderList:
        if self.closing:
            headers.append((b"connection", b"close"))
        return headers

    async def _send_reply(self, reply: Reply, *, headers: HeaderList | None = None) -> None:
        """A complete response written by gw.  Does nothing when a response is already under way."""
        if not self.codec.can_respond:
            return
        out: HeaderList = [(b"content-type", reply.content_type),
                           (b"content-length", str(len(reply.body)).encode()), (b"cache-control", b"no-store")]
        out.extend(reply.headers)
        out.extend(headers or ())
        try:
            self._queue(self.codec.send_response(reply.status, self._with_close(out),
                                                 replies.REASON_PHRASES.get(reply.status, b"")))
            self.response_started = True
            if self.method != "HEAD":
                self._queue(self.codec.send_data(reply.body))
            self._queue(self.codec.send_end())
            await self._flush()
        except ClientGone:
            self.closing = True

    async def _send_error(self, status: int, reason: str, message: str, *, request_id: str | None = None,
                          headers: HeaderList | None = None) -> None:
        if request_id is not None:
            headers = [*(headers or ()), *_request_id_header(request_id)]
        await self._send_reply(self.dialect.reply(status, reason, message, request_id=request_id),
                               headers=headers)

    async def _refuse(self, reply: Reply, *, headers: HeaderList | None = None) -> None:
        """Answer without forwarding.  An unread request body is drained when small, else the connection
        closes (lingering, so the agent still reads this answer)."""
        pending = self.codec.request_body_pending
        if pending:
            length = header_value(self.request_headers, b"content-length")
            if self.codec.expects_continue or length is None or int(length) > DRAIN_LIMIT:  # chunked: None
                self.closing = self.linger = True
        await self._send_reply(reply, headers=headers)
        if pending and not self.closing:
            try:
                await self._discard_body()
            except ClientBodyError:
                self.closing = True

    async def _refuse_error(self, status: int, reason: str, message: str, *,
                            headers: HeaderList | None = None) -> None:
        await self._refuse(self.dialect.reply(status, reason, message), headers=headers)

    # -- one request --------------------------------------------------------------------------------------
    async def _exchange(self, request: Request) -> None:
        self.method = request.method.decode("ascii", "replace")
        self.request_headers = request.headers
        self.response_started = False
        with trio.CancelScope() as scope:
            self._exchange_scope = scope
            try:
                await self._handle_request(request)
            except (ClientGone, AbortConnection) as e:
                log.debug("listener %s: %s: %s", self.listener.name, self.client_address, e)
                self.closing = True
        self._exchange_scope = None
        if scope.cancelled_caught:
            # gw ended the session under this request (token expired, revoked, session_max).
            self.closing = True
            if not self.response_started and self.termination is not None:
                with trio.move_on_after(1) as shielded:
                    shielded.shield = True
                    message = _TERMINATION_MESSAGES.get(self.termination, self.termination)
                    challenge = replies.bearer_challenge("invalid_token")
                    await self._send_error(401, self.termination, message,
                                           headers=[(b"www-authenticate", challenge)])

    async def _handle_request(self, request: Request) -> None:
        try:
            self.setup = self.handler.setup()
        except ConfigError as e:
            log.error("listener %s: %s", self.listener.name, e)
            await self._refuse_error(503, "unavailable", "gw cannot apply this listener's configuration (the "
                                     "operator was told in the gw log); nothing was forwarded. Retry later")
            return
        opts = self.opts
        # The codec bounds only an incomplete head; one that arrives whole in a single read is measured here.
        if len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers) > opts.max_header_bytes:
            await self._head_too_large()
            return
        if self.method == "CONNECT":
            self.closing = True
            await self._send_error(405, "method_not_allowed", "gw is a reverse proxy for one upstream and "
                                   "does not tunnel CONNECT; send requests to this listener directly",
                                   headers=[(b"allow", _ALLOW)])
            return
        chunked = header_value(request.headers, b"transfer-encoding") is not None
        declared = header_value(request.headers, b"content-length")
        if chunked and declared is not None:
            # RFC 9112 section 6.3: both framings at once is a request smuggling attempt or a broken client.
            self.closing = self.linger = True
            await self._send_error(400, "bad_request", "the request has both Transfer-Encoding and "
                                   "Content-Length; send one of them")
            return
        length = None if chunked else int(declared or 0)
        has_body = chunked or bool(length)
        if length is not None and length > opts.max_request_body:
            await self._refuse_error(413, "body_too_large", f"the request body is {length} bytes; this listener "
                                     f"accepts at most {opts.max_request_body} (max_request_body)")
            return
        if not has_body:
            # Take the request's EndOfMessage now (no I/O: the length is 0), so a refusal keeps the
            # connection alive and an upgrade request reaches the codec's protocol-switch state.
            await self._client_body_event(opts.body_timeout.total_seconds())
        try:
            target = normalize_target(request.target, allow_encoded_slash=opts.allow_encoded_slash,
                                      allow_path_params=opts.allow_path_params)
            override = requested_method(request.headers, target.query, mode=opts.method_override)
        except (BadTarget, OverrideRefused) as e:
            await self._refuse_error(e.status, e.reason, str(e))
            return
        sr = await self._session_for(request)
        if sr is not None:
            await self._run_command(sr, request, target, override, has_body, length)

    # -- identity -----------------------------------------------------------------------------------------
    async def _session_for(self, request: Request) -> SessionRuntime | None:
        """The session this request runs in: the connection's, if the request carries the same token; a new
        one (the old ends with ``token_changed``) for a different valid token; None after a 401/403."""
        token_name = self.opts.token_header
        token = bearer_token(request.headers, token_name.lower().encode("ascii"))
        if token is None:
            message = (f"this gw listener needs an identity token: send '{token_name}: Bearer "
                       "<token>' (get a token from your identity provider, e.g. gw token issue)")
            await self.listener.refused(client_address=self.client_address, claimed_user="",
                                        reason="missing_token", message=message)
            await self._refuse_error(401, "missing_token", message,
                                     headers=[(b"www-authenticate", replies.bearer_challenge(None))])
            return None
        sr = self.session
        if sr is not None and token == self.session_token:
            # The same token, verified when the session started; the session's own deadline (token expiry
            # plus token_grace, session_max) ends it, as on every other protocol.
            return sr
        try:
            identity = await self.listener.authenticate(Credential("token", token),
                                                        client_address=self.client_address)
        except AccessDenied as e:
            await self._refuse_error(403, e.reason, str(e))
            return None
        except AuthenticationError as e:
            await self._refuse_error(401, e.reason, str(e),
                                     headers=[(b"www-authenticate", replies.bearer_challenge("invalid_token"))])
            return None
        if sr is not None:
            await self._end_session("token_changed")
        attributes = {"tls": "yes" if self.scheme == "https" else "no"}
        agent = header_value(request.headers, b"user-agent")
        if agent:
            attributes["user_agent"] = agent.decode("latin-1")[:200]
        try:
            sr = await self.listener.start_session(identity, client_address=self.client_address,
                                                   attributes=attributes)
        except Exception as e:  # noqa: BLE001 -- any stage failing session_started (audit store down)
            log.error("listener %s: cannot start a session for %s: %s", self.listener.name,
                      identity.subject, e)
            await self._refuse_error(503, "unavailable", f"gw could not start a session ({type(e).__name__}: "
                                     f"{e}); nothing was forwarded. Retry later or tell the gateway operator")
            return None
        self.session, self.session_token = sr, token
        self._watch(sr)
        return sr

    async def _end_session(self, reason: str) -> None:
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        if self.session is not None:
            await self.session.end(reason)
        self.session = self.session_token = None

    def _watch(self, sr: SessionRuntime) -> None:
        """End the connection when gw ends the session: at once when idle; for ``shutdown`` after the
        request in flight; for token expiry, revocation or ``session_max`` immediately (a held request's
        approval request is then cancelled, since the task waiting for it is)."""
        scope = trio.CancelScope()
        self._watch_scope = scope

        async def watch() -> None:
            with scope:
                reason = await sr.wait_terminated()
                self.closing = True
                self.end_reason = reason
                if self._idle_scope is not None:
                    self._idle_scope.cancel()
                if reason != "shutdown" and self._exchange_scope is not None:
                    self.termination = self.cancel_reason = reason
                    self._exchange_scope.cancel()

        assert self._nursery is not None
        self._nursery.start_soon(watch)

    # -- approval holds -----------------------------------------------------------------------------------
    async def notice(self, message: str) -> None:
        """:class:`gw.stage.CommandContext`: HTTP has no interim message for a waiting agent (gw sends no 1xx
        besides 100 and 101), so notices go to the log.  A notice means a stage is about to hold the request
        (the approve stage announces its hold this way): from then on gw watches the agent's connection, and
        when the agent leaves it cancels the decision, so the hold ends as cancelled and a late approval runs
        nothing."""
        log.info("listener %s: %s: %s", self.listener.name, self.client_address, message)
        if self._decide_scope is not None and self._hold_watch is None and self._nursery is not None:
            self._hold_watch = (trio.CancelScope(), trio.Event())
            self._nursery.start_soon(self._watch_held_client, *self._hold_watch)

    def _peer_hung_up(self) -> bool:
        """Whether the agent's side of the TCP connection is closed or reset, without reading from it."""
        sock = _socket_of(self.stream)
        if sock is None or not _HANGUP:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), _HANGUP)  # type: ignore[attr-defined]
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def _client_left(self) -> None:
        self.client_gone = True
        self.cancel_reason = "client_disconnected"
        if self._decide_scope is not None:
            self._decide_scope.cancel()

    async def _watch_held_client(self, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                buffered = 0
                while buffered <= HOLD_READ_LIMIT:
                    data = await self._receive()
                    if not data:
                        self._client_left()
                        return
                    self.codec.receive_data(data)  # kept for the codec: a pipelined request or the body
                    buffered += len(data)
                # Enough read ahead: watch the socket for the agent's hang-up without buffering more.
                while not self._peer_hung_up():
                    await trio.sleep(HOLD_POLL_INTERVAL)
                self._client_left()
        finally:
            done.set()

    async def _decide(self, sr: SessionRuntime, cmd: Command) -> CommandRun:
        self.cancel_reason = ""
        run: CommandRun | None = None
        with trio.CancelScope() as scope:
            self._decide_scope = scope
            try:
                run = await sr.decide(cmd, self)
            finally:
                self._decide_scope = None
                if self._hold_watch is not None:
                    watch, done = self._hold_watch
                    watch.cancel()
                    with trio.CancelScope(shield=True):
                        await done.wait()
                    self._hold_watch = None
        if run is None or self.client_gone:
            # Also when the verdict arrived in the same moment the agent left: nobody waits for the answer.
            gone = "the agent closed the connection while its request was held"
            if run is not None:
                await run.abandon(OutcomeStatus.CANCELLED, gone)
            raise ClientGone(gone)
        return run

    # -- the command --------------------------------------------------------------------------------------
    def _command(self, sr: SessionRuntime, view: RequestView) -> Command:
        spec = self.dialect.command(view)
        flags = set(spec.flags)
        if view.upgrade is not None:
            flags.add("upgrade")
        if view.target.normalized:
            flags.add("path_normalized")
        if view.effective_method != view.method:
            flags.add("method_override")
        attributes = {
            "headers": self.setup.rules.redacted(view.headers),
            "http_version": view.http_version,
            "content_type": view.content_type,
            "content_length": view.content_length,
            "upgrade": view.upgrade,
        }
        if view.effective_method != view.method:
            attributes["method_sent"] = view.method
        attributes.update(spec.attributes)
        extra: dict[str, Any] = {}
        if spec.object_syntax is not None:
            extra["object_syntax"] = spec.object_syntax
        return sr.command(spec.text, language=self.dialect.language, kind=spec.kind, verb=spec.verb,
                          objects=spec.objects, flags=frozenset(flags), attributes=attributes, verbs=spec.verbs,
                          **extra)

    async def _run_command(self, sr: SessionRuntime, request: Request, target: Target, override: str | None,
                           has_body: bool, length: int | None) -> None:
        upgrade = None
        if b"upgrade" in comma_tokens(request.headers, b"connection"):
            upgrade = header_value(request.headers, b"upgrade")
        content_type = header_value(request.headers, b"content-type")
        view = RequestView(
            method=self.method, effective_method=override or self.method, target=target,
            headers=request.headers, http_version=request.http_version.decode("ascii"),
            content_type=content_type.decode("latin-1") if content_type else None, content_length=length,
            upgrade=upgrade.decode("latin-1") if upgrade else None)
        try:
            cmd = self._command(sr, view)
        except Refusal as e:
            await self._refuse_error(e.status, e.reason, str(e))
            return
        refusal = self.dialect.refusal(view, cmd, self.opts)
        if refusal is not None:
            try:
                await self.listener.refused(client_address=self.client_address,
                                            claimed_user=sr.session.identity.subject,
                                            reason=refusal.reason or "refused",
                                            message=f"{cmd.text}: {refusal.message or 'refused by the listener'}")
            except Exception as e:  # noqa: BLE001 -- the request is refused whether or not the record is written
                log.error("listener %s: could not record a refused request: %s", self.listener.name, e)
            await self._refuse(refusal)
            return
        request_id = f"{sr.session.id}-{cmd.seq}"
        outcome = Outcome(status=OutcomeStatus.ERROR)
        run: CommandRun | None = None
        try:
            run = await self._decide(sr, cmd)
            verdict = run.verdict
            if not verdict.allowed:
                reply = self.dialect.verdict_reply(verdict, request_id, cmd)
                outcome.status, outcome.tag = OutcomeStatus.DENIED, str(reply.status)
                outcome.error_code = verdict.code.value if verdict.code else "policy"
                outcome.error_message = verdict.reason
                await self._refuse(reply, headers=_request_id_header(request_id))
                return
            await self._forward(sr, run, view, request, upgrade, has_body, request_id, outcome)
        except trio.Cancelled:
            outcome.status = OutcomeStatus.CANCELLED
            raise
        except (ClientGone, AbortConnection) as e:
            outcome.status = OutcomeStatus.CANCELLED if isinstance(e, ClientGone) else OutcomeStatus.ERROR
            outcome.error_message = outcome.error_message or str(e)
            raise
        finally:
            if run is not None:
                with trio.CancelScope(shield=True):
                    await run.complete(outcome)

    @staticmethod
    def _fail(outcome: Outcome, status: int, reason: str, message: str) -> None:
        outcome.status, outcome.tag = OutcomeStatus.ERROR, str(status)
        outcome.error_code, outcome.error_message = reason, message

    async def _forward(self, sr: SessionRuntime, run: CommandRun, view: RequestView, request: Request,
                       upgrade: bytes | None, has_body: bool, request_id: str, outcome: Outcome) -> None:
        framing: HeaderList = []
        if has_body:
            length = header_value(request.headers, b"content-length")
            framing = [(b"content-length", length) if length is not None
                       else (b"transfer-encoding", b"chunked")]
        headers = self.setup.rules.upstream_request(request.headers, client_ip=self.client_ip,
                                                    scheme=self.scheme, framing=framing, upgrade=upgrade)
        headers = self.dialect.upstream_headers(headers, view, sr)
        upstream_target = (self.setup.target.base_path + view.target.path_and_query).encode("ascii")
        raw_observer: StreamFilter | None = None
        try:
            if upgrade is not None and upgrade.strip().lower() != b"websocket":
                # gw cannot read this protocol: stages may observe its bytes, never rewrite them.  A stage that
                # must rewrite (masking) refuses here, before the upstream acts on the upgrade.
                raw_observer = filtering.open_filter(run, tunnel.SERVER_CHANNEL, "application/octet-stream")
            up, response = await self._send_upstream(run, request.method, upstream_target, headers,
                                                     has_body, outcome)
            if type(response) is Informational:  # 101 Switching Protocols
                await self._relay_tunnel(sr, run, up, response, upgrade, raw_observer, request_id, outcome)
                return
            assert type(response) is Response
            await self._relay_response(sr, run, up, response, request_id, outcome)
        except UpstreamError as e:
            await self._drop_upstream()
            self._fail(outcome, e.status, e.reason, str(e))
            if self.response_started:
                raise AbortConnection(str(e)) from None
            log.info("listener %s: request %s: %s", self.listener.name, request_id, e)
            if self.codec.request_body_pending:
                self.closing = self.linger = True
            await self._send_error(e.status, e.reason, str(e), request_id=request_id)
            return
        except ClientBodyError as e:
            await self._drop_upstream()
            self.closing = self.linger = True
            self._fail(outcome, e.status, e.reason, str(e))
            await self._send_error(e.status, e.reason, str(e), request_id=request_id)
            return
        except Unscrubbable as e:
            await self._drop_upstream()
            self._fail(outcome, 502, "credential_scrub", str(e))
            await self._send_error(502, "credential_scrub", f"{e}; the response was not relayed. Ask the "
                                   "service for another charset (UTF-8) or tell the gateway operator",
                                   request_id=request_id)
            return
        except FilterFailed as e:
            await self._drop_upstream()
            if self.codec.request_body_pending:
                self.closing = self.linger = True
            if e.channel == "request-body":
                self._fail(outcome, 502, "stream_filter_failed", str(e))
                await self._send_error(502, "stream_filter_failed", "gw could not process the request "
                                       f"body for policy ({e}); the request was not completed",
                                       request_id=request_id)
                return
            self._fail(outcome, 502, "mask_failed", str(e))
            if self.response_started:
                raise AbortConnection(f"the response filter failed after the head was sent: {e}") from None
            message = str(e) if e.explained else (
                f"gw could not apply the masking policy to this response ({e}) and refused to pass it on "
                "unmasked; ask for less data (filters, paging) or tell the gateway operator")
            await self._send_error(502, "mask_failed", message, request_id=request_id)
            return
        if not up.finish_cycle():
            await self._drop_upstream()

    async def _upstream_connection(self) -> UpstreamConnection:
        target = self.setup.target
        if self.upstream is not None and (self.upstream.closed or self.upstream.target is not target):
            await self._drop_upstream()  # closed, or the listener's upstream changed on reload
        if self.upstream is None:
            self.upstream = await UpstreamConnection.open(target)
        return self.upstream

    async def _drop_upstream(self) -> None:
        up, self.upstream = self.upstream, None
        if up is not None:
            await up.aclose()

    async def _send_upstream(self, run: CommandRun, method: bytes, target: bytes,
                             headers: HeaderList, has_body: bool, outcome: Outcome
                             ) -> tuple[UpstreamConnection, Response | Informational]:
        """Send the request (head and body) and return the response head (or the 101).  ``100 Continue`` is
        sent once the upstream took the head, so an agent never uploads towards an upstream that is down.
        A kept-alive connection found closed before any response byte is replaced once, for body-less
        idempotent requests."""
        retry = not has_body and self.method in IDEMPOTENT_METHODS
        form = await self._read_small_form() if has_body else None
        while True:
            up = await self._upstream_connection()
            reused = up.completed > 0
            try:
                await up.send_request(method, target, headers)
                if form is not None:
                    await self._send_form(run, up, form, outcome)
                elif has_body:
                    if self.codec.expects_continue:
                        self._queue(self.codec.send_informational(100, [], b"Continue"))
                        await self._flush()
                    await self._stream_request_body(run, up, outcome)
                else:
                    await up.send_end()
                return up, await up.response_head()
            except UpstreamClosed as e:
                await self._drop_upstream()
                if retry and reused and e.before_response:
                    retry = False
                    continue
                raise

    async def _read_small_form(self) -> bytes | None:
        """A form body of at most :data:`FORM_BUFFER` bytes, read whole before anything goes upstream, so one
        naming ``_method`` is refused before the upstream sees even the request head.  None for other bodies
        (larger forms are scanned as they stream)."""
        if not is_form(header_value(self.request_headers, b"content-type")):
            return None
        declared = header_value(self.request_headers, b"content-length")
        if declared is None or int(declared) > FORM_BUFFER:
            return None
        if self.codec.expects_continue:
            self._queue(self.codec.send_informational(100, [], b"Continue"))
            await self._flush()
        body = bytearray()
        timeout = self.opts.body_timeout.total_seconds()
        while type(event := await self._client_body_event(timeout)) is Data:
            body += event.data
        if FormOverrideScanner().feed(body):
            raise ClientBodyError(400, "method_override", FORM_OVERRIDE_MESSAGE)
        return bytes(body)

    async def _send_form(self, run: CommandRun, up: UpstreamConnection, body: bytes, outcome: Outcome) -> None:
        filt = filtering.open_filter(run, Channel.REQUEST_BODY, run.command.attributes.get("content_type") or "")
        if filt is not None:
            filtering.feed(filt, body, "request-body")
            filtering.finish(filt, "request-body")
        if body:
            await up.send_data(body)
        await up.send_end()
        outcome.notes["request_bytes"] = len(body)

    async def _client_body_event(self, timeout: float) -> Data | EndOfMessage:
        while True:
            try:
                event = self.codec.next_event()
            except ProtocolError as e:
                raise ClientBodyError(400, "bad_request_body", "the request body is malformed or shorter "
                                      f"than declared: {e}") from None
            if type(event) is Data or type(event) is EndOfMessage:
                return event
            if event is not NEED_DATA:
                raise ClientBodyError(400, "bad_request_body", "the agent closed the connection before the "
                                      "request body was complete")
            with trio.move_on_after(timeout) as scope:
                data = await self._receive()
            if scope.cancelled_caught:
                raise ClientBodyError(408, "request_timeout", f"the agent sent no request body bytes for "
                                      f"{timeout:g}s (body_timeout); send the body promptly")
            self.codec.receive_data(data)

    async def _discard_body(self) -> None:
        timeout = self.opts.body_timeout.total_seconds()
        while type(await self._client_body_event(timeout)) is not EndOfMessage:
            pass

    async def _stream_request_body(self, run: CommandRun, up: UpstreamConnection, outcome: Outcome) -> None:
        """Agent body -> upstream, piece by piece; stages observe it on ``request-body`` (the upstream gets
        the agent's bytes unchanged).  A form body is watched for a ``_method`` field: the piece that
        completes one is never sent, so the upstream never has a complete request to act on.  If the upstream
        stops reading (it answered early), gw stops sending and goes on to read that answer."""
        limit = self.opts.max_request_body
        timeout = self.opts.body_timeout.total_seconds()
        filt = filtering.open_filter(run, Channel.REQUEST_BODY, run.command.attributes.get("content_type") or "")
        scanner = FormOverrideScanner() if is_form(header_value(self.request_headers, b"content-type")) else None
        total = 0
        while True:
            event = await self._client_body_event(timeout)
            if type(event) is Data:
                total += len(event.data)
                if total > limit:
                    raise ClientBodyError(413, "body_too_large",
                                          f"the request body exceeds {limit} bytes (max_request_body)")
                if scanner is not None and scanner.feed(event.data):
                    raise ClientBodyError(400, "method_override", FORM_OVERRIDE_MESSAGE)
                if filt is not None:
                    filtering.feed(filt, bytes(event.data), "request-body")
                try:
                    await up.send_data(event.data)
                except UpstreamClosed:
                    self.closing = self.linger = True
                    break
            else:
                if filt is not None:
                    filtering.finish(filt, "request-body")
                await up.send_end()
                break
        outcome.notes["request_bytes"] = total

    # -- the response -------------------------------------------------------------------------------------
    def _client_head(self, run: CommandRun, status: int, reason: bytes, headers: Headers,
                     *, keep_length: bool, upgrade: bool, request_id: str) -> tuple[bytes, HeaderList]:
        """The reason phrase and headers the agent gets: hop-by-hop removed, secrets blanked, then the
        ``response-headers`` filter (masking).  When a stage filters headers, the upstream's reason phrase is
        replaced by the standard one (it is free text nobody masks)."""
        out = self.setup.rules.client_response(headers, keep_length=keep_length, upgrade=upgrade, extra=[])
        masked = filtering.filter_headers(run, out)
        if masked is not None:
            out, reason = masked, replies.standard_phrase(status)
        extra = _request_id_header(request_id)
        out.extend(extra if upgrade else self._with_close(extra))
        return reason, out

    async def _relay_response(self, sr: SessionRuntime, run: CommandRun, up: UpstreamConnection,
                              response: Response, request_id: str, outcome: Outcome) -> None:
        status = response.status
        declared = header_value(response.headers, b"content-length")
        bodiless = self.method == "HEAD" or status in (204, 304) or (declared is not None and
                                                                      declared.strip() == b"0")
        content_type = _content_type(response.headers)
        filt = None
        forms: SecretForms | None = None
        if not bodiless:
            filt = self.dialect.response_filter(sr, run, content_type)
            forms = self._secret_forms(content_type)
        if filt is not None:
            encoding = header_value(response.headers, b"content-encoding")
            if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
                raise FilterFailed("response-body", ValueError(
                    f"the upstream sent a {encoding.decode('latin-1')}-encoded body although gw asked for "
                    "identity encoding"))
        reason, headers = self._client_head(run, status, response.reason, response.headers,
                                            keep_length=filt is None, upgrade=False, request_id=request_id)
        outcome.tag = str(status)
        outcome.status = OutcomeStatus.OK if status < 400 else OutcomeStatus.ERROR
        if status >= 400:
            outcome.error_code = str(status)
            outcome.error_message = reason.decode("latin-1")
        outcome.notes["response_status"] = status
        outcome.notes["response_headers"] = self.setup.rules.redacted(headers)
        scrub = SecretScrubber(forms) if forms is not None else None
        if filt is None:
            sent = await self._stream_body(up, status, reason, headers, scrub)
        else:
            after = SecretScrubber(forms) if forms is not None else None
            sent = await self._filtered_body(up, status, reason, headers, scrub, after, filt,
                                             int(declared) if declared else None)
        outcome.notes["response_bytes"] = sent

    def _secret_forms(self, content_type: str) -> SecretForms | None:
        """What the credential scrubber looks for in a body of ``content_type`` (None: no secrets).  The
        answer for the last content type is kept: a connection's responses mostly share one."""
        rules = self.setup.rules
        if not rules.secrets:
            return None
        last = self._last_forms
        if last is not None and last[0] is rules and last[1] == content_type:
            return last[2]
        forms = rules.secret_forms(check_charset(_charset(content_type)), text=_is_text(content_type))
        self._last_forms = (rules, content_type, forms)
        return forms

    async def _stream_body(self, up: UpstreamConnection, status: int, reason: bytes, headers: HeaderList,
                           scrub: SecretScrubber | None) -> int:
        """Upstream body -> agent as it arrives (the hot path: no filter, length unchanged).  Output is
        flushed whenever gw would wait for the upstream, so nothing is delayed and small responses leave in
        one segment."""
        codec = self.codec
        self._queue(codec.send_response(status, headers, reason))
        self.response_started = True
        sent = 0
        while True:
            event = await up.next_event(self._flush)
            if type(event) is Data:
                data = event.data if scrub is None else scrub.feed(event.data)
                if data:
                    sent += len(data)
                    self._queue(codec.send_data(data))
            elif type(event) is EndOfMessage:
                if scrub is not None and (tail := scrub.finish()):
                    sent += len(tail)
                    self._queue(codec.send_data(tail))
                self._queue(codec.send_end())
                await self._flush()
                return sent

    async def _filtered_body(self, up: UpstreamConnection, status: int, reason: bytes, headers: HeaderList,
                             scrub: SecretScrubber | None, after: SecretScrubber | None, filt: StreamFilter,
                             declared: int | None) -> int:
        """Upstream body -> stage filter -> agent.  The credential is scrubbed before the filter (which must
        never see it) and again after it (a filter that decodes text may produce a form the first pass could
        not see).  The head waits for the filter's first output, so a filter that buffers (JSON masking) can
        still fail with a clean 502.  A body the upstream declared no longer than ``max_response_buffer`` is
        held whole and sent with its new Content-Length; anything else streams (chunked) as the filter
        produces output, so watches and event streams are not delayed."""
        codec = self.codec
        bound = self.opts.max_response_buffer
        hold = declared is not None and declared <= bound
        held = bytearray()
        committed = False
        sent = 0
        while True:
            event = await up.next_event(self._flush)
            if type(event) is Data:
                data = bytes(event.data if scrub is None else scrub.feed(event.data))
                out = filtering.feed(filt, data, "response-body")
                if after is not None and out:
                    out = bytes(after.feed(out))
                if not out:
                    continue
                if not committed:
                    held += out
                    if hold and len(held) <= bound:
                        continue
                    self._queue(codec.send_response(status, headers, reason))
                    self.response_started = committed = True
                    out = bytes(held)
                    held.clear()
                sent += len(out)
                self._queue(codec.send_data(out))
            elif type(event) is EndOfMessage:
                tail = bytes(scrub.finish()) if scrub is not None else b""
                out = filtering.feed(filt, tail, "response-body") if tail else b""
                out += filtering.finish(filt, "response-body")
                if after is not None:
                    out = bytes(after.feed(out)) + after.finish()
                if not committed:
                    out = bytes(held) + out
                    self._queue(codec.send_response(status, [*headers, (b"content-length", str(len(out)).encode())],
                                                    reason))
                    self.response_started = True
                if out:
                    sent += len(out)
                    self._queue(codec.send_data(out))
                self._queue(codec.send_end())
                await self._flush()
                return sent

    async def _relay_tunnel(self, sr: SessionRuntime, run: CommandRun, up: UpstreamConnection,
                            switch: Informational, upgrade: bytes | None, raw_observer: StreamFilter | None,
                            request_id: str, outcome: Outcome) -> None:
        """``101 Switching Protocols``: relay it, then both connections carry another protocol until either
        side closes -- a WebSocket message by message (masked and recorded), anything else byte for byte."""
        upgraded_to = header_value(switch.headers, b"upgrade") or b""
        websocket = (upgrade or b"").strip().lower() == b"websocket" and upgraded_to.strip().lower() == b"websocket"
        if websocket and header_value(switch.headers, b"sec-websocket-extensions"):
            raise UpstreamError("the upstream accepted the WebSocket with an extension gw did not offer; gw "
                                "cannot read such frames", reason="upstream_protocol")
        to_agent: tunnel.MessageFilter | None = None
        from_agent: tunnel.MessageObserver | None = None
        if websocket:
            try:
                to_agent, from_agent = self.dialect.websocket(sr, run)
            except WebSocketError as e:
                raise FilterFailed("ws-server", e) from None
        reason, headers = self._client_head(run, 101, switch.reason, switch.headers, keep_length=True,
                                            upgrade=True, request_id=request_id)
        self._queue(self.codec.send_informational(101, headers, reason))
        await self._flush()
        self.response_started = self.closing = True
        outcome.status, outcome.tag = OutcomeStatus.OK, "101"
        self.upstream = None  # the connection is a tunnel now, never reused for HTTP
        try:
            if websocket:
                result = await tunnel.relay_websocket(
                    self.stream, up.stream, client_first=self.codec.unprocessed,
                    upstream_first=up.codec.unprocessed, to_agent=to_agent, from_agent=from_agent,
                    max_message=self.opts.max_websocket_message, secrets=self.setup.rules.secret_forms())
            else:
                result = await tunnel.relay(
                    self.stream, up.stream, client_first=self.codec.unprocessed,
                    upstream_first=up.codec.unprocessed,
                    client_observer=filtering.open_filter(run, tunnel.CLIENT_CHANNEL, "application/octet-stream"),
                    upstream_observer=raw_observer, secrets=self.setup.rules.secret_forms())
        except FilterFailed as e:
            self._fail(outcome, 101, "stream_filter_failed", str(e))
            return
        finally:
            with trio.CancelScope(shield=True):
                await up.aclose()
        outcome.notes["bytes_from_client"] = result.bytes_from_client
        outcome.notes["bytes_from_upstream"] = result.bytes_from_upstream
        if websocket:
            outcome.notes["messages_from_client"] = result.messages_from_client
            outcome.notes["messages_from_upstream"] = result.messages_from_upstream
            # A message filter that learnt how the stream ended (a Kubernetes exec's exit status) says so.
            notes = getattr(to_agent, "outcome_notes", None)
            if isinstance(notes, dict):
                outcome.notes.update(notes)
        if result.failures:
            self._fail(outcome, 101, "stream_filter_failed", result.failures[0])
