"""Bad input through `gw serve`: each a clear JSON-RPC or HTTP error, and other sessions unaffected."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
from mcp_harness import Gateway

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers.get("content-type", "").startswith("application/json"):
        return [response.json()]
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


class RawSession:
    """A hand-driven MCP session (httpx), to send what an SDK never would."""

    def __init__(self, gw: Gateway, token: str) -> None:
        self.gw = gw
        self.client = httpx.Client(timeout=30, headers={**ACCEPT, "authorization": f"Bearer {token}"})
        r = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert r.status_code == 200, r.text
        self.sid = r.headers["mcp-session-id"]
        self.client.headers["mcp-session-id"] = self.sid
        assert self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202

    def post(self, body: Any, **kw: Any) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(self.gw.url, content=content, **kw)

    def call(self, name: str, args: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
        r = self.post({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": name, "arguments": args}})
        assert r.status_code == 200, r.text
        return _events(r)[-1]


def _error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def test_malformed_messages_get_json_rpc_errors(http_gateway: Gateway) -> None:
    gw = http_gateway
    good = RawSession(gw, gw.token())
    raw = RawSession(gw, gw.token())

    r = raw.post(b'{"jsonrpc": "2.0", "id": 3, "method": ')
    assert r.status_code == 400 and _error(r)["code"] == -32700
    r = raw.post([{"jsonrpc": "2.0", "id": i, "method": "tools/list"} for i in range(500)])
    assert r.status_code == 400 and _error(r)["code"] == -32600 and "batch" in _error(r)["message"]
    r = raw.post({"id": 4, "method": "tools/list"})
    assert r.status_code == 400 and _error(r)["code"] == -32600
    r = raw.post({"jsonrpc": "2.0", "id": True, "method": "tools/list"})
    assert r.status_code == 400 and _error(r)["code"] == -32600
    r = raw.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": ["not", "an", "object"]})
    assert r.status_code == 400 and _error(r)["code"] in (-32600, -32602)
    r = raw.post({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"arguments": {}}})
    assert _events(r)[-1]["error"]["code"] == -32602  # no tool name
    r = raw.post({"jsonrpc": "2.0", "id": 7, "method": "sudo/everything", "params": {}})
    assert r.status_code == 200 and _events(r)[-1]["error"]["code"] == -32601
    assert "sudo/everything" in _events(r)[-1]["error"]["message"]
    r = raw.post({"jsonrpc": "2.0", "method": "notifications/whatever"})
    assert r.status_code == 400 and _error(r)["code"] == -32601
    # A cancellation naming no possible request id (here an unhashable list) cancels nothing.
    r = raw.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}})
    assert r.status_code == 202, r.text
    r = raw.post({"jsonrpc": "2.0", "method": "notifications/whatever"})
    assert r.status_code == 400 and _error(r)["code"] == -32601
    r = raw.post({"jsonrpc": "2.0", "id": "gw-99", "result": {}})
    assert r.status_code == 400 and _error(r)["code"] == -32600
    r = raw.post({"jsonrpc": "2.0", "id": 8, "method": "initialize", "params": {}})
    assert r.status_code == 400 and "without an Mcp-Session-Id" in _error(r)["message"]
    r = raw.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                  "params": {"name": "no_such_tool", "arguments": {}}})
    assert _events(r)[-1]["error"]["code"] == -32602

    # Oversized: the listener accepts at most 64KiB per message.
    big = {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
           "params": {"name": "lookup_customer", "arguments": {"customer_id": "x" * 100_000}}}
    r = raw.post(big)
    assert r.status_code == 413 and "max_message_size" in _error(r)["message"]

    # The session that sent all this still works, and so does the other one.
    assert json.loads(raw.call("lookup_customer", {"customer_id": "2"})["result"]["content"][0]["text"])["id"] == "2"
    assert good.call("lookup_customer", {"customer_id": "1"})["result"]["structuredContent"]["ssn"] == "***"


def test_sessions_belong_to_their_identity(http_gateway: Gateway) -> None:
    gw = http_gateway
    alice = RawSession(gw, gw.token("alice"))
    mallory = httpx.Client(timeout=30, headers={**ACCEPT, "authorization": f"Bearer {gw.token('mallory')}",
                                                 "mcp-session-id": alice.sid})
    r = mallory.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                   "params": {"name": "lookup_customer", "arguments": {"customer_id": "1"}}})
    assert r.status_code == 404 and _error(r)["code"] == -32011 and "initialize" in _error(r)["message"]
    assert mallory.delete(gw.url).status_code == 404  # nor can it end alice's session
    assert mallory.get(gw.url, headers={"accept": "text/event-stream"}).status_code == 404
    assert alice.call("lookup_customer", {"customer_id": "1"})["result"]["isError"] is False
    # An unknown or missing session id, with a valid token.
    r = mallory.post(gw.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                     headers={"mcp-session-id": "not-a-session"})
    assert r.status_code == 404
    plain = httpx.Client(timeout=30, headers={**ACCEPT, "authorization": f"Bearer {gw.token('mallory')}"})
    r = plain.post(gw.url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert r.status_code == 400 and "Mcp-Session-Id" in _error(r)["message"]
    # A deleted session is gone for its owner too.
    assert alice.client.delete(gw.url).status_code == 200
    r = alice.post({"jsonrpc": "2.0", "id": 11, "method": "tools/list"})
    assert r.status_code == 404


def test_broken_http_and_wrong_endpoints(http_gateway: Gateway) -> None:
    gw = http_gateway
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    token = {"authorization": f"Bearer {gw.token()}"}
    assert httpx.post(gw.url.replace("/mcp", "/other"), json={}, headers={**ACCEPT, **token}).status_code == 404
    assert httpx.put(gw.url, json={}, headers={**ACCEPT, **token}).status_code == 405
    r = httpx.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={**ACCEPT, **token, "origin": "http://evil.example"})
    assert r.status_code == 403
    # The SDK's discovery probe of the 2026 protocol is answered so that it falls back to initialize.
    r = httpx.post(gw.url, json={"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {}},
                   headers={**ACCEPT, **token, "mcp-protocol-version": "2026-07-28"})
    assert r.status_code == 400 and _error(r)["code"] == -32601
    # Still serving.
    assert RawSession(gw, gw.token()).call("report", {})["result"]["content"][0]["text"].startswith("sales")
