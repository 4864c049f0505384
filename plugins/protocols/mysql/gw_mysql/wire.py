"""Field encodings of the MySQL protocol: fixed-width little-endian integers, length-encoded integers and
strings, NUL-terminated strings.  :class:`Reader` raises :class:`RemoteProtocolError` on a payload that
ends early, so every decoder built on it rejects truncated packets cleanly."""

from __future__ import annotations

import struct

from .errors import RemoteProtocolError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: A length-encoded integer's first byte for NULL in a text row.
NULL_MARKER = 0xFB


class Reader:
    """Reads fields from one packet payload."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes | memoryview, what: str = "packet") -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _short(self) -> RemoteProtocolError:
        return RemoteProtocolError(f"malformed {self.what}: it ends in the middle of a field")

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise self._short()
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise self._short()
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def u24(self) -> int:
        return self.u16() | (self.u8() << 16)

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self._short()
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def u64(self) -> int:
        if self.pos + 8 > len(self.data):
            raise self._short()
        (v,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(v)

    def lenenc(self) -> int | None:
        """A length-encoded integer; None for the NULL marker 0xFB."""
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFB:
            return None
        if first == 0xFC:
            return self.u16()
        if first == 0xFD:
            return self.u24()
        if first == 0xFE:
            return self.u64()
        raise RemoteProtocolError(f"malformed {self.what}: 0xff is not a length-encoded integer")

    def lenenc_int(self) -> int:
        v = self.lenenc()
        if v is None:
            raise RemoteProtocolError(f"malformed {self.what}: NULL where a number was expected")
        return v

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._short()
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def lenenc_bytes(self) -> bytes | None:
        n = self.lenenc()
        return None if n is None else self.take(n)

    def lenenc_str(self) -> str:
        v = self.lenenc_bytes()
        return "" if v is None else v.decode("utf-8", "surrogateescape")

    def nul_bytes(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end == -1:
            raise RemoteProtocolError(f"malformed {self.what}: a string is not NUL-terminated")
        v = self.data[self.pos:end]
        self.pos = end + 1
        return v

    def nul_str(self) -> str:
        return self.nul_bytes().decode("utf-8", "surrogateescape")

    def rest(self) -> bytes:
        v = self.data[self.pos:]
        self.pos = len(self.data)
        return v

    def end(self) -> None:
        if self.pos != len(self.data):
            raise RemoteProtocolError(f"malformed {self.what}: {len(self.data) - self.pos} unexpected trailing "
                                      "bytes")


def u16(v: int) -> bytes:
    return _U16.pack(v)


def u24(v: int) -> bytes:
    return _U32.pack(v)[:3]


def u32(v: int) -> bytes:
    return _U32.pack(v)


def u64(v: int) -> bytes:
    return _U64.pack(v)


def lenenc(v: int | None) -> bytes:
    if v is None:
        return b"\xfb"
    if v < 0:
        raise ValueError("a length-encoded integer cannot be negative")
    if v < 0xFB:
        return bytes((v,))
    if v < 1 << 16:
        return b"\xfc" + _U16.pack(v)
    if v < 1 << 24:
        return b"\xfd" + _U32.pack(v)[:3]
    return b"\xfe" + _U64.pack(v)


def lenenc_bytes(v: bytes | None) -> bytes:
    if v is None:
        return b"\xfb"
    return lenenc(len(v)) + v


def lenenc_str(v: str) -> bytes:
    return lenenc_bytes(v.encode("utf-8", "surrogateescape"))


def nul_str(v: str | bytes) -> bytes:
    b = v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise ValueError("a NUL-terminated string cannot contain NUL")
    return b + b"\0"
