"""The glue between the proxy and the pipeline's stream filters (masking, recording).

Filters come from other plugins (mask, record ...).  Whatever they raise -- a body over the mask's bound,
unparseable JSON, a content type the mask stage refuses, a bug -- becomes :class:`FilterFailed`, which the
proxy turns into a 502 (before the response head) or a cut connection (after it).  Unfiltered bytes are never
sent instead.

The channels the proxy offers (``run.stream(channel, content_type)``):

``response-body``
    the response body, with the response's ``Content-Type`` (``application/octet-stream`` when it has none,
    RFC 9110 section 8.3; several ``Content-Type`` fields are joined with ``", "``, which no stage can parse).
``response-headers``
    the response head as one JSON document, ``[["name", "value"], ...]`` (lower-case names; the framing and
    content headers gw needs are not in it), content type :data:`HEADER_LIST_TYPE`.  A transforming stage
    returns the same shape; the proxy sends what it returns (:func:`filter_headers`).
``request-body``
    the request body as the agent sent it (observers only: the upstream always gets the agent's bytes).
``ws-server`` / ``ws-client``
    WebSocket messages, one complete message per ``feed`` call: ``text/plain; charset=utf-8`` for text
    messages, ``application/octet-stream`` for binary ones (:class:`StageMessages`,
    :class:`StageMessageObserver`).  For upgrades gw cannot read, the raw bytes (observers only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gw.errors import GwError
from gw.model import Channel
from gw.stage import StreamFilter

from .headers import HeaderList, Headers
from .websocket import (
    INTERNAL_ERROR,
    INVALID_DATA,
    POLICY_VIOLATION,
    Frame,
    Message,
    Opcode,
    WebSocketError,
    close_payload,
    parse_close,
)

if TYPE_CHECKING:
    from gw.pipeline import CommandRun

HEADERS_CHANNEL = Channel.RESPONSE_HEADERS
#: The content type of the ``response-headers`` channel's document.
HEADER_LIST_TYPE = "application/vnd.gw.header-list+json"
TEXT_MESSAGE_TYPE = "text/plain; charset=utf-8"
BINARY_MESSAGE_TYPE = "application/octet-stream"
#: Response headers never offered to stages: gw needs them as they are to frame and interpret the body (they
#: carry no data of their own), or they belong to the WebSocket handshake.
STRUCTURAL_HEADERS = frozenset({b"content-length", b"content-type", b"content-encoding", b"transfer-encoding",
                                b"connection", b"upgrade", b"date", b"sec-websocket-accept",
                                b"sec-websocket-protocol", b"sec-websocket-extensions"})


class FilterFailed(Exception):
    """A stage's stream filter raised: the data it was given cannot be passed on (fail closed)."""

    def __init__(self, channel: str, error: BaseException) -> None:
        #: The stage's message is written for the agent (a :class:`gw.errors.GwError` such as the mask
        #: stage's ``MaskUnavailable``): shown as it is.
        self.explained = isinstance(error, GwError)
        detail = str(error)[:600] or type(error).__name__
        super().__init__(detail if self.explained else f"{type(error).__name__}: {detail[:200]}")
        self.channel = channel


def open_filter(run: CommandRun, channel: Channel, content_type: str) -> StreamFilter | None:
    """The pipeline's filter for one stream of the command (None when no stage wants it)."""
    try:
        return run.stream(channel, content_type)
    except Exception as e:
        raise FilterFailed(channel, e) from e


def feed(filt: StreamFilter, data: bytes, channel: str) -> bytes:
    try:
        return filt.feed(data)
    except Exception as e:
        raise FilterFailed(channel, e) from e


def finish(filt: StreamFilter, channel: str) -> bytes:
    try:
        return filt.finish()
    except Exception as e:
        raise FilterFailed(channel, e) from e


# -- response headers ------------------------------------------------------------------------------------------


def _header_value(value: object) -> bytes:
    text = str(value)
    for bad in ("\r", "\n", "\x00"):
        text = text.replace(bad, " ")
    return text.encode("latin-1", "replace")


def filter_headers(run: CommandRun, headers: Headers) -> HeaderList | None:
    """The response headers after the pipeline's ``response-headers`` filter, or None when no stage filters
    them.  Structural headers keep their place at the front; a stage may change values and drop fields."""
    filt = open_filter(run, HEADERS_CHANNEL, HEADER_LIST_TYPE)
    if filt is None:
        return None
    kept: HeaderList = []
    offered: list[list[str]] = []
    for name, value in headers:
        if name in STRUCTURAL_HEADERS:
            kept.append((name, value))
        else:
            offered.append([name.decode("latin-1"), value.decode("latin-1")])
    document = json.dumps(offered, ensure_ascii=False).encode("utf-8")
    out = feed(filt, document, HEADERS_CHANNEL) + finish(filt, HEADERS_CHANNEL)
    try:
        pairs = json.loads(out)
        if not isinstance(pairs, list):
            raise TypeError("not a list")
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError("not a list of [name, value] pairs")
            name = pair[0].strip().lower().encode("latin-1", "replace")
            if not name or name in STRUCTURAL_HEADERS or any(c in name for c in b" \t\r\n:"):
                continue
            kept.append((name, _header_value("" if pair[1] is None else pair[1])))
    except (TypeError, ValueError) as e:
        raise FilterFailed(HEADERS_CHANNEL, ValueError(f"a stage returned malformed response headers ({e})")) \
            from None
    return kept


# -- WebSocket messages ----------------------------------------------------------------------------------------


def _open_both(run: CommandRun, channel: Channel
               ) -> tuple[StreamFilter | None, StreamFilter | None, str | None]:
    """The text and binary filters of a WebSocket direction, and why binary messages are refused (when the
    pipeline's stage refused to filter them)."""
    text = open_filter(run, channel, TEXT_MESSAGE_TYPE)
    try:
        binary = open_filter(run, channel, BINARY_MESSAGE_TYPE)
    except FilterFailed as e:
        return text, None, str(e)
    return text, binary, None


class StageMessages:
    """A :class:`~gw_httpproxy.tunnel.MessageFilter` that runs each message the upstream sends through the
    pipeline's ``ws-server`` filters: text messages are masked (as JSON where they parse as JSON, else as
    text, by the mask stage); binary messages pass when no stage refuses them.  When a stage refused binary
    content (masking applies), a binary message closes the WebSocket with 1008 and the stage's reason, and
    ping/pong payloads (which could carry anything) are emptied."""

    def __init__(self, text: StreamFilter | None, binary: StreamFilter | None, binary_refusal: str | None
                 ) -> None:
        self.text = text
        self.binary = binary
        self.binary_refusal = binary_refusal

    @classmethod
    def open(cls, run: CommandRun) -> StageMessages | None:
        """None when no stage filters ``ws-server`` at all (the direction is then a raw byte pump)."""
        text, binary, refusal = _open_both(run, Channel.WS_SERVER)
        if text is None and binary is None and refusal is None:
            return None
        return cls(text, binary, refusal)

    def message(self, message: Message) -> Sequence[Message]:
        if message.opcode is Opcode.TEXT:
            if self.text is None:
                return (message,)
            out = feed(self.text, message.payload, "ws-server")
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError(INVALID_DATA, "gw's filter produced a text message that is not UTF-8") \
                    from None
            return (Message(Opcode.TEXT, out),)
        if self.binary_refusal is not None:
            raise WebSocketError(POLICY_VIOLATION, _close_reason(self.binary_refusal))
        if self.binary is None:
            return (message,)
        return (Message(Opcode.BINARY, feed(self.binary, message.payload, "ws-server")),)

    def control(self, frame: Frame) -> Frame | None:
        if frame.opcode is Opcode.CLOSE:
            code, reason = parse_close(frame.payload)
            if code is not None and reason and self.text is not None:
                reason = feed(self.text, reason.encode("utf-8"), "ws-server").decode("utf-8", "replace")
                return Frame(Opcode.CLOSE, close_payload(code, reason))
            return frame
        if self.binary_refusal is not None and frame.payload:
            return Frame(frame.opcode, b"")
        return frame

    def finish(self) -> None:
        for filt in (self.text, self.binary):
            if filt is not None:
                finish(filt, "ws-server")


def _close_reason(refusal: str) -> str:
    """A close reason (at most 123 bytes) from a stage's refusal message."""
    text = "gw: binary messages cannot be masked; the WebSocket was closed. Use text messages"
    if "pass_through_types" in refusal:
        text += " (or ask for pass_through_types)"
    return text


class StageMessageObserver:
    """A :class:`~gw_httpproxy.tunnel.MessageObserver` feeding each message the agent sends to the pipeline's
    ``ws-client`` filters (recording); a filter that fails closes the WebSocket."""

    def __init__(self, text: StreamFilter | None, binary: StreamFilter | None) -> None:
        self.text = text
        self.binary = binary

    @classmethod
    def open(cls, run: CommandRun) -> StageMessageObserver | None:
        text, binary, refusal = _open_both(run, Channel.WS_CLIENT)
        if refusal is not None:
            raise WebSocketError(INTERNAL_ERROR, "gw cannot record this WebSocket")
        if text is None and binary is None:
            return None
        return cls(text, binary)

    def message(self, message: Message) -> None:
        filt = self.text if message.opcode is Opcode.TEXT else self.binary
        if filt is not None:
            feed(filt, message.payload, "ws-client")

    def finish(self) -> None:
        for filt in (self.text, self.binary):
            if filt is not None:
                finish(filt, "ws-client")
