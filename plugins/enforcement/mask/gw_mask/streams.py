"""Masking byte streams: SSH stdout/stderr, HTTP bodies.

* Text (``text/*``, unknown content types on SSH): detectors, line-buffered so a value split across reads is
  still caught.  A line longer than ``max_line`` is flushed without waiting for its end, except for its
  trailing run of characters that could still be the beginning of a value (at most :data:`HOLD_LIMIT`).
* Interactive channels (a pty) cannot wait for line ends -- a shell prompt has none -- so there only that
  trailing run is held back.  An empty read, ``feed(b"")``, tells the filter the stream went idle: it then
  releases (masked) what it holds, so a protocol bounds the echo delay by calling it after a short pause.
* JSON (``application/json``, ``*/*+json``): buffered up to ``max_body``, parsed, masked, re-serialised.  A
  body over the bound or not parseable raises :class:`MaskUnavailable`: the protocol refuses the response
  (HTTP 502), it never passes it on unmasked.
* NDJSON (``application/x-ndjson``, ``application/jsonl``): each line is a document, masked as it completes.
"""

from __future__ import annotations

import codecs

from gw.errors import GwError

from .jsonmask import DocumentError, JsonMasker
from .masking import TextMasker

#: Longest trailing run held back from a flush: no built-in value is longer (an e-mail address is at most 320
#: characters); a third-party detector that finds longer values should be used on line-structured output.
HOLD_LIMIT = 1024
#: Characters never inside a built-in value: a held-back run stops at them.  Whitespace also stops it, except
#: a single space between two value characters ("4111 1111", "DE89 3704", "+44 20").
_BOUNDARY = frozenset("\"`,;:<>[]{}|=!?*&^$#~\\/")


class MaskUnavailable(GwError):
    """gw cannot mask this stream, so it must not be passed on.

    Raised from a stream filter's ``feed`` or ``finish``; protocols turn it into a refusal the client
    understands (HTTP 502 with the message) and never forward the unmasked data.  The message names the
    reason and what to do; it never contains the data.
    """


def open_tail(text: str, limit: int = HOLD_LIMIT) -> int:
    """Length of the trailing run of ``text`` that may be the beginning of a value continuing in the next
    read (at most ``limit``)."""
    n = len(text)
    floor = max(0, n - limit)
    i = n
    while i > floor:
        c = text[i - 1]
        if c == " ":
            before = text[i - 2] if i - 2 >= floor else " "
            if before.isspace() or before in _BOUNDARY:
                break
        elif c.isspace() or c in _BOUNDARY:
            break
        i -= 1
    return n - i


class _TextCodec:
    """Incremental, lossless text decoding: bytes that are not valid in the charset survive the round trip."""

    def __init__(self, charset: str) -> None:
        try:
            info = codecs.lookup(charset or "utf-8")
        except LookupError:
            info = codecs.lookup("utf-8")
        self.name = info.name
        self.decoder = info.incrementaldecoder("surrogateescape")

    def decode(self, data: bytes, final: bool = False) -> str:
        return self.decoder.decode(data, final)

    def encode(self, text: str) -> bytes:
        try:
            return text.encode(self.name, "surrogateescape")
        except UnicodeEncodeError as e:
            raise MaskUnavailable(f"gw could not re-encode masked {self.name} text ({e.reason}); the output was "
                                  "withheld. Ask the operator to check the mask stage") from None


class TextStream:
    """Detector masking of a text stream; see the module docstring for how much is held back."""

    def __init__(self, masker: TextMasker, *, max_line: int, interactive: bool = False,
                 charset: str = "utf-8") -> None:
        self._masker = masker
        self._max_line = max_line
        self._interactive = interactive
        self._codec = _TextCodec(charset)
        self._pending = ""

    def _masked(self, text: str) -> bytes:
        if not text:
            return b""
        masked = self._masker.mask(text)
        return self._codec.encode(text if masked is None else masked)

    def feed(self, data: bytes) -> bytes:
        text = self._pending + self._codec.decode(data)
        if self._interactive:
            # An empty read means the stream is idle: nothing more is coming to complete a value for now.
            cut = len(text) - (open_tail(text) if data else 0)
        else:
            cut = max(text.rfind("\n"), text.rfind("\r")) + 1
            if len(text) - cut > self._max_line:
                cut = len(text) - open_tail(text)
        self._pending = text[cut:]
        return self._masked(text[:cut])

    def finish(self) -> bytes:
        text = self._pending + self._codec.decode(b"", final=True)
        self._pending = ""
        return self._masked(text)


def _too_large(what: str, limit: int) -> MaskUnavailable:
    return MaskUnavailable(
        f"gw could not mask this response: {what} is larger than the mask stage's max_body ({limit} bytes), "
        "and a response that needs masking is never passed on unmasked. Request less data (a smaller page "
        "or a filter), or ask the gateway operator to raise max_body")


def _unparseable(what: str, error: DocumentError) -> MaskUnavailable:
    return MaskUnavailable(
        f"gw could not mask this response: {what} declares JSON but is {error}; it was not passed on "
        "unmasked. Check the upstream service, or ask for an uncompressed response")


class JsonBody:
    """A JSON body: buffered (bounded), masked at the end.  ``feed`` returns nothing until ``finish``."""

    def __init__(self, masker: JsonMasker, *, max_body: int) -> None:
        self._masker = masker
        self._max_body = max_body
        self._body = bytearray()

    def feed(self, data: bytes) -> bytes:
        if len(self._body) + len(data) > self._max_body:
            self._body.clear()
            raise _too_large("the JSON body", self._max_body)
        self._body += data
        return b""

    def finish(self) -> bytes:
        body = bytes(self._body)
        self._body.clear()
        if not body.strip():
            return body
        try:
            return self._masker.mask_bytes(body)
        except DocumentError as e:
            raise _unparseable("the body", e) from None


class JsonLines:
    """Newline-delimited JSON: each complete line is masked as a document; a line is bounded by ``max_body``."""

    def __init__(self, masker: JsonMasker, *, max_body: int) -> None:
        self._masker = masker
        self._max_body = max_body
        self._pending = b""

    def _mask_lines(self, chunk: bytes) -> bytes:
        out = []
        for line in chunk.splitlines(keepends=True):
            body = line.rstrip(b"\r\n")
            if body.strip():
                try:
                    line = self._masker.mask_bytes(body) + line[len(body):]
                except DocumentError as e:
                    raise _unparseable("a line of the body", e) from None
            out.append(line)
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if len(self._pending) > self._max_body:
            self._pending = b""
            raise _too_large("a line of the JSON-lines body", self._max_body)
        return self._mask_lines(data[:cut])

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._mask_lines(rest)


# ---------------------------------------------------------------------------------------------------------------
# Content types
# ---------------------------------------------------------------------------------------------------------------

_TEXT_APPLICATION = frozenset({
    "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/yaml",
    "application/x-yaml", "application/sql", "application/graphql", "application/csv", "application/x-sh",
})
_JSON_LINES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                         "application/x-jsonlines", "application/json-seq"})


def parse_content_type(content_type: str) -> tuple[str, str]:
    """``"application/json; charset=utf-8"`` -> ``("application/json", "utf-8")``."""
    media, _, params = content_type.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media.strip().lower(), charset


def stream_kind(media: str) -> str | None:
    """``json``, ``jsonlines``, ``text``, or None for content gw does not scan (images, archives, octet
    streams).  An empty media type (SSH output, a body without Content-Type) is text."""
    if media in _JSON_LINES:
        return "jsonlines"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if not media or media.startswith("text/") or media in _TEXT_APPLICATION or media.endswith("+xml"):
        return "text"
    return None

