"""The SFTP protocol (version 3, draft-ietf-secsh-filexfer-02, as OpenSSH speaks it), sans-IO.

gw relays SFTP packet by packet without re-implementing a server: :class:`PacketFramer` splits each direction
into whole packets, :func:`parse_request` / :func:`parse_response` read only the header fields gw needs (type,
request id, paths, handles, sizes), and packets are forwarded byte for byte.  :func:`operation` turns a request
into the file operation the pipeline decides about; refused requests are answered by gw with
:func:`status_packet` (``SSH_FX_PERMISSION_DENIED`` and the reason) and never reach the target.

Requests on an already opened handle (read, write, close, fstat, readdir, fsync) are not decided one by one:
opening the handle was.  They are counted, and the open's command completes with the byte counts on close.
"""

from __future__ import annotations

import enum
import shlex
import struct
from dataclasses import dataclass

from gw.model import Kind

#: Largest packet accepted in either direction (OpenSSH uses 256 KiB; asyncssh may send up to 4 MiB).
MAX_PACKET = 4 * 1024 * 1024 + 1024


class NeedData(enum.Enum):
    NEED_DATA = "need data"


NEED_DATA = NeedData.NEED_DATA


class SftpProtocolError(Exception):
    """A packet that is not valid SFTP; the channel is closed with this message."""


class T(enum.IntEnum):
    """SFTP packet types."""

    INIT = 1
    VERSION = 2
    OPEN = 3
    CLOSE = 4
    READ = 5
    WRITE = 6
    LSTAT = 7
    FSTAT = 8
    SETSTAT = 9
    FSETSTAT = 10
    OPENDIR = 11
    READDIR = 12
    REMOVE = 13
    MKDIR = 14
    RMDIR = 15
    REALPATH = 16
    STAT = 17
    RENAME = 18
    READLINK = 19
    SYMLINK = 20
    STATUS = 101
    HANDLE = 102
    DATA = 103
    NAME = 104
    ATTRS = 105
    EXTENDED = 200
    EXTENDED_REPLY = 201


class Status(enum.IntEnum):
    OK = 0
    EOF = 1
    NO_SUCH_FILE = 2
    PERMISSION_DENIED = 3
    FAILURE = 4
    BAD_MESSAGE = 5
    OP_UNSUPPORTED = 8


# Open flags (SSH_FXF_*).
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


class PacketFramer:
    """Splits one direction of an SFTP byte stream into whole packets (length prefix included)."""

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buffer = bytearray()
        self._max = max_packet

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_packet(self) -> bytes | NeedData:
        buf = self._buffer
        if len(buf) < 4:
            return NEED_DATA
        (length,) = struct.unpack_from(">I", buf)
        if length < 1 or length > self._max:
            raise SftpProtocolError(f"SFTP packet of {length} bytes (gw accepts 1 to {self._max})")
        if len(buf) < 4 + length:
            return NEED_DATA
        packet = bytes(buf[:4 + length])
        del buf[:4 + length]
        return packet

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def uint32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise SftpProtocolError("SFTP packet ends inside a field")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def uint64(self) -> int:
        if self.pos + 8 > len(self.data):
            raise SftpProtocolError("SFTP packet ends inside a field")
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> bytes:
        n = self.uint32()
        if self.pos + n > len(self.data):
            raise SftpProtocolError("SFTP packet ends inside a string")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Request:
    """The fields of a client request gw looks at."""

    type: int
    id: int | None
    paths: tuple[str, ...] = ()
    handle: bytes | None = None
    #: Open flags (OPEN), bytes asked for (READ) or carried (WRITE).
    pflags: int = 0
    size: int = 0
    #: The name of an EXTENDED request (``posix-rename@openssh.com`` ...).
    extension: str = ""


_PATH_REQUESTS = {T.OPENDIR, T.REMOVE, T.MKDIR, T.RMDIR, T.REALPATH, T.STAT, T.LSTAT, T.SETSTAT, T.READLINK}
_HANDLE_REQUESTS = {T.CLOSE, T.FSTAT, T.FSETSTAT, T.READDIR}
_EXT_TWO_PATHS = {"posix-rename@openssh.com", "hardlink@openssh.com"}
_EXT_ONE_PATH = {"statvfs@openssh.com", "lsetstat@openssh.com", "expand-path@openssh.com"}
_EXT_HANDLE = {"fstatvfs@openssh.com", "fsync@openssh.com"}


def parse_request(packet: bytes) -> Request:
    """Read a client packet (as returned by :meth:`PacketFramer.next_packet`)."""
    if len(packet) < 5:
        raise SftpProtocolError("empty SFTP packet")
    kind = packet[4]
    r = _Reader(packet, 5)
    if kind == T.INIT:
        return Request(kind, None)
    rid = r.uint32()
    if kind == T.OPEN:
        path = r.string()
        return Request(kind, rid, (_path(path),), pflags=r.uint32())
    if kind in _PATH_REQUESTS:
        return Request(kind, rid, (_path(r.string()),))
    if kind in (T.RENAME, T.SYMLINK):
        first = r.string()
        return Request(kind, rid, (_path(first), _path(r.string())))
    if kind in _HANDLE_REQUESTS:
        return Request(kind, rid, handle=r.string())
    if kind == T.READ:
        handle = r.string()
        r.uint64()
        return Request(kind, rid, handle=handle, size=r.uint32())
    if kind == T.WRITE:
        handle = r.string()
        r.uint64()
        return Request(kind, rid, handle=handle, size=r.uint32())
    if kind == T.EXTENDED:
        name = r.string().decode("ascii", "replace")
        if name in _EXT_TWO_PATHS:
            first = r.string()
            return Request(kind, rid, (_path(first), _path(r.string())), extension=name)
        if name in _EXT_ONE_PATH:
            return Request(kind, rid, (_path(r.string()),), extension=name)
        if name in _EXT_HANDLE:
            return Request(kind, rid, handle=r.string(), extension=name)
        return Request(kind, rid, extension=name)
    return Request(kind, rid)


@dataclass(frozen=True, slots=True)
class Response:
    """The fields of a target response gw looks at."""

    type: int
    id: int | None
    status: int | None = None
    message: str = ""
    handle: bytes | None = None
    size: int = 0


def parse_response(packet: bytes) -> Response:
    if len(packet) < 5:
        raise SftpProtocolError("empty SFTP packet")
    kind = packet[4]
    if kind == T.VERSION:
        return Response(kind, None)
    r = _Reader(packet, 5)
    rid = r.uint32()
    if kind == T.STATUS:
        code = r.uint32()
        message = ""
        if r.pos < len(packet):
            message = r.string().decode("utf-8", "replace")
        return Response(kind, rid, status=code, message=message)
    if kind == T.HANDLE:
        return Response(kind, rid, handle=r.string())
    if kind == T.DATA:
        return Response(kind, rid, size=r.uint32())
    return Response(kind, rid)


def status_packet(request_id: int, code: int, message: str) -> bytes:
    """An SSH_FXP_STATUS packet (gw's answer to a refused request)."""
    text = message.encode("utf-8")
    body = struct.pack(">BII", T.STATUS, request_id, code) + struct.pack(">I", len(text)) + text
    body += struct.pack(">I", 2) + b"en"
    return struct.pack(">I", len(body)) + body


@dataclass(frozen=True, slots=True)
class Operation:
    """A file operation as the pipeline sees it: a :class:`~gw.model.Command` of language ``sftp``."""

    verb: str
    kind: Kind
    objects: tuple[str, ...]
    flags: frozenset[str] = frozenset()

    @property
    def text(self) -> str:
        return " ".join([self.verb, *(shlex.quote(p) for p in self.objects)])


_SIMPLE: dict[int, tuple[str, Kind]] = {
    T.OPENDIR: ("list", Kind.READ),
    T.REMOVE: ("remove", Kind.WRITE),
    T.MKDIR: ("mkdir", Kind.WRITE),
    T.RMDIR: ("rmdir", Kind.WRITE),
    T.REALPATH: ("realpath", Kind.READ),
    T.STAT: ("stat", Kind.READ),
    T.LSTAT: ("stat", Kind.READ),
    T.SETSTAT: ("setstat", Kind.WRITE),
    T.READLINK: ("readlink", Kind.READ),
    T.RENAME: ("rename", Kind.WRITE),
    T.SYMLINK: ("symlink", Kind.WRITE),
}
_EXTENDED: dict[str, tuple[str, Kind]] = {
    "posix-rename@openssh.com": ("rename", Kind.WRITE),
    "hardlink@openssh.com": ("link", Kind.WRITE),
    "statvfs@openssh.com": ("statvfs", Kind.READ),
    "lsetstat@openssh.com": ("setstat", Kind.WRITE),
    "expand-path@openssh.com": ("realpath", Kind.READ),
}
#: Extended requests that name no path or work on a handle opened (and decided) before.
_EXTENDED_UNDECIDED = frozenset({"fstatvfs@openssh.com", "fsync@openssh.com", "limits@openssh.com", "copy-data",
                                 "home-directory", "users-groups-by-id@openssh.com"})


def open_flags(pflags: int) -> frozenset[str]:
    names = {FXF_CREAT: "create", FXF_TRUNC: "truncate", FXF_APPEND: "append", FXF_EXCL: "exclusive"}
    return frozenset(name for bit, name in names.items() if pflags & bit)


def operation(request: Request, handle_path: str | None = None) -> Operation | None:
    """The operation to decide about, or None for requests covered by an earlier decision (handle I/O).

    ``handle_path`` is the path of ``request.handle`` (for FSETSTAT, which changes a file through a handle)."""
    kind = request.type
    if kind == T.OPEN:
        writes = request.pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC)
        return Operation("write" if writes else "read", Kind.WRITE if writes else Kind.READ, request.paths,
                         open_flags(request.pflags))
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return Operation(simple[0], simple[1], request.paths)
    if kind == T.FSETSTAT:
        return Operation("setstat", Kind.WRITE, (handle_path,) if handle_path else ())
    if kind == T.EXTENDED:
        if request.extension in _EXTENDED_UNDECIDED:
            return None
        known = _EXTENDED.get(request.extension)
        if known is not None:
            return Operation(known[0], known[1], request.paths)
        return Operation(request.extension or "extended", Kind.UNKNOWN, request.paths, frozenset({"unparsed"}))
    if kind in (T.INIT, T.READ, T.WRITE, T.CLOSE, T.FSTAT, T.READDIR):
        return None
    return Operation(f"sftp-{kind}", Kind.UNKNOWN, (), frozenset({"unparsed"}))
