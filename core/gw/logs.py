"""gw's log output: readable lines (``text``) or one JSON object per line (``json``).

JSON lines have stable keys -- ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
and, when the line was logged while a session or command was being served, ``session``, ``listener``,
``subject``, ``seq`` (the command's number in its session) and ``request_id`` (an approval request).  Those come
from :data:`log_context`, which core sets in the task serving a session.  The message is the same text the
``text`` format prints: gw never logs a credential or an unmasked result value in either format.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: What the current task is serving (``session``, ``listener``, ``subject``, ``seq``, ``request_id``).
log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("gw_log_context",
                                                                                   default=None)

_CONTEXT_KEYS = ("session", "listener", "subject", "seq", "request_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, keys in a fixed order; exceptions in ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = log_context.get() or {}
        for key in _CONTEXT_KEYS:
            value = context.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               datefmt="%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
