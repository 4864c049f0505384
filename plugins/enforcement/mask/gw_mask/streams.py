"""Masking byte streams: SSH stdout/stderr, HTTP bodies, WebSocket messages.

Which masker a stream gets is decided by its content type (:mod:`gw_mask.content`); CSV and response headers
are in :mod:`gw_mask.fields`.

* Text (``text/*``, SSH output): detectors, line-buffered so a value split across reads is
  still caught.  A line longer than ``max_line`` is flushed without waiting for its end, except for its
  trailing run of characters that could still be the beginning of a value (at most :data:`HOLD_LIMIT`).
* Interactive channels (a pty) cannot wait for line ends -- a shell prompt has none -- so there only a tail
  that could be the beginning of a detected value is held back.
* An empty read, ``feed(b"")``, tells the filter the stream went idle (protocols call it after a short pause,
  and again while the pause lasts).  The filter then releases what *cannot* be the beginning of a value (a
  prompt, scp's acknowledgement byte) and keeps holding what can: waiting longer never reveals a value cut in
  two by a pause (``printf '078-05-'; sleep 1; printf '1120'``).  On an interactive channel a tail still held
  after :data:`PTY_HOLD` seconds is released masked, not in clear.
* JSON (``application/json``, ``*/*+json``): buffered up to ``max_body``, parsed, masked, re-serialised.  A
  body over the bound or not parseable raises :class:`MaskUnavailable`: the protocol refuses the response
  (HTTP 502), it never passes it on unmasked.
* NDJSON (``application/x-ndjson``, ``application/jsonl``): each line is a document, masked as it completes.
* WebSocket messages (the ``ws-server`` channel): each ``feed`` is one whole message, masked as JSON when it
  parses as JSON, else as text.

What "could be the beginning of a value" means is each detector's business: a detector may carry ``prefix``,
a regular expression that matches (with ``search``, anchored by ``$``) the end of a text that a value it finds
could start in.  The built-in detectors' are below; a detector without one (and a labelled value) is assumed
to start in any trailing run of non-separator characters (:func:`open_tail`), which is safe but holds more.

A charset is honoured for every kind.  On protocol channels (HTTP bodies, anything but terminal output) text
is read strictly: a body without a declared charset is UTF-8 unless it starts with a byte order mark, and text
containing NUL characters is refused -- it is UTF-16 or UTF-32 read with the wrong charset, where detectors
would see digits interleaved with NULs and find nothing.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable

from gw.errors import GwError

from .fields import LabelMasker
from .jsonmask import DocumentError, JsonMasker
from .masking import TextMasker
from .strategies import REDACTED, Strategy

#: Longest trailing run held back from a flush: no built-in value is longer (an e-mail address is at most 320
#: characters); a third-party detector that finds longer values should be used on line-structured output.
HOLD_LIMIT = 1024
#: Seconds an interactive channel holds a tail that could be the beginning of a value before it releases it
#: masked.
PTY_HOLD = 1.0
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


def _optional_chain(word: str) -> str:
    """A regular expression matching every non-empty prefix of ``word`` (a space in ``word`` matches one
    optional separator): ``ssn`` -> ``s(?:s(?:n)?)?``."""
    out = ""
    for c in reversed(word):
        piece = r"[\s_-]?" if c == " " else re.escape(c)
        out = f"{piece}(?:{out})?" if out else piece
    return out


_SSN_LABELS = ("ssn", "ss#", "ss #", "ss no.", "ssno", "social security number", "social security num",
               "social security no.", "social security #", "socialsecuritynumber")
_SSN_LABEL = (r"(?:ssn|ss\s?#|ss\s?no\.?|social[\s_-]?security(?:[\s_-]?(?:number|num|no\.?|#))?)"
              r"(?:[\s_-]?(?:number|num|no))?[\s:=#\"'-]{0,5}\d{0,9}")
#: The built-in detectors' prefixes: the end of a text in which one of their values may have begun (a whole
#: value counts: more may follow that changes it).
BUILTIN_PREFIXES: dict[str, re.Pattern[str]] = {
    "us_ssn": re.compile(
        r"(?:(?<!\d)\d{1,3}|(?<!\d)\d{3}[- ]|(?<!\d)\d{3}([- ])\d{1,2}|(?<!\d)\d{3}([- ])\d{2}\2\d{0,4}"
        r"|(?i:(?<![a-z])" + _SSN_LABEL + r")"
        r"|(?i:(?<![a-z])(?:" + "|".join(_optional_chain(w) for w in _SSN_LABELS) + r")))$"),
    "credit_card": re.compile(r"(?<!\d)\d(?:[ -]?\d){0,18}[ -]?$"),
    "email": re.compile(r"[\w.%+'-]+(?:@[\w.-]*)?$|@[\w.-]*$"),
    "iban": re.compile(r"(?<![A-Za-z0-9])[A-Za-z](?:[A-Za-z](?:\d(?:\d(?: ?[A-Za-z0-9]){0,30} ?)?)?)?$"),
    "phone": re.compile(r"(?<![\w+])\+(?:[1-9][\d .()-]{0,30})?$|(?<![\w+(.-])[(\d][\d .()-]{0,16}$"),
}


class _Prefixes:
    """How long a tail of a text could still be the beginning of a value some detector of a masker finds."""

    def __init__(self, masker: TextMasker | None, labels: bool = False) -> None:
        self.rules: list[tuple[re.Pattern[str] | None, str, Strategy | None]] = []
        if labels:  # a labelled value ("ssn: ...") may begin in any trailing run
            self.rules.append((None, "labelled", None))
        for _, rules in masker._detection.groups if masker is not None else ():
            for _, find, name, strategy in rules:
                detector = getattr(find, "__self__", None)
                prefix = getattr(detector, "prefix", None)
                if not isinstance(prefix, re.Pattern):
                    prefix = BUILTIN_PREFIXES.get(name) if type(detector).__module__.startswith("gw_mask") \
                        else None
                self.rules.append((prefix, name, strategy))

    def hold(self, text: str) -> tuple[int, str, Strategy | None]:
        """(length of the tail to hold, the detector it may belong to, its strategy)."""
        window = text[-HOLD_LIMIT:]
        best: tuple[int, str, Strategy | None] = (0, "", None)
        for prefix, name, strategy in self.rules:
            if prefix is None:
                n = open_tail(text)
            else:
                m = prefix.search(window)
                n = len(window) - m.start() if m is not None else 0
            if n > best[0]:
                best = (n, name, strategy)
        return best


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class _TextCodec:
    """Incremental, lossless text decoding and encoding: bytes that are not valid in the charset survive the
    round trip.  With ``sniff``, an undeclared charset is taken from a byte order mark."""

    def __init__(self, charset: str, *, sniff: bool = False) -> None:
        self.name = codecs.lookup(charset or "utf-8").name
        self._sniff = sniff and not charset
        self._head = b""
        self.decoder = codecs.getincrementaldecoder(self.name)("surrogateescape")
        self.encoder = codecs.getincrementalencoder(self.name)("surrogateescape")

    def _sniffed(self, data: bytes, final: bool) -> bytes | None:
        data = self._head + data
        if len(data) < 4 and not final:
            self._head = data
            return None
        self._head = b""
        self._sniff = False
        for bom, name in _BOMS:
            if data.startswith(bom):
                self.name = name
                self.decoder = codecs.getincrementaldecoder(name)("surrogateescape")
                self.encoder = codecs.getincrementalencoder(name)("surrogateescape")
                break
        return data

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._sniff:
            sniffed = self._sniffed(data, final)
            if sniffed is None:
                return ""
            data = sniffed
        return self.decoder.decode(data, final)

    def encode(self, text: str, final: bool = False) -> bytes:
        try:
            return self.encoder.encode(text, final)
        except UnicodeEncodeError as e:
            raise MaskUnavailable(f"gw could not re-encode masked {self.name} text ({e.reason}); the output was "
                                  "withheld. Ask the operator to check the mask stage") from None


def _not_text(charset: str) -> MaskUnavailable:
    return MaskUnavailable(
        "gw could not mask this response: it holds NUL characters, so it is not text in the charset it "
        f"declares ({charset or 'none, read as UTF-8'}) -- probably UTF-16 or UTF-32 -- and gw cannot be sure "
        "to find every value in it; it was not passed on. Ask the service to declare the charset")


class TextStream:
    """Detector masking of a text stream; see the module docstring for how much is held back.  ``labels``
    adds column rules on labelled values; ``strict`` refuses what is not text in the declared charset."""

    def __init__(self, masker: TextMasker | None, *, max_line: int, interactive: bool = False,
                 charset: str = "utf-8", strict: bool = False, labels: LabelMasker | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._masker = masker
        self._labels = labels
        self._max_line = max_line
        self._interactive = interactive
        self._strict = strict
        self._declared = charset
        self._codec = _TextCodec(charset, sniff=strict)
        self._prefixes = _Prefixes(masker, labels is not None)
        self._clock = clock
        self._pending = ""
        #: When the tail held now began to be held (None: nothing held).
        self._held_since: float | None = None

    def _masked(self, text: str, final: bool = False) -> bytes:
        if not text:
            return self._codec.encode("", final) if final else b""
        if self._strict and "\x00" in text:
            raise _not_text(self._declared)
        if self._labels is not None:
            labelled = self._labels.mask(text)
            if labelled is not None:
                text = labelled
        masked = self._masker.mask(text) if self._masker is not None else None
        return self._codec.encode(text if masked is None else masked, final)

    def _cut(self, text: str, cut: int) -> int:
        """Move ``cut`` left so that no value detected in ``text`` is cut in two."""
        if 0 < cut < len(text) and self._masker is not None:
            for start, end, _, _ in self._masker.spans(text):
                if start < cut < end:
                    cut = start
        return cut

    def _release(self, text: str, cut: int, *, at_line_end: bool = False) -> bytes:
        if not at_line_end:  # a built-in value never spans a line end; elsewhere, keep a found value whole
            cut = self._cut(text, cut)
        self._pending = text[cut:]
        if not self._pending:
            self._held_since = None
        elif self._held_since is None:
            self._held_since = self._clock()
        return self._masked(text[:cut])

    def feed(self, data: bytes) -> bytes:
        if not data:
            return self._idle()
        text = self._pending + self._codec.decode(data)
        if self._interactive:
            cut = len(text) - self._prefixes.hold(text)[0]
        else:
            cut = max(text.rfind("\n"), text.rfind("\r")) + 1
            if len(text) - cut > self._max_line:
                cut = len(text) - max(open_tail(text), self._prefixes.hold(text)[0])
            else:
                return self._release(text, cut, at_line_end=True)
        return self._release(text, cut)

    def _idle(self) -> bytes:
        """Nothing arrived for a while: release what cannot begin a value; on an interactive channel, mask
        a tail held for :data:`PTY_HOLD` seconds."""
        text = self._pending
        if not text:
            return b""
        keep, name, strategy = self._prefixes.hold(text)
        out = self._release(text, len(text) - keep)
        if self._interactive and self._pending and self._held_since is not None and \
                self._clock() - self._held_since >= PTY_HOLD:
            tail, self._pending, self._held_since = self._pending, "", None
            if self._masker is not None:
                self._masker._counts.add_detected(name or "held")
            out += self._codec.encode(strategy.mask(tail) if strategy is not None else REDACTED)
        return out

    def finish(self) -> bytes:
        text = self._pending + self._codec.decode(b"", final=True)
        self._pending = ""
        self._held_since = None
        return self._masked(text, final=True)


class MessageMasker:
    """WebSocket messages: each ``feed`` is one complete UTF-8 message, returned masked -- as a JSON document
    when it is one, else as text (detectors and labelled values)."""

    def __init__(self, json_masker: JsonMasker | None, text: TextMasker | None, labels: LabelMasker | None,
                 *, max_body: int) -> None:
        self._json = json_masker
        self._text = text
        self._labels = labels
        self._max_body = max_body

    def feed(self, data: bytes) -> bytes:
        if len(data) > self._max_body:
            raise _too_large("a WebSocket message", self._max_body)
        stripped = data.lstrip()
        if self._json is not None and stripped[:1] in (b"{", b"[", b'"'):
            try:
                return self._json.mask_bytes(data)
            except DocumentError:
                pass  # not JSON after all: mask it as text
        text = data.decode("utf-8", "surrogateescape")
        if "\x00" in text:
            raise _not_text("utf-8")
        changed = False
        if self._labels is not None and (labelled := self._labels.mask(text)) is not None:
            text, changed = labelled, True
        if self._text is not None and (masked := self._text.mask(text)) is not None:
            text, changed = masked, True
        return text.encode("utf-8", "surrogateescape") if changed else data

    def finish(self) -> bytes:
        return b""


def _too_large(what: str, limit: int) -> MaskUnavailable:
    return MaskUnavailable(
        f"gw could not mask this response: {what} is larger than the mask stage's max_body ({limit} bytes), "
        "and a response that needs masking is never passed on unmasked. Request less data (a smaller page "
        "or a filter), or ask the gateway operator to raise max_body")


def _unparseable(what: str, error: DocumentError) -> MaskUnavailable:
    return MaskUnavailable(
        f"gw could not mask this response: {what} declares JSON but is {error}; it was not passed on "
        "unmasked. Check the upstream service, or ask for an uncompressed response")


def _mask_document(masker: JsonMasker, data: bytes, charset: str) -> bytes:
    """One JSON document in ``charset`` (none: UTF-8, or UTF-16/32 as JSON parsers detect them)."""
    if not charset:
        return masker.mask_bytes(data)
    try:
        text = data.decode(charset)
    except UnicodeDecodeError:
        raise DocumentError(f"not valid {charset}") from None
    utf8 = text.encode("utf-8", "surrogatepass")
    masked = masker.mask_bytes(utf8)
    return data if masked is utf8 else masked.decode("utf-8", "surrogatepass").encode(charset, "surrogatepass")


class JsonBody:
    """A JSON body: buffered (bounded), masked at the end.  ``feed`` returns nothing until ``finish``."""

    def __init__(self, masker: JsonMasker, *, max_body: int, charset: str = "") -> None:
        self._masker = masker
        self._max_body = max_body
        self._charset = charset
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
            return _mask_document(self._masker, body, self._charset)
        except DocumentError as e:
            raise _unparseable("the body", e) from None


class JsonLines:
    """Newline-delimited JSON: each complete line is masked as a document; a line is bounded by ``max_body``.
    A charset other than UTF-8 is decoded first (its newlines are not the byte 0x0A)."""

    def __init__(self, masker: JsonMasker, *, max_body: int, charset: str = "") -> None:
        self._masker = masker
        self._max_body = max_body
        self._pending = b""
        self._codec = _TextCodec(charset) if charset and codecs.lookup(charset).name != "utf-8" else None

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
        if self._codec is not None:
            data = self._codec.decode(data).encode("utf-8", "surrogateescape")
            return self._recode(self._lines(data))
        return self._lines(data)

    def _recode(self, data: bytes, final: bool = False) -> bytes:
        assert self._codec is not None
        return self._codec.encode(data.decode("utf-8", "surrogateescape"), final)

    def _lines(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if len(self._pending) > self._max_body:
            self._pending = b""
            raise _too_large("a line of the JSON-lines body", self._max_body)
        return self._mask_lines(data[:cut])

    def finish(self) -> bytes:
        if self._codec is not None:
            self._pending += self._codec.decode(b"", final=True).encode("utf-8", "surrogateescape")
        rest, self._pending = self._pending, b""
        out = self._mask_lines(rest)
        return self._recode(out, final=True) if self._codec is not None else out
