"""Keeps the injected upstream credential out of everything the agent receives.

An upstream that echoes request headers (debug endpoints, some error pages) would hand the agent the very
credential gw exists to keep from it.  :class:`SecretScrubber` replaces every occurrence with asterisks of the
same length (in the same encoding), so ``Content-Length`` stays valid and bodies that need no change stream
through untouched.  A secret split across two reads is caught by holding back only the tail that could begin
one -- ordinarily nothing, so streaming responses (watches, server-sent events) are not delayed.

A credential is looked for in every form an upstream produces when it echoes a header: as sent; in UTF-16 and
UTF-32 (either byte order), whatever the body declares, since a JSON parser reads those transparently; with
JSON-escaped slashes (``\\/``), percent-encoded (a URL carrying it) and HTML-escaped; in text, also spelt
with character escapes of any of its characters (``\\u0042earer``); and encoded in the charset the response
declares.  A response declaring a charset in which gw cannot search for it (an unknown
name, or a stateful encoding such as UTF-7 or ISO-2022-JP, where the same text has many byte forms) cannot be
scrubbed: :func:`check_charset` refuses it, and the proxy answers ``502`` instead of relaying it.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote, quote_plus

#: Encodings every body is scrubbed in, whatever it declares.
WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
#: Codec names (as :func:`codecs.lookup` spells them) whose byte form of a text is not unique or not
#: searchable: the same characters can be written several ways.
UNSCRUBBABLE_CODECS = frozenset({"utf-7", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004",
                                 "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr", "hz", "unicode-escape",
                                 "raw-unicode-escape", "punycode", "idna", "undefined"})


class Unscrubbable(ValueError):
    """The response declares a charset in which gw cannot find the credential; it is not relayed."""


def _codec_name(charset: str) -> str:
    try:
        info = codecs.lookup(charset)
    except LookupError:
        raise Unscrubbable(f"the response declares the charset {charset!r}, which gw does not know, so it "
                           "cannot make sure the upstream credential is not in it") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in UNSCRUBBABLE_CODECS:
        raise Unscrubbable(f"the response declares the charset {charset!r}, in which the same text has many "
                           "byte forms, so gw cannot make sure the upstream credential is not in it")
    return info.name


def check_charset(charset: str) -> str | None:
    """The codec name of a declared charset (None for none); raises :class:`Unscrubbable`."""
    return _codec_name(charset) if charset else None


def _encoded(text: str, encoding: str) -> bytes | None:
    try:
        return text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return None


#: Characters that no escaping the scrubber knows changes (``quote``, HTML, JSON slashes).
_SAFE_RUN = re.compile(r"[A-Za-z0-9_.~-]+")
#: Shortest alphanumeric run used as a quick pre-check for a secret's forms.
_MIN_ANCHOR = 4


def _variants(secret: bytes) -> set[str]:
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        text = secret.decode("latin-1")
    return {text, text.replace("/", "\\/"), quote(text, safe=""), quote_plus(text, safe=""),
            html.escape(text, quote=True)}


def secret_forms(secrets: Iterable[bytes], charset: str | None = None) -> list[tuple[bytes, bytes]]:
    """``(form, replacement)`` pairs for every byte form of each secret, longest first.  ``secrets`` are the
    raw header values (latin-1 / UTF-8 bytes); ``charset`` a codec name from :func:`check_charset`."""
    forms: dict[bytes, bytes] = {}

    def add(form: bytes | None, star: bytes | None) -> None:
        if form and star and form not in forms:
            forms[form] = star * (len(form) // len(star))

    for secret in secrets:
        add(secret, b"*")
        for variant in _variants(secret):
            add(variant.encode("utf-8"), b"*")
            for wide in WIDE_ENCODINGS:
                add(_encoded(variant, wide), "*".encode(wide))
            if charset is not None:
                add(_encoded(variant, charset), _encoded("*", charset))
    return sorted(forms.items(), key=lambda kv: len(kv[0]), reverse=True)


def _anchors(secrets: Iterable[bytes], charset: str | None) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Byte strings at least one of which occurs wherever any form of a secret does: the longest run of
    characters no escaping changes (letters, digits, ``_ . ~ -``) of each secret, as is and in the declared
    charset (narrow), and wide: UTF-16 without its last NUL byte, which is inside both byte orders' forms
    (``a\\0b\\0c``), and UTF-32 likewise.  Searching for these first keeps the common case -- no secret
    anywhere -- at a few substring searches per read."""
    narrow: set[bytes] = set()
    wide: set[bytes] = set()
    for secret in secrets:
        text = secret.decode("latin-1")
        runs = _SAFE_RUN.findall(text)
        anchor = max(runs, key=len) if runs else ""
        if len(anchor) < _MIN_ANCHOR:
            for variant in _variants(secret):  # no usable run: every form is its own anchor
                narrow.add(variant.encode("utf-8"))
                wide.update(f for w in WIDE_ENCODINGS if (f := _encoded(variant, w)))
                if charset is not None and (f := _encoded(variant, charset)):
                    narrow.add(f)
            narrow.add(secret)
            continue
        narrow.add(anchor.encode("ascii"))
        wide.add(anchor.encode("utf-16-le")[:-1])
        wide.add(anchor.encode("utf-32-le")[:-3])
        if charset is not None and (f := _encoded(anchor, charset)):
            (wide if b"\x00" in f else narrow).add(f)
    # An anchor that contains another is redundant (the bare token inside "Bearer <token>").
    narrow = {a for a in narrow if not any(b != a and b in a for b in narrow)}
    wide = {a for a in wide if not any(b != a and b in a for b in wide)}
    return tuple(sorted(narrow)), tuple(sorted(wide))


#: Character escapes an echo may use inside text: JSON/JavaScript ``\\uXXXX`` and ``\\/``, URL ``%XX``, HTML
#: ``&#N;`` / ``&#xH;``.
_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})|%([0-9a-fA-F]{2})|&#([0-9]{1,7});|&#[xX]([0-9a-fA-F]{1,6});|\\(/)")


def _may_escape(data: bytes | bytearray) -> bool:
    return b"\\" in data or b"%" in data or b"&#" in data

#: Longest escape of one character (``&#x10ffff;``), for how much a split escaped secret may need held back.
_MAX_ESCAPE = 10


def _unescaped(m: re.Match[bytes]) -> bytes:
    u, pct, dec, hexa, slash = m.groups()
    if slash:
        return b"/"
    if pct:
        return bytes([int(pct, 16)])
    code = int(u or hexa or b"0", 16) if (u or hexa) else int(dec)
    try:
        return chr(code).encode("utf-8", "surrogatepass")
    except (ValueError, OverflowError):
        return m.group(0)


class SecretForms:
    """Every form of a listener's secrets for one declared charset, prepared once and shared by the
    scrubbers of every response that declares it.  With ``escapes`` (text bodies and header values), a
    secret written with character escapes -- any mix of raw characters, ``\\u0041``, ``%41``, ``&#65;`` --
    is found too: the escapes are decoded into a view, the secret searched there, and the characters and
    escapes that spell it blanked in place."""

    __slots__ = ("_escapes", "_hold", "_narrow", "_targets", "_wide", "forms", "inner", "starts")

    def __init__(self, secrets: Sequence[bytes], charset: str | None = None, *, escapes: bool = False) -> None:
        self.forms = tuple(secret_forms(secrets, charset))
        self._narrow, self._wide = _anchors(secrets, charset)
        groups: dict[int, list[bytes]] = {}
        for form, _ in self.forms:
            groups.setdefault(form[0], []).append(form)
        #: ``(first byte, longest form starting with it, those forms)``: where a split secret may begin.
        self.starts = tuple((bytes([first]), max(map(len, forms)), tuple(forms))
                            for first, forms in groups.items())
        #: Bytes a proper prefix of a form can end with: a read ending in any other byte holds nothing back.
        self.inner = frozenset(b for form, _ in self.forms for b in form[:-1])
        self._escapes = escapes
        self._targets = tuple(sorted(set(secrets), key=len, reverse=True))
        self._hold = _MAX_ESCAPE * max((len(t) for t in self._targets), default=0)

    def _may_hold(self, data: bytes | bytearray) -> bool:
        for anchor in self._narrow:
            if anchor in data:
                return True
        if self._wide and b"\x00" in data:  # UTF-16/32 text of ASCII characters always has NUL bytes
            for anchor in self._wide:
                if anchor in data:
                    return True
        return False

    def may_need_scrub(self, data: bytes | bytearray) -> bool:
        """False when :meth:`scrub` would return ``data`` unchanged, and so for any part of it (its checks are
        substring tests): several short values joined are ruled out in one call."""
        return self._may_hold(data) or (self._escapes and _may_escape(data))

    def scrub(self, data: bytes | bytearray) -> bytes | bytearray:
        """``data`` with every complete occurrence blanked (no state: for header values and whole bodies)."""
        if self._may_hold(data):
            for form, stars in self.forms:
                if form in data:
                    data = data.replace(form, stars)
        if self._escapes and _may_escape(data):
            data = self._scrub_escaped(data)
        return data

    def _scrub_escaped(self, data: bytes | bytearray) -> bytes:
        data = bytes(data)
        view = _ESCAPE.sub(_unescaped, data)
        if view == data or not any(t in view for t in self._targets):
            return data
        # Rare: map every byte of the view back to the span of the original it came from, then blank the
        # spans that spell a secret.
        spans: list[tuple[int, int]] = []
        pos = 0
        for m in _ESCAPE.finditer(data):
            spans.extend((i, i + 1) for i in range(pos, m.start()))
            spans.extend((m.start(), m.end()) for _ in _unescaped(m))
            pos = m.end()
        spans.extend((i, i + 1) for i in range(pos, len(data)))
        out = bytearray(data)
        for target in self._targets:
            at = view.find(target)
            while at != -1:
                for start, end in spans[at:at + len(target)]:
                    out[start:end] = b"*" * (end - start)
                at = view.find(target, at + 1)
        return bytes(out)

    def escape_hold(self, data: bytes | bytearray) -> int:
        """How much of the end of ``data`` to hold back because an escaped secret may continue in the next
        read (only when an escape could begin there)."""
        if not self._escapes:
            return 0
        window = data[-self._hold:]
        return len(window) if _may_escape(window) else 0


class SecretScrubber:
    """A length-preserving filter for a response body or any other byte stream (``feed``/``finish``, as a
    :class:`gw.stage.StreamFilter`; a ``bytearray`` read comes back as one, uncopied when nothing changed)."""

    __slots__ = ("_forms", "_pending")

    def __init__(self, forms: SecretForms) -> None:
        self._forms = forms
        self._pending: bytes | bytearray = b""

    def feed(self, data: bytes | bytearray) -> bytes | bytearray:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        data = self._forms.scrub(data)  # a bytearray stays one: no copy on the hot path
        hold = max(self._partial_tail(data), self._forms.escape_hold(data))
        if hold:
            self._pending = data[-hold:]
            return data[:-hold]
        return data

    def finish(self) -> bytes | bytearray:
        # The body ended inside what could have been a secret.  A few bytes of a prefix reveal nothing (and
        # are often ordinary text: a body ending in "B" and a secret starting "Bearer"); more are blanked.
        tail, self._pending = self._pending, b""
        prefix = self._partial_tail(tail)
        if prefix >= _MIN_ANCHOR:
            tail = tail[:-prefix] + b"*" * prefix
        return tail

    def _partial_tail(self, data: bytes | bytearray) -> int:
        """Length of the longest suffix of ``data`` that is a proper prefix of some form."""
        size = len(data)
        if not size or data[-1] not in self._forms.inner:
            return 0
        longest = 0
        for first, maxlen, forms in self._forms.starts:
            at = data.find(first, max(size - maxlen + 1, 0))
            while at != -1 and size - at > longest:
                tail = data[at:]
                if any(len(form) > len(tail) and form.startswith(tail) for form in forms):
                    longest = size - at
                    break
                at = data.find(first, at + 1)
        return longest
