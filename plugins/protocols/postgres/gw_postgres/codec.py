"""The sans-IO PostgreSQL wire codec (h11 is the model): bytes in, events out; events in, bytes out.

A :class:`WireCodec` plays one side of one connection.  ``Role.SERVER`` is gw facing a client: it parses what
a frontend sends (start-up packets, then typed messages) and encodes backend messages.  ``Role.CLIENT`` is gw
facing the upstream server: it parses backend messages and encodes frontend ones.

Two ways to read:

* :meth:`WireCodec.next_event` decodes the next message into a frozen event (or returns :data:`NEED_DATA` /
  :data:`CLOSED`);
* :meth:`WireCodec.next_frame` only finds the next message's boundaries (type byte, start, end inside
  :attr:`WireCodec.buffer`) so a proxy can forward bytes untouched and decode only the messages it needs.

The codec never touches a socket, so the same code serves the proxy, the tests and the fuzzer.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from .errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from .messages import (
    BACKEND_DECODERS,
    BACKEND_TYPES,
    CANCEL_REQUEST_CODE,
    FRONTEND_DECODERS,
    FRONTEND_TYPES,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    BackendMessage,
    CancelRequest,
    FrontendMessage,
    FrontendType,
    GSSENCRequest,
    Message,
    PasswordMessage,
    Reader,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
)

_I32 = struct.Struct("!i")
_I32I32 = struct.Struct("!ii")

#: PostgreSQL refuses start-up packets longer than this (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_PACKET = 10000
#: PostgreSQL's own ceiling on any message (MaxAllocSize - 1).
PG_MAX_MESSAGE = 0x3FFFFFFF
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

#: Pseudo type byte of untyped start-up packets in :meth:`WireCodec.next_frame`.
STARTUP_FRAME = 0
#: Pseudo type byte of the one-byte answer to SSLRequest/GSSENCRequest.
SSL_RESPONSE_FRAME = -1


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before the next event.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The peer closed the connection cleanly between messages.
CLOSED: Final = _Sentinel("CLOSED")


class Role(enum.Enum):
    SERVER = "server"  # gw as the server a client talks to
    CLIENT = "client"  # gw as the client of an upstream server


class PasswordKind(enum.Enum):
    """How to read the next ``p`` message: it depends on which authentication request was sent."""

    PASSWORD = "password"
    SASL_INITIAL = "sasl_initial"
    SASL = "sasl"


class WireCodec:
    """One side of one PostgreSQL connection, without I/O."""

    def __init__(self, role: Role, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if not 5 <= max_message_size <= PG_MAX_MESSAGE:
            raise ValueError(f"max_message_size must be between 5 and {PG_MAX_MESSAGE} bytes")
        self.role = role
        self.max_message_size = max_message_size
        #: Server role: whether the next packet is an untyped start-up packet.
        self.in_startup = role is Role.SERVER
        #: Client role: whether the next byte answers an SSLRequest/GSSENCRequest.
        self.awaiting_ssl_response = False
        self.password_kind = PasswordKind.PASSWORD
        self._types = FRONTEND_TYPES if role is Role.SERVER else BACKEND_TYPES
        self._decoders = FRONTEND_DECODERS if role is Role.SERVER else BACKEND_DECODERS
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._eof = False
        self._closed_by_cancel = False

    # -- input -----------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf = bytes(data)
            self._pos = 0
        else:
            self._chunks.append(bytes(data))
            self._chunks_len += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos + self._chunks_len

    @property
    def buffer(self) -> bytes:
        """The buffer :meth:`next_frame` offsets point into; valid until the next :meth:`receive_data`."""
        return self._buf

    def _gather(self, n: int) -> bool:
        """Make ``n`` bytes contiguous from the read position, if that many have arrived."""
        if len(self._buf) - self._pos + self._chunks_len < n:
            return False
        self._buf = b"".join([self._buf[self._pos:], *self._chunks])
        self._pos = 0
        self._chunks = []
        self._chunks_len = 0
        return True

    def take_buffered(self) -> bytes:
        """Remove and return every unread byte (for handing a connection over to TLS or to raw relay)."""
        self._gather(0)
        out = self._buf[self._pos:]
        self._buf, self._pos = b"", 0
        return out

    # -- framing ---------------------------------------------------------------------------------------------
    def next_frame(self) -> tuple[int, int, int] | None:
        """Boundaries of the next complete message: ``(type, start, end)`` in :attr:`buffer`, where the
        body is ``buffer[start + 5:end]`` for typed messages and ``buffer[start + 4:end]`` for start-up
        packets (type :data:`STARTUP_FRAME`).  None when the message is not complete yet."""
        if self.in_startup:
            return self._startup_frame()
        if self.awaiting_ssl_response:
            return self._ssl_response_frame()
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            if not self._gather(5):
                return None
            buf, pos = self._buf, 0
        t = buf[pos]
        if t not in self._types:
            raise RemoteProtocolError(self._unknown_type(t))
        (length,) = _I32.unpack_from(buf, pos + 1)
        if length < 4:
            raise RemoteProtocolError(f"message length {length} is invalid (a length counts itself, so it "
                                      "is at least 4)")
        if length > self.max_message_size:
            raise self._too_large(length)
        end = pos + 1 + length
        if end > len(buf):
            if not self._gather(1 + length):
                return None
            buf, pos, end = self._buf, 0, 1 + length
        self._pos = end
        return t, pos, end

    def skip_run(self, t: int) -> int:
        """After :meth:`next_frame` returned a message of type ``t``: pass over the complete messages of the
        same type that follow it in :attr:`buffer` (the rows of a result that is relayed untouched), and return
        where the last one ends.  Stops short of anything :meth:`next_frame` must judge (another type, an
        invalid or incomplete message), which it then reports as usual."""
        buf, pos = self._buf, self._pos
        size = len(buf)
        limit = self.max_message_size
        unpack = _I32.unpack_from
        while pos + 5 <= size and buf[pos] == t:
            (length,) = unpack(buf, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > limit or end > size:
                break
            pos = end
        self._pos = pos
        return pos

    def _unknown_type(self, t: int) -> str:
        shown = repr(chr(t)) if 32 <= t < 127 else f"0x{t:02x}"
        side = "client" if self.role is Role.SERVER else "server"
        return f"unknown message type {shown} from the {side}; this is not PostgreSQL protocol 3.0"

    def _too_large(self, length: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"message of {length} bytes exceeds this listener's max_message_size of {self.max_message_size} "
            "bytes",
            hint="send a smaller statement (e.g. batch large inserts or use COPY), or ask the gateway "
                 "operator to raise max_message_size")

    def _startup_frame(self) -> tuple[int, int, int] | None:
        if len(self._buf) - self._pos < 4 and not self._gather(4):
            return None
        (length,) = _I32.unpack_from(self._buf, self._pos)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise RemoteProtocolError(
                f"invalid start-up packet length {length}; is this a PostgreSQL client?",
                hint="connect with a PostgreSQL client (psql, libpq, psycopg, asyncpg, JDBC)")
        if len(self._buf) - self._pos < length and not self._gather(length):
            return None
        start = self._pos
        self._pos = start + length
        return STARTUP_FRAME, start, start + length

    def _ssl_response_frame(self) -> tuple[int, int, int] | None:
        if len(self._buf) - self._pos < 1 and not self._gather(1):
            return None
        start = self._pos
        self._pos = start + 1
        self.awaiting_ssl_response = False
        return SSL_RESPONSE_FRAME, start, start + 1

    # -- events ----------------------------------------------------------------------------------------------
    def next_event(self) -> Message | _Sentinel:
        """The next message, :data:`NEED_DATA`, or :data:`CLOSED` once the peer closed between messages.
        Raises :class:`RemoteProtocolError` for anything that is not valid protocol."""
        if self._closed_by_cancel and self.buffered:
            raise RemoteProtocolError("unexpected data after a CancelRequest")
        f = self.next_frame()
        if f is None:
            if self._eof:
                if self.buffered:
                    raise RemoteProtocolError("the connection closed in the middle of a message")
                return CLOSED
            return NEED_DATA
        return self.decode_frame(*f)

    def decode_frame(self, t: int, start: int, end: int) -> Message:
        """Decode a frame returned by :meth:`next_frame` (call before the next :meth:`receive_data`)."""
        buf = self._buf
        if t == STARTUP_FRAME:
            return self._decode_startup(memoryview(buf)[start + 4:end])
        if t == SSL_RESPONSE_FRAME:
            b = buf[start:end]
            if b not in (b"S", b"N", b"G"):
                raise RemoteProtocolError(f"the server answered the encryption request with {b!r}, not "
                                          "S or N")
            return SSLResponse(b != b"N")
        body = memoryview(buf)[start + 5:end]
        if t == FrontendType.PASSWORD and self.role is Role.SERVER:
            return self._decode_password(body)
        decoded: Message = self._decoders[t](body)  # type: ignore[index, assignment]
        return decoded

    def _decode_password(self, body: memoryview) -> Message:
        kind = self.password_kind
        if kind is PasswordKind.SASL_INITIAL:
            return SASLInitialResponse.decode(body)
        if kind is PasswordKind.SASL:
            return SASLResponse.decode(body)
        return PasswordMessage.decode(body)

    def _decode_startup(self, body: memoryview) -> Message:
        r = Reader(body, "start-up")
        code = r.int32()
        if code == SSL_REQUEST_CODE:
            r.end()
            return SSLRequest()
        if code == GSSENC_REQUEST_CODE:
            r.end()
            return GSSENCRequest()
        if code == CANCEL_REQUEST_CODE:
            pid = r.int32()
            key = r.rest()
            if not 4 <= len(key) <= 256:
                raise RemoteProtocolError("malformed CancelRequest: the key is not 4 to 256 bytes")
            self.in_startup = False
            self._closed_by_cancel = True
            return CancelRequest(pid, key)
        major = code >> 16
        if major != 3:
            raise RemoteProtocolError(
                f"unsupported frontend protocol {major}.{code & 0xFFFF}: gw speaks protocol 3",
                sqlstate="0A000", hint="use a client from this century (libpq 7.4 or later)")
        msg = StartupMessage.decode_params(code, r)
        self.in_startup = False
        return msg

    # -- output ----------------------------------------------------------------------------------------------
    def send(self, event: Message) -> bytes:
        """The bytes of ``event``; raises :class:`LocalProtocolError` when this side may not send it."""
        if self.role is Role.SERVER:
            if isinstance(event, FrontendMessage):
                raise LocalProtocolError(f"a server does not send {type(event).__name__}")
        elif isinstance(event, BackendMessage):
            raise LocalProtocolError(f"a client does not send {type(event).__name__}")
        if isinstance(event, (SSLRequest, GSSENCRequest)):
            self.awaiting_ssl_response = True
        return event.encode()


__all__ = ["CLOSED", "NEED_DATA", "PROTOCOL_3_0", "PasswordKind", "Role", "WireCodec"]
