"""How the approve stage writes times, durations and commands into messages people and agents read."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SNIPPET = 160


def clock(ts: float | None) -> str:
    """A Unix time as UTC ``2024-05-01 12:00:00Z`` (approvers and gateways may sit in different zones)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """``600`` -> ``10m``, ``5400`` -> ``1h30m``, ``1.5`` -> ``1.5s``: the pipeline file's own notation."""
    if seconds < 60:
        return f"{round(max(seconds, 0.0), 1):g}s"
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts)


def snippet(text: str, limit: int = _SNIPPET) -> str:
    """A command on one line, cut to ``limit`` characters, for notices and webhook text (controls and
    invisible characters escaped, see :func:`escape`)."""
    one_line = " ".join(escape(text.replace("\n", " ").replace("\t", " ")).split(" ")).strip()
    one_line = re.sub(" {2,}", " ", one_line)
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


#: Characters that change how text looks without being visible themselves: C0/C1 controls (carriage return,
#: escape sequences ...), bidirectional overrides and isolates, zero-width characters, the BOM.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
_INVISIBLE = frozenset(
    [chr(c) for c in range(0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
    + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064",
       "\u061c", "\u180e", "\ufeff", "\u00ad", "\u034f", "\u115f", "\u1160", "\u3164", "\uffa0"]
    + [chr(c) for c in range(0xFFF9, 0xFFFC)] + [chr(c) for c in range(0xE0000, 0xE0080)])


def _escaped(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, escape-sequence, bidirectional and zero-width character written as a
    visible escape (``\\r``, ``\\x1b``, ``\\u202e``), so an approver sees every character of what would run
    and a command cannot redraw the terminal or reorder what is shown.  ``keep_newlines`` leaves line feeds
    (multi-line SQL shown as lines; the caller indents continuation lines)."""
    if not any(ch in _INVISIBLE for ch in text):
        return text
    return "".join(_escaped(ch) if ch in _INVISIBLE and not (keep_newlines and ch == "\n") else ch
                   for ch in text)


def param_text(value: object) -> str:
    """A bound parameter value as text: strings as they are, bytes in PostgreSQL's hex form (``\\x0a1b``),
    booleans as ``true``/``false``, anything else as its ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def params_text(params: object) -> str:
    """``$1 = '999999', $2 = NULL`` (or ``name = 'value'`` for named arguments), escaped for a terminal."""
    def value(v: object) -> str:
        return "NULL" if v is None else "'" + escape(str(v)).replace("'", "''") + "'"

    if isinstance(params, dict):
        return ", ".join(f"{escape(str(k))} = {value(v)}" for k, v in params.items())
    if isinstance(params, list):
        return ", ".join(f"${i} = {value(v)}" for i, v in enumerate(params, 1))
    return escape(str(params))
