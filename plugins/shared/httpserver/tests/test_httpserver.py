"""gw-httpserver over an in-memory stream: limits, keep-alive or one request, HEAD, streaming, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import h11
import pytest
import trio
import trio.testing
from gw_httpserver import Limits, Request, Response, serve_connection

SECURITY = [("x-frame-options", "DENY")]


class Client:
    """The client end of an in-memory connection, speaking HTTP/1.1 through h11."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, method: str, target: str, body: bytes = b"",
                   headers: list[tuple[str, str]] | None = None) -> None:
        head = [("host", "gw"), ("content-length", str(len(body))), *(headers or [])]
        data = self.conn.send(h11.Request(method=method, target=target, headers=head)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = 0, {}, bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, headers, bytes(body)

    async def closed(self) -> bool:
        """Whether the server closed the connection (reads until end of stream)."""
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return True

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()


async def app(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("the application failed")
    if request.path == "/events":
        async def events() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()
        return Response(200, content_type="text/event-stream", stream=events)
    return Response.json({"method": request.method, "path": request.path, "query": request.query,
                          "body": request.body.decode(), "client": request.client, "https": request.https,
                          "cookies": request.cookies})


async def _served(nursery: trio.Nursery, limits: Limits | None = None) -> Client:
    limits = limits or Limits()
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(lambda: serve_connection(server, app, client="10.0.0.1:5", https=True, limits=limits,
                                                headers=SECURITY))
    return Client(client)


async def test_keep_alive_serves_requests_in_turn_with_the_server_headers() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery)
        await client.send("POST", "/a?x=1&y=", b"hello", [("cookie", "s=abc")])
        status, headers, body = await client.response()
        assert status == 200 and headers["x-frame-options"] == "DENY" and "connection" not in headers
        assert body.startswith(b"{") and b'"/a"' in body and b'"hello"' in body and b'"10.0.0.1:5"' in body
        assert b'"s": "abc"' in body and b'"https": true' in body and b'"y": ""' in body
        client.next_cycle()
        await client.send("GET", "/b")
        status, _, body = await client.response()
        assert status == 200 and b'"/b"' in body
        await client.stream.aclose()


async def test_one_request_per_connection_without_keep_alive() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery, Limits(keep_alive=False))
        await client.send("GET", "/only")
        status, headers, _ = await client.response()
        assert status == 200 and headers["connection"] == "close"
        assert await client.closed()


async def test_head_has_the_length_of_the_body_it_does_not_send() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery)
        await client.send("HEAD", "/page")
        status, headers, body = await client.response()
        assert status == 200 and int(headers["content-length"]) > 0 and body == b""
        await client.stream.aclose()


async def test_a_streamed_response_is_chunked() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery)
        await client.send("GET", "/events")
        status, headers, body = await client.response()
        assert status == 200 and headers["transfer-encoding"] == "chunked" and "content-length" not in headers
        assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        await client.stream.aclose()


async def test_a_failing_application_is_a_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery)
        with caplog.at_level(logging.ERROR, logger="gw.httpserver"):
            await client.send("GET", "/boom")
            status, headers, body = await client.response()
        assert status == 500 and b"gateway log" in body and headers["x-frame-options"] == "DENY"
        assert "GET /boom failed" in caplog.text and "the application failed" in caplog.text
        client.next_cycle()
        await client.send("GET", "/after")  # the connection keeps serving
        assert (await client.response())[0] == 200
        await client.stream.aclose()


async def test_a_body_over_the_limit_is_413_and_closes() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery, Limits(max_body=1000))
        await client.send("POST", "/form", b"x" * 1001)
        status, headers, body = await client.response()
        assert status == 413 and body == b"request body too large\n"
        assert headers["connection"] == "close" and headers["x-frame-options"] == "DENY"
        assert await client.closed()


async def test_a_head_over_the_limit_is_431_and_closes() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery, Limits(max_head=2048))
        await client.stream.send_all(b"GET / HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 4096)  # no end in sight
        status, _, _ = await client.response()
        assert status == 431
        assert await client.closed()


async def test_garbage_is_400_and_closes() -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery)
        await client.stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, _ = await client.response()
        assert status == 400 and headers["connection"] == "close"
        assert await client.closed()


async def test_a_client_that_stalls_is_dropped_after_the_read_timeout(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        client = await _served(nursery, Limits(read_timeout=10.0))
        await client.stream.send_all(b"GET / HTTP/1.1\r\nhost: gw\r\n")  # the head never ends
        start = trio.current_time()
        assert await client.closed()
        assert 10.0 <= trio.current_time() - start < 11.0
