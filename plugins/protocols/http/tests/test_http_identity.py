"""Identity on an HTTP listener: the token header, 401/403 JSON, one session per connection, token changes."""

from __future__ import annotations

import httpx
import trio
from gw.testing import running_gateway


def base(gw) -> str:
    return f"http://127.0.0.1:{gw.port('api')}"


async def test_missing_and_invalid_tokens_get_401_with_a_bearer_challenge(http_config, http_pm, upstream,
                                                                          observed, curl) -> None:
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw:
        async with httpx.AsyncClient(base_url=base(gw)) as c:
            r = await c.get("/echo")
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="gw"'
            assert r.json()["reason"] == "missing_token"
            assert "Authorization: Bearer <token>" in r.json()["error"]
            r = await c.get("/echo", headers={"Authorization": "Bearer tok-mallory"})
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="gw", error="invalid_token"'
            assert r.json() == {"error": "the token is not valid; get a fresh one with gw token issue",
                                "reason": "invalid_token"}
            r = await c.get("/echo", headers={"Authorization": "Basic dXNlcjpwYXNz"})
            assert r.status_code == 401
            # the same connection still serves a good request afterwards
            r = await c.get("/echo", headers={"Authorization": "Bearer tok-agent"})
            assert r.status_code == 200
        code, out, _ = await curl("-i", f"{base(gw)}/echo")
        assert code == 0 and out.startswith(b"HTTP/1.1 401") and b"missing_token" in out
    assert upstream.seen and all("tok-" not in str(s.headers) for s in upstream.seen)
    assert len(upstream.seen) == 1
    assert observed["refused"] == ["missing_token", "invalid_token", "missing_token", "missing_token"]


async def test_identity_outside_allowed_groups_gets_403(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url)
    async with running_gateway(config, pm=http_pm) as gw, httpx.AsyncClient(base_url=base(gw)) as c:
        r = await c.get("/echo", headers={"Authorization": "Bearer tok-guest"})
    assert r.status_code == 403
    assert r.json()["reason"] == "group_not_allowed"
    assert "needs one of: agents" in r.json()["error"]
    assert upstream.seen == []


async def test_same_token_keeps_the_session_a_new_token_starts_another(http_config, http_pm, upstream,
                                                                       observed) -> None:
    one = httpx.Limits(max_connections=1)
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw, \
            httpx.AsyncClient(base_url=base(gw), limits=one) as c:
        for _ in range(3):
            assert (await c.get("/echo", headers={"Authorization": "Bearer tok-agent"})).status_code == 200
        r = await c.get("/echo", headers={"Authorization": "Bearer tok-other"})
        assert r.status_code == 200
        assert (await c.get("/echo")).status_code == 401, "every request must carry the token"
    sessions = observed["sessions"]
    assert [s.identity.subject for s in sessions] == ["agent", "other"]
    assert (sessions[0].id, "token_changed") in observed["ended"]
    assert (sessions[1].id, "client_closed") in observed["ended"]
    assert [c.session.identity.subject for c in observed["commands"]] == ["agent"] * 3 + ["other"]
    assert upstream.connections == 1


async def test_custom_token_header_is_stripped_and_authorization_passes_through(
        http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, listener='token_header = "X-Gw-Token"',
                         headers='"X-Api-Key" = "${HTTP_TEST_UPSTREAM_TOKEN}"')
    async with running_gateway(config, pm=http_pm) as gw, httpx.AsyncClient(base_url=base(gw)) as c:
        r = await c.get("/echo", headers={"X-Gw-Token": "tok-agent", "Authorization": "Bearer app-level"})
        assert r.status_code == 200
        r2 = await c.get("/echo", headers={"Authorization": "Bearer tok-agent"})
        assert r2.status_code == 401
    seen = upstream.seen[0]
    assert seen.header("X-Gw-Token") is None
    assert seen.header("Authorization") == "Bearer app-level"
    assert seen.header("X-Api-Key") == "upstream-secret-7f3a9c2e"


async def test_connection_closes_when_the_token_expires(http_config, http_pm, upstream, observed) -> None:
    config = http_config(upstream.url, identity="short_lived = { agent = 0.3 }")
    async with running_gateway(config, pm=http_pm) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        async with stream:
            await stream.send_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-agent\r\n\r\n")
            first = await stream.receive_some(65536)
            assert first.startswith(b"HTTP/1.1 200")
            with trio.fail_after(3):
                while await stream.receive_some(65536):
                    pass  # gw closes the idle connection at expiry
    assert observed["ended"][0][1] == "token_expired"
