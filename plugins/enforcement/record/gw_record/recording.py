"""The recording format: where recordings live in the store, the event vocabulary, the channel contract, and
how values become JSON -- with what the agent *sent* redacted before anything is persisted.

A recording is JSON-lines shaped: a header object, then ``[t, type, payload]`` events, ``t`` in seconds since
the session started.  In the store (see :mod:`gw.store`) it is kept as records of one shared stream,
:data:`STREAM`, each carrying the session id as an indexed field, so one append writes the pending events of
every session at once, retention prunes one stream, and a replay is one indexed scan.  A small document per
session in :data:`INDEX` makes ``gw sessions list`` cheap.
"""

from __future__ import annotations

import base64
import enum
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gw.detect import Detector
from gw.model import Channel

#: Name of the recording format in exported headers, and its version (bumped on incompatible changes).
FORMAT = "gw-recording"
VERSION = 1

#: The store stream holding every recording; each record is ``{"session": id, "header": {...}}`` or
#: ``{"session": id, "events": [[t, type, payload], ...]}`` and is indexed by ``session``.
STREAM = "recordings"
#: The document collection with one summary per recorded session, keyed by session id.
INDEX = "sessions"

#: What replaces a redacted value.
REDACTED = "***"


class EventType(enum.StrEnum):
    """The ``type`` of an event; payloads are documented in docs/plugins/record.md."""

    QUERY = "query"        # a command arrived: text, kind, verb, objects, flags, params, attributes
    VERDICT = "verdict"    # the combined decision of the pipeline about it
    ROWS = "rows"          # result rows as the agent saw them (after masking), up to max_rows
    RESULT = "result"      # summary: status, columns, row count, tag, duration, per-channel byte counts
    ERROR = "error"        # the command failed upstream (code, message)
    NOTICE = "notice"      # an informational message the agent saw
    DATA = "data"          # a chunk of a byte stream (terminal output, stdout, HTTP body ...)
    RESIZE = "resize"      # the agent's terminal changed size
    END = "end"            # the session ended (reason, command count)


# -- the channel contract (protocol plugins call Stage.stream(command, channel, content_type)) ---------------

#: Channels carrying what the agent was shown, after masking: recorded as they arrive, with their timing.
OUTPUT_CHANNELS = frozenset({Channel.STDOUT, Channel.STDERR, Channel.PTY, Channel.RESPONSE_BODY,
                             Channel.WS_SERVER})
#: Channels carrying what a person or agent typed; they catch typed passwords, so they are recorded only with
#: ``record_input = true``.
INPUT_CHANNELS = frozenset({Channel.PTY_INPUT, Channel.STDIN})
#: Channels carrying what the agent sent as data (HTTP request bodies, WebSocket messages): recorded, with the
#: detectors applied since no mask stage rewrites them.  Unknown channels are treated the same way.
CLIENT_CHANNELS = frozenset({Channel.REQUEST_BODY, Channel.WS_CLIENT})
#: A control channel: each chunk is one terminal size, ``b"COLSxROWS"`` (the asciicast ``r`` event's data).
RESIZE_CHANNEL = Channel.PTY_RESIZE
#: Terminal channels, limited by ``max_terminal_bytes`` instead of ``max_bytes``.
TERMINAL_CHANNELS = frozenset({Channel.PTY, Channel.PTY_INPUT})

#: Keys whose values are never recorded, wherever they appear in command, session or outcome attributes.
DEFAULT_REDACT_KEYS = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "apikey",
    "x-auth-token", "password", "passwd", "secret", "token", "access_token", "refresh_token", "client_secret",
)


class Sent:
    """Text or bytes the agent sent (command text, parameters, request bodies, typed input) or free text the
    masking stage never sees (error messages, notices, refusal reasons).  The detectors run over it when it
    is serialised for the store -- off the command path."""

    __slots__ = ("value",)

    def __init__(self, value: str | bytes) -> None:
        self.value = value


class Attributes:
    """Protocol-supplied details (command and session attributes, outcome notes); serialised by
    :meth:`Redactor.attributes`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Rows:
    """Result rows as the protocol passed them (UTF-8 text, or the binary encoding in ``binary`` columns);
    serialised by a tight loop, since rows are most of what a database session records."""

    __slots__ = ("binary", "rows")

    def __init__(self, rows: list[list[bytes | None]], binary: tuple[int, ...]) -> None:
        self.rows = rows
        self.binary = binary


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def decode_value(value: Any) -> bytes | str | None:
    """The inverse of :meth:`Redactor.json` for one stored value: ``{"b64": ...}`` gives bytes back."""
    if isinstance(value, Mapping) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value  # type: ignore[no-any-return]


def as_text(value: Any) -> str:
    """A stored value as text for display: base64 values are decoded, undecodable bytes replaced."""
    raw = decode_value(value)
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def utf8_incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` start a UTF-8 character that the next chunk completes (0-3).

    Terminal output is read in arbitrary chunks; holding these bytes back keeps a character split across two
    reads from turning both chunks into base64.
    """
    n = len(data)
    for back in range(1, min(3, n) + 1):
        byte = data[n - back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if 0xF0 <= byte <= 0xF4:
            need = 4
        elif 0xE0 <= byte <= 0xEF:
            need = 3
        elif 0xC2 <= byte <= 0xDF:
            need = 2
        else:  # ASCII, or a byte that never starts a character: nothing to wait for
            return 0
        return back if back < need else 0
    return 0


_CACHED_TEXT = 4096
_CACHE_SIZE = 4096


class Redactor:
    """Turns event payloads into JSON values, redacting on the way.

    * :class:`Sent` values: every configured detector's spans are replaced by ``***`` (bytes that are not
      UTF-8 are scanned through a byte-for-byte latin-1 view, so a card number inside a binary body is still
      found, then stored as base64);
    * in :class:`Attributes`, mapping keys matching ``keys`` (case-insensitive globs): the value becomes
      ``***``, whatever it is;
    * other bytes: text when they are UTF-8, else ``{"b64": ...}``.
    """

    def __init__(self, detectors: Sequence[Detector], keys: Iterable[str]) -> None:
        self.detectors = tuple(detectors)
        # Detectors that declare a ``prefilter`` (a regular expression matching wherever they could find
        # something; the built-ins share one) run only when it matches: most texts need one search, not one
        # call per detector.
        groups: dict[re.Pattern[str] | None, list[Detector]] = {}
        for detector in self.detectors:
            prefilter = getattr(detector, "prefilter", None)
            if not (isinstance(prefilter, re.Pattern) and isinstance(prefilter.pattern, str)):
                prefilter = None
            groups.setdefault(prefilter, []).append(detector)
        self._groups = tuple((p.search if p is not None else None, tuple(g)) for p, g in groups.items())
        #: Redacted forms of recent short texts: agents repeat statements (prepared, retried, polled), and
        #: running every detector over the same text again is most of the recording's CPU cost.
        self._cache: dict[str, str] = {}
        exact: set[str] = set()
        globs: list[str] = []
        for key in keys:
            k = key.lower()
            if any(c in k for c in "*?["):
                globs.append(k)
            else:
                exact.add(k)
        self._exact_keys = frozenset(exact)
        self._key_glob = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None

    def secret_key(self, key: str) -> bool:
        k = key.lower()
        return k in self._exact_keys or (self._key_glob is not None and self._key_glob.match(k) is not None)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Merged, sorted spans of every detector's findings in ``text``."""
        found: list[tuple[int, int]] = []
        for gate, detectors in self._groups:
            if gate is not None and gate(text) is None:
                continue
            for detector in detectors:
                found.extend(detector.find(text))
        if not found:
            return []
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        return merged

    def text(self, text: str) -> str:
        if not self.detectors or not text:
            return text
        if len(text) <= _CACHED_TEXT:
            cached = self._cache.get(text)
            if cached is None:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                cached = self._cache[text] = self._redact(text)
            return cached
        return self._redact(text)

    def _redact(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(REDACTED)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def sent_bytes(self, data: bytes) -> str | dict[str, str]:
        try:
            return self.text(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        if self.detectors:
            spans = self.spans(data.decode("latin-1"))
            if spans:
                out, pos = bytearray(), 0
                for start, end in spans:
                    out += data[pos:start] + REDACTED.encode()
                    pos = end
                out += data[pos:]
                data = bytes(out)
        return b64(data)

    def json(self, value: Any) -> Any:
        """``value`` as a JSON-compatible value, redacted as described on the class.

        Dispatches on the exact type first: it runs for every recorded value (in the background writer, but
        on the trio thread), so the common shapes of event payloads take the shortest path.
        """
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            return value
        if kind is bytes:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return b64(value)
        if kind is list or kind is tuple:
            return [self.json(v) for v in value]
        if kind is dict:
            return {k: self.json(v) for k, v in value.items()}
        if kind is Sent:
            v = value.value
            return self.text(v) if isinstance(v, str) else self.sent_bytes(bytes(v))
        if kind is Attributes:
            return self.attributes(value.value)
        if kind is Rows:
            return self.rows(value)
        if isinstance(value, enum.Enum):
            return self.json(value.value)
        if isinstance(value, (str, int, float)):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.json(bytes(value))
        if isinstance(value, Mapping):
            return {str(k): self.json(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.json(v) for v in value]
        return str(value)

    def rows(self, value: Rows) -> list[list[Any]]:
        out: list[list[Any]] = []
        for row in value.rows:
            if not value.binary:
                try:
                    out.append([None if v is None else v.decode("utf-8") for v in row])
                    continue
                except UnicodeDecodeError:
                    pass
            out.append([None if v is None else b64(v) if i in value.binary else self.json(v)
                        for i, v in enumerate(row)])
        return out

    def attributes(self, value: Any) -> Any:
        """Protocol-supplied attributes (HTTP headers, session details): secret keys redacted, every text
        leaf run through the detectors, and header lists of ``(name, value)`` pairs handled like mappings."""
        if isinstance(value, Mapping):
            return {str(k): (REDACTED if self.secret_key(str(k)) else self.attributes(v))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(p, (list, tuple)) and len(p) == 2
                             and isinstance(p[0], (str, bytes)) for p in value):
                pairs = []
                for name, v in value:
                    key = name.decode("latin-1") if isinstance(name, bytes) else name
                    pairs.append([key, REDACTED if self.secret_key(key) else self.attributes(v)])
                return pairs
            return [self.attributes(v) for v in value]
        if isinstance(value, (str, bytes)):
            return self.json(Sent(value))
        return self.json(value)
