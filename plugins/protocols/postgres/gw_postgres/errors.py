"""Errors of the PostgreSQL plugin, each carrying what the client should be told.

``sqlstate`` and ``str(error)`` go into the ErrorResponse gw sends; ``hint`` becomes its HINT field.
:class:`RemoteProtocolError` means the peer broke the protocol; :class:`LocalProtocolError` means gw tried to
send something invalid (a bug in gw, never the client's fault).
"""

from __future__ import annotations

#: SQLSTATEs gw uses in its own ErrorResponses (PostgreSQL appendix A).
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
CONNECTION_REJECTED = "08004"
PROGRAM_LIMIT_EXCEEDED = "54000"
STATEMENT_TOO_COMPLEX = "54001"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
INSUFFICIENT_PRIVILEGE = "42501"
QUERY_CANCELED = "57014"
ADMIN_SHUTDOWN = "57P01"
INVALID_CATALOG_NAME = "3D000"
FEATURE_NOT_SUPPORTED = "0A000"
SYSTEM_ERROR = "58000"
INTERNAL_ERROR = "XX000"
INVALID_SQL_STATEMENT_NAME = "26000"
INVALID_CURSOR_NAME = "34000"


class ProtocolError(Exception):
    """The conversation cannot continue as PostgreSQL's protocol defines it."""

    sqlstate = PROTOCOL_VIOLATION

    def __init__(self, message: str, *, hint: str | None = None, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if sqlstate is not None:
            self.sqlstate = sqlstate


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid message here."""


class LocalProtocolError(ProtocolError):
    """gw was about to send an invalid message."""

    sqlstate = INTERNAL_ERROR


class MessageTooLarge(RemoteProtocolError):
    """A message is longer than the listener's ``max_message_size``."""

    sqlstate = PROGRAM_LIMIT_EXCEEDED


class UpstreamError(Exception):
    """gw could not connect or log in to the upstream database; ``str()`` is safe to show the client
    (it never contains credentials)."""

    def __init__(self, message: str, *, sqlstate: str = CONNECTION_FAILURE) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
