"""Which PostgreSQL client encodings gw can lex, and which statements would change the session's encoding.

gw lexes a statement's bytes as ASCII-compatible text: a quote, a backslash or a semicolon is always the byte
it looks like.  That holds for every server-side encoding (UTF8, SQL_ASCII, LATIN*, WIN*, EUC_*, KOI8*, ...):
their multibyte characters are made of bytes >= 0x80 only.  It does not hold for the client-only encodings
SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB, whose second byte may be ``\\`` (0x5c) or ``'``-range
ASCII: the server then reads a character where gw would read a backslash.  gw refuses those encodings.

:func:`encoding_changes` finds, before a statement runs, what it would set ``client_encoding`` to (``SET
client_encoding``, ``SET NAMES``, ``set_config('client_encoding', ...)``; ``RESET`` returns to the start-up
value, which gw checked).  Anything gw cannot evaluate (an expression, a parameter) is reported as ``None``.
"""

from __future__ import annotations

import re

from .lexer import LexError, token_offsets

__all__ = ["SAFE_ENCODINGS", "encoding_changes", "encoding_is_safe", "normalise_encoding"]

#: Client encodings whose multibyte characters contain only bytes >= 0x80 (names as PostgreSQL normalises
#: them: lower case, alphanumerics only; aliases included).
SAFE_ENCODINGS = frozenset({
    "utf8", "unicode", "sqlascii", "muleinternal",
    *(f"latin{i}" for i in range(1, 11)),
    *(f"iso8859{i}" for i in range(1, 17)),
    "euccn", "eucjp", "euckr", "euctw", "eucjis2004",
    "koi8", "koi8r", "koi8u",
    "win", "win866", "win874", *(f"win{i}" for i in range(1250, 1259)),
    "alt", "abc", "tcvn", "tcvn5712", "vscii",
})


def normalise_encoding(name: str) -> str:
    """PostgreSQL's own normalisation of an encoding name (``Shift_JIS`` -> ``shiftjis``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def encoding_is_safe(name: str) -> bool:
    return normalise_encoding(name) in SAFE_ENCODINGS


_SETTING = re.compile(r"client_encoding|names|set_config", re.IGNORECASE)


def _literal(source: str) -> str | None:
    """The value of a plain '...' literal or identifier as written; None for anything else."""
    source = source.strip()
    if len(source) >= 2 and source[0] == "'" and source[-1] == "'" and "\\" not in source:
        body = source[1:-1]
        if "'" in body.replace("''", ""):
            return None
        return body.replace("''", "'")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source):
        return source
    if len(source) >= 2 and source[0] == '"' and source[-1] == '"' and '"' not in source[1:-1]:
        return source[1:-1]
    return None


def encoding_changes(text: str, backslash_quotes: bool = False) -> list[str | None] | None:
    """What ``text`` would set ``client_encoding`` to, in order (``None``: gw cannot tell, e.g. an expression
    or a parameter); ``[]`` when it does not touch it; None when the text cannot be lexed."""
    if _SETTING.search(text) is None:
        return []
    try:
        tokens, offsets = token_offsets(text, backslash_quotes)
    except LexError:
        return None
    n = len(tokens)

    def source(i: int) -> str:
        end = offsets[i + 1] if i + 1 < n else len(text)
        return text[offsets[i]:end]

    out: list[str | None] = []
    starts = {0} | {i + 1 for i, t in enumerate(tokens) if t == ";"}
    for i, tok in enumerate(tokens):
        if tok.startswith('"'):
            tok = tok[1:-1]  # a quoted name ("set_config") is the same function
        if tok == "set" and i in starts:
            j = i + 1
            if j < n and tokens[j] in ("session", "local"):
                j += 1
            if j < n and tokens[j] in ("client_encoding", "names"):
                k = j + 1
                if tokens[j] == "client_encoding" and k < n and tokens[k] in ("to", "="):
                    k += 1
                if k < n and tokens[k] == "default":
                    continue  # the start-up value
                value = _literal(source(k)) if k < n else None
                if k + 1 < n and tokens[k + 1] not in (";",):
                    value = None  # more than one value: gw does not guess
                out.append(value)
        elif tok == "set_config" and i + 1 < n and tokens[i + 1] == "(":
            # set_config(name, value, is_local): a literal name other than client_encoding is harmless here
            # (standard_conforming_strings is followed from the server's reports).
            name = _literal(source(i + 2)) if i + 3 < n and tokens[i + 3] == "," else None
            if name is not None and name.lower() != "client_encoding":
                continue
            value = _literal(source(i + 4)) if name is not None and i + 5 < n and tokens[i + 5] == "," else None
            out.append(value)
    return out
