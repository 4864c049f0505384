"""What a PostgreSQL text does to the session's named objects: prepared statements and cursors (portals).

A gateway that judges ``EXECUTE s2(1)`` must know what ``s2`` is on the server.  :func:`name_operations`
lists, per statement of a text, the operations on names the server performs when the statement succeeds:
``PREPARE`` (with the prepared statement's source text), ``EXECUTE`` (also inside ``EXPLAIN`` and
``CREATE TABLE ... AS EXECUTE``), ``DEALLOCATE [ALL]``, ``DISCARD ALL``, ``DECLARE`` and ``CLOSE [ALL]``.
The protocol keeps the table; this module only reads text.  Names are folded as the server folds them
(unquoted: lower case; quoted: exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexer import QIDENT, WORD, LexError, identifier_value, token_kind, token_offsets

__all__ = ["NameOp", "mentions_names", "name_operations"]

#: Words that start (or wrap) a statement acting on names; a text without any of them needs no analysis.
_TRIGGERS = ("prepare", "execute", "deallocate", "discard", "declare", "close")


@dataclass(frozen=True, slots=True)
class NameOp:
    """One operation on a name.  ``op``: ``prepare`` (``text`` is the statement prepared, exactly as sent),
    ``execute`` (``args`` are the argument expressions as sent; ``wrapped`` when inside EXPLAIN or CREATE
    TABLE AS), ``deallocate``, ``deallocate_all``, ``discard_all``, ``declare`` (``text`` is the cursor's
    query), ``close``, ``close_all``.
    ``statement`` is the statement's 0-based index in the text."""

    op: str
    name: str = ""
    text: str = ""
    args: tuple[str, ...] = ()
    wrapped: bool = False
    statement: int = 0


def mentions_names(text: str) -> bool:
    """Cheap pre-check: could ``text`` act on names at all?"""
    low = text.lower()
    return any(word in low for word in _TRIGGERS)


def _name(tokens: list[str], i: int) -> str | None:
    if i < len(tokens) and token_kind(tokens[i]) in (WORD, QIDENT):
        return identifier_value(tokens[i])
    return None


def _group_end(tokens: list[str], i: int) -> int:
    """Index after the parenthesised group opening at ``i`` (``i`` itself when there is none)."""
    if i >= len(tokens) or tokens[i] != "(":
        return i
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] in ("(", "["):
            depth += 1
        elif tokens[j] in (")", "]"):
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def name_operations(text: str, backslash_quotes: bool = False) -> list[NameOp] | None:
    """The operations on names in ``text``, in order; None when the text cannot be lexed (the caller must
    then assume any name may have changed).  ``backslash_quotes``: ``standard_conforming_strings = off``."""
    try:
        tokens, offsets = token_offsets(text, backslash_quotes)
    except LexError:
        return None
    ops: list[NameOp] = []
    statements: list[tuple[int, int]] = []
    begin, depth = 0, 0
    for i, tok in enumerate(tokens):
        if tok in ("(", "["):
            depth += 1
        elif tok in (")", "]") and depth:
            depth -= 1
        elif tok == ";" and depth == 0:
            if i > begin:
                statements.append((begin, i))
            begin = i + 1
    if len(tokens) > begin:
        statements.append((begin, len(tokens)))
    for index, (start, end) in enumerate(statements):
        st = tokens[start:end]
        end_offset = offsets[end] if end < len(offsets) else len(text)

        def source(a: int, b: int, _start: int = start, _end_offset: int = end_offset, _n: int = len(st)) -> str:
            lo = offsets[_start + a]
            hi = offsets[_start + b] if b < _n else _end_offset
            return text[lo:hi].strip()

        ops.extend(_statement_ops(st, index, source))
    return ops


def _execute_op(st: list[str], i: int, index: int, source: object, wrapped: bool) -> NameOp | None:
    """``EXECUTE name [(args)]`` at token ``i`` (the word EXECUTE)."""
    name = _name(st, i + 1)
    if name is None:
        return None
    args: list[str] = []
    j = i + 2
    if j < len(st) and st[j] == "(":
        close = _group_end(st, j) - 1
        k = j + 1
        depth = 0
        for m in range(j + 1, close + 1):
            tok = st[m]
            if tok in ("(", "["):
                depth += 1
            elif tok in (")", "]") and m != close:
                depth -= 1
            if m == close or (tok == "," and depth == 0):
                if m > k:
                    args.append(source(k, m))  # type: ignore[operator]
                k = m + 1
    return NameOp("execute", name, args=tuple(args), wrapped=wrapped, statement=index)


def _statement_ops(st: list[str], index: int, source: object) -> list[NameOp]:
    first = st[0] if token_kind(st[0]) == WORD else ""
    if first == "prepare":
        name = _name(st, 1)
        if name is None or name == "transaction":
            return []
        i = _group_end(st, 2)
        if i >= len(st) or st[i] != "as" or i + 1 >= len(st):
            return []
        return [NameOp("prepare", name, text=source(i + 1, len(st)), statement=index)]  # type: ignore[operator]
    if first == "execute":
        op = _execute_op(st, 0, index, source, False)
        return [op] if op is not None else [NameOp("execute", "", statement=index)]
    if first in ("explain", "create"):
        # EXPLAIN [options] EXECUTE name; CREATE TABLE ... AS EXECUTE name.  Any EXECUTE word outside
        # parentheses counts: a false match only makes gw stricter.
        depth = 0
        for i, tok in enumerate(st):
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            elif depth == 0 and tok == "execute" and i > 0:
                op = _execute_op(st, i, index, source, True)
                return [op] if op is not None else [NameOp("execute", "", wrapped=True, statement=index)]
        return []
    if first == "deallocate":
        i = 2 if len(st) > 1 and st[1] == "prepare" else 1
        if i < len(st) and st[i] == "all":
            return [NameOp("deallocate_all", statement=index)]
        name = _name(st, i)
        return [NameOp("deallocate", name, statement=index)] if name is not None else []
    if first == "discard":
        return [NameOp("discard_all", statement=index)] if len(st) > 1 and st[1] == "all" else []
    if first == "declare":
        name = _name(st, 1)
        if name is None:
            return []
        depth, cursor = 0, False
        for i, tok in enumerate(st):
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            elif depth == 0 and tok == "cursor":
                cursor = True
            elif depth == 0 and cursor and tok == "for" and i + 1 < len(st):
                return [NameOp("declare", name, text=source(i + 1, len(st)), statement=index)]  # type: ignore[operator]
        return [NameOp("declare", name, statement=index)]
    if first == "close":
        if len(st) > 1 and st[1] == "all":
            return [NameOp("close_all", statement=index)]
        name = _name(st, 1)
        return [NameOp("close", name, statement=index)] if name is not None else []
    return []
