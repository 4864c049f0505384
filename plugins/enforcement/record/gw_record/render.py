"""Turning a recording into what people and players read: the replay transcript, asciicast v2, JSON lines.

Everything here is pure (events in, text out); :mod:`gw_record.cli` does the store I/O and the waiting.
A *frame* is ``(t, code, text)`` with the asciicast event codes: ``o`` output, ``i`` input, ``r`` resize.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gw.text import escape_visible

from .recording import EventType, as_text, decode_value

Frame = tuple[float, str, str]


def printable(text: str) -> str:
    """Recorded text outside terminal channels as the transcript shows it: lines and tabs as they are, every
    other hidden character escaped (:func:`gw.text.escape_visible`), so recorded data cannot drive the reader's
    terminal (ESC sequences that rewrite the screen or set the window title) nor reorder what it shows."""
    return escape_visible(text.replace("\r\n", "\n"), keep="\n\t")


def clock(t: float) -> str:
    minutes, seconds = divmod(t, 60)
    return f"{int(minutes):02d}:{seconds:06.3f}"


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return "?"


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Mapping) and "b64" in value:
        raw = decode_value(value)
        return f"<{len(raw) if isinstance(raw, bytes) else '?'} bytes>"
    return escape_visible(str(value))  # one line per row: line ends and tabs escaped too


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A small aligned text table, as an SQL client would print it."""
    cells = [[_cell(v) for v in row] for row in rows]
    width = len(cells[0]) if cells else 0
    names = [escape_visible(c) for c in columns] or [f"column{i + 1}" for i in range(width)]
    widths = [len(n) for n in names]
    for row in cells:
        for i, v in enumerate(row[:len(widths)]):
            widths[i] = max(widths[i], len(v))
    lines = [indent + " | ".join(n.ljust(widths[i]) for i, n in enumerate(names)).rstrip(),
             indent + "-+-".join("-" * w for w in widths)]
    for row in cells:
        padded = (v.ljust(widths[i]) for i, v in enumerate(row[:len(widths)]))
        lines.append(indent + " | ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


_CHANNEL_LABELS = {"request-body": ">> request body", "response-body": "<< response body",
                   "ws-client": ">> websocket", "ws-server": "<< websocket", "stdin": ">> stdin"}


class Transcript:
    """The session as the agent saw it, with gw's decisions annotated.

    With ``terminal_only`` (asciicast export of a terminal session) only the terminal channels are rendered,
    so the player shows exactly the screen the agent had.
    """

    def __init__(self, header: Mapping[str, Any], *, terminal_only: bool = False) -> None:
        self.header = header
        self.terminal_only = terminal_only
        self._open_channel: tuple[int, str] | None = None
        self._line_open = False

    def opening(self) -> list[Frame]:
        if self.terminal_only:
            return []
        h = self.header
        groups = ", ".join(h.get("groups") or []) or "no groups"
        text = (f"# gw session {h.get('session')}: {h.get('subject')} ({groups}) on listener "
                f"{h.get('listener')} ({h.get('protocol')}) from {h.get('client')} to "
                f"{h.get('upstream') or '-'}, started {_when(h.get('started'))}\n")
        if h.get("pruned"):
            text += "# the start of this recording was removed by retention\n"
        return [(0.0, "o", printable(text))]

    def frames(self, event: Sequence[Any]) -> list[Frame]:
        try:
            t, kind, payload = float(event[0]), str(event[1]), event[2]
        except (IndexError, TypeError, ValueError):
            return []
        if not isinstance(payload, Mapping):
            return []
        if kind == EventType.DATA:
            return self._data(t, payload)
        if kind == EventType.RESIZE:
            return [(t, "r", f"{payload.get('cols')}x{payload.get('rows')}")]
        if self.terminal_only:
            return []
        text = self._line(t, kind, payload)
        if not text:
            return []
        if self._line_open:
            text = "\n" + text
        self._line_open = False
        self._open_channel = None
        return [(t, "o", text)]

    def _line(self, t: float, kind: str, p: Mapping[str, Any]) -> str:
        if kind == EventType.QUERY:
            text = printable(str(p.get("text", ""))).replace("\n", "\n    ")
            return f"[{clock(t)}] > {text}\n"
        if kind == EventType.VERDICT:
            decision = p.get("decision")
            by = f"{p.get('stage') or 'gw'}" + (f" (rule {p['rule']})" if p.get("rule") else "")
            reason = printable(str(p.get("reason") or ""))
            if decision == "deny":
                return f"  DENIED by {by}: {reason}\n"
            if decision == "pending":
                return f"  HELD by {by} for approval request {p.get('request_id')}: {reason}\n"
            if p.get("approved_by"):
                return (f"  approved (request {p.get('request_id')}) by {', '.join(p['approved_by'])}\n")
            return ""
        if kind == EventType.ROWS:
            text = table(p.get("columns") or [], p.get("rows") or [])
            if p.get("truncated"):
                text += "  ... (more rows were returned; max_rows limits the recording)\n"
            return text
        if kind == EventType.RESULT:
            if p.get("status") not in ("ok", None):
                return f"  ({p.get('status')})\n" if p.get("status") != "error" else ""
            parts = []
            if p.get("rows") is not None:
                parts.append(f"{p['rows']} row{'s' if p['rows'] != 1 else ''}")
            if p.get("tag"):
                parts.append(printable(str(p["tag"])))
            parts.append(f"{float(p.get('duration') or 0) * 1000:.1f} ms")
            return f"  ({', '.join(parts)})\n"
        if kind == EventType.ERROR:
            code = f" {p['code']}" if p.get("code") else ""
            return f"  ERROR{code}: {printable(str(p.get('message') or ''))}\n"
        if kind == EventType.NOTICE:
            return f"  NOTICE: {printable(str(p.get('text') or ''))}\n"
        if kind == EventType.END:
            n = p.get("commands", 0)
            plural = "s" if n != 1 else ""
            return f"[{clock(t)}] # session ended: {printable(str(p.get('reason')))} ({n} command{plural})\n"
        return ""

    def _data(self, t: float, p: Mapping[str, Any]) -> list[Frame]:
        channel = str(p.get("channel", ""))
        terminal = channel in ("pty", "pty-input")
        if self.terminal_only and not terminal:
            return []
        if p.get("truncated"):
            note = f"[gw: the recording of {channel} stops here ({p['truncated']} reached)]"
            return [(t, "o", f"\r\n{note}\r\n" if terminal else f"\n  {note}\n")]
        text = as_text(p.get("data"))
        if channel == "pty":
            return [(t, "o", text)]
        if channel == "pty-input":
            return [(t, "i", text)]
        text = printable(text)
        prefix = ""
        key = (int(p.get("seq") or 0), channel)
        if channel not in ("stdout", "stderr") and self._open_channel != key:
            label = _CHANNEL_LABELS.get(channel, f"[{channel}]")
            prefix = ("\n" if self._line_open else "") + f"  {label}:\n"
        self._open_channel = key
        self._line_open = not text.endswith("\n")
        return [(t, "o", prefix + text)]


@dataclass
class TerminalProbe:
    """First pass over a recording for asciicast: is it a terminal session, and what size and type."""

    terminal: bool = False
    cols: int | None = None
    rows: int | None = None
    term: str | None = None

    def see(self, event: Sequence[Any]) -> None:
        try:
            kind, payload = event[1], event[2]
        except (IndexError, TypeError):
            return
        if not isinstance(payload, Mapping):
            return
        if kind == EventType.DATA and payload.get("channel") in ("pty", "pty-input"):
            self.terminal = True
        elif kind == EventType.QUERY and self.cols is None:
            attrs = payload.get("attributes")
            if isinstance(attrs, Mapping) and _int(attrs.get("cols")) and _int(attrs.get("rows")):
                self.cols, self.rows = _int(attrs["cols"]), _int(attrs["rows"])
                if isinstance(attrs.get("term"), str):
                    self.term = attrs["term"]
        elif kind == EventType.RESIZE and self.cols is None:
            self.cols, self.rows = _int(payload.get("cols")), _int(payload.get("rows"))


def _int(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def asciicast_header(header: Mapping[str, Any], probe: TerminalProbe) -> str:
    out: dict[str, Any] = {"version": 2, "width": probe.cols or (80 if probe.terminal else 120),
                           "height": probe.rows or (24 if probe.terminal else 40)}
    try:
        out["timestamp"] = int(float(header.get("started")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass
    out["title"] = f"gw session {header.get('session')}: {header.get('subject')} on {header.get('listener')}"
    if probe.term:
        out["env"] = {"TERM": probe.term}
    return json.dumps(out, ensure_ascii=False)


class AsciicastEvents:
    """Frames as asciicast v2 event lines: times never go backwards, and outside a terminal session line
    ends become CR LF, as a terminal needs them."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.last = 0.0

    def line(self, frame: Frame) -> str | None:
        t, code, text = frame
        if not text:
            return None
        if code != "r" and not self.terminal:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        self.last = max(self.last, round(t, 6))
        return json.dumps([self.last, code, text], ensure_ascii=False)


def jsonl(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def play(frames: AsyncIterable[Frame], write: Callable[[str], None], *, speed: float,
               idle_limit: float | None, sleep: Callable[[float], Awaitable[None]]) -> None:
    """Write frames with their recorded timing: gaps are capped at ``idle_limit`` then divided by ``speed``;
    ``speed`` 0 writes everything at once.  Input frames are skipped (the terminal's echo shows them)."""
    previous: float | None = None
    async for t, code, text in frames:
        if code != "o":
            continue
        if previous is not None and speed > 0:
            gap = max(0.0, t - previous)
            if idle_limit is not None:
                gap = min(gap, idle_limit)
            if gap > 0:
                await sleep(gap / speed)
        previous = t
        write(text)
