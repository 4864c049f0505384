"""A SQL lexer that finds token boundaries exactly where the server does.

Why hand-written: classification is only as good as the statement boundaries under it.  If gw thought a
``;`` or ``DROP`` sat inside a string or comment while the server saw code (or the reverse), a statement could
slip past every rule.  So this lexer follows the server's own scanner rules, one dialect at a time:

* PostgreSQL (``src/backend/parser/scan.l``): nested ``/* /* */ */`` comments, ``--`` comments, standard
  strings (no backslash escapes: ``standard_conforming_strings = on``), ``E''`` strings with backslash escapes,
  ``B''``/``X''`` bit strings, ``N''``, ``U&''`` strings and ``U&""`` identifiers with ``UESCAPE``, dollar
  quoting with tags, string continuation across a newline, identifiers that may contain ``$``, any non-ASCII
  character as an identifier character (so U+00A0 is *not* whitespace), and the operator rules (an operator
  run is cut where a comment starts).
* MySQL/MariaDB: ``#`` comments, ``-- `` comments only when followed by whitespace, non-nesting ``/* */``,
  executable comments ``/*! */`` (reported, because the server runs their content), ``'`` and ``"`` strings
  with backslash escapes, backtick identifiers.

Every token is *rendered* into a canonical string: unquoted words case-folded, quoted identifiers re-quoted,
every literal replaced by a placeholder (:data:`STRING` / :data:`NUMBER`), comments and whitespace dropped.
The rendered tokens joined by single spaces form the statement's *shape*: the cache key for classification
(``?``-substituted it is the public :func:`fingerprint`) and the text handed to sqlglot, so sqlglot never sees
a comment, a dollar quote or an escape it might tokenise differently from the server.

Literal boundaries that depend on session settings (``standard_conforming_strings`` in PostgreSQL,
``NO_BACKSLASH_ESCAPES`` / ``ANSI_QUOTES`` in MySQL) are detected: when a string holds a backslash, the text
is lexed again under the other setting, and if the shapes differ the result is *ambiguous* and classification
fails closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Placeholder of a string-like literal in a shape (strings, bit strings, dollar-quoted bodies ...).
STRING = "\x00"
#: Placeholder of a numeric literal in a shape.
NUMBER = "\x01"

#: Token kinds (the first character of a rendered token tells them apart; see :func:`token_kind`).
WORD, QIDENT, LITERAL, PARAM, VARIABLE, SYMBOL = range(6)

# PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated by the server (with a NOTICE).
_PG_MAX_IDENTIFIER_BYTES = 63

_IDENT_START = r"A-Za-z_\x80-\U0010ffff"
_PG_SPACE = " \t\n\r\f\v"
# PostgreSQL folds only ASCII letters of unquoted identifiers (in a UTF-8 database).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class LexError(Exception):
    """The text cannot be tokenised the way the server would (unterminated literal, NUL byte ...)."""


@dataclass(slots=True)
class Lexed:
    """The result of lexing one text: rendered tokens and what the lexer noticed on the way."""

    tokens: list[str]
    #: Why the text could not be lexed (the server would reject it, or gw cannot be sure how it reads it).
    error: str | None = None
    #: Facts that matter for classification whatever the statement is (``executable_comment``,
    #: ``ambiguous_quoting``).
    flags: set[str] = field(default_factory=set)

    @property
    def shape(self) -> str:
        return " ".join(self.tokens)


def quote_identifier(name: str, quote: str = '"') -> str:
    return quote + name.replace(quote, quote + quote) + quote


def token_kind(token: str) -> int:
    """Which kind of token a rendered token is (cheap: looks at its first character)."""
    c = token[0]
    if c == STRING or c == NUMBER:
        return LITERAL
    if c == '"' or c == "`":
        return QIDENT
    if c == "@" and len(token) > 1:
        return VARIABLE
    if c == "$":
        if len(token) == 1:
            return SYMBOL
        return PARAM if token[1].isdigit() else WORD
    if c.isalnum() or c == "_" or not c.isascii():
        return WORD
    return SYMBOL


def identifier_value(token: str) -> str:
    """The name a WORD or QIDENT token stands for (quotes removed, doubled quotes undone)."""
    if token[0] in "\"`":
        q = token[0]
        return token[1:-1].replace(q + q, q)
    return token


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------------

# One match per token; leading whitespace is consumed by the same match.  Groups, tried in order:
#   1 a prefixed literal or identifier opener (E' B' X' N' U&' U&"), before group 2 so that "E'" is not a word
#   2 a word (keyword or unquoted identifier)        3 a number
#   4 punctuation (one token each, "::" included)    5 an opener that needs a hand scanner: -- /* ' " $
#   6 an operator run                                7 any other single (non-space) character
_PG_MASTER = re.compile(
    rf"""[{_PG_SPACE}]*(?:
     ([eEbBxXnN]'|[uU]&['"])
    |([{_IDENT_START}][{_IDENT_START}0-9$]*)
    |(0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+
        |(?:[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)
    |(::|[,()\[\];.:])
    |(--|/\*|['"$])
    |([~!@\#^&|`?+\-*/%<>=]+)
    |([^{_PG_SPACE}])
    )""",
    re.VERBOSE,
)
_PG_DOLLAR = re.compile(rf"\$(?:[{_IDENT_START}][{_IDENT_START}0-9]*)?\$|\$[0-9]+")
_PG_OP_SPECIAL = frozenset("~!@#^&|`?%")
_STD_STRING_BODY = re.compile(r"[^']*")
_E_STRING_BODY = re.compile(r"[^\\']*")


# -- fast path ---------------------------------------------------------------------------------------------------
# Most statements are plain: ASCII, one line, no comments, no quoted identifiers, no dollar quotes, no escapes
# (pgbench's are).  For those, C-level findall with a single token pattern gives the same tokens as the
# scanner at half the cost.  Anything outside that alphabet, or a token the pattern cannot vouch for (an
# unterminated string, an operator that would need PostgreSQL's trailing +/- rule), goes to the full scanner.
# tests/test_sqlanalysis_lexer.py checks with hypothesis that both paths agree.
_PG_FAST_EXCLUDED = ('"', "$", "\\", "\n", "\r", "--", "/*", "&'")
_PG_FAST_TOKEN = re.compile(
    r"""[A-Za-z_][A-Za-z_0-9$]*'?
    |0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+
    |(?:[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?
    |'(?:[^']|'')*'
    |::|[,()\[\];.:]
    |[~!@\#^&|`?+\-*/%<>=]+
    |[^ \t\f\v]""",
    re.VERBOSE,
)
#: A numeric literal glued to an identifier character (``0x0`` on PostgreSQL 15, ``123abc``): PostgreSQL 15 and
#: later reject it ("trailing junk after numeric literal"), older servers read a number and an alias, so gw
#: refuses to guess.  A match (even inside a string) sends the text to the scanner, which decides exactly.
_PG_NUMBER_JUNK = re.compile(
    r"(?:(?<![A-Za-z_0-9$])(?:0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?)"
    r"|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?[A-Za-z_]")
_DIGITS = frozenset("0123456789")
_OP_CHARS = frozenset("~!@#^&|`?+-*/%<>=")


def _pg_fast_tokens(text: str) -> list[str] | None:
    """Tokens of a plain statement, or None when the text needs the full scanner."""
    if not text.isascii():
        return None
    for excluded in _PG_FAST_EXCLUDED:
        if excluded in text:
            return None
    if _PG_NUMBER_JUNK.search(text) is not None:
        return None
    tokens: list[str] = []
    append = tokens.append
    for tok in _PG_FAST_TOKEN.findall(text.lower()):
        c = tok[0]
        if c == "'":
            if len(tok) == 1:
                return None  # an unterminated string: let the scanner report it
            append(STRING)
        elif c in _DIGITS or (c == "." and len(tok) > 1):
            append(NUMBER)
        elif len(tok) > 1 and (tok[-1] == "'" or (tok[-1] in "+-" and c in _OP_CHARS)):
            # A word glued to a quote (E'', B'', N'' prefixes ...) or an operator that PostgreSQL's
            # trailing +/- rule would split: the scanner knows how.
            return None
        elif len(tok) > _PG_MAX_IDENTIFIER_BYTES and (c.isalpha() or c == "_"):
            append(tok[:_PG_MAX_IDENTIFIER_BYTES])  # an identifier PostgreSQL truncates (ASCII: 1 byte/char)
        else:
            append(tok)
    return tokens


class _PgScanner:
    """One pass over a text under PostgreSQL's rules; ``backslash_quotes`` simulates
    ``standard_conforming_strings = off`` (plain strings then take backslash escapes, like ``E''``)."""

    def __init__(self, text: str, backslash_quotes: bool = False) -> None:
        self.text = text
        self.n = len(text)
        self.backslash_quotes = backslash_quotes
        self.tokens: list[str] = []
        self.backslash_in_plain_string = False
        #: When a list: the source offset of each token (:func:`token_offsets`).
        self.offsets: list[int] | None = None

    def run(self) -> list[str]:
        text, tokens = self.text, self.tokens
        append = tokens.append
        match = _PG_MASTER.match
        lower_table = _ASCII_LOWER
        offsets = self.offsets
        pos = start = 0
        while (m := match(text, pos)) is not None:
            group = m.lastindex
            pos = m.end()
            if offsets is not None:  # the tokens of the previous match started at its start
                offsets.extend([start] * (len(tokens) - len(offsets)))
                start = m.start(group or 0)
            if group == 2:
                word = m.group(2)
                word = word.lower() if word.isascii() else word.translate(lower_table)
                append(word if len(word) <= _PG_MAX_IDENTIFIER_BYTES else _pg_truncate(word))
            elif group == 3:
                if pos < self.n and _is_pg_ident_start(text[pos]):
                    raise LexError(f"trailing junk after numeric literal at or near {text[m.start(3):pos + 1]!r}")
                append(NUMBER)
            elif group == 4 or group == 7:
                append(m.group(group))
            elif group == 6:
                pos = self._operator(m.start(6), pos)
            elif group == 5:
                pos = self._opener(m.group(5), pos)
            else:
                pos = self._prefixed(m.group(1), pos)
        if offsets is not None:
            offsets.extend([start] * (len(tokens) - len(offsets)))
        return tokens

    def _opener(self, opener: str, pos: int) -> int:
        """``pos`` is just after ``opener`` (one of ``--``, ``/*``, ``'``, ``"``, ``$``)."""
        text = self.text
        if opener == "'":
            return self._quoted_string(pos, escapes=self.backslash_quotes, plain=True)
        if opener == '"':
            name, pos = self._quoted_identifier(pos)
            self.tokens.append(quote_identifier(_pg_truncate(name)))
            return pos
        if opener == "--":
            nl = _find_newline(text, pos)
            return self.n if nl == -1 else nl
        if opener == "/*":
            return self._block_comment(pos - 2)
        m = _PG_DOLLAR.match(text, pos - 1)
        if m is None:  # a lone "$": the server returns it as a token (and the parser rejects it)
            self.tokens.append("$")
            return pos
        if m.group()[1:2].isdigit():  # $1: a positional parameter
            self.tokens.append(m.group())
            return m.end()
        return self._dollar_quoted(m.group(), m.end())

    def _prefixed(self, prefix: str, pos: int) -> int:
        """``pos`` is just after a literal prefix and its quote: E' B' X' N' U&' U&"."""
        p = prefix[0]
        if p in "eE":
            return self._quoted_string(pos, escapes=True)
        if p in "bBxX":
            return self._bit_string(pos)
        if p in "nN":
            return self._quoted_string(pos, escapes=self.backslash_quotes, plain=True)
        if prefix[-1] == "'":
            if self.backslash_quotes:
                raise LexError("U&'' strings are not allowed when standard_conforming_strings is off")
            pos = self._quoted_string(pos, escapes=False)
            return self._uescape(pos)[0]
        raw, pos = self._quoted_identifier(pos)
        pos, escape = self._uescape(pos)
        self.tokens.append(quote_identifier(_pg_truncate(decode_unicode_escapes(raw, escape))))
        return pos

    # -- pieces ---------------------------------------------------------------------------------------------
    def _operator(self, start: int, end: int) -> int:
        op = self.text[start:end]
        # An operator run stops where a comment starts (scan.l: "operator" rule).
        cut = len(op)
        for marker in ("/*", "--"):
            i = op.find(marker)
            if i != -1:
                cut = min(cut, i)
        # A multi-character operator cannot end in + or - unless it contains one of ~!@#^&|`?% (so that
        # "a=-1" lexes as "=" "-"); scan.l trims the trailing +/- characters.
        if cut > 1 and op[cut - 1] in "+-" and not any(c in _PG_OP_SPECIAL for c in op[: cut - 1]):
            while cut > 1 and op[cut - 1] in "+-":
                cut -= 1
        if cut == 0:  # cannot happen: a comment start at the run's beginning is matched as a comment
            cut = 1
        self.tokens.append(op[:cut])
        return start + cut

    def _block_comment(self, start: int) -> int:
        """PostgreSQL block comments nest: ``/* a /* b */ c */`` is one comment."""
        text, n = self.text, self.n
        depth = 1
        pos = start + 2
        while depth:
            close = text.find("*/", pos)
            if close == -1:
                raise LexError("unterminated /* comment")
            opening = text.find("/*", pos, close + 1)
            if opening != -1 and opening < close:
                depth += 1
                pos = opening + 2
            else:
                depth -= 1
                pos = close + 2
        return min(pos, n)

    def _quoted_string(self, pos: int, *, escapes: bool, plain: bool = False) -> int:
        """A '...' literal body starting at ``pos`` (after the opening quote).  Doubled quotes escape a quote;
        with ``escapes`` a backslash escapes the next character.  Continuation: ``'a'`` newline ``'b'`` is
        one literal."""
        text, n = self.text, self.n
        body = _E_STRING_BODY if escapes else _STD_STRING_BODY
        while True:
            m = body.match(text, pos)
            assert m is not None
            if plain and "\\" in m.group():
                self.backslash_in_plain_string = True
            pos = m.end()
            if pos >= n:
                raise LexError("unterminated quoted string")
            c = text[pos]
            if c == "\\":  # only reachable with escapes
                if pos + 1 >= n:
                    raise LexError("unterminated quoted string")
                pos += 2
                continue
            # c is the quote
            if pos + 1 < n and text[pos + 1] == "'":
                pos += 2
                continue
            pos += 1
            nxt = _continuation(text, pos)
            if nxt == -1:
                break
            pos = nxt + 1
        self.tokens.append(STRING)
        return pos

    def _bit_string(self, pos: int) -> int:
        """B'0101' / X'1F': no escapes at all, not even doubled quotes; continuation applies."""
        text = self.text
        while True:
            close = text.find("'", pos)
            if close == -1:
                raise LexError("unterminated bit string literal")
            nxt = _continuation(text, close + 1)
            if nxt == -1:
                pos = close + 1
                break
            pos = nxt + 1
        self.tokens.append(STRING)
        return pos

    def _quoted_identifier(self, pos: int) -> tuple[str, int]:
        text = self.text
        parts = []
        while True:
            close = text.find('"', pos)
            if close == -1:
                raise LexError("unterminated quoted identifier")
            parts.append(text[pos:close])
            if close + 1 < self.n and text[close + 1] == '"':
                parts.append('"')
                pos = close + 2
                continue
            name = "".join(parts)
            if not name:
                raise LexError("zero-length delimited identifier")
            return name, close + 1

    def _dollar_quoted(self, delimiter: str, pos: int) -> int:
        """``$tag$ ... $tag$``: the body ends at the next identical delimiter, nothing inside is special."""
        close = self.text.find(delimiter, pos)
        if close == -1:
            raise LexError("unterminated dollar-quoted string")
        self.tokens.append(STRING)
        return close + len(delimiter)

    def _uescape(self, pos: int) -> tuple[int, str]:
        """After a U& literal: an optional ``UESCAPE 'c'`` clause (comments and whitespace may intervene)."""
        text = self.text
        after = _skip_pg_space(text, pos)
        if text[after:after + 7].lower() != "uescape" or _is_pg_ident_char(text, after + 7):
            return pos, "\\"
        p = _skip_pg_space(text, after + 7)
        if not (p + 2 < self.n and text[p] == "'" and text[p + 2] == "'"):
            raise LexError("UESCAPE must be followed by a simple string literal of one character")
        escape = text[p + 1]
        if escape in "0123456789abcdefABCDEF+'\" \t\n\r\f\v":
            raise LexError(f"invalid Unicode escape character {escape!r}")
        return p + 3, escape


def _is_pg_ident_start(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_") or not c.isascii()


def _is_pg_ident_char(text: str, pos: int) -> bool:
    if pos >= len(text):
        return False
    c = text[pos]
    return c.isalnum() or c in "_$" or not c.isascii()


def _skip_pg_space(text: str, pos: int) -> int:
    """Skip whitespace and comments (both kinds) from ``pos``."""
    n = len(text)
    while pos < n:
        c = text[pos]
        if c in _PG_SPACE:
            pos += 1
        elif text.startswith("--", pos):
            nl = _find_newline(text, pos)
            pos = n if nl == -1 else nl
        elif text.startswith("/*", pos):
            scanner = _PgScanner(text)
            pos = scanner._block_comment(pos)
        else:
            break
    return pos


def _find_newline(text: str, pos: int) -> int:
    a, b = text.find("\n", pos), text.find("\r", pos)
    if a == -1:
        return b
    if b == -1:
        return a
    return min(a, b)


def _continuation(text: str, pos: int) -> int:
    """Position of the quote that continues a string literal ending at ``pos``, or -1.

    scan.l: ``quotecontinue = {whitespace_with_newline}{quote}``: horizontal space or ``--`` comments, at
    least one newline, then whitespace or ``--`` comments ending in a newline, then a quote."""
    n = len(text)
    p = pos
    seen_newline = False
    while p < n:
        c = text[p]
        if c in " \t\f":
            p += 1
        elif c in "\n\r":
            seen_newline = True
            p += 1
            break
        elif text.startswith("--", p):
            nl = _find_newline(text, p)
            if nl == -1:
                return -1
            p = nl
        else:
            return -1
    if not seen_newline:
        return -1
    while p < n:
        c = text[p]
        if c in _PG_SPACE:
            p += 1
        elif text.startswith("--", p):
            nl = _find_newline(text, p)
            if nl == -1:
                return -1
            p = nl + 1
        else:
            break
    return p if p < n and text[p] == "'" else -1


def _pg_truncate(name: str) -> str:
    """PostgreSQL truncates identifiers to NAMEDATALEN-1 bytes (never splitting a character)."""
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) <= _PG_MAX_IDENTIFIER_BYTES:
        return name
    return encoded[:_PG_MAX_IDENTIFIER_BYTES].decode("utf-8", "ignore")


def decode_unicode_escapes(raw: str, escape: str = "\\") -> str:
    """Decode the body of a ``U&""`` identifier: ``\\XXXX``, ``\\+XXXXXX``, doubled escape character."""
    out: list[str] = []
    i, n = 0, len(raw)
    pending_high: int | None = None
    while i < n:
        c = raw[i]
        if c != escape:
            if pending_high is not None:
                raise LexError("invalid Unicode surrogate pair")
            out.append(c)
            i += 1
            continue
        if raw[i + 1:i + 2] == escape:
            out.append(escape)
            i += 2
            continue
        if raw[i + 1:i + 2] == "+":
            digits, i = raw[i + 2:i + 8], i + 8
        else:
            digits, i = raw[i + 1:i + 5], i + 5
        if not digits or not all(d in "0123456789abcdefABCDEF" for d in digits) or len(digits) not in (4, 6):
            raise LexError("invalid Unicode escape in U& identifier")
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDBFF:
            if pending_high is not None:
                raise LexError("invalid Unicode surrogate pair")
            pending_high = code
            continue
        if 0xDC00 <= code <= 0xDFFF:
            if pending_high is None:
                raise LexError("invalid Unicode surrogate pair")
            code = 0x10000 + ((pending_high - 0xD800) << 10) + (code - 0xDC00)
            pending_high = None
        elif pending_high is not None:
            raise LexError("invalid Unicode surrogate pair")
        if code == 0 or code > 0x10FFFF:
            raise LexError("invalid Unicode escape value")
        out.append(chr(code))
    if pending_high is not None:
        raise LexError("invalid Unicode surrogate pair")
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# MySQL / MariaDB
# ---------------------------------------------------------------------------------------------------------------

_MY_SPACE = " \t\n\r\f\v"
_MY_MASTER = re.compile(
    rf"""
     (?P<ws>[{_MY_SPACE}]+)
    |(?P<line_comment>\#[^\n]*|--(?:[\x00-\x20][^\n]*|\Z))
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
# Reserved words are folded so that case does not multiply shapes; other words keep their case because MySQL
# table names are case-sensitive on most platforms.
MYSQL_RESERVED = frozenset(["add", "all", "alter", "analyze", "and", "as", "asc", "before", "between", "by", "call", "cascade", "case", "change", "check", "collate", "column", "condition", "constraint", "create", "cross", "current_date", "current_time", "current_timestamp", "current_user", "database", "databases", "declare", "default", "delayed", "delete", "desc", "describe", "distinct", "distinctrow", "div", "drop", "dual", "else", "elseif", "exists", "explain", "false", "fetch", "for", "force", "foreign", "from", "fulltext", "grant", "group", "having", "high_priority", "if", "ignore", "in", "index", "infile", "inner", "insert", "interval", "into", "is", "join", "key", "keys", "kill", "leading", "left", "like", "limit", "lines", "load", "lock", "low_priority", "match", "mod", "natural", "not", "null", "on", "optimize", "or", "order", "outer", "outfile", "partition", "primary", "procedure", "purge", "range", "read", "references", "regexp", "release", "rename", "repeat", "replace", "require", "restrict", "return", "revoke", "right", "rlike", "schema", "select", "separator", "set", "show", "spatial", "sql_calc_found_rows", "straight_join", "table", "terminated", "then", "to", "trailing", "trigger", "true", "union", "unique", "unlock", "unsigned", "update", "usage", "use", "using", "values", "when", "where", "while", "with", "write", "xor"])


_MY_BODY = {
    ("'", True): re.compile(r"[^'\\]*"),
    ('"', True): re.compile(r'[^"\\]*'),
    ("'", False): re.compile(r"[^']*"),
    ('"', False): re.compile(r'[^"]*'),
}


class _MyScanner:
    """One pass under MySQL's rules; ``backslash_escapes=False`` simulates ``NO_BACKSLASH_ESCAPES`` (and, for
    double-quoted text, ``ANSI_QUOTES``, where ``"..."`` is an identifier without escapes)."""

    def __init__(self, text: str, backslash_escapes: bool = True) -> None:
        self.text = text
        self.n = len(text)
        self.backslash_escapes = backslash_escapes
        self.tokens: list[str] = []
        self.backslash_in_plain_string = False
        self.executable_comment = False

    def run(self) -> list[str]:
        text, n, tokens = self.text, self.n, self.tokens
        match = _MY_MASTER.match
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
                if text.startswith("/*!", pos) or text.startswith("/*M!", pos):
                    # The server executes the content of /*! ... */ (version-conditional code).
                    self.executable_comment = True
                pos = close + 2
            elif kind == "string":
                pos = self._string(end, m.group())
            elif kind == "nstring":
                pos = self._string(end, "'")
            elif kind == "bitstring":
                close = text.find("'", end)
                if close == -1:
                    raise LexError("unterminated bit string literal")
                tokens.append(STRING)
                pos = close + 1
            elif kind == "backtick":
                pos = self._backtick(end)
            else:  # variable, op, other
                tokens.append(m.group().lower() if kind == "variable" else m.group())
                pos = end
        return tokens

    def _string(self, pos: int, quote: str) -> int:
        text, n = self.text, self.n
        body = _MY_BODY[quote, self.backslash_escapes]
        while True:
            i = body.match(text, pos).end()  # type: ignore[union-attr]
            if "\\" in text[pos:i] or (i < n and text[i] == "\\"):
                self.backslash_in_plain_string = True
            if i >= n:
                raise LexError("unterminated quoted string")
            if text[i] == "\\":
                if i + 1 >= n:
                    raise LexError("unterminated quoted string")
                pos = i + 2
                continue
            if i + 1 < n and text[i + 1] == quote:
                pos = i + 2
                continue
            self.tokens.append(STRING)
            return i + 1

    def _backtick(self, pos: int) -> int:
        text = self.text
        parts = []
        while True:
            close = text.find("`", pos)
            if close == -1:
                raise LexError("unterminated quoted identifier")
            parts.append(text[pos:close])
            if close + 1 < self.n and text[close + 1] == "`":
                parts.append("`")
                pos = close + 2
                continue
            name = "".join(parts)
            if not name:
                raise LexError("zero-length quoted identifier")
            self.tokens.append(quote_identifier(name, "`"))
            return close + 1


# ---------------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------------


def lex(text: str, dialect: str = "postgres", standard_strings: bool | None = None) -> Lexed:
    """Tokenise ``text`` under ``dialect``'s rules.  Never raises: problems are reported in ``error``.

    ``standard_strings`` (PostgreSQL): the session's ``standard_conforming_strings`` when the caller knows it
    for certain (``False``: plain ``'...'`` strings take backslash escapes, as the server then reads them);
    ``None`` when it does not, and a text that reads differently under the two settings is flagged
    ``ambiguous_quoting``."""
    if "\x00" in text:
        # PostgreSQL and MySQL end a query string at NUL; gw refuses to guess which part the server saw.
        return Lexed([], error="the text contains a NUL character")
    try:
        if dialect == "mysql":
            my = _MyScanner(text)
            tokens = my.run()
            result = Lexed(tokens)
            if my.executable_comment:
                result.flags.add("executable_comment")
            if my.backslash_in_plain_string and _shape_differs(tokens, _MyScanner(text, backslash_escapes=False)):
                result.flags.add("ambiguous_quoting")
            return result
        fast = _pg_fast_tokens(text)
        if fast is not None:
            return Lexed(fast)
        pg = _PgScanner(text, backslash_quotes=standard_strings is False)
        tokens = pg.run()
        result = Lexed(tokens)
        if standard_strings is None and pg.backslash_in_plain_string and _shape_differs(
                tokens, _PgScanner(text, backslash_quotes=True)):
            result.flags.add("ambiguous_quoting")
        return result
    except LexError as e:
        return Lexed([], error=str(e))
    except RecursionError:  # pragma: no cover - the scanners are iterative; belt and braces
        return Lexed([], error="the text is too deeply nested")


def token_offsets(text: str, backslash_quotes: bool = False) -> tuple[list[str], list[int]]:
    """PostgreSQL tokens of ``text`` with the source offset where each starts (for quoting a part of the text
    exactly as the client sent it).  Raises :class:`LexError`."""
    scanner = _PgScanner(text, backslash_quotes)
    scanner.offsets = []
    tokens = scanner.run()
    return tokens, scanner.offsets


def _shape_differs(tokens: list[str], other: _PgScanner | _MyScanner) -> bool:
    try:
        return other.run() != tokens
    except LexError:
        return True


def split_tokens(tokens: list[str]) -> list[list[str]]:
    """Split a token list into statements at ``;`` outside parentheses; empty statements are dropped."""
    statements: list[list[str]] = []
    current: list[str] = []
    depth = 0
    for tok in tokens:
        if tok == ";" and depth == 0:
            if current:
                statements.append(current)
            current = []
            continue
        if tok == "(" or tok == "[":
            depth += 1
        elif (tok == ")" or tok == "]") and depth:
            depth -= 1
        current.append(tok)
    if current:
        statements.append(current)
    return statements


def public_fingerprint(shape: str) -> str:
    """A shape with its literal placeholders shown as ``?``."""
    if STRING in shape:
        shape = shape.replace(STRING, "?")
    if NUMBER in shape:
        shape = shape.replace(NUMBER, "?")
    return shape


def sql_text(tokens: list[str]) -> str:
    """Tokens rendered back into SQL for sqlglot: literals become neutral values (``'x'``, ``1``), and the
    grammar sqlglot lacks is rewritten (:mod:`gw_sqlanalysis.grammar`)."""
    from .grammar import for_parser  # built on this module's token kinds

    tokens = for_parser(tokens)
    return " ".join("'x'" if t == STRING else "1" if t == NUMBER else t for t in tokens)
