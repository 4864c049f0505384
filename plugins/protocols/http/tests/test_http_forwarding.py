"""Forwarding end to end (curl and httpx -> gw -> a real HTTP server): keep-alive, chunked bodies both ways,
Expect: 100-continue, hop-by-hop headers, Host and X-Forwarded-For, credential injection."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from gw.testing import running_gateway

AGENT = {"Authorization": "Bearer tok-agent"}


def client(gw: Any, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}", headers=AGENT, **kw)


async def test_keep_alive_serves_many_requests_on_one_connection(http_config, http_pm, upstream,
                                                                 observed) -> None:
    one = httpx.Limits(max_connections=1)
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw, client(gw, limits=one) as c:
        for i in range(50):
            r = await c.get(f"/api/v1/customers/{i}")
            assert r.status_code == 200 and r.json() == {"id": str(i), "method": "GET"}
    assert len(observed["sessions"]) == 1, "one client connection is one gw session"
    assert upstream.connections == 1, "the upstream connection is reused while both sides keep alive"
    assert [c.seq for c in observed["commands"]] == list(range(1, 51))


async def test_upstream_sees_injected_credential_never_agent_token(http_config, http_pm, upstream,
                                                                   upstream_token_env) -> None:
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/echo", headers={"Connection": "keep-alive, X-Hop", "X-Hop": "drop me",
                                          "Keep-Alive": "timeout=5", "TE": "trailers",
                                          "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                                          "X-Forwarded-For": "10.0.0.9", "X-Custom": "kept"})
    seen = upstream.last()
    assert seen.all("Authorization") == [f"Bearer {upstream_token_env}"]
    assert "tok-agent" not in json.dumps(seen.headers)
    names = {n.lower() for n, _ in seen.headers}
    assert not names & {"x-hop", "keep-alive", "te", "proxy-authorization", "connection"}
    assert seen.header("Host") == f"127.0.0.1:{upstream.port}"
    assert seen.header("X-Forwarded-For") == "10.0.0.9, 127.0.0.1"
    assert seen.header("X-Forwarded-Host") == f"127.0.0.1:{gw.port('api')}"
    assert seen.header("X-Custom") == "kept"
    # The upstream echoed its credential in a header and in the body: the agent sees neither.
    assert upstream_token_env not in r.text
    assert upstream_token_env not in str(r.headers)
    assert r.headers["x-echo-auth"] == "*" * len(f"Bearer {upstream_token_env}")


async def test_chunked_bodies_both_ways(http_config, http_pm, upstream, observed) -> None:
    async def parts():
        for piece in (b"alpha-", b"beta-", b"gamma"):
            yield piece

    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw, client(gw) as c:
        r = await c.post("/echo", content=parts())
        assert r.json()["body"] == "alpha-beta-gamma"
        r2 = await c.get("/chunked")
        assert r2.text == "hello chunked world"
        assert r2.headers.get("transfer-encoding") == "chunked"
    assert upstream.seen[0].header("Transfer-Encoding") == "chunked"
    streams = observed["streams"]
    assert bytes(streams[(1, "request-body")]) == b"alpha-beta-gamma"
    assert bytes(streams[(2, "response-body")]) == b"hello chunked world"


async def test_curl_expect_100_continue_and_head(http_config, http_pm, upstream, curl, tmp_path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"z" * 200_000)
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw:
        base = f"http://127.0.0.1:{gw.port('api')}"
        code, out, err = await curl("-v", "-H", "Authorization: Bearer tok-agent",
                                    "-H", "Expect: 100-continue",
                                    "--data-binary", f"@{body}", f"{base}/echo")
        assert code == 0, err
        assert b"HTTP/1.1 100 Continue" in err
        assert len(json.loads(out)["body"]) == 200_000
        code, out, err = await curl("-I", "-H", "Authorization: Bearer tok-agent", f"{base}/bytes/4096")
        assert code == 0 and b"HTTP/1.1 200" in out and b"content-length: 4096" in out.lower()
    assert upstream.last().method == "HEAD"
    assert upstream.seen[0].header("Expect") is None, "gw answers Expect itself"


async def test_expect_100_continue_refused_request_never_uploads(http_config, http_pm, upstream,
                                                                raw_http, parse_raw) -> None:
    status_of, _ = parse_raw
    config = http_config(upstream.url, stages='{ use = "http_test_deny", rules = [{ verb = "PUT" }] }')
    async with running_gateway(config, pm=http_pm) as gw:
        head = (b"PUT /api/v1/customers/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-agent\r\n"
                b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        out = await raw_http(gw.port("api"), head, timeout=2)
        assert status_of(out) == 403
        assert b"100 Continue" not in out
    assert upstream.seen == []


async def test_paths_are_normalised_before_policy_and_forwarding(http_config, http_pm, upstream,
                                                                 raw_http, parse_raw, observed) -> None:
    status_of, _ = parse_raw
    config = http_config(upstream.url, stages='{ use = "http_test_observe" }, { use = "http_test_deny", '
                         'rules = [{ verb = "DELETE", objects = ["/api/v1/customers/*"] }] }')
    async with running_gateway(config, pm=http_pm) as gw:
        port = gw.port("api")
        for target in (b"/api/v1/./customers//42", b"/api/v1/%63ustomers/42", b"/api/x/../v1/customers/42"):
            out = await raw_http(port, b"DELETE " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer tok-agent\r\nConnection: close\r\n\r\n")
            assert status_of(out) == 403, target
        out = await raw_http(port, b"GET /api/v1/%63ustomers/42?q=%2F HTTP/1.1\r\nHost: x\r\n"
                             b"Authorization: Bearer tok-agent\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200
    assert [s.path for s in upstream.seen] == ["/api/v1/customers/42?q=%2F"]
    assert "path_normalized" in observed["commands"][-1].flags


async def test_base_path_of_the_upstream_url_prefixes_requests(http_config, http_pm, upstream) -> None:
    async with running_gateway(http_config(upstream.url + "/api/v1/"), pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/customers/7")
    assert r.json() == {"id": "7", "method": "GET"}
    assert upstream.last().path == "/api/v1/customers/7"


async def test_concurrent_clients_each_get_their_own_answers(http_config, http_pm, upstream) -> None:
    results: dict[int, Any] = {}

    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw:
        async def one(i: int) -> None:
            async with client(gw) as c:
                results[i] = [(await c.get(f"/api/v1/customers/{i}-{j}")).json()["id"] for j in range(5)]

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
    assert results == {i: [f"{i}-{j}" for j in range(5)] for i in range(8)}


async def test_a_request_arriving_one_byte_at_a_time(http_config, http_pm, upstream) -> None:
    request = (b"POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-agent\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        async with stream:
            for i in range(len(request)):
                await stream.send_all(request[i:i + 1])
                await trio.sleep(0)
            out = b""
            with trio.fail_after(3):
                while chunk := await stream.receive_some(65536):
                    out += chunk
    assert out.startswith(b"HTTP/1.1 200")
    assert upstream.last().body == b"hello world" and upstream.last().path == "/echo?x=1"
