"""How stored values are shown: what people typed escaped so it cannot disguise itself, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gw.text import escape_visible


def visible(value: Any) -> str:
    """The templates' ``visible`` filter: a stored value as text, escaped by core's one definition of what
    people must see escaped (:func:`gw.text.escape_visible`); line breaks and tabs stay, as a ``<pre>`` shows
    them.  HTML escaping is the template's."""
    return escape_visible("" if value is None else str(value), keep="\n\t")


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
