"""The issue's acceptance with the real plugins: jwt tokens, audit, guard, approve (hold mode, approved
through the ``gw approvals`` CLI), mask and record (replayed with ``gw sessions replay``), curl and httpx as
clients and a real HTTP server upstream.  Each test skips, naming the plugin, while that plugin is not
installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
import trio
from gw.plugins import Registry
from gw.testing import running_gateway

JWT_SECRET = "http-e2e-secret-0123456789abcdef0123456789"

PIPELINE = """
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_HTTP_E2E_SECRET"

[pipelines.api]
stages = [
  {{ use = "audit" }},
{guard}
  {{ use = "approve", approvers = ["approvers"], timeout = "20s", poll_interval = "50ms", require = [
      {{ verb = "DELETE", objects = ["/api/v1/customers/*"] }},
  ] }},
  {{ use = "mask", columns = ["ssn"], detectors = ["credit_card", "us_ssn"] }},
  {{ use = "record" }},
]

[[listeners]]
name = "billing-api"
protocol = "http"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "api"
allow_groups = ["agents"]

[listeners.upstream]
url = "{url}"
headers = {{ Authorization = "Bearer ${{BILLING_API_TOKEN}}" }}
"""
GUARD = """  { use = "guard", deny = [
      { verb = "DELETE", objects = ["/api/v1/admin/*"], message = "agents may not delete admin objects" },
  ] },"""
UPSTREAM_SECRET = "billing-upstream-secret-42"


def require_stages(pm: pluggy.PluginManager, *names: str) -> None:
    have = set(Registry.build(pm).names("stages")) | set(Registry.build(pm).names("identity_providers"))
    missing = [n for n in names if n not in have]
    if missing:
        pytest.skip(f"plugin(s) not installed yet: {', '.join(missing)} (pip install gw-{missing[0]})")


@pytest.fixture
def e2e(tmp_path: Path, upstream: Any, monkeypatch: pytest.MonkeyPatch,
        gw_plugin_manager: pluggy.PluginManager) -> Any:
    """``e2e(with_guard=bool, url=upstream URL)`` writes the pipeline file for the real plugins and returns
    its path."""
    monkeypatch.setenv("GW_HTTP_E2E_SECRET", JWT_SECRET)
    monkeypatch.setenv("BILLING_API_TOKEN", UPSTREAM_SECRET)

    require_stages(gw_plugin_manager, "jwt", "audit", "approve", "mask", "record")

    def make(*, with_guard: bool = False, url: str | None = None) -> Path:
        path = tmp_path / "pipeline.toml"
        path.write_text(PIPELINE.format(url=url or upstream.url, guard=GUARD if with_guard else ""))
        return path

    return make


async def gw_cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = await trio.run_process([str(Path(sys.executable).with_name("gw")), *args], capture_stdout=True,
                                  capture_stderr=True, check=False, env=env)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def test_masked_get_injected_credential_and_recording(e2e, gw_plugin_manager, upstream, curl) -> None:
    config = e2e()
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        base = f"http://127.0.0.1:{gw.port('billing-api')}"
        code, out, err = await curl("-H", f"Authorization: Bearer {token}", f"{base}/api/v1/customers")
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            text = (await c.get("/text")).text
            echo = await c.get("/echo")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["customers"][0]["ssn"] != "123-45-6789"
    assert doc["customers"][1]["profile"]["tax"]["ssn"] != "111-22-3333"
    assert doc["meta"]["owner"]["ssn"] != "222-33-4444"
    assert "4111 1111 1111 1111" not in out.decode() and "5500-0000-0000-0004" not in out.decode()
    assert doc["customers"][0]["name"] == "Ann"
    assert "4111 1111 1111 1111" not in text
    seen = upstream.seen
    assert all(s.header("Authorization") == f"Bearer {UPSTREAM_SECRET}" for s in seen)
    assert all(token not in json.dumps(s.headers) for s in seen)
    assert UPSTREAM_SECRET not in echo.text and UPSTREAM_SECRET not in str(echo.headers)

    env = ENV
    sessions = json.loads(await gw_cli("sessions", "list", "--json", "-c", str(config), env=env))
    replay = "\n".join([await gw_cli("sessions", "replay", s["id"], "--no-wait", "-c", str(config), env=env)
                        for s in sessions])
    assert "GET /api/v1/customers" in replay
    assert "123-45-6789" not in replay and "4111 1111 1111 1111" not in replay
    assert token not in replay and UPSTREAM_SECRET not in replay
    audit = await gw_cli("audit", "list", "--json", "-c", str(config), env=env)
    assert "GET /api/v1/customers" in audit and token not in audit


async def test_delete_is_held_until_approved_then_forwarded(e2e, gw_plugin_manager, upstream) -> None:
    config = e2e()
    env = ENV
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        approver = gw.token("alice", ["approvers"])
        result: dict[str, Any] = {}

        async def delete() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('billing-api')}",
                                         headers={"Authorization": f"Bearer {token}"}, timeout=20) as c:
                result["response"] = await c.delete("/api/v1/customers/42")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(delete)
            with trio.fail_after(15):
                while True:
                    listed = await gw_cli("approvals", "list", "--json", "-c", str(config), env=env)
                    pending = json.loads(listed)
                    if pending:
                        break
                    await trio.sleep(0.1)
            assert "response" not in result and not [s for s in upstream.seen if s.method == "DELETE"]
            (request,) = pending
            assert request["text"] == "DELETE /api/v1/customers/42"
            await gw_cli("approvals", "approve", request["id"], "--token", approver, "-c", str(config),
                         env=env)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"id": "42", "method": "DELETE"}
    assert [s.path for s in upstream.seen if s.method == "DELETE"] == ["/api/v1/customers/42"]


@pytest.fixture
def guard_installed(gw_plugin_manager: pluggy.PluginManager) -> None:
    require_stages(gw_plugin_manager, "guard")


async def test_guard_denied_path_gets_the_403_json(e2e, guard_installed, gw_plugin_manager, upstream
                                                   ) -> None:
    config = e2e(with_guard=True)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('billing-api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            r = await c.delete("/api/v1/admin/users/3")
    assert r.status_code == 403
    body = r.json()
    assert body["error"] == "agents may not delete admin objects"
    assert body["rule"] and body["request_id"] == r.headers["x-gw-request-id"]
    assert not [s for s in upstream.seen if s.method == "DELETE"]


async def test_expired_and_forged_jwts_get_401(e2e, gw_plugin_manager, upstream) -> None:
    config = e2e()
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        good = gw.token("agent-7", ["agents"])
        expired = gw.token("agent-7", ["agents"], ttl=-120)
        forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('billing-api')}") as c:
            for bad in (expired, forged):
                r = await c.get("/api/v1/customers", headers={"Authorization": f"Bearer {bad}"})
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["reason"] and r.json()["error"]
    assert upstream.seen == []


ENV = {"GW_HTTP_E2E_SECRET": JWT_SECRET, "BILLING_API_TOKEN": UPSTREAM_SECRET, "PATH": "/usr/bin:/bin"}


async def test_held_request_of_a_client_that_left_is_cancelled(e2e, gw_plugin_manager, upstream) -> None:
    config = e2e()
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("billing-api"))
        await stream.send_all(f"DELETE /api/v1/customers/7 HTTP/1.1\r\nHost: x\r\n"
                              f"Authorization: Bearer {token}\r\n\r\n".encode())
        with trio.fail_after(15):
            while not json.loads(await gw_cli("approvals", "list", "--json", "-c", str(config), env=ENV)):
                await trio.sleep(0.1)
        await stream.aclose()
        with trio.fail_after(15):
            while True:
                requests = json.loads(await gw_cli("approvals", "list", "--all", "--json", "-c", str(config),
                                                   env=ENV))
                if requests[0]["status"] != "pending":
                    break
                await trio.sleep(0.1)
    assert requests[0]["status"] == "cancelled"
    assert upstream.seen == []


async def test_websocket_echo_is_recorded(e2e, gw_plugin_manager, ws_upstream) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, Request

    config = e2e(url=ws_upstream)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        ws = WSConnection(ConnectionType.CLIENT)
        echoed = ""
        async with await trio.open_tcp_stream("127.0.0.1", gw.port("billing-api")) as stream:
            auth = [(b"authorization", f"Bearer {token}".encode())]
            await stream.send_all(ws.send(Request(host="gw", target="/exec", extra_headers=auth)))
            with trio.fail_after(5):
                done = False
                while not done:
                    ws.receive_data(await stream.receive_some(65536) or None)
                    for event in ws.events():
                        if isinstance(event, AcceptConnection):
                            await stream.send_all(ws.send(Message(data="whoami")))
                        elif isinstance(event, Message):
                            echoed += event.data
                            if event.message_finished:
                                await stream.send_all(ws.send(CloseConnection(code=1000)))
                        elif isinstance(event, CloseConnection):
                            done = True
    assert echoed == "whoami"
    sessions = json.loads(await gw_cli("sessions", "list", "--json", "-c", str(config), env=ENV))
    export = await gw_cli("sessions", "export", sessions[0]["id"], "--format", "jsonl", "-c", str(config),
                          env=ENV)
    assert "ws-client" in export and "ws-server" in export and "GET /exec" in export
    assert token not in export


async def test_gw_serve_subprocess_and_its_start_up_error(e2e, gw_process, upstream, curl, monkeypatch) -> None:
    """The real ``gw serve`` (entry points, CLI, signals) with curl; without the upstream secret in its
    environment it refuses to start and names the variable."""
    config = e2e()
    env = {"GW_HTTP_E2E_SECRET": JWT_SECRET, "BILLING_API_TOKEN": UPSTREAM_SECRET}
    proc = await trio.to_thread.run_sync(lambda: gw_process(config, env=env))
    token = (await gw_cli("token", "issue", "-c", str(config), "--identity", "dev", "--sub", "agent-7",
                          "--group", "agents", env={**ENV})).strip()
    code, out, err = await curl("-H", f"Authorization: Bearer {token}",
                                f"http://127.0.0.1:{proc.port('billing-api')}/api/v1/customers")
    assert code == 0, err
    assert "123-45-6789" not in out.decode() and json.loads(out)["meta"]["count"] == 2
    await trio.to_thread.run_sync(proc.stop)
    assert UPSTREAM_SECRET not in proc.output()

    monkeypatch.delenv("BILLING_API_TOKEN")
    done = await trio.run_process([str(Path(sys.executable).with_name("gw")), "serve", str(config)],
                                  capture_stdout=True, capture_stderr=True, check=False,
                                  env={"GW_HTTP_E2E_SECRET": JWT_SECRET, "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert b"export BILLING_API_TOKEN before starting gw" in done.stderr
