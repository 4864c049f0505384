"""The sans-IO MySQL packet codec (h11 is the model): bytes in, packets out; payloads in, bytes out.

Every MySQL packet is a 3-byte little-endian payload length, a 1-byte sequence id and the payload.  A payload
of 16 MB - 1 bytes or more is split: each fragment but the last is exactly 0xFFFFFF bytes long, and a payload
whose length is a multiple of 0xFFFFFF ends with an empty fragment.  Sequence ids count up by one per
fragment within one command's conversation (modulo 256) and restart at 0 with each new command.

:class:`PacketCodec` plays one side of one connection.  :meth:`PacketCodec.next_packet` returns one logical
packet (fragments reassembled) with the exact bytes that carried it, so a proxy can forward a packet untouched
or re-frame a changed payload.  The codec never touches a socket: the same code serves the proxy, the tests
and the fuzzer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from . import errors as E
from .errors import PacketTooLarge, RemoteProtocolError

MAX_FRAGMENT = 0xFFFFFF
HEADER = 4
#: MySQL's own ceiling on ``max_allowed_packet``.
MYSQL_MAX_PACKET = 1 << 30
DEFAULT_MAX_PACKET = 64 * 1024 * 1024


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before the next packet.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The peer closed the connection cleanly between packets.
CLOSED: Final = _Sentinel("CLOSED")


@dataclass(frozen=True, slots=True)
class Packet:
    """One logical packet: ``payload`` reassembled from ``fragments`` physical packets whose sequence ids run
    from ``seq`` to ``last_seq``; ``raw`` is exactly what arrived on the wire."""

    seq: int
    payload: bytes
    raw: bytes
    fragments: int = 1

    @property
    def last_seq(self) -> int:
        return (self.seq + self.fragments - 1) & 0xFF

    @property
    def next_seq(self) -> int:
        return (self.seq + self.fragments) & 0xFF

    @property
    def first(self) -> int:
        """The payload's first byte (-1 for an empty payload)."""
        return self.payload[0] if self.payload else -1


def encode_packet(payload: bytes | bytearray | memoryview, seq: int) -> bytes:
    """Frame ``payload`` starting at sequence id ``seq`` (split into 16 MB fragments when needed)."""
    n = len(payload)
    if n < MAX_FRAGMENT:
        return bytes((n & 0xFF, (n >> 8) & 0xFF, n >> 16, seq & 0xFF)) + bytes(payload)
    out = []
    pos = 0
    while True:
        chunk = payload[pos:pos + MAX_FRAGMENT]
        size = len(chunk)
        out.append(bytes((size & 0xFF, (size >> 8) & 0xFF, size >> 16, seq & 0xFF)))
        out.append(bytes(chunk))
        seq += 1
        pos += size
        if size < MAX_FRAGMENT:
            break
    return b"".join(out)


def fragments_of(length: int) -> int:
    """How many physical packets a payload of ``length`` bytes takes."""
    return length // MAX_FRAGMENT + 1


def with_seq(packet: Packet, seq: int) -> bytes:
    """``packet``'s bytes renumbered to start at ``seq`` (the payload is untouched)."""
    if packet.seq == seq:
        return packet.raw
    if packet.fragments == 1:
        return packet.raw[:3] + bytes((seq & 0xFF,)) + packet.raw[4:]
    return encode_packet(packet.payload, seq)


class PacketCodec:
    """One side of one MySQL connection, without I/O.

    ``max_packet_size`` bounds a logical packet's payload; the check happens as soon as a fragment header
    says the packet will be larger, before the bytes are buffered.  ``expected_seq``, when set, is the
    sequence id the next packet must start with (the protocol's own integrity check).
    """

    def __init__(self, *, max_packet_size: int = DEFAULT_MAX_PACKET, peer: str = "client") -> None:
        if not 4 <= max_packet_size <= MYSQL_MAX_PACKET:
            raise ValueError(f"max_packet_size must be between 4 and {MYSQL_MAX_PACKET} bytes")
        self.max_packet_size = max_packet_size
        self.peer = peer
        self.expected_seq: int | None = None
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    # -- input -----------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    @property
    def eof(self) -> bool:
        return self._eof

    def take_buffered(self) -> bytes:
        """Remove and return every unread byte (for handing the connection over to TLS)."""
        out = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return out

    # -- packets ---------------------------------------------------------------------------------------------
    def _complete(self) -> tuple[int, int] | None:
        """(fragments, total payload length) of the logical packet at the read position, if it has fully
        arrived; raises on lying lengths and broken fragment sequences."""
        buf, pos = self._buf, self._pos
        total = 0
        fragments = 0
        first_seq = -1
        while True:
            if len(buf) - pos < HEADER:
                return None
            size = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16)
            seq = buf[pos + 3]
            if fragments == 0:
                first_seq = seq
                if self.expected_seq is not None and seq != self.expected_seq:
                    raise RemoteProtocolError(
                        f"packets out of order: the {self.peer} sent sequence id {seq}, expected "
                        f"{self.expected_seq}", code=E.NET_PACKETS_OUT_OF_ORDER)
            elif seq != (first_seq + fragments) & 0xFF:
                raise RemoteProtocolError(
                    f"packets out of order: a continuation of a large packet from the {self.peer} has sequence "
                    f"id {seq}, expected {(first_seq + fragments) & 0xFF}", code=E.NET_PACKETS_OUT_OF_ORDER)
            total += size
            fragments += 1
            if total > self.max_packet_size:
                raise PacketTooLarge(
                    f"a packet of at least {total} bytes exceeds this listener's max_packet_size of "
                    f"{self.max_packet_size} bytes; send a smaller statement (split large inserts) or ask the "
                    "gateway operator to raise max_packet_size")
            pos += HEADER + size
            if len(buf) < pos:
                return None
            if size < MAX_FRAGMENT:
                return fragments, total

    def next_packet(self) -> Packet | _Sentinel:
        """The next logical packet, :data:`NEED_DATA`, or :data:`CLOSED` once the peer closed between
        packets.  Raises :class:`RemoteProtocolError` for anything that is not valid framing."""
        found = self._complete()
        if found is None:
            if self._eof:
                if self.buffered:
                    raise RemoteProtocolError(f"the {self.peer} closed the connection in the middle of a packet",
                                              code=E.NET_READ_ERROR)
                return CLOSED
            return NEED_DATA
        fragments, total = found
        start = self._pos
        seq = self._buf[start + 3]
        if fragments == 1:
            end = start + HEADER + total
            raw = bytes(self._buf[start:end])
            payload = raw[HEADER:]
        else:
            parts = []
            pos = start
            for _ in range(fragments):
                size = self._buf[pos] | (self._buf[pos + 1] << 8) | (self._buf[pos + 2] << 16)
                parts.append(bytes(self._buf[pos + HEADER:pos + HEADER + size]))
                pos += HEADER + size
            end = pos
            raw = bytes(self._buf[start:end])
            payload = b"".join(parts)
        self._pos = end
        packet = Packet(seq, payload, raw, fragments)
        if self.expected_seq is not None:
            self.expected_seq = packet.next_seq
        return packet


__all__ = ["CLOSED", "NEED_DATA", "Packet", "PacketCodec", "encode_packet", "with_seq"]
