"""Lexing MySQL/MariaDB statements the way the server of *this session* reads them.

A MySQL server reads a statement's bytes in the session's ``character_set_client`` and its ``sql_mode``; gw
must read them the same way, or a statement can mean one thing to gw and another to the server:

* **Character set.**  In GBK, Big5, SJIS and CP932 a multibyte character's second byte may be ``0x5C``
  (backslash) or ``0x60`` (backtick).  ``'\\xbf\\'; DROP TABLE t; -- '`` is one string to a reader that does not
  know GBK and a string followed by ``DROP TABLE`` to the server (the ``0xbf27`` class of injection).
  :func:`analysis_text` groups bytes into characters exactly as the server's ``ismbchar`` does (lead/trail
  ranges measured against MariaDB 10.11) and reports when the grouping changes the statement's structure.
* **Which bytes start a ``--`` comment.**  ``--`` starts a comment when the next byte is a space or a control
  character *of the session's character set* (``0x7F``, and in latin1 ``0xA0``, in cp1250 ``0x80`` ...).
* **``sql_mode``.**  ``NO_BACKSLASH_ESCAPES`` makes backslashes plain characters in strings; ``ANSI_QUOTES``
  makes ``"..."`` an identifier.  ``ORACLE`` and ``MSSQL`` switch to another grammar: gw cannot follow them.

:class:`MySQLMode` is one session's reading; :func:`session_mode` builds it from the server-reported
``@@character_set_client`` and ``@@sql_mode`` (raising :class:`Unfollowable` for what gw cannot read), and
:func:`lex_mysql` tokenises under it with the same rendering as :func:`gw_sqlanalysis.lexer.lex`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .lexer import MYSQL_RESERVED, NUMBER, STRING, Lexed, LexError, quote_identifier


class Unfollowable(ValueError):
    """The session would move to a character set or sql_mode gw cannot read the way the server does."""


# ---------------------------------------------------------------------------------------------------------------
# Character sets
# ---------------------------------------------------------------------------------------------------------------


def _ranges(*pairs: tuple[int, int]) -> frozenset[int]:
    return frozenset(b for lo, hi in pairs for b in range(lo, hi + 1))


@dataclass(frozen=True)
class Charset:
    """What gw needs to know about a client character set to lex like the server."""

    name: str
    #: Python codec to show statement text in audit records (None: show bytes as escapes).
    codec: str | None
    #: Bytes other than space and ASCII control characters after which ``--`` starts a comment.
    dash_comment: frozenset[int] = frozenset({0x7F})
    #: For multibyte character sets whose second bytes may be ASCII: lead and trail byte sets.
    leads: frozenset[int] = frozenset()
    trails: frozenset[int] = frozenset()
    #: The character set's second bytes include ASCII punctuation (``\\``, backtick ...): a statement whose
    #: structure depends on reading it in this character set is refused.
    ascii_punctuation_trails: bool = False


_CJK_DBCS = {
    "gbk": (_ranges((0x81, 0xFE)), _ranges((0x40, 0x7E), (0x80, 0xFE)), "gbk"),
    "big5": (_ranges((0xA1, 0xF9)), _ranges((0x40, 0x7E), (0xA1, 0xFE)), "big5"),
    "sjis": (_ranges((0x81, 0x9F), (0xE0, 0xFC)), _ranges((0x40, 0x7E), (0x80, 0xFC)), "shift_jis"),
    "cp932": (_ranges((0x81, 0x9F), (0xE0, 0xFC)), _ranges((0x40, 0x7E), (0x80, 0xFC)), "cp932"),
    "euckr": (_ranges((0x81, 0xFE)), _ranges((0x41, 0x5A), (0x61, 0x7A), (0x81, 0xFE)), "cp949"),
}

#: Single-byte and ASCII-safe multibyte character sets: Python codec and the high bytes (besides 0x7F where
#: listed) after which ``--`` starts a comment, measured against MariaDB 10.11 (``SELECT 1 --<byte>`` newline).
_SIMPLE: dict[str, tuple[str | None, tuple[int, ...], bool]] = {
    # name: (codec, extra dash-comment bytes, whether 0x7F starts a comment)
    "utf8mb4": ("utf-8", (), True), "utf8mb3": ("utf-8", (), True), "utf8": ("utf-8", (), True),
    "ascii": ("ascii", (), True), "binary": (None, (), True),
    "latin1": ("cp1252", (0xA0,), True), "latin2": ("iso8859_2", (0xA0,), False),
    "latin5": ("iso8859_9", (0xA0,), True), "latin7": ("iso8859_13", (0x81, 0x83, 0x88, 0x8A, 0x8C, 0x90, 0x98,
                                                                      0x9A, 0x9C, 0x9F, 0xA0, 0xA1, 0xA5), True),
    "armscii8": (None, (0xA0,), True), "cp1250": ("cp1250", (0x80, 0x81, 0x83, 0x88, 0x90, 0x98, 0xA0), True),
    "cp1251": ("cp1251", (), False), "cp1256": ("cp1256", (), True), "cp1257": ("cp1257", (), False),
    "cp850": ("cp850", (0xFF,), True), "cp852": ("cp852", (0xFF,), False), "cp866": ("cp866", (0xFF,), False),
    "dec8": (None, (0xA0,), True), "geostd8": (None, (0xA0,), True), "greek": ("iso8859_7", (0xA0,), True),
    "hebrew": ("iso8859_8", (0xA0, 0xFD, 0xFE), True),
    "hp8": (None, (*range(0x80, 0xA1), 0xB1, 0xB2, 0xF2, 0xF3, 0xF4, 0xF5, 0xFF), True),
    "keybcs2": (None, (0xFF,), False), "koi8r": ("koi8_r", (), True), "koi8u": ("koi8_u", (), True),
    "macce": ("mac_latin2", (), False), "macroman": ("mac_roman", (0x80, 0xCB, 0xE5), False),
    "swe7": (None, (), True), "tis620": ("tis_620", (), True),
    "ujis": ("euc_jp", (), True), "eucjpms": ("euc_jp", (), True), "gb2312": ("gb2312", (), True),
}


def _build_charsets() -> dict[str, Charset]:
    out: dict[str, Charset] = {}
    for name, (codec, extra, del_comment) in _SIMPLE.items():
        dash = frozenset(extra) | ({0x7F} if del_comment else frozenset())
        out[name] = Charset(name, codec, dash)
    for name, (leads, trails, codec) in _CJK_DBCS.items():
        punct = any(t < 0x80 and not chr(t).isalnum() and t != 0x5F for t in trails)
        out[name] = Charset(name, codec, frozenset({0x7F}), leads, trails, punct)
    return out


#: Client character sets gw can read like the server (MariaDB 10.11's list less ucs2/utf16/utf32, which
#: cannot be client character sets).
CHARSETS: dict[str, Charset] = _build_charsets()


def charset(name: str) -> Charset:
    """The rules of a client character set; raises :class:`Unfollowable` for one gw does not know."""
    cs = CHARSETS.get(name.strip().lower())
    if cs is None:
        raise Unfollowable(f"gw cannot read statements in character set {name!r} the way the server does; use "
                           "utf8mb4 (SET NAMES utf8mb4)")
    return cs


# ---------------------------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------------------------

#: sql_mode flags that switch MariaDB to another grammar (sql_yacc_ora.yy ...): gw cannot follow them.
UNFOLLOWABLE_SQL_MODES = frozenset({"ORACLE", "MSSQL"})


@dataclass(frozen=True, slots=True)
class MySQLMode:
    """How the server reads this session's statements."""

    charset: str = "utf8mb4"
    backslash_escapes: bool = True
    ansi_quotes: bool = False

    def describe(self) -> str:
        flags = [] if self.backslash_escapes else ["NO_BACKSLASH_ESCAPES"]
        if self.ansi_quotes:
            flags.append("ANSI_QUOTES")
        return f"character_set_client={self.charset}" + (f", sql_mode {'+'.join(flags)}" if flags else "")


DEFAULT_MODE = MySQLMode()


def sql_mode_flags(sql_mode: str) -> frozenset[str]:
    return frozenset(f.strip().upper() for f in sql_mode.split(",") if f.strip())


def session_mode(character_set_client: str, sql_mode: str) -> MySQLMode:
    """The mode the server reports, or :class:`Unfollowable` when gw cannot read statements in it."""
    cs = charset(character_set_client)
    flags = sql_mode_flags(sql_mode)
    bad = sorted(flags & UNFOLLOWABLE_SQL_MODES)
    if bad:
        raise Unfollowable(f"gw cannot read statements under sql_mode {bad[0]} (it switches the server to "
                           "another SQL grammar); use a sql_mode without it")
    # ANSI implies ANSI_QUOTES in MySQL and MariaDB; the server reports the expanded list, but be safe.
    return MySQLMode(cs.name, "NO_BACKSLASH_ESCAPES" not in flags, bool(flags & {"ANSI_QUOTES", "ANSI"}))


# ---------------------------------------------------------------------------------------------------------------
# Bytes -> text
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    """A statement's bytes read in a session's character set.

    ``analysis`` is what gw lexes: ASCII bytes as themselves, each multibyte character as one non-ASCII
    character, any other byte as a lone surrogate (U+DC80-U+DCFF).  ``display`` is for people (audit
    records, approvers).  ``ambiguous`` is set when reading the bytes without the character set would give
    the statement a different structure (the 0xbf27 class): gw refuses such statements.
    """

    analysis: str
    display: str
    ambiguous: bool = False


def decode_statement(raw: bytes, mode: MySQLMode = DEFAULT_MODE) -> Decoded:
    """Read ``raw`` as the server does in ``mode``'s character set."""
    if raw.isascii():
        text = raw.decode("ascii")
        return Decoded(text, text)
    cs = CHARSETS.get(mode.charset) or charset(mode.charset)
    if cs.codec == "utf-8":
        text = raw.decode("utf-8", "surrogateescape")
        return Decoded(text, text)
    display = raw.decode(cs.codec, "backslashreplace") if cs.codec else raw.decode("ascii", "backslashreplace")
    if not cs.leads:
        return Decoded(raw.decode("ascii", "surrogateescape"), display)
    analysis = _group(raw, cs)
    ambiguous = False
    if cs.ascii_punctuation_trails and _has_punctuation_trail(raw, cs):
        naive = raw.decode("ascii", "surrogateescape")
        ambiguous = _structure(naive, mode) != _structure(analysis, mode)
    return Decoded(analysis, display, ambiguous)


def _group(raw: bytes, cs: Charset) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    leads, trails = cs.leads, cs.trails
    while i < n:
        b = raw[i]
        if b < 0x80:
            out.append(chr(b))
            i += 1
        elif b in leads and i + 1 < n and raw[i + 1] in trails:
            pair = raw[i:i + 2]
            try:
                ch = pair.decode(cs.codec or "ascii")
            except UnicodeDecodeError:
                ch = "\ufffd"
            out.append(ch if len(ch) == 1 and not ch.isascii() else "\ufffd")
            i += 2
        else:
            out.append(chr(0xDC00 + b))
            i += 1
    return "".join(out)


def _has_punctuation_trail(raw: bytes, cs: Charset) -> bool:
    i, n = 0, len(raw)
    while i < n - 1:
        b = raw[i]
        if b in cs.leads and raw[i + 1] in cs.trails:
            t = raw[i + 1]
            if t < 0x80 and not (chr(t).isalnum() or t == 0x5F):
                return True
            i += 2
        else:
            i += 1
    return False


def _structure(text: str, mode: MySQLMode) -> tuple[str, ...] | None:
    """Token structure with the contents of words that hold non-ASCII characters erased (the two readings
    differ there by construction, harmlessly)."""
    lexed = lex_mysql(text, mode)
    if lexed.error is not None:
        return None
    return tuple("W" if not t.isascii() else t for t in lexed.tokens)


# ---------------------------------------------------------------------------------------------------------------
# Lexing
# ---------------------------------------------------------------------------------------------------------------

_SPACE = " \t\n\r\f\v"


@functools.lru_cache(maxsize=64)
def _master(dash_extra: str) -> re.Pattern[str]:
    """The token pattern for one character set's ``--`` comment rule (``dash_extra``: characters besides
    space and ASCII controls after which ``--`` starts a comment, as they appear in the analysis text)."""
    extra = "".join(re.escape(c) for c in dash_extra)
    return re.compile(
        rf"""
         (?P<ws>[{_SPACE}]+)
        |(?P<line_comment>\#[^\n]*|--(?:[\x00-\x20{extra}][^\n]*|\Z))
        |(?P<block_comment>/\*)
        |(?P<bitstring>[bBxX]')
        |(?P<nstring>[nN]')
        |(?P<number>(?:0[xX][0-9A-Fa-f]+|0[bB][01]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
            (?![A-Za-z0-9_$\x80-\U0010ffff]))
        |(?P<word>[A-Za-z0-9_$\x80-\U0010ffff]+)
        |(?P<string>['"])
        |(?P<backtick>`)
        |(?P<variable>@@?(?:[A-Za-z0-9_$.]+)?)
        |(?P<op><=>|->>|->|<=|>=|<>|!=|:=|\|\||&&|<<|>>|[~!^&|+\-*/%<>=?])
        |(?P<other>(?s:.))
        """,
        re.VERBOSE,
    )


def _dash_extra(mode: MySQLMode) -> str:
    cs = CHARSETS.get(mode.charset)
    bytes_ = cs.dash_comment if cs is not None else frozenset({0x7F})
    return "".join(chr(b) if b < 0x80 else chr(0xDC00 + b) for b in sorted(bytes_))


_BODY = {
    ("'", True): re.compile(r"[^'\\]*"),
    ('"', True): re.compile(r'[^"\\]*'),
    ("'", False): re.compile(r"[^']*"),
    ('"', False): re.compile(r'[^"]*'),
}


class _Scanner:
    """One pass over a statement under one session's rules (see the module docstring)."""

    def __init__(self, text: str, mode: MySQLMode) -> None:
        self.text = text
        self.n = len(text)
        self.mode = mode
        self.tokens: list[str] = []
        self.executable_comment = False

    def run(self) -> list[str]:
        text, n, tokens = self.text, self.n, self.tokens
        match = _master(_dash_extra(self.mode)).match
        pos = 0
        while pos < n:
            m = match(text, pos)
            assert m is not None
            kind = m.lastgroup
            end = m.end()
            if kind == "ws" or kind == "line_comment":
                pos = end
            elif kind == "word":
                word = m.group()
                low = word.lower()
                tokens.append(low if low in MYSQL_RESERVED else word)
                pos = end
            elif kind == "number":
                tokens.append(NUMBER)
                pos = end
            elif kind == "block_comment":
                close = text.find("*/", pos + 2)
                if close == -1:
                    raise LexError("unterminated /* comment")
                if text.startswith(("/*!", "/*M!"), pos):
                    self.executable_comment = True  # the server runs the comment's content
                pos = close + 2
            elif kind == "string":
                quote = m.group()
                if quote == '"' and self.mode.ansi_quotes:
                    pos = self._quoted_identifier(end, '"')
                else:
                    pos = self._string(end, quote)
            elif kind == "nstring":
                pos = self._string(end, "'")
            elif kind == "bitstring":
                close = text.find("'", end)
                if close == -1:
                    raise LexError("unterminated bit string literal")
                tokens.append(STRING)
                pos = close + 1
            elif kind == "backtick":
                pos = self._quoted_identifier(end, "`")
            else:  # variable, op, other
                tokens.append(m.group().lower() if kind == "variable" else m.group())
                pos = end
        return tokens

    def _string(self, pos: int, quote: str) -> int:
        text, n = self.text, self.n
        escapes = self.mode.backslash_escapes
        body = _BODY[quote, escapes]
        while True:
            m = body.match(text, pos)
            assert m is not None
            i = m.end()
            if i >= n:
                raise LexError("unterminated quoted string")
            if text[i] == "\\":  # only reachable with backslash escapes
                if i + 1 >= n:
                    raise LexError("unterminated quoted string")
                pos = i + 2
                continue
            if i + 1 < n and text[i + 1] == quote:
                pos = i + 2
                continue
            self.tokens.append(STRING)
            return i + 1

    def _quoted_identifier(self, pos: int, quote: str) -> int:
        text = self.text
        parts = []
        while True:
            close = text.find(quote, pos)
            if close == -1:
                raise LexError("unterminated quoted identifier")
            parts.append(text[pos:close])
            if close + 1 < self.n and text[close + 1] == quote:
                parts.append(quote)
                pos = close + 2
                continue
            name = "".join(parts)
            if not name:
                raise LexError("zero-length quoted identifier")
            self.tokens.append(quote_identifier(name, "`"))
            return close + 1


def lex_mysql(text: str, mode: MySQLMode = DEFAULT_MODE) -> Lexed:
    """Tokenise ``text`` (an analysis text from :func:`decode_statement`, or any str) as the server reads it
    in ``mode``.  Never raises: problems are reported in ``error``; ``executable_comment`` is a flag."""
    if "\x00" in text:
        return Lexed([], error="the text contains a NUL character")
    try:
        scanner = _Scanner(text, mode)
        tokens = scanner.run()
    except LexError as e:
        return Lexed([], error=str(e))
    result = Lexed(tokens)
    if scanner.executable_comment:
        result.flags.add("executable_comment")
    return result


def lexer_for(mode: MySQLMode):  # type: ignore[no-untyped-def]
    """A one-argument lexer for :class:`gw_sqlanalysis.Classifier` (``lexer=``)."""
    return functools.partial(lex_mysql, mode=mode)


# ---------------------------------------------------------------------------------------------------------------
# Statements that change how the session is read
# ---------------------------------------------------------------------------------------------------------------

#: Settings that change how the server reads later statements: character sets and sql_mode (``SET STATEMENT``
#: only for its own statement, but gw does not need to tell the difference).
_MODE_SETTINGS = frozenset({"names", "character", "charset", "character_set_client", "sql_mode", "statement"})
#: Statements whose effect on the session gw cannot read from their text.
_OPAQUE_VERBS = frozenset({"call", "execute"})


def may_change_mode(tokens: list[str]) -> bool:
    """Whether a statement (its tokens from :func:`lex_mysql`) may change ``character_set_client`` or
    ``sql_mode``: a SET naming one of them (in any spelling: ``@@session.sql_mode``, ``SET NAMES``, ``SET
    CHARACTER SET`` ...), statements whose effect gw cannot read from their text (CALL, EXECUTE, compound
    statements) and anything with a leading keyword gw does not recognise."""
    if not tokens:
        return False
    first = tokens[0].lower()
    if first == "set":
        for t in tokens[1:]:
            name = t.lower().strip("`").lstrip("@")
            if name in _MODE_SETTINGS or name.rpartition(".")[2] in _MODE_SETTINGS:
                return True
        return False
    if first == "begin":
        return len(tokens) > 1 and tokens[1].lower() != "work"
    return first in _OPAQUE_VERBS or first not in _KNOWN_HARMLESS_FIRST


#: Leading keywords of statements that cannot change how the session's statements are read.
_KNOWN_HARMLESS_FIRST = frozenset({
    "select", "with", "values", "table", "(", "insert", "update", "delete", "replace", "create", "alter", "drop",
    "rename", "truncate", "grant", "revoke", "analyze", "optimize", "repair", "check", "checksum", "flush",
    "kill", "show", "help", "use", "explain", "describe", "desc", "commit", "rollback", "savepoint", "release",
    "start", "xa", "lock", "unlock", "load", "deallocate", "install", "uninstall", "purge", "reset", "change",
    "stop", "cache", "binlog", "shutdown", "restart", "import", "clone", "prepare", "do", "handler", "begin",
})


__all__ = ["CHARSETS", "DEFAULT_MODE", "Decoded", "MySQLMode", "Unfollowable", "charset", "decode_statement",
           "lex_mysql", "lexer_for", "may_change_mode", "session_mode"]
