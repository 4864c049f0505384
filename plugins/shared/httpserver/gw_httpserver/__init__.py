"""A small HTTP/1.1 server on h11 for gw's own endpoints: requests in, responses (whole or streamed) out.

The plugins that serve people and probes rather than a proxy's traffic (the console's pages and API, the
metrics admin endpoint) share it.  It is deliberately plain: one request at a time per connection, the
request head and body read whole up to :class:`Limits`, within a read timeout; responses with a
Content-Length, or chunked when streamed (server-sent events).  What a response says is the application's;
what every response of a server carries (security headers) is given once to :func:`serve_connection`.
TLS, if any, is the caller's: it hands over the decrypted stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

__all__ = ["App", "Limits", "Request", "Response", "serve_connection"]

_log = logging.getLogger("gw.httpserver")
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may cost the server."""

    #: Largest request head (request line and headers); larger is refused with 431.
    max_head: int = 16 * 1024
    #: Largest request body; larger is refused with 413.
    max_body: int = 64 * 1024
    #: Seconds a client has to send a whole request once the connection is open or the previous response was
    #: sent (so it is also how long an idle keep-alive connection lives).
    read_timeout: float = 30.0
    #: Serve several requests on one connection; False answers one and closes (``connection: close``).
    keep_alive: bool = True


@dataclass
class Request:
    method: str
    target: str
    #: Header names in lower case; repeated headers joined with ``, `` (cookies with ``; `` as sent).
    headers: dict[str, str]
    body: bytes
    client: str = ""
    https: bool = False
    #: The named groups of the route pattern that matched the path (set by the application's router).
    params: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """The query string's fields (the first value of each)."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except CookieError:
            return {}
        return {k: m.value for k, m in jar.items()}

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body's fields (the first value of each)."""
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def json(self) -> dict[str, Any]:
        """A JSON object body ({} when empty); raises ValueError for anything else."""
        if not self.body.strip():
            return {}
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("the body must be a JSON object")  # noqa: TRY004 (callers catch ValueError)
        return value


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = _TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: A streamed body (server-sent events): sent chunked until the iterator ends.
    stream: Callable[[], AsyncIterator[bytes]] | None = None

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value, indent=1, default=str).encode() + b"\n", "application/json")

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> Response:
        return cls(status, b"", _TEXT, [("location", location)])

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), _TEXT)


App = Callable[[Request], Awaitable[Response]]


class _Closed(Exception):
    pass


class _TooLarge(Exception):
    pass


async def serve_connection(stream: trio.abc.Stream, app: App, *, client: str = "", https: bool = False,
                           limits: Limits = Limits(), headers: Sequence[tuple[str, str]] = (),
                           log: logging.Logger = _log) -> None:
    """Serve requests on one connection until the client closes it, a limit or an error ends it, or (without
    keep-alive) after the first response; the stream is closed on return.  ``headers`` go on every response,
    error replies included.  An application that raises is logged on ``log`` and answered with 500."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
    always = [*headers] if limits.keep_alive else [*headers, ("connection", "close")]
    try:
        while True:
            try:
                with trio.fail_after(limits.read_timeout):
                    request = await _read_request(conn, stream, client, https, limits.max_body)
            except (_Closed, trio.TooSlowError):
                return
            except h11.RemoteProtocolError as e:
                await _send_error(conn, stream, e.error_status_hint, "bad request\n", always)
                return
            except _TooLarge:
                await _send_error(conn, stream, 413, "request body too large\n", always)
                return
            try:
                response = await app(request)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                response = Response.text("internal error; the gateway log has the details\n", 500)
            await _send(conn, stream, response, always, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


async def _next(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            if not data and conn.their_state is h11.IDLE:
                raise _Closed
            continue
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        return event


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream, client: str, https: bool,
                        max_body: int) -> Request:
    event = await _next(conn, stream)
    if not isinstance(event, h11.Request):
        raise _Closed
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers and key != "cookie" else text
    body = bytearray()
    while True:
        part = await _next(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > max_body:
                raise _TooLarge
        elif isinstance(part, h11.EndOfMessage):
            break
    return Request(event.method.decode("ascii", "replace").upper(), event.target.decode("latin-1"), headers,
                   bytes(body), client, https)


def _head(response: Response, always: Sequence[tuple[str, str]], length: int | None) -> h11.Response:
    headers = [("content-type", response.content_type), *always, *response.headers]
    if length is not None:
        headers.append(("content-length", str(length)))
    return h11.Response(status_code=response.status, headers=headers)


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response,
                always: Sequence[tuple[str, str]], *, head: bool) -> None:
    if response.stream is None or head:
        await stream.send_all(conn.send(_head(response, always, len(response.body))) or b"")
        if not head and response.body:
            await stream.send_all(conn.send(h11.Data(data=response.body)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return
    await stream.send_all(conn.send(_head(response, always, None)) or b"")
    async for chunk in response.stream():
        await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _send_error(conn: h11.Connection, stream: trio.abc.Stream, status: int, text: str,
                      always: Sequence[tuple[str, str]]) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    close = [] if ("connection", "close") in always else [("connection", "close")]
    try:
        await _send(conn, stream, Response(status, text.encode(), _TEXT, close), always, head=False)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
