"""Text shown to people (approvers, console users, operators): what an agent sent, escaped so it shows every
character and cannot disguise itself on a terminal or a web page."""

from __future__ import annotations

import unicodedata

#: Unicode categories of characters that change how text looks without showing themselves: controls (carriage
#: return, escape sequences), format characters (bidirectional overrides and isolates, zero-width characters,
#: the BOM, the soft hyphen, tags), private use, surrogates, line and paragraph separators, and code points this
#: Python does not know (they may be format characters of a newer Unicode).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
#: Characters of other categories that draw as nothing: the combining grapheme joiner and the Hangul fillers.
_BLANK = frozenset("\u034f\u115f\u1160\u3164\uffa0")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(ch: str) -> bool:
    """Whether the character ``ch`` is one :func:`escape_visible` writes as an escape."""
    return ch in _BLANK or unicodedata.category(ch) in _HIDDEN_CATEGORIES


def _escaped(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_visible(text: str, *, keep: str = "") -> str:
    """``text`` with every hidden character (:func:`is_hidden`) written as a visible escape (``\\r``,
    ``\\x1b``, ``\\u202e``), so whoever reads it sees every character of what would run, and the text cannot
    redraw a terminal or reorder what is shown.  Characters in ``keep`` stay as they are: ``"\\n"`` shows
    multi-line SQL as lines, ``"\\n\\t"`` suits a ``<pre>`` block.  HTML escaping is the page's job."""
    rest = text.translate(dict.fromkeys(map(ord, keep))) if keep else text  # kept ones (\n) are hidden
    if rest.isprintable() and _BLANK.isdisjoint(rest):
        return text  # the common case: isprintable is False for every hidden category
    return "".join(_escaped(ch) if ch not in keep and is_hidden(ch) else ch for ch in text)
