"""How stored values are shown: what people typed escaped so it cannot disguise itself, times in UTC."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any


def escape_visible(value: Any) -> str:
    """``value`` as text with control characters (but newline and tab), escape sequences, bidirectional and
    zero-width characters written as ``\\x1b`` / ``\\u202e`` escapes (HTML escaping is the template's)."""
    text = "" if value is None else str(value)
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "\n\t":
            out.append(ch)
        elif cp < 0x20 or cp == 0x7F or 0x80 <= cp < 0xA0:
            out.append(f"\\x{cp:02x}")
        elif unicodedata.category(ch) in ("Cf", "Co", "Cs"):  # format (bidi, zero-width), private, surrogate
            out.append(f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
        else:
            out.append(ch)
    return "".join(out)


def iso(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_left(until: Any, now: float) -> str:
    """``4m 10s`` until ``until`` (Unix time), ``-`` once past."""
    if not isinstance(until, (int, float)):
        return "-"
    left = int(until - now)
    if left <= 0:
        return "-"
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
