"""Every console route and its authorisation, over HTTP against a real ``gw serve`` (psql and the real
PostgreSQL behind it): who may log in, see and decide; CSRF; what pages show; the JSON API."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trio
from console_env import SECRET_ENV, SSN, Gateway, direct, start_gateway
from gw.runtime import Runtime
from gw.testing import wait_for


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_pages_and_api_need_a_login(gateway: Gateway) -> None:
    c = gateway.client()
    for path in ("/", "/approvals", "/sessions", "/audit", "/sessions/x"):
        reply = c.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/login", path
    for path in ("/api/approvals", "/api/sessions", "/api/audit", "/api/me"):
        reply = c.get(path)
        assert reply.status_code == 401, path
        assert "log in" in reply.json()["error"]
    assert c.post("/api/approvals/abc/approve").status_code == 401
    assert c.get("/nope").status_code == 303  # unknown pages are not told apart before a login


def test_login_with_a_token_sets_a_strict_http_only_session_cookie(gateway: Gateway) -> None:
    c = gateway.client()
    page = c.get("/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text and ">Log in</button>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    reply = c.post("/login", data={"csrf": csrf_of(page), "token": gateway.token("dana", "dba")})
    assert reply.status_code == 303 and reply.headers["location"] == "/approvals"
    cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie" and v.startswith("gw_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = c.get("/api/me").json()
    assert me["subject"] == "dana" and me["groups"] == ["dba"]
    assert c.get("/approvals").status_code == 200
    # Logging out ends the server-side session: the old cookie is worthless.
    page = c.get("/approvals")
    assert c.post("/logout", data={"csrf": csrf_of(page)}).status_code == 303
    assert c.get("/api/me").status_code == 401


def test_login_refusals(gateway: Gateway) -> None:
    c = gateway.client()
    page = c.get("/login")
    # Without the form's CSRF token (a cross-site login attempt): refused.
    assert c.post("/login", data={"token": gateway.token("dana", "dba")}).status_code == 403
    bad = c.post("/login", data={"csrf": csrf_of(page), "token": "not-a-token"})
    assert bad.status_code == 401 and "gw_console=" not in bad.headers.get("set-cookie", "")
    outsider = c.post("/login", data={"csrf": csrf_of(page), "token": gateway.token("eve", "agents")})
    assert outsider.status_code == 403
    assert "not in a group allowed" in outsider.text
    expired = c.post("/login", data={"csrf": csrf_of(page), "token": gateway.token("dana", "dba", ttl="1s")})
    time.sleep(1.5)
    assert c.get("/api/me").status_code in (401,) or expired.status_code == 303
    if expired.status_code == 303:  # the session ends with its token
        wait_for(lambda: c.get("/api/me").status_code == 401, timeout=5)


def test_failed_logins_are_rate_limited(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, login_attempts=3)
    try:
        c = gw.client()
        page = c.get("/login")
        for _ in range(3):
            assert c.post("/login", data={"csrf": csrf_of(page), "token": "wrong"}).status_code == 401
        limited = c.post("/login", data={"csrf": csrf_of(page), "token": gw.token("dana", "dba")})
        assert limited.status_code == 429 and "retry-after" in limited.headers
    finally:
        gw.process.stop()
        direct(f"drop table if exists {gw.table}")


def test_an_approver_approves_a_held_delete_and_psql_completes(gateway: Gateway) -> None:
    agent = gateway.token("agent-7", "agents")
    held = gateway.hold(agent, f"delete from {gateway.table}")
    dba = gateway.login(gateway.token("dana", "dba"))
    request = gateway.pending(dba, gateway.table)
    assert request["may_decide"] is True and request["subject"] == "agent-7"
    page = dba.get("/approvals")
    assert f'id="request-{request["id"]}"' in page.text and ">Approve</button>" in page.text
    assert ">Deny</button>" in page.text
    # A form post without the session's CSRF token is refused, and nothing is decided.
    assert dba.post(f"/approvals/{request['id']}/approve", data={}).status_code == 403
    assert dba.get(f"/api/approvals/{request['id']}").json()["status"] == "pending"
    reply = dba.post(f"/approvals/{request['id']}/approve", data={"csrf": csrf_of(page)})
    assert reply.status_code == 303
    out = held.wait()
    assert out.returncode == 0, out.stderr
    assert direct(f"select count(*) from {gateway.table}").strip() == "0"
    decided = dba.get(f"/api/approvals/{request['id']}").json()
    assert decided["status"] in ("approved", "used") and decided["decided_by"] == "dana"
    # The decision is in the audit trail as a console event.
    events = gateway_events(gateway, "console_approve")
    assert any(e["subject"] == "dana" and e["details"]["request"] == request["id"] for e in events)


def gateway_events(gateway: Gateway, event: str) -> list[dict[str, object]]:
    """The audit trail's event records of one kind, read through the store as ``gw audit`` reads it."""
    async def read() -> list[dict[str, object]]:
        rt = Runtime.build(gateway.config)
        async with rt.opened(identity=False):
            assert rt.store is not None
            entries = await rt.store.scan("audit", where={"type": "event"})
        return [dict(e.data) for e in entries if e.data.get("event") == event]

    os.environ.setdefault(SECRET_ENV, gateway.env[SECRET_ENV])
    return trio.run(read)


def test_viewers_and_requesters_cannot_approve(gateway: Gateway) -> None:
    requester_token = gateway.token("dba-bot", "dba")
    held = gateway.hold(requester_token, f"delete from {gateway.table}", user="dba-bot")
    auditor = gateway.login(gateway.token("audrey", "auditors"))
    request = gateway.pending(auditor, gateway.table)
    assert request["may_decide"] is False
    page = auditor.get("/approvals")
    assert ">Approve</button>" not in page.text
    refused = auditor.post(f"/approvals/{request['id']}/approve", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403 and "may not decide" in refused.text
    own = gateway.login(requester_token)
    assert own.get(f"/api/approvals/{request['id']}").json()["may_decide"] is False
    page = own.get("/approvals")
    assert "your own request" in page.text
    refused = own.post(f"/api/approvals/{request['id']}/approve", headers={"x-csrf-token": csrf_of(page)})
    assert refused.status_code == 403 and "cannot decide" in refused.json()["error"]
    # The API with a bearer token: another dba denies it (a reason is optional here).
    denied = httpx.post(f"{gateway.url}/api/approvals/{request['id']}/deny", json={},
                        headers={"authorization": f"Bearer {gateway.token('dana', 'dba')}"})
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    out = held.wait()
    assert out.returncode != 0
    assert direct(f"select count(*) from {gateway.table}").strip() == "2"


def test_live_approvals_stream_announces_new_requests(gateway: Gateway) -> None:
    dba = gateway.login(gateway.token("dana", "dba"))
    seen: list[str] = []
    with dba.stream("GET", "/approvals/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        wait_until = time.monotonic() + 20
        held = None
        for line in lines:
            seen.append(line)
            if line.startswith("event: approvals") and held is None:
                held = gateway.hold(gateway.token("agent-7", "agents"), f"delete from {gateway.table}")
                seen.clear()
                continue
            if held is not None and line.startswith("event: approvals"):
                break
            assert time.monotonic() < wait_until, seen
    rows = dba.get("/approvals/rows").text
    assert gateway.table in rows and ">Approve</button>" in rows
    request = gateway.pending(dba, gateway.table)
    dba.post(f"/api/approvals/{request['id']}/deny", json={"reason": "no"},
             headers={"x-csrf-token": dba.get("/api/me").json()["csrf"]})
    assert held is not None and held.wait().returncode != 0


def test_sessions_page_and_an_operator_ends_a_live_session(gateway: Gateway) -> None:
    agent = gateway.token("agent-7", "agents")
    proc = subprocess.Popen(["psql", f"host=127.0.0.1 port={gateway.process.port('orders')} user=agent-7 dbname=test",
                             "-XAtq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**gateway.env, "PGPASSWORD": agent})
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"select name from {gateway.table} order by id;\n")
        proc.stdin.flush()
        ops = gateway.login(gateway.token("olga", "ops"))
        live = wait_for(lambda: [s for s in ops.get("/api/sessions").json()["live"] if s["subject"] == "agent-7"])
        sid = live[0]["id"]
        page = ops.get("/sessions")
        assert sid in page.text and ">End session</button>" in page.text
        viewer = gateway.login(gateway.token("audrey", "auditors"))
        vpage = viewer.get("/sessions")
        assert ">End session</button>" not in vpage.text
        refused = viewer.post(f"/sessions/{sid}/end", data={"csrf": csrf_of(vpage)})
        assert refused.status_code == 403
        assert ops.post(f"/sessions/{sid}/end", data={"csrf": csrf_of(page)}).status_code == 303
        proc.stdin.write("select 1;\n")
        proc.stdin.flush()
        proc.wait(15)
        wait_for(lambda: not [s for s in ops.get("/api/sessions").json()["live"] if s["id"] == sid])
    finally:
        proc.kill()


def test_recorded_session_timeline_and_audit_search_show_only_masked_values(gateway: Gateway) -> None:
    agent = gateway.token("agent-7", "agents")
    out = gateway.psql(agent, f"select id, name, ssn from {gateway.table} order by id")
    assert out.returncode == 0 and SSN not in out.stdout
    out = gateway.psql(agent, f"select name from {gateway.table} where ssn = '{SSN}'")
    assert out.returncode == 0
    auditor = gateway.login(gateway.token("audrey", "auditors"))
    recorded = wait_for(lambda: [s for s in auditor.get("/api/sessions").json()["recorded"]
                                 if s["subject"] == "agent-7" and s.get("ended") is not None])
    pages = [auditor.get(f"/sessions/{s['id']}") for s in recorded]
    assert all(p.status_code == 200 for p in pages)
    text = "".join(p.text for p in pages)
    assert "ann" in text and gateway.table in text
    found = auditor.get("/audit", params={"text": gateway.table, "user": "agent-7"})
    assert found.status_code == 200 and gateway.table in found.text
    exported = auditor.get("/audit/export", params={"text": gateway.table})
    records = [json.loads(line) for line in exported.text.splitlines()]
    assert len(records) >= 2 and all(gateway.table in r["text"] for r in records)
    verified = auditor.get("/audit", params={"verify": "1"})
    assert "OK," in verified.text
    api = auditor.get("/api/audit", params={"verdict": "allowed", "kind": "read", "text": gateway.table}).json()
    assert api and all(r["verdict"] == "allowed" and r["kind"] == "read" for r in api)
    everything = text + found.text + exported.text + json.dumps(api)
    assert SSN not in everything and SSN.replace("-", "") not in everything


def test_command_text_is_shown_escaped(gateway: Gateway) -> None:
    agent = gateway.token("agent-7", "agents")
    sneaky = f"delete from {gateway.table} -- \u202e\x1b[2Jlooks harmless\u200b"
    held = gateway.hold(agent, sneaky)
    dba = gateway.login(gateway.token("dana", "dba"))
    request = gateway.pending(dba, gateway.table)
    rows = dba.get("/approvals/rows").text
    assert "\\u202e" in rows and "\\x1b[2J" in rows and "\\u200b" in rows
    assert "\u202e" not in rows and "\x1b" not in rows and "\u200b" not in rows
    dba.post(f"/api/approvals/{request['id']}/deny", json={"reason": "odd"},
             headers={"x-csrf-token": dba.get("/api/me").json()["csrf"]})
    held.wait()


def test_bad_requests_get_clear_errors_and_the_console_keeps_serving(gateway: Gateway) -> None:
    dba = gateway.login(gateway.token("dana", "dba"))
    token = dba.get("/api/me").json()["csrf"]
    assert dba.post("/api/approvals/zzz/approve", headers={"x-csrf-token": token}).status_code == 404
    assert dba.get("/api/audit", params={"since": "yesterday"}).status_code == 409
    assert dba.delete("/api/approvals").status_code == 405
    assert dba.get("/static/../../etc/passwd").status_code in (303, 404)
    too_big = dba.post("/api/grants", content=b"x" * 200_000, headers={"x-csrf-token": token})
    assert too_big.status_code == 413
    with socket.create_connection(("127.0.0.1", gateway.process.port("console"))) as s:
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert dba.get("/api/me").status_code == 200
    assert gateway.client().get("/static/console.css").status_code == 200


def test_grants_from_the_console(gateway: Gateway) -> None:
    dba = gateway.login(gateway.token("dana", "dba"))
    page = dba.get("/approvals")
    made = dba.post("/grants", data={"csrf": csrf_of(page), "subject": "agent-7", "listener": "orders",
                                     "duration": "10m", "reason": "migration"})
    assert made.status_code == 303
    grants = dba.get("/api/grants").json()
    grant = next(g for g in grants if g["subject"] == "agent-7")
    out = gateway.psql(gateway.token("agent-7", "agents"), f"delete from {gateway.table}")
    assert out.returncode == 0, out.stderr  # the grant skips approval
    page = dba.get("/approvals")
    assert dba.post(f"/grants/{grant['id']}/revoke", data={"csrf": csrf_of(page)}).status_code == 303
    assert not [g for g in dba.get("/api/grants").json() if g["id"] == grant["id"]]
    auditor = gateway.login(gateway.token("audrey", "auditors"))
    refused = auditor.post("/api/grants", json={"subject": "x", "listener": "orders", "duration": "5m"},
                           headers={"x-csrf-token": auditor.get("/api/me").json()["csrf"]})
    assert refused.status_code in (403, 409) and "may not" in refused.json()["error"]


@pytest.mark.parametrize("path", ["/approvals", "/sessions", "/audit"])
def test_pages_render_for_an_auditor(gateway: Gateway, path: str) -> None:
    auditor = gateway.login(gateway.token("audrey", "auditors"))
    page = auditor.get(path)
    assert page.status_code == 200 and "<main" in page.text and "Log out" in page.text
