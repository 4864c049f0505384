"""The masking walk over MCP answers, with a stand-in pipeline whose filter marks every piece it sees: what
the walk offers the mask stage, and that nothing it does not know passes unoffered."""

from __future__ import annotations

import base64
import json
from typing import Any

from gw_mcp.content import ContentMasker


class Marking:
    """A stream filter that replaces the digits of every piece it is given with ``#``."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen
        self.data = b""

    def feed(self, data: bytes) -> bytes:
        self.data += data
        return b""

    def finish(self) -> bytes:
        text = self.data.decode()
        out = "".join("#" if c.isdigit() else c for c in text)
        return out.encode()


class Pipeline:
    """Stands in for a CommandRun: hands out a marking filter and remembers the content types asked for."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.seen: list[str] = []

    def stream(self, channel: str, content_type: str = "") -> Marking:
        assert channel == "mcp-content"
        self.types.append(content_type)
        return Marking(self.seen)


def _masker() -> tuple[ContentMasker, Pipeline]:
    pipeline = Pipeline()
    return ContentMasker(pipeline), pipeline  # type: ignore[arg-type]


def test_every_string_of_a_tool_result_is_offered() -> None:
    masker, pipeline = _masker()
    result: dict[str, Any] = {
        "content": [
            {"type": "text", "text": '{"ssn": "123-45-6789"}', "annotations": {"note": "id 42"}},
            {"type": "text", "text": "call 555-0100"},
            {"type": "resource", "resource": {"uri": "crm://c/7", "mimeType": "text/csv", "text": "a,b\n1,2\n"}},
            {"type": "resource_link", "uri": "crm://c/8", "name": "customer 8", "description": "since 2019"},
            {"type": "future_kind", "payload": "secret 99"},
        ],
        "structuredContent": {"ssn": "123-45-6789"},
        "isError": False,
        "extra": "order 12345",
    }
    out = masker.tool_result(result)
    flat = json.dumps(out)
    assert not any(c.isdigit() for c in flat.replace("2.0", "")), flat
    assert out["isError"] is False
    assert "application/json" in pipeline.types and "text/csv; charset=utf-8" in pipeline.types


def test_blobs_are_offered_with_their_type() -> None:
    masker, pipeline = _masker()
    data = base64.b64encode(b"ssn 123").decode()
    out = masker.tool_result({"content": [{"type": "image", "mimeType": "image/png", "data": data}]})
    assert base64.b64decode(out["content"][0]["data"]) == b"ssn ###" and "image/png" in pipeline.types


def test_errors_and_malformed_shapes_are_masked_whole() -> None:
    masker, _ = _masker()
    assert masker.error({"code": -32000, "message": "no customer 123", "data": {"ssn": "1"}}) == \
        {"code": -32000, "message": "no customer ###", "data": {"ssn": "#"}}
    out = masker.tool_result({"content": "not a list 123"})
    assert out["content"] == "not a list ###"
