"""PostgreSQL protocol 3.0 messages as frozen, slotted values (PostgreSQL docs, "Message Formats").

Every message knows how to encode its body and how to decode itself from one; :mod:`gw_postgres.codec`
adds framing, direction and state.  Strings travel as UTF-8 with ``surrogateescape`` so that any byte string a
client sends survives a decode/encode round trip unchanged.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

from .errors import LocalProtocolError, RemoteProtocolError

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_I32I32 = struct.Struct("!ii")

#: Request codes of the untyped messages a client may send first (protocol version 1234.567x).
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3_0 = 196608  # 3 << 16


class FrontendType(enum.IntEnum):
    """Type bytes of messages a client (frontend) sends after start-up."""

    QUERY = ord("Q")
    PARSE = ord("P")
    BIND = ord("B")
    DESCRIBE = ord("D")
    EXECUTE = ord("E")
    CLOSE = ord("C")
    SYNC = ord("S")
    FLUSH = ord("H")
    TERMINATE = ord("X")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    COPY_FAIL = ord("f")
    FUNCTION_CALL = ord("F")
    #: PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share this byte.
    PASSWORD = ord("p")


class BackendType(enum.IntEnum):
    """Type bytes of messages a server (backend) sends."""

    AUTHENTICATION = ord("R")
    PARAMETER_STATUS = ord("S")
    BACKEND_KEY_DATA = ord("K")
    READY_FOR_QUERY = ord("Z")
    ROW_DESCRIPTION = ord("T")
    DATA_ROW = ord("D")
    COMMAND_COMPLETE = ord("C")
    EMPTY_QUERY_RESPONSE = ord("I")
    ERROR_RESPONSE = ord("E")
    NOTICE_RESPONSE = ord("N")
    NOTIFICATION_RESPONSE = ord("A")
    PARSE_COMPLETE = ord("1")
    BIND_COMPLETE = ord("2")
    CLOSE_COMPLETE = ord("3")
    NO_DATA = ord("n")
    PARAMETER_DESCRIPTION = ord("t")
    PORTAL_SUSPENDED = ord("s")
    COPY_IN_RESPONSE = ord("G")
    COPY_OUT_RESPONSE = ord("H")
    COPY_BOTH_RESPONSE = ord("W")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    FUNCTION_CALL_RESPONSE = ord("V")
    NEGOTIATE_PROTOCOL_VERSION = ord("v")


FRONTEND_TYPES = frozenset(int(t) for t in FrontendType)
BACKEND_TYPES = frozenset(int(t) for t in BackendType)


# ------------------------------------------------------------------------------------------------------------
# Body reading and writing
# ------------------------------------------------------------------------------------------------------------


def _text(b: bytes | memoryview) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _cstr(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape") + b"\0"


def _no_nul(what: str, value: str) -> None:
    if "\0" in value:
        raise LocalProtocolError(f"{what} cannot contain a NUL character")


class Reader:
    """Reads a message body; any overrun is the peer's fault (a :class:`RemoteProtocolError`)."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _short(self) -> RemoteProtocolError:
        return RemoteProtocolError(f"malformed {self.what} message: it ends too early")

    def int16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise self._short()
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def uint16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise self._short()
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self._short()
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def count(self) -> int:
        n = self.int16()
        if n < 0:
            raise RemoteProtocolError(f"malformed {self.what} message: negative count {n}")
        return n

    def byte(self) -> bytes:
        if self.pos + 1 > len(self.data):
            raise self._short()
        v = self.data[self.pos:self.pos + 1]
        self.pos += 1
        return v

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._short()
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise RemoteProtocolError(f"malformed {self.what} message: a string is not NUL-terminated")
        v = _text(self.data[self.pos:end])
        self.pos = end + 1
        return v

    def value(self) -> bytes | None:
        """A length-prefixed value (-1 = NULL), as in Bind parameters, DataRow and FunctionCall."""
        n = self.int32()
        if n == -1:
            return None
        if n < -1:
            raise RemoteProtocolError(f"malformed {self.what} message: value length {n}")
        return self.take(n)

    def rest(self) -> bytes:
        v = self.data[self.pos:]
        self.pos = len(self.data)
        return v

    def end(self) -> None:
        if self.pos != len(self.data):
            raise RemoteProtocolError(f"malformed {self.what} message: {len(self.data) - self.pos} "
                                      "unexpected trailing byte(s)")


def _cstr_at(data: bytes, pos: int, what: str) -> tuple[str, int]:
    """The NUL-terminated string at ``pos`` and the position after it (hot-path decoders use this instead
    of a :class:`Reader`)."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise RemoteProtocolError(f"malformed {what} message: a string is not NUL-terminated")
    return data[pos:end].decode("utf-8", "surrogateescape"), end + 1


def _value(v: bytes | None) -> bytes:
    return b"\xff\xff\xff\xff" if v is None else _I32.pack(len(v)) + v


def _i16s(values: Sequence[int]) -> bytes:
    return _I16.pack(len(values)) + b"".join(_I16.pack(v) for v in values)


def frame(type_code: int, body: bytes) -> bytes:
    """One typed message: type byte, int32 length (including itself), body."""
    return bytes((type_code,)) + _I32.pack(len(body) + 4) + body


# ------------------------------------------------------------------------------------------------------------
# Base classes
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A protocol message.  ``TYPE`` is the type byte (0 for the untyped start-up messages)."""

    TYPE: ClassVar[int] = 0

    def body(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        return frame(self.TYPE, self.body())


@dataclass(frozen=True, slots=True)
class FrontendMessage(Message):
    """Sent by a client."""


@dataclass(frozen=True, slots=True)
class BackendMessage(Message):
    """Sent by a server."""


@dataclass(frozen=True, slots=True)
class _Empty:
    @classmethod
    def decode(cls, body: bytes | memoryview) -> _Empty:
        Reader(body, cls.__name__).end()
        return cls()


# ------------------------------------------------------------------------------------------------------------
# Start-up (untyped) messages
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage(FrontendMessage):
    """The first message of a session: protocol version and parameters (``user``, ``database`` ...)."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    version: int = PROTOCOL_3_0

    def __post_init__(self) -> None:
        for k, v in self.parameters.items():
            _no_nul("a start-up parameter", k)
            _no_nul("a start-up parameter", v)
            if not k:
                raise LocalProtocolError("a start-up parameter needs a name")

    def encode(self) -> bytes:
        body = _I32.pack(self.version) + b"".join(_cstr(k) + _cstr(v) for k, v in self.parameters.items()) \
            + b"\0"
        return _I32.pack(len(body) + 4) + body

    @classmethod
    def decode_params(cls, version: int, r: Reader) -> StartupMessage:
        params: dict[str, str] = {}
        while True:
            key = r.cstr()
            if not key:
                break
            params[key] = r.cstr()
        r.end()
        return cls(params, version)


@dataclass(frozen=True, slots=True)
class SSLRequest(FrontendMessage):
    def encode(self) -> bytes:
        return _I32I32.pack(8, SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest(FrontendMessage):
    def encode(self) -> bytes:
        return _I32I32.pack(8, GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest(FrontendMessage):
    """Asks the server to cancel what backend ``process_id`` runs; ``secret_key`` proves the right to."""

    process_id: int
    secret_key: bytes

    def __post_init__(self) -> None:
        if not 4 <= len(self.secret_key) <= 256:
            raise LocalProtocolError("a cancel key is 4 to 256 bytes long")

    def encode(self) -> bytes:
        body = _I32I32.pack(CANCEL_REQUEST_CODE, self.process_id) + self.secret_key
        return _I32.pack(len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class SSLResponse(BackendMessage):
    """The single byte a server answers an SSLRequest or GSSENCRequest with (``S``/``G`` yes, ``N`` no)."""

    accepted: bool

    def encode(self) -> bytes:
        return b"S" if self.accepted else b"N"


# ------------------------------------------------------------------------------------------------------------
# Frontend messages
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query(FrontendMessage):
    TYPE = FrontendType.QUERY
    text: str

    def __post_init__(self) -> None:
        _no_nul("a query", self.text)

    def body(self) -> bytes:
        return _cstr(self.text)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Query:
        r = Reader(body, "Query")
        text = r.cstr()
        r.end()
        return cls(text)


@dataclass(frozen=True, slots=True)
class Parse(FrontendMessage):
    TYPE = FrontendType.PARSE
    statement: str
    query: str
    param_types: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _no_nul("a statement name", self.statement)
        _no_nul("a query", self.query)
        if len(self.param_types) > 65535:
            raise LocalProtocolError("at most 65535 parameter types")

    def body(self) -> bytes:
        types = b"".join(_I32.pack(t) for t in self.param_types)
        return _cstr(self.statement) + _cstr(self.query) + _U16.pack(len(self.param_types)) + types

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Parse:
        data = bytes(body)
        name, pos = _cstr_at(data, 0, "Parse")
        query, pos = _cstr_at(data, pos, "Parse")
        if pos + 2 > len(data):
            raise RemoteProtocolError("malformed Parse message: it ends too early")
        (n,) = _U16.unpack_from(data, pos)
        if pos + 2 + 4 * n != len(data):
            raise RemoteProtocolError("malformed Parse message: wrong number of parameter types")
        types = struct.unpack_from(f"!{n}i", data, pos + 2) if n else ()
        return cls(name, query, tuple(types))


@dataclass(frozen=True, slots=True)
class Bind(FrontendMessage):
    TYPE = FrontendType.BIND
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _no_nul("a portal name", self.portal)
        _no_nul("a statement name", self.statement)

    def body(self) -> bytes:
        return (_cstr(self.portal) + _cstr(self.statement) + _i16s(self.param_formats)
                + _U16.pack(len(self.params)) + b"".join(_value(v) for v in self.params)
                + _i16s(self.result_formats))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Bind:
        data = bytes(body)
        portal, pos = _cstr_at(data, 0, "Bind")
        stmt, pos = _cstr_at(data, pos, "Bind")
        size = len(data)
        try:
            (n,) = _I16.unpack_from(data, pos)
            if n < 0:
                raise RemoteProtocolError(f"malformed Bind message: negative count {n}")
            pf = struct.unpack_from(f"!{n}h", data, pos + 2) if n else ()
            pos += 2 + 2 * n
            (n,) = _U16.unpack_from(data, pos)
            pos += 2
            params: list[bytes | None] = []
            for _ in range(n):
                (length,) = _I32.unpack_from(data, pos)
                pos += 4
                if length == -1:
                    params.append(None)
                    continue
                if length < 0 or pos + length > size:
                    raise RemoteProtocolError("malformed Bind message: a parameter's length is wrong")
                params.append(data[pos:pos + length])
                pos += length
            (n,) = _I16.unpack_from(data, pos)
            if n < 0:
                raise RemoteProtocolError(f"malformed Bind message: negative count {n}")
            rf = struct.unpack_from(f"!{n}h", data, pos + 2) if n else ()
            pos += 2 + 2 * n
        except struct.error:
            raise RemoteProtocolError("malformed Bind message: it ends too early") from None
        if pos != size:
            raise RemoteProtocolError("malformed Bind message: unexpected trailing bytes")
        return cls(portal, stmt, tuple(pf), tuple(params), tuple(rf))

    def param_format(self, i: int) -> int:
        """Format code of parameter ``i`` (0 text, 1 binary) by the protocol's one-or-all rule."""
        if not self.param_formats:
            return 0
        return self.param_formats[0] if len(self.param_formats) == 1 else self.param_formats[i]


def _kind_and_name(body: bytes | memoryview, what: str) -> tuple[str, str]:
    data = bytes(body)
    kind = data[:1]
    if kind not in (b"S", b"P"):
        raise RemoteProtocolError(f"malformed {what} message: expected S or P, got {kind!r}")
    name, pos = _cstr_at(data, 1, what)
    if pos != len(data):
        raise RemoteProtocolError(f"malformed {what} message: unexpected trailing bytes")
    return kind.decode(), name


@dataclass(frozen=True, slots=True)
class Describe(FrontendMessage):
    """Describe a prepared statement (``kind="S"``) or a portal (``"P"``)."""

    TYPE = FrontendType.DESCRIBE
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("S", "P"):
            raise LocalProtocolError("Describe kind is S or P")
        _no_nul("a name", self.name)

    def body(self) -> bytes:
        return self.kind.encode() + _cstr(self.name)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Describe:
        return cls(*_kind_and_name(body, "Describe"))


@dataclass(frozen=True, slots=True)
class Close(FrontendMessage):
    TYPE = FrontendType.CLOSE
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("S", "P"):
            raise LocalProtocolError("Close kind is S or P")
        _no_nul("a name", self.name)

    def body(self) -> bytes:
        return self.kind.encode() + _cstr(self.name)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Close:
        return cls(*_kind_and_name(body, "Close"))


@dataclass(frozen=True, slots=True)
class Execute(FrontendMessage):
    TYPE = FrontendType.EXECUTE
    portal: str = ""
    max_rows: int = 0

    def __post_init__(self) -> None:
        _no_nul("a portal name", self.portal)

    def body(self) -> bytes:
        return _cstr(self.portal) + _I32.pack(self.max_rows)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Execute:
        data = bytes(body)
        portal, pos = _cstr_at(data, 0, "Execute")
        if pos + 4 != len(data):
            raise RemoteProtocolError("malformed Execute message: wrong length")
        (n,) = _I32.unpack_from(data, pos)
        return cls(portal, n)


@dataclass(frozen=True, slots=True)
class Sync(_Empty, FrontendMessage):
    TYPE = FrontendType.SYNC


@dataclass(frozen=True, slots=True)
class Flush(_Empty, FrontendMessage):
    TYPE = FrontendType.FLUSH


@dataclass(frozen=True, slots=True)
class Terminate(_Empty, FrontendMessage):
    TYPE = FrontendType.TERMINATE


@dataclass(frozen=True, slots=True)
class CopyData(Message):
    """A chunk of COPY data; sent in both directions."""

    TYPE = FrontendType.COPY_DATA
    data: bytes

    def body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> CopyData:
        return cls(bytes(body))


@dataclass(frozen=True, slots=True)
class CopyDone(_Empty, Message):
    """End of COPY data; sent in both directions."""

    TYPE = FrontendType.COPY_DONE


@dataclass(frozen=True, slots=True)
class CopyFail(FrontendMessage):
    TYPE = FrontendType.COPY_FAIL
    message: str

    def __post_init__(self) -> None:
        _no_nul("a message", self.message)

    def body(self) -> bytes:
        return _cstr(self.message)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> CopyFail:
        r = Reader(body, "CopyFail")
        m = r.cstr()
        r.end()
        return cls(m)


@dataclass(frozen=True, slots=True)
class FunctionCall(FrontendMessage):
    """Fast-path function call.  gw refuses it: it would bypass statement-level control."""

    TYPE = FrontendType.FUNCTION_CALL
    function_oid: int
    arg_formats: tuple[int, ...] = ()
    args: tuple[bytes | None, ...] = ()
    result_format: int = 0

    def body(self) -> bytes:
        return (_I32.pack(self.function_oid) + _i16s(self.arg_formats) + _U16.pack(len(self.args))
                + b"".join(_value(v) for v in self.args) + _I16.pack(self.result_format))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> FunctionCall:
        r = Reader(body, "FunctionCall")
        oid = r.int32()
        af = tuple(r.int16() for _ in range(r.count()))
        args = tuple(r.value() for _ in range(r.uint16()))
        rf = r.int16()
        r.end()
        return cls(oid, af, args, rf)


@dataclass(frozen=True, slots=True)
class PasswordMessage(FrontendMessage):
    """A cleartext (or MD5-hashed) password, the answer to AuthenticationCleartextPassword / MD5Password."""

    TYPE = FrontendType.PASSWORD
    password: str

    def __post_init__(self) -> None:
        _no_nul("a password", self.password)

    def body(self) -> bytes:
        return _cstr(self.password)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> PasswordMessage:
        r = Reader(body, "PasswordMessage")
        p = r.cstr()
        r.end()
        return cls(p)

    def __repr__(self) -> str:  # never show a password (it is an identity token) in logs or tracebacks
        return "PasswordMessage(password=<hidden>)"


@dataclass(frozen=True, slots=True)
class SASLInitialResponse(FrontendMessage):
    TYPE = FrontendType.PASSWORD
    mechanism: str
    data: bytes | None

    def body(self) -> bytes:
        return _cstr(self.mechanism) + _value(self.data)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> SASLInitialResponse:
        r = Reader(body, "SASLInitialResponse")
        m, d = r.cstr(), r.value()
        r.end()
        return cls(m, d)


@dataclass(frozen=True, slots=True)
class SASLResponse(FrontendMessage):
    TYPE = FrontendType.PASSWORD
    data: bytes

    def body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> SASLResponse:
        return cls(bytes(body))


# ------------------------------------------------------------------------------------------------------------
# Backend messages
# ------------------------------------------------------------------------------------------------------------


class AuthCode(enum.IntEnum):
    OK = 0
    KERBEROS_V5 = 2
    CLEARTEXT_PASSWORD = 3
    MD5_PASSWORD = 5
    GSS = 7
    GSS_CONTINUE = 8
    SSPI = 9
    SASL = 10
    SASL_CONTINUE = 11
    SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class Authentication(BackendMessage):
    """Base of the Authentication* family (type byte ``R``, then an int32 code)."""

    TYPE = BackendType.AUTHENTICATION
    CODE: ClassVar[int] = -1

    def payload(self) -> bytes:
        return b""

    def body(self) -> bytes:
        return _I32.pack(self.CODE) + self.payload()

    @staticmethod
    def decode(body: bytes | memoryview) -> Authentication:
        r = Reader(body, "Authentication")
        code = r.int32()
        if code == AuthCode.OK:
            r.end()
            return AuthenticationOk()
        if code == AuthCode.CLEARTEXT_PASSWORD:
            r.end()
            return AuthenticationCleartextPassword()
        if code == AuthCode.MD5_PASSWORD:
            salt = r.take(4)
            r.end()
            return AuthenticationMD5Password(salt)
        if code == AuthCode.SASL:
            mechs = []
            while (m := r.cstr()):
                mechs.append(m)
            r.end()
            return AuthenticationSASL(tuple(mechs))
        if code == AuthCode.SASL_CONTINUE:
            return AuthenticationSASLContinue(r.rest())
        if code == AuthCode.SASL_FINAL:
            return AuthenticationSASLFinal(r.rest())
        if code in (AuthCode.KERBEROS_V5, AuthCode.GSS, AuthCode.GSS_CONTINUE, AuthCode.SSPI, 6):
            return AuthenticationOther(code, r.rest())
        raise RemoteProtocolError(f"unknown authentication request code {code}")


@dataclass(frozen=True, slots=True)
class AuthenticationOk(Authentication):
    CODE = AuthCode.OK


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(Authentication):
    CODE = AuthCode.CLEARTEXT_PASSWORD


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password(Authentication):
    CODE = AuthCode.MD5_PASSWORD
    salt: bytes

    def __post_init__(self) -> None:
        if len(self.salt) != 4:
            raise LocalProtocolError("an MD5 salt is 4 bytes")

    def payload(self) -> bytes:
        return bytes(self.salt)


@dataclass(frozen=True, slots=True)
class AuthenticationSASL(Authentication):
    CODE = AuthCode.SASL
    mechanisms: tuple[str, ...]

    def __post_init__(self) -> None:
        for m in self.mechanisms:
            if not m or "\0" in m:
                raise LocalProtocolError("a SASL mechanism name is non-empty and has no NUL")

    def payload(self) -> bytes:
        return b"".join(_cstr(m) for m in self.mechanisms) + b"\0"


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(Authentication):
    CODE = AuthCode.SASL_CONTINUE
    data: bytes

    def payload(self) -> bytes:
        return bytes(self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(Authentication):
    CODE = AuthCode.SASL_FINAL
    data: bytes

    def payload(self) -> bytes:
        return bytes(self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationOther(Authentication):
    """A method gw does not speak (Kerberos, GSSAPI, SSPI); kept so the error can name it."""

    code: int
    data: bytes = b""

    def body(self) -> bytes:
        return _I32.pack(self.code) + bytes(self.data)


@dataclass(frozen=True, slots=True)
class ParameterStatus(BackendMessage):
    TYPE = BackendType.PARAMETER_STATUS
    name: str
    value: str

    def body(self) -> bytes:
        return _cstr(self.name) + _cstr(self.value)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ParameterStatus:
        r = Reader(body, "ParameterStatus")
        n, v = r.cstr(), r.cstr()
        r.end()
        return cls(n, v)


@dataclass(frozen=True, slots=True)
class BackendKeyData(BackendMessage):
    TYPE = BackendType.BACKEND_KEY_DATA
    process_id: int
    secret_key: bytes

    def __post_init__(self) -> None:
        if not 4 <= len(self.secret_key) <= 256:
            raise LocalProtocolError("a cancel key is 4 to 256 bytes long")

    def body(self) -> bytes:
        return _I32.pack(self.process_id) + bytes(self.secret_key)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> BackendKeyData:
        r = Reader(body, "BackendKeyData")
        pid = r.int32()
        key = r.rest()
        if not 4 <= len(key) <= 256:
            raise RemoteProtocolError("malformed BackendKeyData message: the key is not 4 to 256 bytes")
        return cls(pid, key)


@dataclass(frozen=True, slots=True)
class ReadyForQuery(BackendMessage):
    """``status`` is the transaction status: ``I`` idle, ``T`` in a transaction, ``E`` failed transaction."""

    TYPE = BackendType.READY_FOR_QUERY
    status: str = "I"

    def __post_init__(self) -> None:
        if self.status not in ("I", "T", "E"):
            raise LocalProtocolError("transaction status is I, T or E")

    def body(self) -> bytes:
        return self.status.encode()

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ReadyForQuery:
        r = Reader(body, "ReadyForQuery")
        s = r.byte()
        r.end()
        if s not in (b"I", b"T", b"E"):
            raise RemoteProtocolError(f"malformed ReadyForQuery message: status {s!r}")
        return cls(s.decode())


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column_number: int = 0
    type_oid: int = 25
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0

    def encode(self) -> bytes:
        return _cstr(self.name) + struct.pack("!ihihih", self.table_oid, self.column_number, self.type_oid,
                                              self.type_size, self.type_modifier, self.format)


_FIELD = struct.Struct("!ihihih")


@dataclass(frozen=True, slots=True)
class RowDescription(BackendMessage):
    TYPE = BackendType.ROW_DESCRIPTION
    fields: tuple[FieldDescription, ...]

    def body(self) -> bytes:
        return _U16.pack(len(self.fields)) + b"".join(f.encode() for f in self.fields)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> RowDescription:
        r = Reader(body, "RowDescription")
        fields = []
        for _ in range(r.uint16()):
            name = r.cstr()
            raw = r.take(_FIELD.size)
            fields.append(FieldDescription(name, *_FIELD.unpack(raw)))
        r.end()
        return cls(tuple(fields))


@dataclass(frozen=True, slots=True)
class DataRow(BackendMessage):
    TYPE = BackendType.DATA_ROW
    values: tuple[bytes | None, ...]

    def body(self) -> bytes:
        return encode_data_row_body(self.values)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> DataRow:
        return cls(tuple(decode_data_row(body)))


def decode_data_row(body: bytes | memoryview) -> list[bytes | None]:
    """The values of a DataRow body (the hot path of row filtering, so no Reader object)."""
    data = bytes(body)
    if len(data) < 2:
        raise RemoteProtocolError("malformed DataRow message: it ends too early")
    (n,) = _U16.unpack_from(data, 0)
    pos = 2
    out: list[bytes | None] = []
    size = len(data)
    for _ in range(n):
        if pos + 4 > size:
            raise RemoteProtocolError("malformed DataRow message: it ends too early")
        (length,) = _I32.unpack_from(data, pos)
        pos += 4
        if length == -1:
            out.append(None)
            continue
        if length < 0 or pos + length > size:
            raise RemoteProtocolError("malformed DataRow message: a value's length is wrong")
        out.append(data[pos:pos + length])
        pos += length
    if pos != size:
        raise RemoteProtocolError("malformed DataRow message: unexpected trailing bytes")
    return out


def data_row_offsets(data: bytes) -> tuple[list[bytes | None], list[int]]:
    """The values of a DataRow body and where each one's length field starts (one more entry: the body's
    end), so that a changed value can be spliced in without re-encoding the others."""
    if len(data) < 2:
        raise RemoteProtocolError("malformed DataRow message: it ends too early")
    (n,) = _U16.unpack_from(data, 0)
    pos = 2
    out: list[bytes | None] = []
    offsets: list[int] = []
    size = len(data)
    unpack = _I32.unpack_from
    try:
        for _ in range(n):
            offsets.append(pos)
            (length,) = unpack(data, pos)  # struct.error past the end
            pos += 4
            if length >= 0:
                end = pos + length
                out.append(data[pos:end])  # a length past the end shows as pos > size below
                pos = end
            elif length == -1:
                out.append(None)
            else:
                raise RemoteProtocolError("malformed DataRow message: a value's length is wrong")
    except struct.error:  # the next length field is not all there, or a value before it ran past the end
        raise RemoteProtocolError("malformed DataRow message: " + (
            "a value's length is wrong" if pos > size else "it ends too early")) from None
    if pos > size:
        raise RemoteProtocolError("malformed DataRow message: a value's length is wrong")
    if pos != size:
        raise RemoteProtocolError("malformed DataRow message: unexpected trailing bytes")
    offsets.append(size)
    return out, offsets


def splice_data_row(data: bytes, offsets: Sequence[int], old: Sequence[bytes | None],
                    new: Sequence[bytes | None]) -> bytes:
    """The DataRow message (framed) for body ``data`` with the values of ``new`` that are not the very objects
    of ``old`` put in; the others are copied as they are."""
    if len(new) != len(old):
        return encode_data_row(new)
    parts: list[bytes] = [b""]  # the header, once the size is known
    prev = 0
    size = len(data) + 4
    for i, value in enumerate(new):
        if value is not old[i]:
            start, end = offsets[i], offsets[i + 1]
            encoded = b"\xff\xff\xff\xff" if value is None else _I32.pack(len(value)) + value
            parts.append(data[prev:start])
            parts.append(encoded)
            size += len(encoded) - (end - start)
            prev = end
    parts.append(data[prev:])
    parts[0] = _DATA_ROW_HEADER.pack(68, size)  # 68: "D"
    return b"".join(parts)


_DATA_ROW_HEADER = struct.Struct("!Bi")


def encode_data_row_body(values: Sequence[bytes | None]) -> bytes:
    return _U16.pack(len(values)) + b"".join(_value(v) for v in values)


def encode_data_row(values: Sequence[bytes | None]) -> bytes:
    return frame(BackendType.DATA_ROW, encode_data_row_body(values))


@dataclass(frozen=True, slots=True)
class CommandComplete(BackendMessage):
    TYPE = BackendType.COMMAND_COMPLETE
    tag: str

    def body(self) -> bytes:
        return _cstr(self.tag)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> CommandComplete:
        r = Reader(body, "CommandComplete")
        t = r.cstr()
        r.end()
        return cls(t)

    @property
    def rows(self) -> int | None:
        """Rows affected or returned, from the tag (``SELECT 5``, ``INSERT 0 3``, ``COPY 10`` ...)."""
        return rows_from_tag(self.tag)


_ROW_TAGS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"})


def rows_from_tag(tag: str) -> int | None:
    parts = tag.split()
    if len(parts) >= 2 and parts[0] in _ROW_TAGS and parts[-1].isdigit():
        return int(parts[-1])
    return None


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(_Empty, BackendMessage):
    TYPE = BackendType.EMPTY_QUERY_RESPONSE


#: Field type codes of ErrorResponse / NoticeResponse.
SEVERITY, SEVERITY_V, CODE, MESSAGE, DETAIL, HINT = "S", "V", "C", "M", "D", "H"


@dataclass(frozen=True, slots=True)
class _Fields(BackendMessage):
    """ErrorResponse and NoticeResponse: a list of (field type, value) pairs."""

    fields: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for k, v in self.fields:
            if len(k) != 1 or k == "\0":
                raise LocalProtocolError("a field type is one non-NUL character")
            _no_nul("a field value", v)

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.fields:
            if k == key:
                return v
        return default

    @property
    def code(self) -> str:
        return self.get(CODE)

    @property
    def message(self) -> str:
        return self.get(MESSAGE)

    @property
    def severity(self) -> str:
        return self.get(SEVERITY_V) or self.get(SEVERITY)

    def body(self) -> bytes:
        return b"".join(k.encode() + _cstr(v) for k, v in self.fields) + b"\0"

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Self:
        r = Reader(body, cls.__name__)
        fields = []
        while True:
            k = r.byte()
            if k == b"\0":
                break
            fields.append((_text(k), r.cstr()))
        r.end()
        return cls(tuple(fields))

    @classmethod
    def build(cls, severity: str, code: str, message: str, *, detail: str | None = None,
              hint: str | None = None) -> Self:
        fields = [(SEVERITY, severity), (SEVERITY_V, severity), (CODE, code), (MESSAGE, message)]
        if detail:
            fields.append((DETAIL, detail))
        if hint:
            fields.append((HINT, hint))
        return cls(tuple(fields))


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    TYPE = BackendType.ERROR_RESPONSE


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    TYPE = BackendType.NOTICE_RESPONSE


@dataclass(frozen=True, slots=True)
class NotificationResponse(BackendMessage):
    TYPE = BackendType.NOTIFICATION_RESPONSE
    process_id: int
    channel: str
    payload: str

    def body(self) -> bytes:
        return _I32.pack(self.process_id) + _cstr(self.channel) + _cstr(self.payload)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> NotificationResponse:
        r = Reader(body, "NotificationResponse")
        pid, ch, pl = r.int32(), r.cstr(), r.cstr()
        r.end()
        return cls(pid, ch, pl)


@dataclass(frozen=True, slots=True)
class ParseComplete(_Empty, BackendMessage):
    TYPE = BackendType.PARSE_COMPLETE


@dataclass(frozen=True, slots=True)
class BindComplete(_Empty, BackendMessage):
    TYPE = BackendType.BIND_COMPLETE


@dataclass(frozen=True, slots=True)
class CloseComplete(_Empty, BackendMessage):
    TYPE = BackendType.CLOSE_COMPLETE


@dataclass(frozen=True, slots=True)
class NoData(_Empty, BackendMessage):
    TYPE = BackendType.NO_DATA


@dataclass(frozen=True, slots=True)
class PortalSuspended(_Empty, BackendMessage):
    TYPE = BackendType.PORTAL_SUSPENDED


@dataclass(frozen=True, slots=True)
class ParameterDescription(BackendMessage):
    TYPE = BackendType.PARAMETER_DESCRIPTION
    type_oids: tuple[int, ...]

    def body(self) -> bytes:
        return _U16.pack(len(self.type_oids)) + b"".join(_I32.pack(t) for t in self.type_oids)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ParameterDescription:
        r = Reader(body, "ParameterDescription")
        oids = tuple(r.int32() for _ in range(r.uint16()))
        r.end()
        return cls(oids)


@dataclass(frozen=True, slots=True)
class _CopyResponse(BackendMessage):
    """CopyIn/Out/BothResponse: overall format (0 text, 1 binary) and per-column formats."""

    format: int
    column_formats: tuple[int, ...] = ()

    def body(self) -> bytes:
        return bytes((self.format,)) + _i16s(self.column_formats)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> _CopyResponse:
        r = Reader(body, cls.__name__)
        fmt = r.byte()[0]
        cols = tuple(r.int16() for _ in range(r.count()))
        r.end()
        return cls(fmt, cols)


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    TYPE = BackendType.COPY_IN_RESPONSE


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    TYPE = BackendType.COPY_OUT_RESPONSE


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    TYPE = BackendType.COPY_BOTH_RESPONSE


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(BackendMessage):
    TYPE = BackendType.FUNCTION_CALL_RESPONSE
    value: bytes | None

    def body(self) -> bytes:
        return _value(self.value)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> FunctionCallResponse:
        r = Reader(body, "FunctionCallResponse")
        v = r.value()
        r.end()
        return cls(v)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(BackendMessage):
    """The newest minor version the server speaks and the ``_pq_.`` options it did not recognise."""

    TYPE = BackendType.NEGOTIATE_PROTOCOL_VERSION
    newest_minor: int
    unrecognized: tuple[str, ...] = ()

    def body(self) -> bytes:
        return _I32.pack(self.newest_minor) + _I32.pack(len(self.unrecognized)) + b"".join(
            _cstr(o) for o in self.unrecognized)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> NegotiateProtocolVersion:
        r = Reader(body, "NegotiateProtocolVersion")
        minor, n = r.int32(), r.int32()
        if n < 0:
            raise RemoteProtocolError("malformed NegotiateProtocolVersion message: negative count")
        opts = tuple(r.cstr() for _ in range(n))
        r.end()
        return cls(minor, opts)


#: How to decode a typed message body, by direction.  ``p`` depends on the authentication exchange, so the
#: codec picks its class from state (see :class:`gw_postgres.codec.PasswordKind`).
FRONTEND_DECODERS = {
    FrontendType.QUERY: Query.decode,
    FrontendType.PARSE: Parse.decode,
    FrontendType.BIND: Bind.decode,
    FrontendType.DESCRIBE: Describe.decode,
    FrontendType.EXECUTE: Execute.decode,
    FrontendType.CLOSE: Close.decode,
    FrontendType.SYNC: Sync.decode,
    FrontendType.FLUSH: Flush.decode,
    FrontendType.TERMINATE: Terminate.decode,
    FrontendType.COPY_DATA: CopyData.decode,
    FrontendType.COPY_DONE: CopyDone.decode,
    FrontendType.COPY_FAIL: CopyFail.decode,
    FrontendType.FUNCTION_CALL: FunctionCall.decode,
}

BACKEND_DECODERS = {
    BackendType.AUTHENTICATION: Authentication.decode,
    BackendType.PARAMETER_STATUS: ParameterStatus.decode,
    BackendType.BACKEND_KEY_DATA: BackendKeyData.decode,
    BackendType.READY_FOR_QUERY: ReadyForQuery.decode,
    BackendType.ROW_DESCRIPTION: RowDescription.decode,
    BackendType.DATA_ROW: DataRow.decode,
    BackendType.COMMAND_COMPLETE: CommandComplete.decode,
    BackendType.EMPTY_QUERY_RESPONSE: EmptyQueryResponse.decode,
    BackendType.ERROR_RESPONSE: ErrorResponse.decode,
    BackendType.NOTICE_RESPONSE: NoticeResponse.decode,
    BackendType.NOTIFICATION_RESPONSE: NotificationResponse.decode,
    BackendType.PARSE_COMPLETE: ParseComplete.decode,
    BackendType.BIND_COMPLETE: BindComplete.decode,
    BackendType.CLOSE_COMPLETE: CloseComplete.decode,
    BackendType.NO_DATA: NoData.decode,
    BackendType.PARAMETER_DESCRIPTION: ParameterDescription.decode,
    BackendType.PORTAL_SUSPENDED: PortalSuspended.decode,
    BackendType.COPY_IN_RESPONSE: CopyInResponse.decode,
    BackendType.COPY_OUT_RESPONSE: CopyOutResponse.decode,
    BackendType.COPY_BOTH_RESPONSE: CopyBothResponse.decode,
    BackendType.COPY_DATA: CopyData.decode,
    BackendType.COPY_DONE: CopyDone.decode,
    BackendType.FUNCTION_CALL_RESPONSE: FunctionCallResponse.decode,
    BackendType.NEGOTIATE_PROTOCOL_VERSION: NegotiateProtocolVersion.decode,
}
