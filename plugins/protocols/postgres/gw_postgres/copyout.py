"""COPY ... TO STDOUT under a row filter: which query a COPY reads, and PostgreSQL's text COPY row format.

When a stage filters rows (mask), gw must know the columns of a COPY's output before relaying it.  It derives
the equivalent SELECT (``COPY t (a, b) TO STDOUT`` reads ``SELECT a, b FROM t``; ``COPY (query) TO STDOUT``
reads ``query``), asks the upstream to describe it, and filters each text-format row.  CSV and binary output
are refused under a filter rather than relayed unfiltered (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][\w$]*)'
#: A possibly schema- (and database-) qualified table name.
_TABLE = re.compile(rf"({_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}})\s*")


@dataclass(frozen=True, slots=True)
class CopyOut:
    """The SELECT a ``COPY ... TO STDOUT`` reads, and its output format (``text``, ``csv``, ``binary``)."""

    query: str
    format: str


def _skip_parens(text: str, i: int) -> int:
    """Index just after the parenthesis closing the one at ``text[i]``, respecting quotes; -1 if
    unbalanced."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in ("'", '"'):
            end = text.find(c, i + 1)
            while end != -1 and end + 1 < n and text[end + 1] == c:
                end = text.find(c, end + 2)
            if end == -1:
                return -1
            i = end
        elif c == "$":
            m = re.match(r"\$[A-Za-z_0-9]*\$", text[i:])
            if m:
                end = text.find(m.group(0), i + len(m.group(0)))
                if end == -1:
                    return -1
                i = end + len(m.group(0)) - 1
        i += 1
    return -1


def parse_copy_out(statement: str) -> CopyOut | None:
    """The query and format of ``COPY ... TO STDOUT``; None when the statement is not one (or is not
    understood, which callers treat as "cannot tell": fail closed)."""
    text = _COMMENTS.sub(" ", statement).strip().rstrip(";").strip()
    m = re.match(r"copy\s*", text, re.IGNORECASE)
    if not m:
        return None
    i = m.end()
    if text[i:i + 1] == "(":
        end = _skip_parens(text, i)
        if end < 0:
            return None
        query = text[i + 1:end - 1].strip()
        rest = text[end:]
    else:
        m2 = _TABLE.match(text[i:])
        if not m2:
            return None
        table = m2.group(1)
        j = i + m2.end()
        columns = "*"
        if text[j:j + 1] == "(":
            end = _skip_parens(text, j)
            if end < 0:
                return None
            columns = text[j + 1:end - 1].strip()
            j = end
        query = f"SELECT {columns} FROM {table}"
        rest = text[j:]
    if not re.match(r"\s*to\s+stdout\b", rest, re.IGNORECASE):
        return None
    options = rest.lower()
    fmt = "text"
    if re.search(r"\bformat\s*'?\s*csv\b|\bcsv\b", options):
        fmt = "csv"
    elif re.search(r"\bformat\s*'?\s*binary\b|\bbinary\b", options):
        fmt = "binary"
    return CopyOut(query, fmt)


_UNESCAPE = {"b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v", "\\": b"\\"}
_ESCAPE = {ord("\\"): b"\\\\", ord("\b"): b"\\b", ord("\f"): b"\\f", ord("\n"): b"\\n", ord("\r"): b"\\r",
           ord("\t"): b"\\t", ord("\v"): b"\\v"}


def _unescape(field: bytes) -> bytes:
    if b"\\" not in field:
        return field
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        c = field[i:i + 1]
        if c != b"\\" or i + 1 >= n:
            out += c
            i += 1
            continue
        nxt = chr(field[i + 1])
        if nxt in _UNESCAPE:
            out += _UNESCAPE[nxt]
            i += 2
        elif nxt in "01234567":
            m = re.match(rb"[0-7]{1,3}", field[i + 1:i + 4])
            assert m is not None
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        elif nxt == "x" and re.match(rb"[0-9a-fA-F]", field[i + 2:i + 3]):
            m = re.match(rb"[0-9a-fA-F]{1,2}", field[i + 2:i + 4])
            assert m is not None
            out.append(int(m.group(0), 16))
            i += 2 + len(m.group(0))
        else:
            out += field[i + 1:i + 2]
            i += 2
    return bytes(out)


def decode_text_row(line: bytes) -> list[bytes | None]:
    """One row of PostgreSQL's text COPY format (tab-separated, ``\\N`` for NULL, backslash escapes)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    return [None if f == b"\\N" else _unescape(f) for f in line.split(b"\t")]


def encode_text_row(values: list[bytes | None]) -> bytes:
    parts = []
    for v in values:
        if v is None:
            parts.append(b"\\N")
        elif any(b in _ESCAPE for b in v):
            parts.append(b"".join(_ESCAPE.get(b, bytes((b,))) for b in v))
        else:
            parts.append(v)
    return b"\t".join(parts) + b"\n"
