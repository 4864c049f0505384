"""What a stream's content type tells the mask stage: how to parse it, or that it cannot be masked.

A ``Content-Type`` is parsed strictly (RFC 9110 section 8.3.1: ``type/subtype`` then ``; name=value``
parameters, tokens or quoted strings, each parameter at most once).  The media type picks the masker:

=============================================  ==========================================================
``application/json``, ``*/*+json``,            JSON: keys by column and path rules, detectors on strings
``text/json``, ``text/x-json``
JSON lines (``application/x-ndjson`` ...),      one JSON document per line
``application/json; stream=watch``
``text/csv``, ``application/csv``,              CSV: the header row names the columns, column rules mask
``text/tab-separated-values``                   cells under matching names, detectors the rest
``text/*``, XML, YAML, forms, JavaScript ...    text: detectors, and values after labels named by column
                                                rules (``ssn: ...``, ``<ssn>...``, ``ssn=...``)
=============================================  ==========================================================

Anything else -- ``application/octet-stream``, ``application/msgpack``, ``multipart/*``, images, archives,
an unknown ``application/jsonx`` -- cannot be read with certainty, nor can a malformed type
(``application/json,text/plain``, two ``Content-Type`` fields) or a charset gw does not decode (an unknown
name, or UTF-7 and other encodings where one text has many byte forms).  Such a stream is refused whenever
masking applies (:class:`Unmaskable`), unless the operator lists its media type in ``pass_through_types``.
"""

from __future__ import annotations

import codecs
import fnmatch
import re
from dataclasses import dataclass

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAM = re.compile(rf';\s*({_TOKEN})=({_TOKEN}|"(?:[^"\\\r\n]|\\.)*")\s*')
_EMPTY_PARAM = re.compile(r";\s*")

_TEXT_APPLICATION = frozenset({
    "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/yaml",
    "application/x-yaml", "application/sql", "application/graphql", "application/x-sh", "application/ecmascript",
    "application/x-javascript", "application/xhtml+xml",
})
_JSON = frozenset({"application/json", "text/json", "text/x-json", "application/x-json"})
_JSON_LINES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                         "application/x-jsonlines", "application/json-seq"})
_CSV = frozenset({"text/csv", "application/csv", "text/x-csv", "text/comma-separated-values"})
_TSV = frozenset({"text/tab-separated-values", "text/tsv"})
#: Codecs whose byte form of a text is not unique (a value could hide in another spelling) or that are not
#: character encodings at all.
UNDECODABLE = frozenset({"utf-7", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004",
                         "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr", "hz", "unicode-escape",
                         "raw-unicode-escape", "punycode", "idna", "undefined"})


class Unmaskable(ValueError):
    """The stream cannot be parsed with certainty; the message says why (never the data)."""


@dataclass(frozen=True, slots=True)
class MediaType:
    media: str  # "application/json", lower-case
    params: tuple[tuple[str, str], ...]

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def parse_media_type(value: str) -> MediaType:
    """Strict parse; raises :class:`Unmaskable` for anything malformed (a list of types, a parameter without
    a value, a repeated parameter, stray characters)."""
    m = _MEDIA.match(value)
    if m is None:
        raise Unmaskable(f"its Content-Type {value[:80]!r} is malformed")
    media = f"{m.group(1)}/{m.group(2)}".lower()
    pos = m.end()
    params: list[tuple[str, str]] = []
    while pos < len(value):
        p = _PARAM.match(value, pos)
        if p is None:
            if _EMPTY_PARAM.fullmatch(value, pos):  # a trailing ";" is harmless
                break
            raise Unmaskable(f"its Content-Type {value[:80]!r} is malformed")
        name = p.group(1).lower()
        raw = p.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if any(name == n for n, _ in params):
            raise Unmaskable(f"its Content-Type {value[:80]!r} repeats the parameter {name!r}")
        params.append((name, raw))
        pos = p.end()
    return MediaType(media, tuple(params))


def stream_kind(media: MediaType) -> str | None:
    """``json``, ``jsonlines``, ``csv``, ``tsv``, ``text``, or None for content gw cannot read."""
    name = media.media
    if name in _JSON_LINES or (name == "application/json" and (media.param("stream") or "").lower() == "watch"):
        return "jsonlines"
    if name in _JSON or name.endswith("+json"):
        return "json"
    if name in _CSV:
        return "csv"
    if name in _TSV:
        return "tsv"
    if name.startswith("text/") or name in _TEXT_APPLICATION or name.endswith(("+xml", "+yaml")):
        return "text"
    return None


def codec_for(charset: str) -> str:
    """The Python codec name for a declared charset; raises :class:`Unmaskable` when gw does not decode it."""
    try:
        info = codecs.lookup(charset)
    except LookupError:
        raise Unmaskable(f"its charset {charset!r} is not one gw decodes") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in UNDECODABLE:
        raise Unmaskable(f"its charset {charset!r} has several byte forms for the same text, so gw cannot "
                         "be sure to find every value in it")
    return info.name


def valid_pattern(pattern: str) -> bool:
    """A ``pass_through_types`` entry: ``type/subtype``, either part may be a glob (``image/*``)."""
    return re.fullmatch(r"[a-z0-9!#$&^_.+*?-]+/[a-z0-9!#$&^_.+*?-]+", pattern) is not None


def passes_through(media: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(media, p) for p in patterns)
