"""Errors of the MySQL plugin, each carrying the error number and SQLSTATE of the ERR packet gw sends.

:class:`RemoteProtocolError` means the peer broke the protocol; :class:`LocalProtocolError` means gw was about to
send something invalid (a bug in gw, never the client's fault); :class:`UpstreamError` means gw could not
reach or log in to the upstream server (its text never contains a credential).
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    """A MySQL error number with its SQLSTATE."""

    number: int
    sqlstate: str


#: The error numbers gw uses in its own ERR packets (MySQL's and MariaDB's errmsg tables agree on these).
HANDSHAKE_ERROR = Code(1043, "08S01")  # ER_HANDSHAKE_ERROR
DBACCESS_DENIED = Code(1044, "42000")  # ER_DBACCESS_DENIED_ERROR
ACCESS_DENIED = Code(1045, "28000")  # ER_ACCESS_DENIED_ERROR
UNKNOWN_COMMAND = Code(1047, "08S01")  # ER_UNKNOWN_COM_ERROR
BAD_DB = Code(1049, "42000")  # ER_BAD_DB_ERROR
SERVER_SHUTDOWN = Code(1053, "08S01")  # ER_SERVER_SHUTDOWN
PARSE_ERROR = Code(1064, "42000")  # ER_PARSE_ERROR
NO_SUCH_THREAD = Code(1094, "HY000")  # ER_NO_SUCH_THREAD
KILL_DENIED = Code(1095, "HY000")  # ER_KILL_DENIED_ERROR
NET_PACKET_TOO_LARGE = Code(1153, "08S01")  # ER_NET_PACKET_TOO_LARGE
NET_READ_ERROR = Code(1158, "08S01")  # ER_NET_READ_ERROR
NET_READ_INTERRUPTED = Code(1159, "08S01")  # ER_NET_READ_INTERRUPTED
NET_PACKETS_OUT_OF_ORDER = Code(1156, "08S01")  # ER_NET_PACKETS_OUT_OF_ORDER
SPECIFIC_ACCESS_DENIED = Code(1227, "42000")  # ER_SPECIFIC_ACCESS_DENIED_ERROR: policy refusals
NOT_SUPPORTED_YET = Code(1235, "42000")  # ER_NOT_SUPPORTED_YET
UNKNOWN_STMT_HANDLER = Code(1243, "HY000")  # ER_UNKNOWN_STMT_HANDLER
QUERY_INTERRUPTED = Code(1317, "70100")  # ER_QUERY_INTERRUPTED: approval timed out
WRONG_ARGUMENTS = Code(1210, "HY000")  # ER_WRONG_ARGUMENTS
LOCK_WAIT_TIMEOUT = Code(1205, "HY000")
UNKNOWN_ERROR = Code(1105, "HY000")  # ER_UNKNOWN_ERROR: gw could not do what policy requires
CONNECTION_ERROR = Code(2002, "HY000")  # client-side CR_CONNECTION_ERROR, used when the upstream is unreachable
SERVER_LOST = Code(2013, "HY000")  # CR_SERVER_LOST


class ProtocolError(Exception):
    """The conversation cannot continue as the MySQL protocol defines it."""

    code = HANDSHAKE_ERROR

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid packet here."""


class LocalProtocolError(ProtocolError):
    """gw was about to send an invalid packet."""

    code = UNKNOWN_ERROR


class PacketTooLarge(RemoteProtocolError):
    """A packet is longer than the listener's ``max_packet_size``."""

    code = NET_PACKET_TOO_LARGE


class UpstreamError(Exception):
    """gw could not connect or log in to the upstream server; ``str()`` is safe to show the client."""

    def __init__(self, message: str, *, code: Code = CONNECTION_ERROR) -> None:
        super().__init__(message)
        self.code = code
