"""WebSocket framing (RFC 6455 section 5), sans-IO: enough to read, rewrite and re-frame messages in a relay.

gw does not terminate WebSockets; it relays them after the upstream's ``101``.  To mask what the upstream
sends, it must read messages: :class:`FrameReader` turns bytes into :class:`Frame` values, and
:class:`MessageAssembler` joins fragmented data frames into one :class:`Message` (bounded), letting control
frames through in between.  :func:`encode_frame` writes a frame (unmasked from the server side, masked with a
fresh key from the client side).

The Kubernetes plugin reads ``v5.channel.k8s.io`` exec streams with the same classes: each binary message
starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize, 255 close), which
:func:`channel_split` separates.

Everything gw cannot read with certainty is an error that closes the WebSocket (:class:`WebSocketError`
carries the close code): reserved bits set (no extension is ever negotiated through gw), reserved opcodes,
unmasked client frames, fragmented or oversized control frames, text that is not UTF-8, a message over the
bound.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

#: Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
#: Longest close reason (a control frame carries at most 125 bytes, 2 of them the code).
MAX_REASON = 123


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


_OPCODES = {int(o): o for o in Opcode}


class WebSocketError(Exception):
    """The stream cannot be relayed any further; ``code`` and ``reason`` go into the close frame sent to the
    agent (the reason is written for the agent: what happened and what to do)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    opcode: Opcode
    payload: bytes
    fin: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message (``TEXT`` payloads are UTF-8)."""

    opcode: Opcode
    payload: bytes


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (section 5.3), in C speed via big integers."""
    n = len(payload)
    if not n:
        return b""
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")


def encode_frame(opcode: Opcode, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    """One frame; ``masked`` for frames a client sends (a fresh random key)."""
    head = bytearray([(0x80 if fin else 0) | int(opcode)])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if masked:
        key = os.urandom(4)
        return bytes(head) + key + unmask(payload, key)
    return bytes(head) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame: the code, then the reason (cut to fit, on a character boundary)."""
    data = reason.encode("utf-8")[:MAX_REASON]
    return code.to_bytes(2, "big") + data.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """``(code, reason)`` of a close frame; raises :class:`WebSocketError` when it is malformed."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise WebSocketError(PROTOCOL_ERROR, "malformed close frame")
    code = int.from_bytes(payload[:2], "big")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(INVALID_DATA, "a close reason that is not UTF-8") from None
    return code, reason


class FrameReader:
    """Parses the frames one side sends.  ``from_client``: frames must be masked (and are unmasked here);
    otherwise they must not be.  ``max_payload`` bounds what is buffered for one frame."""

    __slots__ = ("_buf", "_from_client", "_max_payload")

    def __init__(self, *, from_client: bool, max_payload: int) -> None:
        self._buf = bytearray()
        self._from_client = from_client
        self._max_payload = max_payload

    def receive_data(self, data: bytes | bytearray) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive.  Raises :class:`WebSocketError`."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise WebSocketError(PROTOCOL_ERROR, "a frame uses reserved bits (a WebSocket extension gw did not "
                                 "negotiate)")
        opcode = _OPCODES.get(b0 & 0x0F)
        if opcode is None:
            raise WebSocketError(PROTOCOL_ERROR, f"a frame has the reserved opcode {b0 & 0x0F:#x}")
        fin = bool(b0 & 0x80)
        masked = bool(b1 & 0x80)
        if masked != self._from_client:
            raise WebSocketError(PROTOCOL_ERROR, "a client frame is not masked" if self._from_client
                                 else "a server frame is masked")
        length = b1 & 0x7F
        at = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = int.from_bytes(buf[2:4], "big")
            at = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = int.from_bytes(buf[2:10], "big")
            if length >> 63:
                raise WebSocketError(PROTOCOL_ERROR, "a frame length has its top bit set")
            at = 10
        if opcode.is_control and (length > 125 or not fin):
            raise WebSocketError(PROTOCOL_ERROR, "a control frame is fragmented or longer than 125 bytes")
        if length > self._max_payload:
            raise WebSocketError(MESSAGE_TOO_BIG, f"a WebSocket frame of {length} bytes is larger than gw's limit "
                                 f"of {self._max_payload} (max_websocket_message); send smaller messages")
        key = b""
        if masked:
            key = bytes(buf[at:at + 4])
            at += 4
        end = at + length
        if len(buf) < end:
            return None
        payload = bytes(buf[at:end])
        del buf[:end]
        if masked:
            payload = unmask(payload, key)
        return Frame(opcode, payload, fin)


class MessageAssembler:
    """Joins data frames into messages (bounded by ``max_message``); control frames are returned as they
    come.  :meth:`add` returns a :class:`Message`, a control :class:`Frame`, or None (a fragment)."""

    __slots__ = ("_max", "_opcode", "_parts", "_size")

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._opcode: Opcode | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, frame: Frame) -> Message | Frame | None:
        if frame.opcode.is_control:
            return frame
        if frame.opcode is Opcode.CONTINUATION:
            if self._opcode is None:
                raise WebSocketError(PROTOCOL_ERROR, "a continuation frame without a message to continue")
        elif self._opcode is not None:
            raise WebSocketError(PROTOCOL_ERROR, "a new message began before the previous one ended")
        else:
            if frame.fin:  # the common case: an unfragmented message
                return self._message(frame.opcode, frame.payload)
            self._opcode = frame.opcode
        self._size += len(frame.payload)
        if self._size > self._max:
            raise WebSocketError(MESSAGE_TOO_BIG, f"a WebSocket message is larger than gw's limit of {self._max} "
                                 "bytes (max_websocket_message); send smaller messages")
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        opcode = self._opcode
        assert opcode is not None
        payload = b"".join(self._parts)
        self._opcode, self._parts, self._size = None, [], 0
        return self._message(opcode, payload)

    @staticmethod
    def _message(opcode: Opcode, payload: bytes) -> Message:
        if opcode is Opcode.TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError(INVALID_DATA, "a text message that is not UTF-8") from None
        return Message(opcode, payload)


def channel_split(payload: bytes) -> tuple[int, bytes]:
    """``(channel, data)`` of a Kubernetes channel-protocol message (``v4``/``v5.channel.k8s.io``)."""
    if not payload:
        raise WebSocketError(PROTOCOL_ERROR, "a channel message without its channel byte")
    return payload[0], payload[1:]
