"""JSON-RPC 2.0 as MCP uses it: reading one message, building replies, and the error codes gw answers with.

Messages stay plain dicts on the data path (gw relays what it does not need to change, field for field);
the official SDK's models (:mod:`mcp.types`, through :mod:`gw_mcp.sdk`) validate their shape on the way in, so a malformed message is
refused with the same judgement the SDK's own servers apply.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import ValidationError

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: Implementation-defined server errors (-32000 to -32099): what gw's refusals use, so a client can tell a
#: policy refusal from the tool's own failure.
POLICY_DENIED: Final = -32001
APPROVAL_REQUIRED: Final = -32002
APPROVAL_DENIED: Final = -32003
UPSTREAM_ERROR: Final = -32004
LIMIT_EXCEEDED: Final = -32005
MASK_FAILED: Final = -32006
TOOL_CHANGED: Final = -32007
UNAUTHORIZED: Final = -32010
SESSION_UNKNOWN: Final = -32011
UNAVAILABLE: Final = -32012

RequestId = str | int


class MessageError(Exception):
    """A message gw cannot accept; ``code`` is the JSON-RPC error code, ``id`` the request's id if known."""

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def _id_of(data: Any) -> RequestId | None:
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


def parse(body: bytes) -> dict[str, Any]:
    """One JSON-RPC message from an HTTP body.  Raises :class:`MessageError` for invalid JSON, a batch (MCP
    dropped batching in 2025-06-18; gw accepts one message per POST) or a message the SDK would not accept."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise MessageError(PARSE_ERROR, f"the body is not valid JSON ({type(e).__name__}: "
                           f"{str(e)[:120]}); send one JSON-RPC 2.0 message per POST") from None
    if isinstance(data, list):
        raise MessageError(INVALID_REQUEST, "JSON-RPC batches are not accepted by gw; send one message per POST "
                           f"(this one held {len(data)})")
    if not isinstance(data, dict):
        raise MessageError(INVALID_REQUEST, "a JSON-RPC message is a JSON object")
    check(data)
    return data


def check(data: dict[str, Any]) -> None:
    """Validate ``data`` as a JSON-RPC message with the SDK's models."""
    if data.get("jsonrpc") != "2.0":
        raise MessageError(INVALID_REQUEST, 'not a JSON-RPC 2.0 message ("jsonrpc": "2.0" is missing)',
                           _id_of(data))
    if "id" in data and _id_of(data) is None:
        raise MessageError(INVALID_REQUEST, "a request id must be a string or an integer", None)
    from .sdk import jsonrpc_message_adapter

    try:
        jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise MessageError(INVALID_REQUEST, f"malformed JSON-RPC message ({where}: {first['msg']})",
                           _id_of(data)) from None
    params = data.get("params")
    if params is not None and not isinstance(params, dict):
        raise MessageError(INVALID_PARAMS, "MCP params are a JSON object", _id_of(data))


def is_request(msg: dict[str, Any]) -> bool:
    return "method" in msg and "id" in msg


def is_notification(msg: dict[str, Any]) -> bool:
    return "method" in msg and "id" not in msg


def is_response(msg: dict[str, Any]) -> bool:
    return "method" not in msg and ("result" in msg or "error" in msg)


def error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": err}


def result(request_id: RequestId, value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def request(request_id: RequestId, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def dumps(msg: Any) -> bytes:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def progress_token(params: dict[str, Any] | None) -> str | int | None:
    """``params._meta.progressToken`` (a bool is not a token)."""
    meta = (params or {}).get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    if isinstance(token, (str, int)) and not isinstance(token, bool):
        return token
    return None
