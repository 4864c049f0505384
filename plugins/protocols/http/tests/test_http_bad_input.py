"""Bad input from clients and upstreams: each gets a clear error and the gateway keeps serving everyone else
(a healthy keep-alive client runs beside every case and must see only 200s)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from gw.testing import free_port, running_gateway

AUTH = b"Authorization: Bearer tok-agent\r\n"
HEAD = b"Host: x\r\n" + AUTH
TIMEOUTS = """header_timeout = "300ms"
body_timeout = "300ms"
idle_timeout = "2s"
max_header_bytes = "8KiB"
max_request_body = "1MiB"
"""


@asynccontextmanager
async def gateway_with_bystander(config: Any, pm: Any, agent: Any) -> AsyncIterator[Any]:
    """A running gateway plus a well-behaved client issuing requests on one keep-alive connection the whole
    time; it asserts that every one of its requests succeeded."""
    statuses: list[int] = []
    async with running_gateway(config, pm=pm) as gw, trio.open_nursery() as nursery:
        async def bystander() -> None:
            async with agent(gw) as c:
                while True:
                    statuses.append((await c.get("/api/v1/customers/1")).status_code)
                    await trio.sleep(0.02)

        nursery.start_soon(bystander)
        with trio.fail_after(5):
            while not statuses:
                await trio.sleep(0.01)
        yield gw
        served = len(statuses)
        with trio.fail_after(5):
            while len(statuses) < served + 2:  # still served after the bad input
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert statuses and set(statuses) == {200}, statuses


@pytest.fixture
def bad_config(http_config, upstream):
    return http_config(upstream.url, listener=TIMEOUTS)


@pytest.mark.parametrize("request_bytes, status, reason", [
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400, "bad_request"),
    (b"GET / HTTP/1.1\r\n" + HEAD + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET / HTTP/1.1\r\n" + HEAD + b"X-Big: " + b"a" * 9000, 431, "headers_too_large"),
    (b"POST /echo HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400, "bad_request"),
    (b"GET /api/v1/customers%2F42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH + b"\r\n", 400,
     "encoded_slash"),
    (b"GET /a/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH + b"\r\n", 400, "bad_request_target"),
    (b"POST /echo HTTP/1.1\r\n" + HEAD + b"Content-Length: 2000000\r\n\r\n", 413, "body_too_large"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" + AUTH + b"\r\n", 405,
     "method_not_allowed"),
])
async def test_malformed_requests_get_a_clear_status(bad_config, http_pm, upstream, raw_http, parse_raw,
                                                     request_bytes, status, reason, agent) -> None:
    status_of, json_of = parse_raw
    async with gateway_with_bystander(bad_config, http_pm, agent) as gw:
        out = await raw_http(gw.port("api"), request_bytes)
    assert status_of(out) == status, out[:300]
    assert json_of(out)["reason"] == reason
    assert all(s.method == "GET" and s.path == "/api/v1/customers/1" for s in upstream.seen)


async def test_slowloris_head_gets_408_and_is_closed(bad_config, http_pm, raw_http, parse_raw, agent) -> None:
    status_of, json_of = parse_raw
    async with gateway_with_bystander(bad_config, http_pm, agent) as gw:
        with trio.fail_after(2):
            out = await raw_http(gw.port("api"), b"GET /api/v1/customers/1 HTTP/1.1\r\nHost: x\r\n",
                                 timeout=5)
    assert status_of(out) == 408
    assert json_of(out)["reason"] == "request_timeout"


async def test_stalled_body_gets_408_and_the_upstream_request_is_abandoned(
        bad_config, http_pm, upstream, raw_http, parse_raw, observed, agent) -> None:
    status_of, _ = parse_raw
    async with gateway_with_bystander(bad_config, http_pm, agent) as gw:
        out = await raw_http(gw.port("api"), b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH +
                             b"Content-Length: 10\r\n\r\nabc", timeout=3)
    assert status_of(out) == 408
    posts = [o for c, o in observed["outcomes"] if c.verb == "POST"]
    assert posts[0].status == "error" and posts[0].error_code == "request_timeout"
    assert not [s for s in upstream.seen if s.method == "POST" and len(s.body) == 10], \
        "the upstream never got a complete POST"


async def test_body_shorter_than_content_length_then_close(bad_config, http_pm, upstream, observed,
                                                           agent) -> None:
    async with gateway_with_bystander(bad_config, http_pm, agent) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        await stream.send_all(b"POST /echo HTTP/1.1\r\n" + HEAD + b"Content-Length: 100\r\n\r\nshort")
        await stream.send_eof()
        out = b""
        with trio.fail_after(3):
            while chunk := await stream.receive_some(65536):
                out += chunk
        await stream.aclose()
    assert out.startswith(b"HTTP/1.1 400") and b"shorter than declared" in out
    post = next(o for c, o in observed["outcomes"] if c.verb == "POST")
    assert post.error_code == "bad_request_body"
    assert not [s for s in upstream.seen if s.method == "POST" and len(s.body) == 100]


async def test_body_longer_than_content_length_is_the_next_request(bad_config, http_pm, upstream,
                                                                   raw_http, agent) -> None:
    async with gateway_with_bystander(bad_config, http_pm, agent) as gw:
        out = await raw_http(gw.port("api"), b"POST /echo HTTP/1.1\r\nHost: x\r\n" + AUTH +
                             b"Content-Length: 5\r\n\r\nhello"
                             b"DELETE /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 401" in out, "the extra bytes are parsed as a request of their own, with its own auth"
    posts = [s for s in upstream.seen if s.method == "POST"]
    assert [p.body for p in posts] == [b"hello"]
    assert not [s for s in upstream.seen if "smuggled" in s.path]


async def test_chunked_body_over_the_limit_gets_413(bad_config, http_pm, upstream, agent) -> None:
    async def big():
        for _ in range(40):
            yield b"x" * 65536

    async with gateway_with_bystander(bad_config, http_pm, agent) as gw, agent(gw) as c:
        try:
            r = await c.post("/echo", content=big())
        except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
            r = None  # gw closed while the client was still sending: also a refusal
    if r is not None:
        assert r.status_code == 413 and r.json()["reason"] == "body_too_large"
    assert not [s for s in upstream.seen if s.method == "POST"]


async def test_idle_keep_alive_connection_is_closed_quietly(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, listener='idle_timeout = "200ms"')
    async with running_gateway(config, pm=http_pm) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        with trio.fail_after(2):
            assert await stream.receive_some(100) == b""
        await stream.aclose()


@pytest.mark.parametrize("path, status, reason", [
    ("/close", 502, "upstream_closed"),
    ("/slow", 504, "upstream_timeout"),
])
async def test_upstream_failures_are_json_errors(http_config, http_pm, upstream, path, status, reason,
                                                 agent) -> None:
    config = http_config(upstream.url, upstream='read_timeout = "300ms"')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
        r = await c.get(path)
        assert (await c.get("/api/v1/customers/1")).status_code == 200
    assert r.status_code == status
    body = r.json()
    assert body["reason"] == reason and body["request_id"] == r.headers["x-gw-request-id"]
    assert f"127.0.0.1:{upstream.port}" in body["error"]


async def test_upstream_down_is_a_502_with_reason(http_config, http_pm, curl) -> None:
    config = http_config(f"http://127.0.0.1:{free_port()}")
    async with running_gateway(config, pm=http_pm) as gw:
        code, out, _ = await curl("-i", "-H", "Authorization: Bearer tok-agent",
                                  f"http://127.0.0.1:{gw.port('api')}/api/v1/customers")
    assert code == 0 and out.startswith(b"HTTP/1.1 502")
    assert b'"reason": "upstream_unreachable"' in out and b"Connection refused" in out


async def test_upstream_that_lies_about_length(http_config, http_pm, upstream, agent) -> None:
    """Streamed straight through, the response is cut (the client sees a truncated body, as the upstream
    sent it); held for a filter, it becomes a clean 502."""
    for stages, expect_cut in (("", True), ('{ use = "http_test_observe" }', False)):
        config = http_config(upstream.url, stages=stages)
        async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
            if expect_cut:
                with pytest.raises(httpx.RemoteProtocolError):
                    await c.get("/short")
            else:
                r = await c.get("/short")
                assert r.status_code == 502 and r.json()["reason"] == "upstream_closed"
            assert (await c.get("/api/v1/customers/1")).status_code == 200
