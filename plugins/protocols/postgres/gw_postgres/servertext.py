"""The server's own text under a masking pipeline: errors, notices, notifications, parameter status.

PostgreSQL quotes row values in its messages (``Key (ssn)=(123-45-6789) already exists``, ``Failing row
contains (...)``, ``invalid input syntax for type integer: "..."``, a JSON error's ``line 1: ...`` context).
When the statement touches a masked column (or gw cannot tell), those quoted values are redacted while the
SQLSTATE and the shape of the message stay, so an agent can still fix its query; every text then passes the
mask stage's detectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .messages import ErrorResponse, NoticeResponse, NotificationResponse, ParameterStatus

REDACTED = "***"
#: Fields that carry names and positions, never values (severity, SQLSTATE, positions, object names,
#: source file/line/routine of the server).
_STRUCTURAL = frozenset("SVCPpnsctdFLR")
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
#: ``(col, col)=(value, value)``: what is after ``=`` in parentheses (nested parentheses allowed once).
_KEY_VALUES = re.compile(r"=\((?:[^()]|\([^()]*\))*\)")
#: ``Failing row contains (...)``, ``conflicts with existing key (...)``.
_ROW = re.compile(r"(contains |row )\((?:[^()]|\([^()]*\))*\)", re.IGNORECASE)
#: JSON / array / input parsing context: ``line 1: <text>``, ``at or near "..."`` handled by _QUOTED.
_CONTEXT_LINE = re.compile(r"(line \d+: ).*", re.IGNORECASE)
#: Values after a colon in messages such as ``invalid input syntax for type integer: "..."`` are quoted;
#: ``value too long``-style messages carry none.  Single-quoted values (``'...'``) in some details:
_SINGLE = re.compile(r"'(?:[^']|'')*'")


def redact_values(text: str, statement: str = "") -> str:
    """``text`` with the row values PostgreSQL quotes in its messages replaced by ``***``.  A quoted text
    that appears in ``statement`` (the agent's own SQL: a column or table name, a syntax error's token) is
    kept; anything else may come from a row (``ssn::regclass`` quotes the value as a relation name)."""
    lowered = statement.lower()

    def quoted(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1].replace('""', '"')
        return match.group(0) if inner and inner.lower() in lowered else f'"{REDACTED}"'

    text = _KEY_VALUES.sub(f"=({REDACTED})", text)
    text = _ROW.sub(lambda m: f"{m.group(1)}({REDACTED})", text)
    text = _QUOTED.sub(quoted, text)
    text = _SINGLE.sub(f"'{REDACTED}'", text)
    return _CONTEXT_LINE.sub(lambda m: m.group(1) + REDACTED, text)


def mask_fields(fields: tuple[tuple[str, str], ...], touches: bool, detect: Callable[[str], str] | None,
                statement: str = "") -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in fields:
        if key not in _STRUCTURAL:
            if touches:
                value = redact_values(value, statement)
            if detect is not None:
                value = detect(value)
        out.append((key, value))
    return tuple(out)


def mask_error(message: ErrorResponse | NoticeResponse, touches: bool,
               detect: Callable[[str], str] | None, statement: str = "") -> ErrorResponse | NoticeResponse:
    fields = mask_fields(message.fields, touches, detect, statement)
    return message if fields == message.fields else type(message)(fields)


def mask_notification(message: NotificationResponse, touches: bool, detect: Callable[[str], str] | None
                      ) -> NotificationResponse:
    """A payload sent while a statement touching masked columns runs is withheld whole (it may be any value
    of any row); otherwise it passes the detectors."""
    payload = REDACTED if touches and message.payload else message.payload
    if detect is not None:
        payload = detect(payload)
    return message if payload == message.payload else NotificationResponse(message.process_id, message.channel,
                                                                           payload)


#: Parameters the server reports that never hold row values (their values are the server's or settings
#: gw follows); others (``application_name``, custom settings) may.
_SAFE_PARAMETERS = frozenset({
    "server_version", "server_encoding", "client_encoding", "datestyle", "intervalstyle", "timezone",
    "integer_datetimes", "standard_conforming_strings", "is_superuser", "session_authorization",
    "default_transaction_read_only", "in_hot_standby", "scram_iterations", "search_path",
})


def mask_parameter(message: ParameterStatus, touches: bool, detect: Callable[[str], str] | None
                   ) -> ParameterStatus:
    if message.name.lower() in _SAFE_PARAMETERS:
        return message
    value = REDACTED if touches and message.value else message.value
    if detect is not None:
        value = detect(value)
    return message if value == message.value else ParameterStatus(message.name, value)
