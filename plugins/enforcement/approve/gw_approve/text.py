"""How the approve stage writes times, durations and commands into messages people and agents read."""

from __future__ import annotations

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
    """A command on one line, cut to ``limit`` characters, for notices and webhook text."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
