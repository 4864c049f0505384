"""Masking of what an MCP server returns, piece by piece, through the pipeline's stream filters.

Every text an agent will read passes the mask stage (channel ``mcp-content``): ``content[].text`` of tool
results and prompt messages, embedded resources, resource contents, ``structuredContent``, ``_meta``, error
messages and data.  A text that parses as JSON is masked as ``application/json`` (so key rules such as
``columns = ["ssn"]`` apply inside it); other text as ``text/plain`` (detectors); resource text with a CSV
media type as CSV.  Binary content (images, audio, blobs) is offered with its media type: the mask stage
refuses what it cannot read unless the operator listed the type in ``pass_through_types``.

A filter that fails makes the whole answer fail (:class:`MaskFailed`): nothing unmasked is relayed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from gw.errors import GwError
from gw.model import Channel

if TYPE_CHECKING:
    from gw.pipeline import CommandRun

CHANNEL = Channel.MCP_CONTENT
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
_JSON_MEDIA = ("application/json", "text/json")
_TABLE_MEDIA = ("text/csv", "text/tab-separated-values")


class MaskFailed(Exception):
    """A stage could not mask a piece of the answer; ``str()`` is for the agent."""

    def __init__(self, error: BaseException) -> None:
        if isinstance(error, GwError):
            text = str(error)[:600]
        else:
            text = (f"gw could not apply the masking policy to this answer ({type(error).__name__}) and refused "
                    "to pass it on unmasked; ask for less or other data, or tell the gateway operator")
        super().__init__(text)


def _looks_json(text: str) -> bool:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


class ContentMasker:
    """The masking of one command's answer."""

    def __init__(self, run: CommandRun) -> None:
        self.run = run

    def _run(self, data: bytes, content_type: str) -> bytes | None:
        try:
            filt = self.run.stream(CHANNEL, content_type)
            if filt is None:
                return None
            return filt.feed(data) + filt.finish()
        except Exception as e:
            raise MaskFailed(e) from e

    def text(self, text: str, media_type: str | None = None) -> str:
        media = (media_type or "").split(";")[0].strip().lower()
        if media in _TABLE_MEDIA:
            content_type = f"{media}; charset=utf-8"
        elif media in _JSON_MEDIA or media.endswith("+json") or _looks_json(text):
            content_type = JSON_TYPE
        else:
            content_type = TEXT_TYPE
        out = self._run(text.encode("utf-8", "surrogatepass"), content_type)
        return text if out is None else out.decode("utf-8", "replace")

    def value(self, value: Any) -> Any:
        """A JSON value (``structuredContent``, ``_meta``, error data) masked as a JSON document."""
        if value is None:
            return None
        data = json.dumps(value, ensure_ascii=False).encode("utf-8")
        out = self._run(data, JSON_TYPE)
        if out is None:
            return value
        try:
            return json.loads(out)
        except ValueError as e:
            raise MaskFailed(e) from None

    def blob(self, data_b64: str, media_type: str | None) -> str:
        try:
            raw = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MaskFailed(ValueError("the server sent base64 content gw cannot decode")) from e
        out = self._run(raw, media_type or "application/octet-stream")
        return data_b64 if out is None or out == raw else base64.b64encode(out).decode("ascii")

    # -- MCP shapes -------------------------------------------------------------------------------------------
    def block(self, block: Any) -> Any:
        if not isinstance(block, dict):
            return self.value(block)
        kind = block.get("type")
        out = dict(block)
        handled: tuple[str, ...]
        if kind == "text" and isinstance(block.get("text"), str):
            out["text"] = self.text(block["text"])
            handled = ("type", "text")
        elif kind in ("image", "audio") and isinstance(block.get("data"), str):
            out["data"] = self.blob(block["data"], block.get("mimeType"))
            handled = ("type", "data", "mimeType")
        elif kind == "resource" and isinstance(block.get("resource"), dict):
            out["resource"] = self.resource(block["resource"])
            handled = ("type", "resource")
        elif kind == "resource_link":
            handled = ("type", "mimeType")
        else:
            return self.value(block)  # a kind gw does not know: every string in it is masked
        return self._rest(block, out, handled)

    def _rest(self, original: dict[str, Any], out: dict[str, Any], handled: tuple[str, ...]) -> dict[str, Any]:
        """Every other field (``_meta``, ``annotations``, ``uri``, fields of later MCP revisions) masked as
        JSON: what gw does not know is masked, never passed as it came."""
        for key, value in original.items():
            if key not in handled:
                out[key] = self.text(value) if isinstance(value, str) else self.value(value)
        return out

    def resource(self, contents: Any) -> Any:
        if not isinstance(contents, dict):
            return self.value(contents)
        out = dict(contents)
        media = contents.get("mimeType") if isinstance(contents.get("mimeType"), str) else None
        if isinstance(contents.get("text"), str):
            out["text"] = self.text(contents["text"], media)
        handled = ["mimeType"]
        if isinstance(contents.get("blob"), str):
            out["blob"] = self.blob(contents["blob"], media)
            handled.append("blob")
        if isinstance(contents.get("text"), str):
            handled.append("text")
        return self._rest(contents, out, tuple(handled))

    def tool_result(self, result: dict[str, Any]) -> dict[str, Any]:
        out = dict(result)
        if isinstance(result.get("content"), list):
            out["content"] = [self.block(b) for b in result["content"]]
        listed = ("content",) if isinstance(result.get("content"), list) else ()
        return self._rest(result, out, ("isError", "resultType", *listed))

    def resource_result(self, result: dict[str, Any]) -> dict[str, Any]:
        out = dict(result)
        if isinstance(result.get("contents"), list):
            out["contents"] = [self.resource(c) for c in result["contents"]]
        listed = ("contents",) if isinstance(result.get("contents"), list) else ()
        return self._rest(result, out, ("resultType", *listed))

    def prompt_result(self, result: dict[str, Any]) -> dict[str, Any]:
        out = dict(result)
        if isinstance(result.get("description"), str):
            out["description"] = self.text(result["description"])
        messages = result.get("messages")
        if isinstance(messages, list):
            masked = []
            for message in messages:
                if isinstance(message, dict) and "content" in message:
                    m = dict(message)
                    m["content"] = self.block(message["content"])
                    masked.append(m)
                else:
                    masked.append(self.value(message))
            out["messages"] = masked
        listed = ("messages",) if isinstance(messages, list) else ()
        return self._rest(result, out, ("description", "resultType", *listed))

    def error(self, error: dict[str, Any]) -> dict[str, Any]:
        out = dict(error)
        if isinstance(error.get("message"), str):
            out["message"] = self.text(error["message"])
        return self._rest(error, out, ("code", "message"))

    def notification(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A notification the server sends during the call (progress messages, log messages)."""
        out = dict(msg)
        params = msg.get("params")
        if isinstance(params, dict):
            p = dict(params)
            if isinstance(p.get("message"), str):
                p["message"] = self.text(p["message"])
            if "data" in p:
                p["data"] = self.value(p["data"])
            out["params"] = p
        return out
