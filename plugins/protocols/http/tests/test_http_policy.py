"""Each request is a Command: classification, refusals as JSON, approval holds, what stages may record."""

from __future__ import annotations

from typing import Any

import httpx
import trio
from gw.model import Kind
from gw.testing import running_gateway

AGENT = {"Authorization": "Bearer tok-agent"}

DENY_AND_HOLD = """{ use = "http_test_observe" },
  { use = "http_test_deny", rules = [
      { verb = "DELETE", objects = ["/api/v1/admin/*"], message = "agents may not delete admin objects" },
  ] },
  { use = "http_test_hold", mode = "MODE", rules = [
      { verb = "DELETE", objects = ["/api/v1/customers/*"] },
  ] }"""


def client(gw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}", headers=AGENT)


async def test_requests_become_classified_commands(http_config, http_pm, upstream, observed) -> None:
    async with running_gateway(http_config(upstream.url), pm=http_pm) as gw, client(gw) as c:
        for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "PROPFIND"):
            r = await c.request(method, "/api/v1/customers/1?expand=cards&x=%2F",
                                content=b"{}" if method in ("POST", "PUT", "PATCH") else None,
                                headers={"Cookie": "sid=abc", "X-Trace": "t-1"})
            assert r.status_code == 200, method
    commands = observed["commands"]
    assert [(c.verb, c.kind) for c in commands] == [
        ("GET", Kind.READ), ("HEAD", Kind.READ), ("OPTIONS", Kind.READ), ("POST", Kind.WRITE),
        ("PUT", Kind.WRITE), ("PATCH", Kind.WRITE), ("DELETE", Kind.WRITE), ("PROPFIND", Kind.UNKNOWN)]
    first = commands[0]
    assert first.text == "GET /api/v1/customers/1?expand=cards&x=%2F"
    assert first.objects == ("/api/v1/customers/1",)
    assert first.language == "http"
    headers = dict(first.attributes["headers"])
    assert headers["authorization"] == "[redacted]" and headers["cookie"] == "[redacted]"
    assert headers["x-trace"] == "t-1"
    outcomes = {c.verb: o for c, o in observed["outcomes"]}
    assert outcomes["GET"].notes["response_status"] == 200
    assert dict(outcomes["GET"].notes["response_headers"])["content-type"] == "application/json"
    assert outcomes["GET"].status == "ok" and outcomes["GET"].tag == "200" and outcomes["GET"].rows is None
    assert bytes(observed["streams"][(4, "request-body")]) == b"{}"


async def test_denied_request_gets_403_json_and_never_reaches_upstream(http_config, http_pm, upstream,
                                                                       observed, curl) -> None:
    config = http_config(upstream.url, stages=DENY_AND_HOLD.replace("MODE", "hold"))
    async with running_gateway(config, pm=http_pm) as gw:
        code, out, _ = await curl("-i", "-X", "DELETE", "-H", "Authorization: Bearer tok-agent",
                                  f"http://127.0.0.1:{gw.port('api')}/api/v1/admin/users/3")
        async with client(gw) as c:
            r = await c.request("DELETE", "/api/v1/admin/users/4", content=b"small body is drained")
            assert r.status_code == 403
            assert (await c.get("/api/v1/customers/1")).status_code == 200, "the connection stays usable"
    assert code == 0 and out.startswith(b"HTTP/1.1 403")
    body = r.json()
    assert body["error"] == "agents may not delete admin objects"
    assert body["reason"] == "policy"
    assert body["rule"].startswith('{ verb = "DELETE"')
    assert body["stage"] == "http_test_deny"
    assert body["request_id"] == r.headers["x-gw-request-id"]
    assert [s.method for s in upstream.seen] == ["GET"]
    denied = [o for _, o in observed["outcomes"] if o.status == "denied"]
    assert len(denied) == 2 and denied[0].tag == "403"


async def test_held_request_waits_for_approval_then_is_forwarded(http_config, http_pm, upstream, approvals,
                                                                 observed) -> None:
    config = http_config(upstream.url, stages=DENY_AND_HOLD.replace("MODE", "hold"))
    async with running_gateway(config, pm=http_pm) as gw:
        result: dict[str, Any] = {}

        async def delete() -> None:
            async with client(gw) as c:
                result["response"] = await c.delete("/api/v1/customers/42", timeout=10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(delete)
            with trio.fail_after(3):
                while not approvals:
                    await trio.sleep(0.01)
            await trio.sleep(0.2)
            assert "response" not in result and upstream.seen == [], "held: nothing forwarded yet"
            next(iter(approvals.values())).set()
    assert result["response"].status_code == 200
    assert result["response"].json() == {"id": "42", "method": "DELETE"}
    assert [s.method for s in upstream.seen] == ["DELETE"]


async def test_retry_mode_answers_403_with_the_approval_id(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, stages=DENY_AND_HOLD.replace("MODE", "retry"))
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.delete("/api/v1/customers/42")
    assert r.status_code == 403
    body = r.json()
    assert body["reason"] == "approval_required"
    assert body["approval_id"].startswith("apr-")
    assert upstream.seen == []


async def test_a_failing_stage_refuses_with_500_and_the_connection_survives(http_config, http_pm, upstream,
                                                                            ) -> None:
    # A rule with a text regex on a command whose session attribute access fails would be contrived; a
    # hold stage in an unknown mode raises instead (the pipeline turns stage errors into INTERNAL denials).
    stages = '{ use = "http_test_hold", mode = "hold", rules = [{ verb = "PUT" }] }'
    config = http_config(upstream.url, stages=stages)
    async with running_gateway(config, pm=http_pm) as gw:
        stage = gw.runtime.pipelines["api"].stages[0]

        async def broken(command: Any, context: Any) -> Any:
            raise RuntimeError("stage bug")

        stage.check = broken  # type: ignore[method-assign]
        async with client(gw) as c:
            r = await c.put("/api/v1/customers/1", content=b"{}")
            assert r.status_code == 500
            assert r.json()["reason"] == "internal"
            assert "failed (RuntimeError)" in r.json()["error"]
    assert upstream.seen == []


async def test_a_held_request_whose_client_leaves_is_abandoned(http_config, http_pm, upstream, approvals,
                                                               observed) -> None:
    config = http_config(upstream.url, stages=DENY_AND_HOLD.replace("MODE", "hold"))
    async with running_gateway(config, pm=http_pm) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        await stream.send_all(b"DELETE /api/v1/customers/42 HTTP/1.1\r\nHost: x\r\n"
                              b"Authorization: Bearer tok-agent\r\n\r\n")
        with trio.fail_after(3):
            while not approvals:
                await trio.sleep(0.01)
        await stream.aclose()  # the agent gives up
        with trio.fail_after(3):
            while not observed.get("outcomes"):
                await trio.sleep(0.01)
        next(iter(approvals.values())).set()  # a late approval runs nothing
        await trio.sleep(0.1)
    (command, outcome), = observed["outcomes"]
    assert command.verb == "DELETE" and outcome.status == "cancelled"
    assert upstream.seen == []


async def test_a_session_that_cannot_start_is_refused_with_503(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, stages='{ use = "http_test_broken", session = true }')
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/api/v1/customers/1")
        assert (await c.get("/api/v1/customers/1")).status_code == 503
    assert r.status_code == 503 and r.json()["reason"] == "unavailable"
    assert "session store is down" in r.json()["error"]
    assert upstream.seen == []


async def test_a_stage_failing_to_give_a_filter_refuses_the_response(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, stages='{ use = "http_test_broken", stream = true }')
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/api/v1/customers")
        assert (await c.get("/api/v1/customers/1")).status_code == 502, "the same clear refusal again"
    assert r.status_code == 502 and r.json()["reason"] == "mask_failed"
    assert "123-45-6789" not in r.text


def test_methods_classify_fail_closed() -> None:
    from gw_http.classify import command_kind, parse_command_text

    methods = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "get", "MKCOL")
    assert [command_kind(m) for m in methods] == [Kind.READ] * 3 + [Kind.WRITE] * 4 + [Kind.UNKNOWN] * 2
    assert parse_command_text("patch /x?y=1")[0] == "PATCH"
