"""One agent connection: h11 as server towards the agent, h11 as client towards the upstream.

Per request:

1. read the head (``header_timeout`` from its first byte; malformed -> 400, too large -> 431);
2. authenticate the token header (missing/invalid -> 401, not admitted -> 403), open or reuse the session;
3. build the :class:`~gw.model.Command` and ask the pipeline (refused -> 403/500/503 JSON);
4. connect upstream, answer ``Expect: 100-continue``, forward head and body (the body streams; stages observe
   it on the ``request-body`` channel);
5. relay the response: unchanged bytes stream straight through, or through the pipeline's filter on the
   ``response-body`` channel (masking), which never lets unfiltered bytes out -- a filter error is a 502 or a
   cut connection;
6. a ``101 Switching Protocols`` turns both connections into a tunnel (:mod:`gw_http.tunnel`).

One upstream connection serves the requests of one agent connection while both sides keep it alive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h11
import trio
from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw.model import Command, Outcome, Verdict
from gw.stage import StreamFilter

from . import filtering, replies, tunnel
from .classify import IDEMPOTENT_METHODS, BadTarget, Target, command_kind, command_text, normalize_target
from .filtering import FilterFailed
from .headers import ForwardingRules, HeaderList, Headers, bearer_token, comma_tokens, header_value
from .scrub import SecretScrubber
from .upstream import RECEIVE_SIZE, UpstreamClosed, UpstreamConnection, UpstreamError, UpstreamTarget

if TYPE_CHECKING:
    from gw.pipeline import SessionRuntime

    from .handler import HttpHandler

log = logging.getLogger("gw.http")

#: A refused request's body up to this size is read and discarded so the connection can be kept alive;
#: a larger (or chunked, or 100-continue) one ends the connection instead.
DRAIN_LIMIT = 64 * 1024
#: After gw decides to close with request bytes possibly still in flight, it reads and discards for this
#: long so the client sees the response instead of a reset (RFC 9112 section 9.6, "lingering close").
LINGER_SECONDS = 1.0
#: While a request is held for approval gw reads ahead on the agent connection to notice the agent leaving;
#: it buffers at most this much (a pipelined request, an unread body) before it stops looking.
HOLD_READ_LIMIT = 256 * 1024
_TERMINATION_MESSAGES = {
    "token_expired": "the identity token of this connection expired; send the request again with a fresh "
                     "token",
    "revoked": "the gateway operator revoked this session; ask them before retrying",
    "session_max": "this connection reached the listener's session_max; open a new connection",
}
_ALLOW = b"GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"


class ClientGone(Exception):
    """The agent closed the connection or stopped reading; nothing more can be sent to it."""


class AbortConnection(Exception):
    """The response cannot be completed correctly (upstream died mid-body, a filter failed after the head was
    sent): the connection is cut so the agent sees a truncated response, never a wrong one."""


class ClientBodyError(Exception):
    """The request body broke a rule (too large, too slow, malformed, shorter than declared)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _request_id_header(request_id: str) -> HeaderList:
    return [(b"x-gw-request-id", request_id.encode("ascii"))]


class ClientConnection:
    """One agent connection: its h11 state, its gw session, and its upstream connection."""

    def __init__(self, handler: HttpHandler, stream: trio.abc.Stream, client_address: str,
                 scheme: str) -> None:
        assert handler.target is not None and handler.rules is not None, "the listener was not opened"
        self.listener = handler.listener
        self.opts = handler.http_options
        self.target: UpstreamTarget = handler.target
        self.rules: ForwardingRules = handler.rules
        self.stream = stream
        self.client_address = client_address
        self.client_ip = client_address.rsplit(":", 1)[0].strip("[]")
        self.scheme = scheme
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.opts.max_header_bytes)
        self.token_header = self.opts.token_header.lower().encode("ascii")
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
        self.method = ""
        self.request_headers: Headers = []
        self.response_started = False
        self._out: list[bytes] = []
        self._nursery: trio.Nursery | None = None
        self._idle_scope: trio.CancelScope | None = None
        self._exchange_scope: trio.CancelScope | None = None
        self._watch_scope: trio.CancelScope | None = None
        self._decide_scope: trio.CancelScope | None = None
        self._hold_watch: tuple[trio.CancelScope, trio.Event] | None = None

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
                        if not self._start_next_cycle():
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

    def _start_next_cycle(self) -> bool:
        if self.closing:
            return False
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _next_request(self) -> h11.Request | None:
        """The next request head, or None when the connection should end (after a 400/408/431 where the
        agent deserves an answer)."""
        opts = self.opts
        self.method = ""
        now = trio.current_time()
        idle_deadline = now + opts.idle_timeout.total_seconds()
        header_deadline = now + opts.header_timeout.total_seconds() if self.h11.trailing_data[0] else None
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                await self._malformed_request(e)
                return None
            if type(event) is h11.Request:
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed
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
            self.h11.receive_data(data)

    async def _malformed_request(self, error: h11.RemoteProtocolError) -> None:
        self.closing = self.linger = True
        status = error.error_status_hint
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
    async def _send(self, event: h11.Event, *, flush: bool = True) -> None:
        """Send an event to the agent.  With ``flush=False`` the bytes wait in a small buffer for the next
        flush, so a head, a body that arrived in one read and its end go out in one segment."""
        data = self.h11.send(event)
        if data:
            self._out.append(data)
        if flush:
            await self._flush()

    async def _flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        try:
            with trio.fail_after(self.opts.send_timeout.total_seconds()):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            raise ClientGone("the agent stopped reading the response (send_timeout)") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise ClientGone(str(e)) from None

    def _with_close(self, headers: HeaderList) -> HeaderList:
        if self.closing:
            headers.append((b"connection", b"close"))
        return headers

    async def _send_json(self, status: int, body: bytes, *, headers: HeaderList | None = None) -> None:
        """A complete response written by gw.  Does nothing when a response is already under way."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        out: HeaderList = [(b"content-type", b"application/json"),
                           (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
        out.extend(headers or ())
        head = h11.Response(status_code=status, headers=self._with_close(out),
                            reason=replies.REASON_PHRASES.get(status, b""))
        try:
            await self._send(head, flush=False)
            self.response_started = True
            if self.method != "HEAD":
                await self._send(h11.Data(data=body), flush=False)
            await self._send(h11.EndOfMessage())
        except ClientGone:
            self.closing = True

    async def _send_error(self, status: int, reason: str, message: str, *, request_id: str | None = None,
                          headers: HeaderList | None = None) -> None:
        if request_id is not None:
            headers = [*(headers or ()), *_request_id_header(request_id)]
        await self._send_json(status, replies.json_body(message, reason, request_id), headers=headers)

    async def _refuse(self, status: int, body: bytes, *, headers: HeaderList | None = None) -> None:
        """Answer without forwarding.  An unread request body is drained when small, else the connection
        closes (lingering, so the agent still reads this answer)."""
        pending = self.h11.their_state is h11.SEND_BODY
        if pending:
            length = header_value(self.request_headers, b"content-length")
            if (self.h11.they_are_waiting_for_100_continue or length is None  # chunked
                    or int(length) > DRAIN_LIMIT):
                self.closing = self.linger = True
        await self._send_json(status, body, headers=headers)
        if pending and not self.closing:
            try:
                await self._discard_body()
            except ClientBodyError:
                self.closing = True

    # -- one request --------------------------------------------------------------------------------------
    async def _exchange(self, request: h11.Request) -> None:
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

    async def _handle_request(self, request: h11.Request) -> None:
        opts = self.opts
        # h11 bounds only an incomplete head; one that arrives whole in a single read is measured here.
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
            await self._refuse(413, replies.json_body(
                f"the request body is {length} bytes; this listener accepts at most {opts.max_request_body} "
                "(max_request_body)", "body_too_large"))
            return
        if not has_body:
            # Take the request's EndOfMessage now (no I/O: the length is 0), so a refusal keeps the
            # connection alive and an upgrade request reaches h11's MIGHT_SWITCH_PROTOCOL state.
            await self._client_body_event(opts.body_timeout.total_seconds())
        try:
            target = normalize_target(request.target, allow_encoded_slash=opts.allow_encoded_slash)
        except BadTarget as e:
            await self._refuse(e.status, replies.json_body(str(e), e.reason))
            return
        sr = await self._session_for(request)
        if sr is not None:
            await self._run_command(sr, request, target, has_body, length)

    # -- identity -----------------------------------------------------------------------------------------
    async def _session_for(self, request: h11.Request) -> SessionRuntime | None:
        """The session this request runs in: the connection's, if the request carries the same token; a new
        one (the old ends with ``token_changed``) for a different valid token; None after a 401/403."""
        token = bearer_token(request.headers, self.token_header)
        if token is None:
            message = (f"this gw listener needs an identity token: send '{self.opts.token_header}: Bearer "
                       "<token>' (get a token from your identity provider, e.g. gw token issue)")
            await self.listener.refused(client_address=self.client_address, claimed_user="",
                                        reason="missing_token", message=message)
            await self._refuse(401, replies.json_body(message, "missing_token"),
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
            await self._refuse(403, replies.json_body(str(e), e.reason))
            return None
        except AuthenticationError as e:
            await self._refuse(401, replies.json_body(str(e), e.reason),
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
            await self._refuse(503, replies.json_body(
                f"gw could not start a session ({type(e).__name__}: {e}); nothing was forwarded. Retry later "
                "or tell the gateway operator", "unavailable"))
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
        request in flight; for token expiry, revocation or ``session_max`` immediately."""
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
                    self.termination = reason
                    self._exchange_scope.cancel()

        assert self._nursery is not None
        self._nursery.start_soon(watch)

    # -- approval holds -----------------------------------------------------------------------------------
    async def notice(self, message: str) -> None:
        """:class:`gw.stage.CommandContext`: HTTP has no interim message for a waiting agent (gw sends no 1xx
        besides 100), so notices go to the log.  A notice means a stage is about to hold the request (the
        approve stage announces its hold this way): from then on gw watches for the agent leaving, so a
        request nobody waits for any more is abandoned instead of being run after approval."""
        log.info("listener %s: %s: %s", self.listener.name, self.client_address, message)
        if self._decide_scope is not None and self._hold_watch is None and self._nursery is not None:
            self._hold_watch = (trio.CancelScope(), trio.Event())
            self._nursery.start_soon(self._watch_held_client, *self._hold_watch)

    async def _watch_held_client(self, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                buffered = 0
                while buffered <= HOLD_READ_LIMIT:
                    data = await self._receive()
                    if not data:
                        if self._decide_scope is not None:
                            self._decide_scope.cancel()
                        return
                    self.h11.receive_data(data)  # kept for h11: a pipelined request or the request body
                    buffered += len(data)
                await trio.sleep_forever()
        finally:
            done.set()

    async def _decide(self, sr: SessionRuntime, cmd: Command) -> Verdict:
        with trio.CancelScope() as scope:
            self._decide_scope = scope
            try:
                verdict = await sr.decide(cmd, self)
            finally:
                self._decide_scope = None
                if self._hold_watch is not None:
                    watch, done = self._hold_watch
                    watch.cancel()
                    with trio.CancelScope(shield=True):
                        await done.wait()
                    self._hold_watch = None
        if scope.cancelled_caught:
            raise ClientGone("the agent closed the connection while its request was held")
        return verdict

    # -- the command --------------------------------------------------------------------------------------
    def _command(self, sr: SessionRuntime, request: h11.Request, target: Target, upgrade: bytes | None,
                 length: int | None) -> Command:
        flags = []
        if upgrade is not None:
            flags.append("upgrade")
        if target.normalized:
            flags.append("path_normalized")
        content_type = header_value(request.headers, b"content-type")
        attributes = {
            "headers": self.rules.redacted(request.headers),
            "http_version": request.http_version.decode("ascii"),
            "content_type": content_type.decode("latin-1") if content_type else None,
            "content_length": length,
            "upgrade": upgrade.decode("latin-1") if upgrade else None,
        }
        return sr.command(command_text(self.method, target), language="http", kind=command_kind(self.method),
                          verb=self.method, objects=(target.path,), flags=frozenset(flags),
                          attributes=attributes)

    async def _run_command(self, sr: SessionRuntime, request: h11.Request, target: Target, has_body: bool,
                           length: int | None) -> None:
        upgrade = None
        if b"upgrade" in comma_tokens(request.headers, b"connection"):
            upgrade = header_value(request.headers, b"upgrade")
        cmd = self._command(sr, request, target, upgrade, length)
        request_id = f"{sr.session.id}-{cmd.seq}"
        outcome = Outcome(status="error")
        try:
            verdict = await self._decide(sr, cmd)
            if not verdict.allowed:
                status = replies.verdict_status(verdict)
                outcome.status, outcome.tag = "denied", str(status)
                outcome.error_code = verdict.code.value if verdict.code else "policy"
                outcome.error_message = verdict.reason
                await self._refuse(status, replies.verdict_body(verdict, request_id),
                                   headers=_request_id_header(request_id))
                return
            await self._forward(sr, cmd, request, target, upgrade, has_body, request_id, outcome)
        except trio.Cancelled:
            outcome.status = "cancelled"
            raise
        except (ClientGone, AbortConnection) as e:
            outcome.status = "cancelled" if isinstance(e, ClientGone) else "error"
            outcome.error_message = outcome.error_message or str(e)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await sr.complete(cmd, outcome)

    @staticmethod
    def _fail(outcome: Outcome, status: int, reason: str, message: str) -> None:
        outcome.status, outcome.tag = "error", str(status)
        outcome.error_code, outcome.error_message = reason, message

    async def _forward(self, sr: SessionRuntime, cmd: Command, request: h11.Request, target: Target,
                       upgrade: bytes | None, has_body: bool, request_id: str, outcome: Outcome) -> None:
        framing: HeaderList = []
        if has_body:
            length = header_value(request.headers, b"content-length")
            framing = [(b"content-length", length) if length is not None
                       else (b"transfer-encoding", b"chunked")]
        headers = self.rules.upstream_request(request.headers, client_ip=self.client_ip, scheme=self.scheme,
                                              framing=framing, upgrade=upgrade)
        upstream_request = h11.Request(method=request.method, headers=headers,
                                       target=(self.target.base_path + target.path_and_query).encode("ascii"))
        try:
            up, response = await self._send_upstream(sr, cmd, upstream_request, has_body, outcome)
            if type(response) is h11.InformationalResponse:  # 101 Switching Protocols
                await self._relay_tunnel(sr, cmd, up, response, request_id, outcome)
                return
            assert type(response) is h11.Response
            await self._relay_response(sr, cmd, up, response, request_id, outcome)
        except UpstreamError as e:
            await self._drop_upstream()
            self._fail(outcome, e.status, e.reason, str(e))
            if self.response_started:
                raise AbortConnection(str(e)) from None
            log.info("listener %s: request %s: %s", self.listener.name, request_id, e)
            if self.h11.their_state is h11.SEND_BODY:
                self.closing = self.linger = True
            await self._send_error(e.status, e.reason, str(e), request_id=request_id)
            return
        except ClientBodyError as e:
            await self._drop_upstream()
            self.closing = self.linger = True
            self._fail(outcome, e.status, e.reason, str(e))
            await self._send_error(e.status, e.reason, str(e), request_id=request_id)
            return
        except FilterFailed as e:
            await self._drop_upstream()
            if self.h11.their_state is h11.SEND_BODY:
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
            await self._send_error(502, "mask_failed", f"gw could not apply the masking policy to this "
                                   f"response ({e}) and refused to pass it on unmasked; ask for less data "
                                   "(filters, paging) or tell the gateway operator", request_id=request_id)
            return
        if not up.finish_cycle():
            await self._drop_upstream()

    async def _upstream_connection(self) -> UpstreamConnection:
        if self.upstream is None or self.upstream.closed:
            self.upstream = await UpstreamConnection.open(self.target)
        return self.upstream

    async def _drop_upstream(self) -> None:
        up, self.upstream = self.upstream, None
        if up is not None:
            await up.aclose()

    async def _send_upstream(self, sr: SessionRuntime, cmd: Command, upstream_request: h11.Request,
                             has_body: bool, outcome: Outcome) -> tuple[UpstreamConnection, h11.Event]:
        """Send the request (head and body) and return the response head (or the 101).  ``100 Continue`` is
        sent once the upstream took the head, so an agent never uploads towards an upstream that is down.
        A kept-alive connection found closed before any response byte is replaced once, for body-less
        idempotent requests."""
        retry = not has_body and self.method in IDEMPOTENT_METHODS
        while True:
            up = await self._upstream_connection()
            reused = up.completed > 0
            try:
                await up.send(upstream_request)
                if has_body:
                    if self.h11.they_are_waiting_for_100_continue:
                        await self._send(h11.InformationalResponse(status_code=100, headers=[],
                                                                   reason=b"Continue"))
                    await self._stream_request_body(sr, cmd, up, outcome)
                else:
                    await up.send(h11.EndOfMessage())
                while True:
                    event = await up.next_event()
                    if type(event) is not h11.InformationalResponse or event.status_code == 101:
                        return up, event
                    # Interim responses (100, 102, 103) are not relayed: gw answers Expect itself.
            except UpstreamClosed as e:
                await self._drop_upstream()
                if retry and reused and e.before_response:
                    retry = False
                    continue
                raise

    async def _client_body_event(self, timeout: float) -> h11.Event:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise ClientBodyError(400, "bad_request_body", "the request body is malformed or shorter "
                                      f"than declared: {e}") from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            with trio.move_on_after(timeout) as scope:
                data = await self._receive()
            if scope.cancelled_caught:
                raise ClientBodyError(408, "request_timeout", f"the agent sent no request body bytes for "
                                      f"{timeout:g}s (body_timeout); send the body promptly")
            self.h11.receive_data(data)

    async def _discard_body(self) -> None:
        timeout = self.opts.body_timeout.total_seconds()
        while type(await self._client_body_event(timeout)) is not h11.EndOfMessage:
            pass

    async def _stream_request_body(self, sr: SessionRuntime, cmd: Command, up: UpstreamConnection,
                                   outcome: Outcome) -> None:
        """Agent body -> upstream, piece by piece; stages observe it on ``request-body`` (the upstream gets
        the agent's bytes unchanged).  If the upstream stops reading (it answered early), gw stops sending and
        goes on to read that answer."""
        limit = self.opts.max_request_body
        timeout = self.opts.body_timeout.total_seconds()
        filt = filtering.open_filter(sr, cmd, "request-body", cmd.attributes.get("content_type") or "")
        total = 0
        while True:
            event = await self._client_body_event(timeout)
            if type(event) is h11.Data:
                total += len(event.data)
                if total > limit:
                    raise ClientBodyError(413, "body_too_large",
                                          f"the request body exceeds {limit} bytes (max_request_body)")
                if filt is not None:
                    filtering.feed(filt, bytes(event.data), "request-body")
                try:
                    await up.send(h11.Data(data=event.data))
                except UpstreamClosed:
                    self.closing = self.linger = True
                    break
            elif type(event) is h11.EndOfMessage:
                if filt is not None:
                    filtering.finish(filt, "request-body")
                await up.send(h11.EndOfMessage())
                break
        outcome.notes["request_bytes"] = total

    # -- the response -------------------------------------------------------------------------------------
    async def _relay_response(self, sr: SessionRuntime, cmd: Command, up: UpstreamConnection,
                              response: h11.Response, request_id: str, outcome: Outcome) -> None:
        status = response.status_code
        outcome.tag = str(status)
        outcome.status = "ok" if status < 400 else "error"
        if status >= 400:
            outcome.error_code = str(status)
            outcome.error_message = response.reason.decode("latin-1")
        outcome.notes["response_status"] = status
        outcome.notes["response_headers"] = self.rules.redacted(response.headers)
        bodiless = self.method == "HEAD" or status in (204, 304)
        filt = None
        if not bodiless:
            content_type = header_value(response.headers, b"content-type")
            filt = filtering.open_filter(sr, cmd, "response-body",
                                         content_type.decode("latin-1") if content_type else "")
        if filt is not None:
            encoding = header_value(response.headers, b"content-encoding")
            if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
                raise FilterFailed("response-body", ValueError(
                    f"the upstream sent a {encoding.decode('latin-1')}-encoded body although gw asked for "
                    "identity encoding"))
        scrub = SecretScrubber(self.rules.secrets) if self.rules.secrets and not bodiless else None
        headers = self.rules.client_response(response.headers, keep_length=filt is None, upgrade=False,
                                             extra=self._with_close(_request_id_header(request_id)))
        head = h11.Response(status_code=status, headers=headers, reason=response.reason)
        if filt is None:
            sent = await self._stream_body(up, head, scrub)
        else:
            declared = header_value(response.headers, b"content-length")
            sent = await self._filtered_body(up, head, scrub, filt, int(declared) if declared else None)
        outcome.notes["response_bytes"] = sent

    async def _stream_body(self, up: UpstreamConnection, head: h11.Response, scrub: SecretScrubber | None
                           ) -> int:
        """Upstream body -> agent as it arrives (the hot path: no filter, length unchanged).  Output is
        flushed whenever gw would wait for the upstream, so nothing is delayed and small responses leave in
        one segment."""
        await self._send(head, flush=False)
        self.response_started = True
        sent = 0
        while True:
            event = await up.next_event(self._flush)
            if type(event) is h11.Data:
                data = event.data if scrub is None else scrub.feed(event.data)
                if data:
                    sent += len(data)
                    await self._send(h11.Data(data=data), flush=False)
            elif type(event) is h11.EndOfMessage:
                if scrub is not None and (tail := scrub.finish()):
                    sent += len(tail)
                    await self._send(h11.Data(data=tail), flush=False)
                await self._send(h11.EndOfMessage())
                return sent

    async def _filtered_body(self, up: UpstreamConnection, head: h11.Response, scrub: SecretScrubber | None,
                             filt: StreamFilter, declared: int | None) -> int:
        """Upstream body -> stage filter -> agent.  The head waits for the filter's first output, so a filter
        that buffers (JSON masking) can still fail with a clean 502.  A body the upstream declared no longer
        than ``max_response_buffer`` is held whole and sent with its new Content-Length; anything else streams
        (chunked) as the filter produces output, so watches and event streams are not delayed."""
        bound = self.opts.max_response_buffer
        hold = declared is not None and declared <= bound
        held = bytearray()
        committed = False
        sent = 0
        while True:
            event = await up.next_event(self._flush)
            if type(event) is h11.Data:
                data = bytes(event.data if scrub is None else scrub.feed(event.data))
                out = filtering.feed(filt, data, "response-body")
                if not out:
                    continue
                if not committed:
                    held += out
                    if hold and len(held) <= bound:
                        continue
                    await self._send(head, flush=False)
                    self.response_started = committed = True
                    out = bytes(held)
                    held.clear()
                sent += len(out)
                await self._send(h11.Data(data=out), flush=False)
            elif type(event) is h11.EndOfMessage:
                tail = scrub.finish() if scrub is not None else b""
                out = filtering.feed(filt, tail, "response-body") if tail else b""
                out += filtering.finish(filt, "response-body")
                if not committed:
                    out = bytes(held) + out
                    await self._send(h11.Response(status_code=head.status_code, reason=head.reason, headers=[
                        *head.headers.raw_items(), (b"content-length", str(len(out)).encode())]), flush=False)
                    self.response_started = True
                if out:
                    sent += len(out)
                    await self._send(h11.Data(data=out), flush=False)
                await self._send(h11.EndOfMessage())
                return sent

    async def _relay_tunnel(self, sr: SessionRuntime, cmd: Command, up: UpstreamConnection,
                            switch: h11.InformationalResponse, request_id: str, outcome: Outcome) -> None:
        """``101 Switching Protocols``: relay it, then both connections carry another protocol until either
        side closes."""
        headers = self.rules.client_response(switch.headers, keep_length=True, upgrade=True,
                                             extra=_request_id_header(request_id))
        await self._send(h11.InformationalResponse(status_code=101, headers=headers, reason=switch.reason))
        self.response_started = self.closing = True
        outcome.status, outcome.tag = "ok", "101"
        self.upstream = None  # the connection is a tunnel now, never reused for HTTP
        try:
            result = await tunnel.relay(
                self.stream, up.stream, client_first=self.h11.trailing_data[0],
                upstream_first=up.h11.trailing_data[0],
                client_observer=filtering.open_filter(sr, cmd, tunnel.CLIENT_CHANNEL, ""),
                upstream_observer=filtering.open_filter(sr, cmd, tunnel.SERVER_CHANNEL, ""))
        except FilterFailed as e:
            self._fail(outcome, 101, "stream_filter_failed", str(e))
            return
        finally:
            with trio.CancelScope(shield=True):
                await up.aclose()
        outcome.notes["bytes_from_client"] = result.bytes_from_client
        outcome.notes["bytes_from_upstream"] = result.bytes_from_upstream
        if result.failures:
            self._fail(outcome, 101, "stream_filter_failed", result.failures[0])
