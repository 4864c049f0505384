"""Payloads of the MySQL protocol that gw reads or writes: the handshake, authentication exchanges, OK / ERR /
EOF, column definitions, prepared-statement answers, and text and binary rows.

Decoders take a payload (the codec has removed packet headers) and raise :class:`RemoteProtocolError` on
anything malformed; encoders return a payload.  Values are frozen, slotted dataclasses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .constants import Capability as C
from .constants import FieldType, ServerStatus
from .errors import Code, RemoteProtocolError
from .wire import Reader, lenenc, lenenc_bytes, lenenc_str, nul_str, u16, u32

OK_HEADER = 0x00
EOF_HEADER = 0xFE
ERR_HEADER = 0xFF
LOCAL_INFILE_HEADER = 0xFB
AUTH_MORE_DATA = 0x01
AUTH_SWITCH = 0xFE


# ---------------------------------------------------------------------------------------------------------------
# Handshake
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handshake:
    """The server's greeting (HandshakeV10)."""

    server_version: str
    connection_id: int
    scramble: bytes
    capabilities: int
    collation: int
    status: int
    auth_plugin: str

    def encode(self) -> bytes:
        caps = self.capabilities
        data = self.scramble
        out = bytes((10,)) + nul_str(self.server_version) + u32(self.connection_id) + data[:8] + b"\0"
        out += u16(caps & 0xFFFF) + bytes((self.collation,)) + u16(self.status) + u16((caps >> 16) & 0xFFFF)
        out += bytes((len(data) + 1 if caps & C.PLUGIN_AUTH else 0,)) + b"\0" * 10
        if caps & C.SECURE_CONNECTION:
            out += data[8:] + b"\0"
        if caps & C.PLUGIN_AUTH:
            out += nul_str(self.auth_plugin)
        return out

    @classmethod
    def decode(cls, payload: bytes) -> Handshake:
        if payload[:1] == b"\xff":
            raise RemoteProtocolError(f"the server refused the connection: {decode_error(payload).message}")
        r = Reader(payload, "server greeting")
        version = r.u8()
        if version != 10:
            raise RemoteProtocolError(f"unsupported server protocol version {version}; gw speaks protocol 10")
        server_version = r.nul_str()
        connection_id = r.u32()
        part1 = r.take(8)
        r.u8()
        caps = r.u16()
        collation = status = 0
        part2 = b""
        plugin = ""
        if r.remaining:
            collation = r.u8()
            status = r.u16()
            caps |= r.u16() << 16
            data_len = r.u8()
            r.take(10)
            if caps & C.SECURE_CONNECTION:
                n = max(13, data_len - 8)
                part2 = r.take(min(n, r.remaining))
                if part2.endswith(b"\0"):
                    part2 = part2[:-1]
            if caps & C.PLUGIN_AUTH:
                rest = r.rest()
                plugin = rest.split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(server_version, connection_id, part1 + part2, caps, collation, status,
                   plugin or "mysql_native_password")


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """The client's answer to the greeting (HandshakeResponse41), or an SSLRequest when ``ssl_request``."""

    capabilities: int
    max_packet: int
    collation: int
    user: str = ""
    auth_response: bytes = b""
    database: str | None = None
    auth_plugin: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    ssl_request: bool = False

    def encode(self) -> bytes:
        caps = self.capabilities
        out = u32(caps) + u32(self.max_packet) + bytes((self.collation,)) + b"\0" * 23
        if self.ssl_request:
            return out
        out += nul_str(self.user)
        if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out += lenenc_bytes(self.auth_response)
        elif caps & C.SECURE_CONNECTION:
            if len(self.auth_response) > 255:
                raise ValueError("an authentication response longer than 255 bytes needs "
                                 "PLUGIN_AUTH_LENENC_CLIENT_DATA")
            out += bytes((len(self.auth_response),)) + self.auth_response
        else:
            out += self.auth_response + b"\0"
        if caps & C.CONNECT_WITH_DB:
            out += nul_str(self.database or "")
        if caps & C.PLUGIN_AUTH:
            out += nul_str(self.auth_plugin)
        if caps & C.CONNECT_ATTRS:
            attrs = b"".join(lenenc_str(k) + lenenc_str(v) for k, v in self.attributes)
            out += lenenc(len(attrs)) + attrs
        return out

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse:
        r = Reader(payload, "handshake response")
        if len(payload) < 4:
            raise RemoteProtocolError("malformed handshake response: too short")
        caps = r.u32()
        if not caps & C.PROTOCOL_41:
            raise RemoteProtocolError("this client speaks the pre-4.1 protocol, which gw does not support; use a "
                                      "MySQL or MariaDB client from this century")
        max_packet = r.u32()
        collation = r.u8()
        r.take(23)
        if not r.remaining:
            return cls(caps, max_packet, collation, ssl_request=True)
        user = r.nul_str()
        if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth = r.lenenc_bytes() or b""
        elif caps & C.SECURE_CONNECTION:
            auth = r.take(r.u8())
        else:
            auth = r.nul_bytes()
        database = None
        if caps & C.CONNECT_WITH_DB and r.remaining:
            database = r.nul_str()
        plugin = ""
        if caps & C.PLUGIN_AUTH and r.remaining:
            plugin = r.nul_str()
        attrs: list[tuple[str, str]] = []
        if caps & C.CONNECT_ATTRS and r.remaining:
            block = Reader(r.take(r.lenenc_int()), "connection attributes")
            while block.remaining:
                attrs.append((block.lenenc_str(), block.lenenc_str()))
        return cls(caps, max_packet, collation, user, auth, database, plugin, tuple(attrs))


def auth_switch(plugin: str, data: bytes) -> bytes:
    """AuthSwitchRequest: ask the client to authenticate with ``plugin``."""
    return bytes((AUTH_SWITCH,)) + nul_str(plugin) + data


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    plugin: str
    data: bytes

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        r = Reader(payload, "authentication switch request")
        r.u8()
        if not r.remaining:  # the pre-4.1 "old password" switch
            return cls("mysql_old_password", b"")
        plugin = r.nul_str()
        data = r.rest()
        return cls(plugin, data[:-1] if data.endswith(b"\0") else data)


# ---------------------------------------------------------------------------------------------------------------
# OK, ERR, EOF
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OK:
    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = ServerStatus.AUTOCOMMIT
    warnings: int = 0
    info: bytes = b""
    session_state: bytes | None = None
    header: int = OK_HEADER

    def encode(self, capabilities: int = C.PROTOCOL_41) -> bytes:
        out = bytes((self.header,)) + lenenc(self.affected_rows) + lenenc(self.last_insert_id)
        out += u16(self.status) + u16(self.warnings)
        if capabilities & C.SESSION_TRACK:
            if self.info or self.session_state is not None:
                out += lenenc_bytes(self.info)
            if self.session_state is not None:
                out += lenenc_bytes(self.session_state)
        else:
            out += self.info
        return out

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = C.PROTOCOL_41) -> OK:
        r = Reader(payload, "OK packet")
        header = r.u8()
        affected = r.lenenc_int()
        insert_id = r.lenenc_int()
        status = r.u16() if r.remaining >= 2 else 0
        warnings = r.u16() if r.remaining >= 2 else 0
        info = b""
        state = None
        if capabilities & C.SESSION_TRACK:
            if r.remaining:
                info = r.lenenc_bytes() or b""
            if status & ServerStatus.SESSION_STATE_CHANGED and r.remaining:
                state = r.lenenc_bytes()
        else:
            info = r.rest()
        return cls(affected, insert_id, status, warnings, info, state, header)


@dataclass(frozen=True, slots=True)
class Err:
    number: int
    sqlstate: str
    message: str

    def encode(self) -> bytes:
        state = (self.sqlstate + "00000")[:5]
        return b"\xff" + u16(self.number) + b"#" + state.encode("ascii") + self.message.encode(
            "utf-8", "surrogateescape")

    @classmethod
    def of(cls, code: Code, message: str) -> Err:
        return cls(code.number, code.sqlstate, message)


def decode_error(payload: bytes) -> Err:
    r = Reader(payload, "ERR packet")
    r.u8()
    number = r.u16()
    rest = r.rest()
    if rest[:1] == b"#" and len(rest) >= 6:
        return Err(number, rest[1:6].decode("ascii", "replace"), rest[6:].decode("utf-8", "surrogateescape"))
    return Err(number, "HY000", rest.decode("utf-8", "surrogateescape"))


def is_eof(payload: bytes) -> bool:
    """A classic EOF packet (0xFE, fewer than 9 bytes)."""
    return len(payload) < 9 and payload[:1] == b"\xfe"


def is_terminator(payload: bytes, deprecate_eof: bool) -> bool:
    """Whether a packet read where a row may come ends the result set: an EOF packet, or with
    CLIENT_DEPRECATE_EOF an OK packet with the 0xFE header (rows beginning with 0xFE are 16 MB or more)."""
    if not payload or payload[0] != EOF_HEADER:
        return False
    return len(payload) < 0xFFFFFF if deprecate_eof else len(payload) < 9


def _lenenc_skip(payload: bytes, pos: int) -> int:
    first = payload[pos]
    return pos + (1 if first < 0xFB else {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(first, 1))


def eof_status(payload: bytes, deprecate_eof: bool, capabilities: int = C.PROTOCOL_41) -> tuple[int, int]:
    """(status flags, warnings) of a result-set terminator (hot path: no full decode)."""
    if deprecate_eof and len(payload) >= 7:
        try:
            pos = _lenenc_skip(payload, _lenenc_skip(payload, 1))
            if pos + 4 <= len(payload):
                return payload[pos] | (payload[pos + 1] << 8), payload[pos + 2] | (payload[pos + 3] << 8)
        except IndexError:
            pass
        raise RemoteProtocolError("malformed OK packet ending a result set")
    r = Reader(payload, "EOF packet")
    r.u8()
    if r.remaining >= 4:
        warnings = r.u16()
        return r.u16(), warnings
    return 0, 0


def eof_packet(status: int, warnings: int = 0) -> bytes:
    return b"\xfe" + u16(warnings) + u16(status)


# ---------------------------------------------------------------------------------------------------------------
# Result sets
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnDefinition:
    """ColumnDefinition41: where a result column comes from (``org_table``, ``org_name``) and its type."""

    schema: str
    table: str
    org_table: str
    name: str
    org_name: str
    collation: int
    length: int
    type: int
    flags: int
    decimals: int
    catalog: str = "def"
    default: bytes | None = None

    @classmethod
    def decode(cls, payload: bytes) -> ColumnDefinition:
        r = Reader(payload, "column definition")
        catalog = r.lenenc_str()
        schema = r.lenenc_str()
        table = r.lenenc_str()
        org_table = r.lenenc_str()
        name = r.lenenc_str()
        org_name = r.lenenc_str()
        fixed = r.lenenc_int()
        if fixed < 10:
            raise RemoteProtocolError("malformed column definition: fixed-length fields too short")
        collation = r.u16()
        length = r.u32()
        type_ = r.u8()
        flags = r.u16()
        decimals = r.u8()
        r.take(fixed - 10)
        default = r.lenenc_bytes() if r.remaining else None
        return cls(schema, table, org_table, name, org_name, collation, length, type_, flags, decimals, catalog,
                   default)

    def encode(self) -> bytes:
        out = b"".join(lenenc_str(s) for s in (self.catalog, self.schema, self.table, self.org_table, self.name,
                                                self.org_name))
        out += b"\x0c" + u16(self.collation) + u32(self.length) + bytes((self.type,)) + u16(self.flags)
        out += bytes((self.decimals,)) + b"\0\0"
        if self.default is not None:
            out += lenenc_bytes(self.default)
        return out


def column_count(payload: bytes) -> int:
    r = Reader(payload, "result set header")
    n = r.lenenc_int()
    return n


def decode_text_row(payload: bytes, n: int) -> list[bytes | None]:
    r = Reader(payload, "row")
    values = [r.lenenc_bytes() for _ in range(n)]
    r.end()
    return values


def encode_text_row(values: list[bytes | None]) -> bytes:
    return b"".join(lenenc_bytes(v) for v in values)


#: Binary-protocol value widths of fixed-size types; other types are length-encoded strings, and the date
#: and time types carry their own one-byte length.
FIXED_WIDTH: dict[int, int] = {
    FieldType.TINY: 1, FieldType.SHORT: 2, FieldType.YEAR: 2, FieldType.LONG: 4, FieldType.INT24: 4,
    FieldType.FLOAT: 4, FieldType.LONGLONG: 8, FieldType.DOUBLE: 8, FieldType.NULL: 0,
}
DATE_TIME = frozenset({FieldType.DATE, FieldType.DATETIME, FieldType.TIMESTAMP, FieldType.TIME,
                       FieldType.NEWDATE, FieldType.DATETIME2, FieldType.TIMESTAMP2, FieldType.TIME2})


def read_binary_value(r: Reader, type_: int) -> bytes:
    """The raw bytes of one binary-protocol value (length prefix of strings excluded)."""
    width = FIXED_WIDTH.get(type_)
    if width is not None:
        return r.take(width)
    if type_ in DATE_TIME:
        n = r.u8()
        return bytes((n,)) + r.take(n)
    v = r.lenenc_bytes()
    if v is None:
        raise RemoteProtocolError("malformed binary value: NULL marker inside a value")
    return v


def write_binary_value(type_: int, value: bytes) -> bytes:
    if type_ in FIXED_WIDTH or type_ in DATE_TIME:
        return value
    return lenenc_bytes(value)


def decode_binary_row(payload: bytes, types: list[int]) -> list[bytes | None]:
    """Values of a binary-protocol row (as raw bytes per :func:`read_binary_value`), None for NULL."""
    n = len(types)
    r = Reader(payload, "binary row")
    if r.u8() != 0:
        raise RemoteProtocolError("malformed binary row: the header is not 0x00")
    bitmap = r.take((n + 9) // 8)
    values: list[bytes | None] = []
    for i, t in enumerate(types):
        bit = i + 2
        if bitmap[bit >> 3] & (1 << (bit & 7)):
            values.append(None)
        else:
            values.append(read_binary_value(r, t))
    r.end()
    return values


def encode_binary_row(values: list[bytes | None], types: list[int]) -> bytes:
    n = len(types)
    bitmap = bytearray((n + 9) // 8)
    body = []
    for i, (v, t) in enumerate(zip(values, types)):
        if v is None:
            bit = i + 2
            bitmap[bit >> 3] |= 1 << (bit & 7)
        else:
            body.append(write_binary_value(t, v))
    return b"\0" + bytes(bitmap) + b"".join(body)


# ---------------------------------------------------------------------------------------------------------------
# Prepared statements
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrepareOK:
    statement_id: int
    columns: int
    params: int
    warnings: int = 0

    @classmethod
    def decode(cls, payload: bytes) -> PrepareOK:
        r = Reader(payload, "COM_STMT_PREPARE answer")
        r.u8()
        sid = r.u32()
        cols = r.u16()
        params = r.u16()
        warnings = 0
        if r.remaining >= 3:
            r.u8()
            warnings = r.u16()
        return cls(sid, cols, params, warnings)


@dataclass(frozen=True, slots=True)
class Execute:
    """COM_STMT_EXECUTE as gw understands it: the statement, cursor flags, and the bound parameters."""

    statement_id: int
    flags: int
    null_bitmap: bytes = b""
    new_params_bound: bool = False
    types: tuple[int, ...] = ()
    values: tuple[bytes | None, ...] = ()

    @classmethod
    def decode(cls, payload: bytes, params: int, previous_types: tuple[int, ...] | None,
               long_data: frozenset[int] | set[int] = frozenset()) -> Execute:
        """``params`` is the parameter count the server confirmed at prepare time; ``previous_types`` the
        types bound by the previous execute (a client may omit them after the first); ``long_data`` the
        parameters sent with COM_STMT_SEND_LONG_DATA, whose values the execute does not carry (their value
        here is ``b""``)."""
        r = Reader(payload, "COM_STMT_EXECUTE")
        r.u8()
        sid = r.u32()
        flags = r.u8()
        r.u32()  # iteration count, always 1
        if params == 0:
            return cls(sid, flags)
        bitmap = r.take((params + 7) // 8)
        bound = r.u8() == 1
        if bound:
            types = tuple(r.u16() for _ in range(params))
        elif previous_types is not None and len(previous_types) == params:
            types = previous_types
        else:
            raise RemoteProtocolError("COM_STMT_EXECUTE without parameter types for a statement whose types "
                                      "were never sent")
        values: list[bytes | None] = []
        for i in range(params):
            if bitmap[i >> 3] & (1 << (i & 7)):
                values.append(None)
            elif i in long_data:
                values.append(b"")
            else:
                values.append(read_binary_value(r, types[i] & 0xFF))
        return cls(sid, flags, bitmap, bound, types, tuple(values))


_INT_FORMATS = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}
_UINT_FORMATS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def binary_value_text(type_: int, value: bytes | None, unsigned: bool = False) -> Any:
    """A binary-protocol value as a Python value for stages and approvers: numbers as int/float, strings as
    str (undecodable bytes kept with surrogateescape), dates as ISO text; bytes when gw cannot tell."""
    if value is None:
        return None
    try:
        if type_ in (FieldType.TINY, FieldType.SHORT, FieldType.YEAR, FieldType.LONG, FieldType.INT24,
                     FieldType.LONGLONG):
            fmt = (_UINT_FORMATS if unsigned or type_ == FieldType.YEAR else _INT_FORMATS)[len(value)]
            return struct.unpack(fmt, value)[0]
        if type_ == FieldType.FLOAT:
            return struct.unpack("<f", value)[0]
        if type_ == FieldType.DOUBLE:
            return struct.unpack("<d", value)[0]
        if type_ in DATE_TIME:
            return _date_time_text(type_, value)
        if type_ in (FieldType.BLOB, FieldType.TINY_BLOB, FieldType.MEDIUM_BLOB, FieldType.LONG_BLOB,
                     FieldType.GEOMETRY, FieldType.BIT):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return value
        return value.decode("utf-8", "surrogateescape")
    except (struct.error, KeyError, IndexError):
        return value


def _date_time_text(type_: int, value: bytes) -> str:
    n = value[0]
    b = value[1:]
    if type_ in (FieldType.TIME, FieldType.TIME2):
        if n == 0:
            return "00:00:00"
        neg, days = b[0], struct.unpack("<I", b[1:5])[0]
        h, m, s = b[5], b[6], b[7]
        frac = f".{struct.unpack('<I', b[8:12])[0]:06d}" if n >= 12 else ""
        return f"{'-' if neg else ''}{days * 24 + h:02d}:{m:02d}:{s:02d}{frac}"
    if n == 0:
        return "0000-00-00"
    year = struct.unpack("<H", b[0:2])[0]
    out = f"{year:04d}-{b[2]:02d}-{b[3]:02d}"
    if n >= 7:
        out += f" {b[4]:02d}:{b[5]:02d}:{b[6]:02d}"
    if n >= 11:
        out += f".{struct.unpack('<I', b[7:11])[0]:06d}"
    return out


@dataclass(frozen=True, slots=True)
class LongData:
    statement_id: int
    param: int
    data: bytes

    @classmethod
    def decode(cls, payload: bytes) -> LongData:
        r = Reader(payload, "COM_STMT_SEND_LONG_DATA")
        r.u8()
        return cls(r.u32(), r.u16(), r.rest())


@dataclass(slots=True)
class ServerInfo:
    """What gw learned from an upstream greeting, cached per listener for the greeting it gives clients."""

    server_version: str
    capabilities: int
    collation: int
    status: int = ServerStatus.AUTOCOMMIT
    extra: dict[str, Any] = field(default_factory=dict)
