"""Guard and approval that hold on HTTP, end to end with the real plugins: what the upstream acts on is what
policy checked (method overrides, path parameters, double encoding ...), and a held request dies with its
client (disconnect, token expiry).  The upstream records every request it receives, so each case asserts that
nothing it should not have acted on reached it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from gw.testing import running_gateway
from http_adversarial import Scripted, gw_cli

AUTH = "Authorization: Bearer {token}\r\n"


async def raw(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes or ``timeout`` passes (exact bytes: no client
    normalises the path)."""
    out = b""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        with trio.move_on_after(timeout):
            while b"\r\n\r\n" not in out or not _complete(out):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                out += chunk
    return out


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def status_and_json(response: bytes) -> tuple[int, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


@pytest.fixture
def controls_upstream(scripted: Any) -> Any:
    ok = Scripted(b'{"ok": true}', [("Content-Type", "application/json")])
    for path in ("/api/v1/customers/1", "/api/v1/admin/users", "/api/v1/admin", "/api/v1/payments",
                 "/api/v1/x", "/api/v1/x/y", "/api/v1/customers"):
        scripted.routes[path] = ok
    return scripted


def _admin_reached(upstream: Any) -> list[str]:
    import unicodedata
    from urllib.parse import unquote

    return [f"{m} {p}" for m, p, _, _ in upstream.seen
            if "admin" in unicodedata.normalize("NFKC", unquote(p)).lower() or m == "DELETE"]


# -- method overrides ---------------------------------------------------------------------------------------------

OVERRIDES = [
    ("POST", "/api/v1/customers/1", "X-HTTP-Method-Override: DELETE\r\n"),
    ("POST", "/api/v1/customers/1", "x-http-method-override: delete\r\n"),
    ("POST", "/api/v1/customers/1", "X-HTTP-Method: DELETE\r\n"),
    ("POST", "/api/v1/customers/1", "X-Method-Override: DELETE\r\n"),
    ("GET", "/api/v1/customers/1", "X-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE\r\n"),
    ("POST", "/api/v1/customers/1?_method=DELETE", ""),
    ("POST", "/api/v1/customers/1?a=1&_METHOD=delete", ""),
    ("POST", "/api/v1/customers/1?%5Fmethod=DELETE", ""),
    ("POST", "/api/v1/customers/1?a=1;_method=DELETE", ""),
    ("POST", "/api/v1/customers/1?_%6Dethod=DELETE", ""),
    ("GET", "/api/v1/x", "X-Original-URL: /api/v1/admin/users\r\n"),
    ("GET", "/api/v1/x", "X-Rewrite-URL: /api/v1/admin/users\r\n"),
    ("POST", "/api/v1/customers/1", "X_HTTP_METHOD_OVERRIDE: DELETE\r\n"),  # CGI/PHP/WSGI read it the same
    ("GET", "/api/v1/x", "X_Original_URL: /api/v1/admin/users\r\n"),
]


@pytest.mark.parametrize("method, path, extra", OVERRIDES)
async def test_method_and_path_overrides_are_refused(adversarial_config: Any, controls_upstream: Any,
                                                     gw_plugin_manager: Any, method: str, path: str,
                                                     extra: str) -> None:
    config = adversarial_config(controls_upstream.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        body = "" if method == "GET" else "Content-Length: 2\r\n"
        request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{AUTH.format(token=token)}{extra}{body}"
                   f"Connection: close\r\n\r\n{'{}' if body else ''}").encode()
        status, doc = status_and_json(await raw(gw.port("api"), request))
    assert status == 400, doc
    assert doc["reason"] in ("method_override", "path_override")
    assert "policy" in doc["error"] and ("Send the method itself" in doc["error"] or "request line" in doc["error"])
    assert controls_upstream.seen == []


@pytest.mark.parametrize("content_type, parts", [
    ("application/x-www-form-urlencoded", [b"name=x&_method=DELETE"]),
    ("application/x-www-form-urlencoded", [b"name=x&_met", b"hod=DELETE"]),
    ("application/x-www-form-urlencoded; charset=utf-8", [b"name=x&%5Fmethod=DELETE"]),
    ("multipart/form-data; boundary=zz", [(b'--zz\r\nContent-Disposition: form-data; name="_method"\r\n\r\n'
                                           b"DELETE\r\n--zz--\r\n")]),
    ("application/json", [b'{"amount": 5, "_method": "DELETE"}']),
    ("application/x-www-form-urlencoded", [b"name=x&" + b"y" * 70000 + b"&_method=DELETE"]),  # streamed
])
async def test_a_form_body_naming_a_method_never_completes_upstream(adversarial_config: Any,
                                                                    controls_upstream: Any,
                                                                    gw_plugin_manager: Any, content_type: str,
                                                                    parts: list[bytes]) -> None:
    config = adversarial_config(controls_upstream.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        total = sum(len(p) for p in parts)
        head = (f"POST /api/v1/customers/1 HTTP/1.1\r\nHost: x\r\n{AUTH.format(token=token)}"
                f"Content-Type: {content_type}\r\nContent-Length: {total}\r\n\r\n").encode()
        out = b""
        async with await trio.open_tcp_stream("127.0.0.1", gw.port("api")) as stream:
            await stream.send_all(head + parts[0])
            for part in parts[1:]:
                await trio.sleep(0.2)
                await stream.send_all(part)
            with trio.move_on_after(5):
                while not out.endswith(b"}"):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    out += chunk
        await trio.sleep(0.3)
    status, doc = status_and_json(out)
    assert status == 400 and doc["reason"] == "method_override"
    assert "_method" in doc["error"]
    assert controls_upstream.seen == [] or all(b"_method" not in body for _, _, _, body in controls_upstream.seen), \
        "the upstream never received the field (a large form's head may have gone out; its body never completed)"


async def test_fields_that_merely_end_in_method_are_not_overrides(adversarial_config: Any,
                                                                  controls_upstream: Any,
                                                                  gw_plugin_manager: Any) -> None:
    config = adversarial_config(controls_upstream.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            form = await c.post("/api/v1/payments", data={"payment_method": "card", "amount": "5"})
            doc = await c.post("/api/v1/payments", json={"shipping_method": "post"})
            query = await c.get("/api/v1/customers?payment_method=card")
    assert (form.status_code, doc.status_code, query.status_code) == (200, 200, 200)


async def test_honoured_overrides_are_classified_as_the_method_they_name(adversarial_config: Any,
                                                                         controls_upstream: Any,
                                                                         gw_plugin_manager: Any) -> None:
    config = adversarial_config(controls_upstream.url, masking=False, listener='method_override = "honour"')
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            denied = await c.post("/api/v1/customers/1", headers={"X-HTTP-Method-Override": "DELETE"})
            denied_query = await c.post("/api/v1/customers/1?_method=delete")
            conflicting = await c.post("/api/v1/customers/1", headers={"X-HTTP-Method": "PUT",
                                                                       "X-Method-Override": "DELETE"})
            allowed = await c.post("/api/v1/customers/1", headers={"X-HTTP-Method-Override": "PATCH"})
            form = await c.post("/api/v1/customers/1", data={"_method": "DELETE"})
    assert denied.status_code == 403 and denied.json()["error"] == "agents may not delete"
    assert denied_query.status_code == 403
    assert conflicting.status_code == 400 and conflicting.json()["reason"] == "method_override"
    assert form.status_code == 400, "a form's _method cannot be classified before the decision: refused"
    assert allowed.status_code == 200
    assert [(m, h.get("x-http-method-override")) for m, _, h, _ in controls_upstream.seen] == [("POST", "PATCH")]
    _, audit, _ = await gw_cli("audit", "list", "--json", "-c", str(config))
    texts = [e.get("text") for e in json.loads(audit) if e.get("text")]
    assert "DELETE /api/v1/customers/1" in texts and "PATCH /api/v1/customers/1" in texts


# -- paths ---------------------------------------------------------------------------------------------------------

PATHS = [
    # (raw request target, expected status, expected reason)
    ("/api/v1/x/..;/admin/users", 400, "path_params"),
    ("/api/v1/x/..;a=b/admin", 400, "path_params"),
    ("/api/v1/admin;jsessionid=0A1B/users", 400, "path_params"),
    ("/api/v1/admin%3Busers", 400, "path_params"),
    ("/api/v1/x/%252e%252e/admin", 400, "double_encoding"),
    ("/api/v1/admin%252fusers", 400, "double_encoding"),
    ("/api/v1/x%255c..%255cadmin", 400, "double_encoding"),
    ("/api/v1/x/%c0%ae%c0%ae/admin", 400, "bad_request_target"),
    ("/api/v1/x/%c0%af../admin", 400, "bad_request_target"),
    ("/api/v1/admin%00", 400, "bad_request_target"),
    ("/api/v1/admin%0a", 400, "bad_request_target"),
    ("/api/v1/x%2f..%2fadmin", 400, "encoded_slash"),
    ("/api/v1/x\\..\\admin", 400, "encoded_slash"),
    ("/api/v1/x/%2e%2e/admin/users", 403, "policy"),
    ("/api/v1/x/./../admin/users", 403, "policy"),
    ("/api/v1//admin/users", 403, "policy"),
    ("/api/v1/%61dmin/users", 403, "policy"),
    ("/API/V1/ADMIN/users", 403, "policy"),
    ("/api/v1/x/y/../../admin", 403, "policy"),
    ("http://evil.example/api/v1/admin/users", 403, "policy"),
    ("/api/v1/%EF%BD%81dmin/users", 403, "policy"),  # fullwidth a: IIS best-fit and NFKC read "admin"
]


@pytest.mark.parametrize("target, status, reason", PATHS)
async def test_paths_are_normalised_or_refused_before_rules_match(adversarial_config: Any,
                                                                  controls_upstream: Any,
                                                                  gw_plugin_manager: Any, curl: Any, target: str,
                                                                  status: int, reason: str) -> None:
    config = adversarial_config(controls_upstream.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        request = (f"GET {target} HTTP/1.1\r\nHost: x\r\n{AUTH.format(token=token)}Connection: close\r\n\r\n"
                   ).encode()
        got, doc = status_and_json(await raw(gw.port("api"), request))
        code, out = 1, b""
        if not target.startswith("http://") and "\\" not in target:
            code, out, _ = await curl("-i", "--path-as-is", "-H", f"Authorization: Bearer {token}",
                                      f"http://127.0.0.1:{gw.port('api')}{target}")
    assert (got, doc["reason"]) == (status, reason), doc
    assert _admin_reached(controls_upstream) == []
    assert code != 0 or int(out.split(b" ", 2)[1]) in (400, 403)


async def test_path_params_can_be_allowed_but_never_on_dot_segments(adversarial_config: Any,
                                                                    controls_upstream: Any,
                                                                    gw_plugin_manager: Any) -> None:
    config = adversarial_config(controls_upstream.url, masking=False, listener="allow_path_params = true")
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        port = gw.port("api")
        auth = AUTH.format(token=token)
        fine, _ = status_and_json(await raw(port, f"GET /api/v1/x;v=1 HTTP/1.1\r\nHost: x\r\n{auth}"
                                                  "Connection: close\r\n\r\n".encode()))
        dots, doc = status_and_json(await raw(port, f"GET /api/v1/x/..;/admin HTTP/1.1\r\nHost: x\r\n{auth}"
                                                    "Connection: close\r\n\r\n".encode()))
        admin, _ = status_and_json(await raw(port, f"GET /api/v1/admin;x=1 HTTP/1.1\r\nHost: x\r\n{auth}"
                                                   "Connection: close\r\n\r\n".encode()))
    assert fine == 404  # forwarded as sent: the scripted upstream has no such route
    assert dots == 400 and doc["reason"] == "path_params"
    assert admin == 403, "a rule on /api/v1/admin/* still sees the segment (globs match ;x=1 too)"
    assert _admin_reached(controls_upstream) == []


# -- held requests die with their client ----------------------------------------------------------------------------

APPROVE = """  { use = "approve", approvers = ["approvers"], timeout = "60s", poll_interval = "50ms", require = [
      { verb = "POST", objects = ["/api/v1/payments"] },
  ] },"""


async def _wait_for_pending(config: Any, *, any_status: bool = False) -> dict[str, Any]:
    """The first approval request made (pending, or with ``any_status`` already decided or cancelled: a
    short-lived token may expire before a loaded machine lists the request as pending)."""
    with trio.fail_after(15):
        while True:
            _, listed, _ = await gw_cli("approvals", "list", *(["--all"] if any_status else []), "--json",
                                        "-c", str(config))
            pending = json.loads(listed)
            if pending:
                return pending[0]
            await trio.sleep(0.1)


async def _status_of(config: Any, request_id: str, until_not: str = "pending") -> str:
    with trio.fail_after(15):
        while True:
            _, listed, _ = await gw_cli("approvals", "list", "--all", "--json", "-c", str(config))
            status = next(r["status"] for r in json.loads(listed) if r["id"] == request_id)
            if status != until_not:
                return status
            await trio.sleep(0.1)


async def _late_approval_runs_nothing(config: Any, request_id: str, approver: str, upstream: Any) -> None:
    code, out, err = await gw_cli("approvals", "approve", request_id, "--token", approver, "-c", str(config),
                                  check=False)
    assert code != 0 and "cancelled" in (out + err)
    await trio.sleep(0.5)
    assert upstream.paths("POST") == []
    _, audit, _ = await gw_cli("audit", "list", "--json", "-c", str(config))
    for entry in json.loads(audit):  # whatever the audit shows of the held POST, it never says it ran
        if entry.get("text") == "POST /api/v1/payments":
            assert (entry.get("outcome") or {}).get("status") in (None, "cancelled"), entry


@pytest.mark.parametrize("body_size", [0, 400_000])
async def test_a_held_request_whose_client_leaves_is_cancelled(adversarial_config: Any, controls_upstream: Any,
                                                               gw_plugin_manager: Any, body_size: int) -> None:
    """The client closes while its POST is held; with a body larger than gw reads ahead while holding, gw
    notices the hang-up on the socket instead."""
    config = adversarial_config(controls_upstream.url, masking=False, approve=APPROVE)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        approver = gw.token("alice", ["approvers"])
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        await stream.send_all(f"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\n{AUTH.format(token=token)}"
                              f"Content-Length: {body_size}\r\n\r\n".encode())
        request = await _wait_for_pending(config)
        if body_size:
            with trio.move_on_after(1):
                await stream.send_all(b"x" * body_size)  # more than gw reads ahead: it stops reading
        await trio.sleep(0.3)
        await trio.aclose_forcefully(stream)
        assert await _status_of(config, request["id"]) == "cancelled"
        await _late_approval_runs_nothing(config, request["id"], approver, controls_upstream)


async def test_a_held_request_is_cancelled_when_its_token_expires(adversarial_config: Any,
                                                                  controls_upstream: Any,
                                                                  gw_plugin_manager: Any) -> None:
    config = adversarial_config(controls_upstream.url, masking=False, approve=APPROVE)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"], ttl=3)
        approver = gw.token("alice", ["approvers"])
        result: dict[str, Any] = {}

        async def post() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                         headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                result["response"] = await c.post("/api/v1/payments", json={"amount": 5})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            request = await _wait_for_pending(config, any_status=True)
            assert await _status_of(config, request["id"]) == "cancelled"
        response = result["response"]
        assert response.status_code == 401 and response.json()["reason"] == "token_expired"
        await _late_approval_runs_nothing(config, request["id"], approver, controls_upstream)


async def test_an_approved_request_still_runs(adversarial_config: Any, controls_upstream: Any,
                                              gw_plugin_manager: Any, curl: Any) -> None:
    config = adversarial_config(controls_upstream.url, masking=False, approve=APPROVE)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        approver = gw.token("alice", ["approvers"])
        result: dict[str, Any] = {}

        async def post() -> None:
            result["curl"] = await curl("-X", "POST", "-H", f"Authorization: Bearer {token}", "--data", "amount=5",
                                        f"http://127.0.0.1:{gw.port('api')}/api/v1/payments", timeout=30)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            request = await _wait_for_pending(config)
            await gw_cli("approvals", "approve", request["id"], "--token", approver, "-c", str(config))
    code, out, err = result["curl"]
    assert code == 0, err
    assert json.loads(out) == {"ok": True}
    assert controls_upstream.paths("POST") == ["/api/v1/payments"]


async def test_a_reload_applies_to_the_next_request_on_open_connections(adversarial_config: Any,
                                                                        controls_upstream: Any,
                                                                        gw_plugin_manager: Any) -> None:
    """Options are read when used: after a reload, the next request on the same keep-alive connection goes
    to the new upstream, with the new override policy."""
    from http_adversarial import scripted_upstream

    with scripted_upstream() as second:
        second.routes["/api/v1/customers/1"] = Scripted(b'{"second": true}', [("Content-Type", "application/json")])
        config = adversarial_config(controls_upstream.url, masking=False)
        async with running_gateway(config, pm=gw_plugin_manager) as gw:
            token = gw.token("agent-7", ["agents"])
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                         headers={"Authorization": f"Bearer {token}"}) as c:
                before = await c.get("/api/v1/customers/1", headers={"X-HTTP-Method-Override": "GET"})
                adversarial_config(second.url, masking=False, listener='method_override = "honour"')
                changes = await gw.runtime.reload()
                after = await c.get("/api/v1/customers/1", headers={"X-HTTP-Method-Override": "GET"})
    assert any("listener api" in change for change in changes)
    assert before.status_code == 400 and after.status_code == 200
    assert after.json() == {"second": True}
    assert second.paths() == ["/api/v1/customers/1"] and controls_upstream.seen == []
