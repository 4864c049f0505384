"""COPY ... TO STDOUT under a row filter: which query a COPY reads, and PostgreSQL's text COPY row format.

When a stage filters rows (mask), gw must know the columns of a COPY's output before relaying it.  It derives
the equivalent SELECT (``COPY t (a, b) TO STDOUT`` reads ``SELECT a, b FROM t``; ``COPY (query) TO STDOUT``
reads ``query``), asks the upstream to describe it, and filters each text-format row.  CSV and binary output
are refused under a filter rather than relayed unfiltered (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gw_sqlanalysis.lexer import QIDENT, WORD, identifier_value, quote_identifier, sql_text, token_kind


@dataclass(frozen=True, slots=True)
class CopyOut:
    """What a ``COPY ... TO`` reads and where it writes.

    ``query`` is the SELECT it reads (``COPY t (a, b) TO ...`` reads ``SELECT a, b FROM t``); ``target`` is
    ``stdout``, ``file`` or ``program``; ``format`` is ``text``, ``csv`` or ``binary``; ``plain`` says the
    options are the defaults gw can decode (text format, tab delimiter, ``\\N`` for NULL)."""

    query: str
    format: str
    target: str = "stdout"
    plain: bool = True


def _close_paren(tokens: Sequence[str], i: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``tokens[i]``; -1 if unbalanced."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == "(":
            depth += 1
        elif tokens[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def parse_copy_tokens(tokens: Sequence[str]) -> CopyOut | None:
    """The query, target and format of one ``COPY ... TO`` statement given as lexer tokens (the exact
    statement the server runs: comments and string literals are the lexer's business); None when it is not
    a COPY TO or gw does not understand it (callers fail closed)."""
    if len(tokens) < 3 or tokens[0].lower() != "copy":
        return None
    i = 1
    if tokens[i] == "(":
        end = _close_paren(tokens, i)
        if end < 0:
            return None
        query = sql_text(list(tokens[i + 1:end]))
        i = end + 1
    else:
        parts: list[str] = []
        while i < len(tokens) and token_kind(tokens[i]) in (WORD, QIDENT):
            parts.append(quote_identifier(identifier_value(tokens[i])))
            i += 1
            if i < len(tokens) and tokens[i] == ".":
                i += 1
                continue
            break
        if not parts or tokens[i - 1] == ".":
            return None
        columns = "*"
        if i < len(tokens) and tokens[i] == "(":
            end = _close_paren(tokens, i)
            if end < 0:
                return None
            names = tokens[i + 1:end]
            if not all(token_kind(t) in (WORD, QIDENT) or t == "," for t in names):
                return None
            columns = ", ".join(quote_identifier(identifier_value(t)) for t in names if t != ",")
            i = end + 1
        query = f"SELECT {columns} FROM {'.'.join(parts)}"
    if i >= len(tokens) or tokens[i].lower() != "to":
        return None
    i += 1
    if i >= len(tokens):
        return None
    where = tokens[i].lower()
    if where == "stdout":
        target = "stdout"
    elif where == "program":
        target = "program"
    else:
        target = "file"
    options = [t.lower() for t in tokens[i + 1:]]
    fmt = "text"
    plain = True
    words = [t for t in options if t not in ("(", ")", ",", "with")]
    k = 0
    while k < len(words):
        w = words[k]
        if w == "format" and k + 1 < len(words):
            fmt = words[k + 1] if words[k + 1] in ("text", "csv", "binary") else "unknown"
            k += 2
            continue
        if w in ("csv", "binary"):
            fmt = w
        elif w != "text":
            plain = False  # delimiter, null, header, encoding, quote ...: not the default text layout
        k += 1
    if fmt != "text":
        plain = False
    return CopyOut(query, fmt, target, plain)


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
