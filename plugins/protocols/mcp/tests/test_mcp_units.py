"""Units of the MCP plugin: SSE decoding split at every byte, JSON-RPC reading, classification, options."""

from __future__ import annotations

import pytest
from gw.model import Kind
from gw_mcp import classify, jsonrpc, sse
from gw_mcp.options import McpListenerOptions, McpUpstreamOptions
from gw_mcp.pins import definition_hash
from pydantic import ValidationError

STREAM = (b"event: message\r\ndata: {\"a\":1}\r\n\r\n: keepalive\n\nid: 7\ndata: {\"b\":\ndata: 2}\n\n"
          b"data:{\"c\":3}\r\r")


def test_sse_decoder_same_events_at_every_split() -> None:
    whole = sse.EventDecoder(1024).feed(STREAM)
    assert [e.data for e in whole] == ['{"a":1}', '{"b":\n2}', '{"c":3}']
    for i in range(len(STREAM) + 1):
        decoder = sse.EventDecoder(1024)
        assert decoder.feed(STREAM[:i]) + decoder.feed(STREAM[i:]) == whole, i
    one_by_one = sse.EventDecoder(1024)
    assert [e for b in range(len(STREAM)) for e in one_by_one.feed(STREAM[b:b + 1])] == whole


def test_sse_decoder_bounds_events() -> None:
    with pytest.raises(sse.EventTooLarge):
        sse.EventDecoder(100).feed(b"data: " + b"x" * 200)
    with pytest.raises(sse.EventTooLarge):
        sse.EventDecoder(100).feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")


def test_sse_encode_round_trip() -> None:
    data = jsonrpc.dumps({"jsonrpc": "2.0", "method": "x", "params": {"t": "a\nb"}})
    assert sse.EventDecoder(4096).feed(sse.encode(data)) == [sse.Event("message", data.decode())]


@pytest.mark.parametrize(("body", "code"), [
    (b"{", jsonrpc.PARSE_ERROR),
    (b"[]", jsonrpc.INVALID_REQUEST),
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', jsonrpc.INVALID_REQUEST),
    (b'"text"', jsonrpc.INVALID_REQUEST),
    (b'{"id":1,"method":"ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', jsonrpc.INVALID_REQUEST),
    (b'[' * 100000, jsonrpc.PARSE_ERROR),
])
def test_bad_messages(body: bytes, code: int) -> None:
    with pytest.raises(jsonrpc.MessageError) as e:
        jsonrpc.parse(body)
    assert e.value.code == code


def test_good_messages() -> None:
    assert jsonrpc.is_request(jsonrpc.parse(b'{"jsonrpc":"2.0","id":"a","method":"tools/list"}'))
    assert jsonrpc.is_notification(jsonrpc.parse(b'{"jsonrpc":"2.0","method":"notifications/initialized"}'))
    assert jsonrpc.is_response(jsonrpc.parse(b'{"jsonrpc":"2.0","id":3,"result":{}}'))
    assert jsonrpc.progress_token({"_meta": {"progressToken": True}}) is None
    assert jsonrpc.progress_token({"_meta": {"progressToken": 4}}) == 4


def _options(**kw: object) -> McpListenerOptions:
    return McpListenerOptions(name="t", protocol="mcp", listen="127.0.0.1:0", identity="dev", pipeline="p",
                              upstream={"url": "http://127.0.0.1:9/mcp"}, **kw)


def test_tool_classification() -> None:
    opts = _options(objects_from={"delete_customer": ["customer_id"], "*": ["id"]},
                    tool_kinds={"export": "read"})
    read = {"name": "lookup", "annotations": {"readOnlyHint": True}}
    destructive = {"name": "delete_customer", "annotations": {"destructiveHint": True}}
    contradictory = {"name": "x", "annotations": {"readOnlyHint": True, "destructiveHint": True}}
    spec = classify.tool_call(opts, "delete_customer", {"customer_id": ["7", "8"], "why": "x"}, destructive)
    assert spec.kind is Kind.WRITE and spec.verb == "delete_customer" and spec.objects == ("7", "8")
    assert spec.text == 'delete_customer {"customer_id": ["7", "8"], "why": "x"}' and "destructive" in spec.flags
    assert classify.tool_call(opts, "lookup", {"id": 3}, read).objects == ("3",)
    assert classify.tool_call(opts, "lookup", {}, read).kind is Kind.READ
    assert classify.tool_call(opts, "x", {}, contradictory).kind is Kind.WRITE
    assert classify.tool_call(opts, "plain", {}, {"name": "plain"}).kind is Kind.UNKNOWN
    assert classify.tool_call(opts, "export", {}, destructive).kind is Kind.READ  # the operator decides
    assert classify.tool_call(opts, "k", {"b": 1, "a": 2}, None).text == classify.tool_call(
        opts, "k", {"a": 2, "b": 1}, None).text
    assert classify.named_params({"a": 1, "b": "s", "c": None}) == {"a": "1", "b": "s", "c": None}


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="either url"):
        McpUpstreamOptions()
    with pytest.raises(ValidationError, match="either url"):
        McpUpstreamOptions(url="http://h/mcp", command=["x"])
    with pytest.raises(ValidationError, match="credentials in the URL"):
        McpUpstreamOptions(url="http://u:p@h/mcp")
    with pytest.raises(ValidationError, match="env and cwd"):
        McpUpstreamOptions(url="http://h/mcp", env={"A": "b"})
    with pytest.raises(ValidationError, match="unknown kind"):
        _options(tool_kinds={"a": "sometimes"})
    assert McpUpstreamOptions(command=["srv"], env={"T": "${TOKEN}"}).http is None


def test_pinned_definition_hash() -> None:
    tool = {"name": "a", "description": "d", "inputSchema": {"type": "object"}, "icons": []}
    assert definition_hash(tool) == definition_hash({**tool, "icons": [{"src": "x"}]})  # icons are not pinned
    assert definition_hash(tool) != definition_hash({**tool, "description": "d "})
    assert definition_hash(tool) != definition_hash({**tool, "annotations": {"readOnlyHint": True}})
