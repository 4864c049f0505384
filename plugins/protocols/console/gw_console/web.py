"""A small HTTP/1.1 server on h11 for the console: requests in, responses (whole or streamed) out.

The console serves pages and a JSON API to people, not a proxy's traffic, so this is deliberately plain:
one request at a time per connection (keep-alive), bodies read whole up to a limit, responses with a
Content-Length, or chunked when streamed (server-sent events).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

log = logging.getLogger("gw.console")

#: Largest request body the console reads (a form or a JSON decision).
MAX_BODY = 64 * 1024
#: Largest request head (request line and headers).
MAX_HEAD = 16 * 1024
#: How long a client may take to send a request once it started, and an idle keep-alive connection lives.
READ_TIMEOUT = 30.0

SECURITY_HEADERS = [
    ("content-security-policy",
     ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    client: str
    https: bool
    #: The named groups of the route pattern that matched the path.
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
        jar = SimpleCookie()
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
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: A streamed body (server-sent events): sent chunked until the iterator ends.
    stream: Callable[[], AsyncIterator[bytes]] | None = None

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value, indent=1, default=str).encode() + b"\n", "application/json")

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> Response:
        return cls(status, b"", "text/plain; charset=utf-8", [("location", location)])

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


App = Callable[[Request], Awaitable[Response]]


class _Closed(Exception):
    pass


async def serve(stream: trio.abc.Stream, app: App, *, client: str, https: bool) -> None:
    """Serve requests on one connection until the client closes it (or an error ends it)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        while True:
            try:
                with trio.fail_after(READ_TIMEOUT):
                    request = await _read_request(conn, stream, client, https)
            except (_Closed, trio.TooSlowError):
                return
            except h11.RemoteProtocolError as e:
                await _send_error(conn, stream, e.error_status_hint, "bad request\n")
                return
            except _TooLarge:
                await _send_error(conn, stream, 413, "request body too large\n")
                return
            try:
                response = await app(request)
            except Exception:
                log.exception("console: %s %s failed", request.method, request.path)
                response = Response.text("internal error; the gateway log has the details\n", 500)
            await _send(conn, stream, response, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


class _TooLarge(Exception):
    pass


async def _next(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))  # a socket stream gives bytes already: no copy
            if not data and conn.their_state is h11.IDLE:
                raise _Closed
            continue
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        return event


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream, client: str, https: bool) -> Request:
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
            if len(body) > MAX_BODY:
                raise _TooLarge
        elif isinstance(part, h11.EndOfMessage):
            break
    return Request(event.method.decode("ascii", "replace").upper(), event.target.decode("latin-1"), headers,
                   bytes(body), client, https)


def _head(response: Response, length: int | None) -> h11.Response:
    headers = [("content-type", response.content_type), *SECURITY_HEADERS, *response.headers]
    if length is not None:
        headers.append(("content-length", str(length)))
    return h11.Response(status_code=response.status, headers=headers)


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response, *, head: bool) -> None:
    if response.stream is None or head:
        await stream.send_all(conn.send(_head(response, len(response.body))) or b"")
        if not head and response.body:
            await stream.send_all(conn.send(h11.Data(data=response.body)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return
    await stream.send_all(conn.send(_head(response, None)) or b"")
    async for chunk in response.stream():
        await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _send_error(conn: h11.Connection, stream: trio.abc.Stream, status: int, text: str) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        await _send(conn, stream, Response(status, text.encode(), "text/plain; charset=utf-8",
                                           [("connection", "close")]), head=False)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
