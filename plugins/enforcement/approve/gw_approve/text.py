"""How the approve stage writes times, durations and commands into messages people and agents read."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from gw.text import escape_visible

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
    invisible characters escaped, see :func:`gw.text.escape_visible`)."""
    one_line = " ".join(escape_visible(text.replace("\n", " ").replace("\t", " ")).split(" ")).strip()
    one_line = re.sub(" {2,}", " ", one_line)
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


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
        return "NULL" if v is None else "'" + escape_visible(str(v)).replace("'", "''") + "'"

    if isinstance(params, dict):
        return ", ".join(f"{escape_visible(str(k))} = {value(v)}" for k, v in params.items())
    if isinstance(params, list):
        return ", ".join(f"${i} = {value(v)}" for i, v in enumerate(params, 1))
    return escape_visible(str(params))
