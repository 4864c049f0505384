"""Server-sent events (the WHATWG ``text/event-stream`` format) as Streamable HTTP uses them, sans-IO.

:class:`EventDecoder` reads an upstream's SSE body fed in arbitrary pieces; :func:`encode` writes one event
for an agent.  Only ``data`` and ``event`` matter to MCP (``id`` and ``retry`` serve resumption, which gw does
not offer: a resumed stream would bypass the call it belongs to).
"""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    event: str
    data: str


class EventTooLarge(ValueError):
    pass


class EventDecoder:
    """Feeds bytes, yields complete events.  Lines end with CRLF, LF or CR; an event ends at a blank line."""

    def __init__(self, max_event: int) -> None:
        self._buffer = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._max = max_event
        self._skip_lf = False

    def feed(self, chunk: bytes | bytearray) -> list[Event]:
        self._buffer += chunk
        out: list[Event] = []
        buf = self._buffer
        start = 0
        while True:
            if self._skip_lf and start < len(buf):
                if buf[start] == 0x0A:
                    start += 1
                self._skip_lf = False
            cr = buf.find(b"\r", start)
            lf = buf.find(b"\n", start)
            ends = [i for i in (cr, lf) if i != -1]
            if not ends:
                break
            end = min(ends)
            line = bytes(buf[start:end])
            start = end + 1
            if buf[end] == 0x0D:
                self._skip_lf = True
            event = self._line(line)
            if event is not None:
                out.append(event)
        del buf[:start]
        if len(buf) > self._max:
            raise EventTooLarge(f"an event line is longer than {self._max} bytes")
        return out

    def _line(self, raw: bytes) -> Event | None:
        line = raw.decode("utf-8", "replace")
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = Event(self._event or "message", "\n".join(self._data))
            self._data, self._event, self._size = [], "", 0
            return event
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._max:
                raise EventTooLarge(f"an event is larger than {self._max} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def encode(data: bytes, event: str = "message") -> bytes:
    """One event carrying ``data`` (a JSON message: no line breaks, since gw serialises it compactly)."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out = [b"event: " + event.encode("ascii")] + [b"data: " + line for line in lines]
    return b"\n".join(out) + b"\n\n"


def comment(text: str) -> bytes:
    return b": " + text.replace("\n", " ").replace("\r", " ").encode("utf-8") + b"\n\n"
