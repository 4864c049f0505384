"""What gw hands sqlglot: its canonical tokens, rewritten where sqlglot's grammar falls short.

sqlglot does not know every corner of PostgreSQL's grammar, and it parses recursively (a few dozen Python
frames per level of parentheses), so some safe statements would otherwise be ``unknown`` only because the
parser gave up.  Each rewrite here keeps what classification and lineage look at -- the tables, columns and
functions a statement names and the tree of queries around them -- and changes only the surface sqlglot trips
on:

* **Redundant parentheses** ``((x))`` become ``(x)`` (not when ``x`` holds a top-level comma: ``((a, b))`` is a
  row, ``(a, b)`` a list; nor around a subquery, whose own parentheses are syntax; nor when the group is
  empty).  A column or query in more parentheses is the same
  column or query, so ``select ((((ssn))))`` still derives from ``ssn``.
* **Prefix ``@``** (absolute value, ``select @ -5``) becomes a prefix ``-``: both take one operand and call no
  function gw must vouch for.  Only in a prefix position (after an operator, ``(``, ``,`` or a keyword that
  cannot end an expression); ``a @ b`` is left as written, and so is ``@`` before a string or quoted name
  (MySQL's user variables ``@'v'``, ``@`v```).
* **``ARRAY[...]``** becomes ``ARRAY(...)``, which sqlglot reads into the same node: its parser backtracks
  exponentially on nested ``ARRAY[`` (eighteen levels took minutes), a stall no statement may cause.
* **``XMLEXISTS(xpath PASSING [BY REF|VALUE] doc [BY REF|VALUE])``** becomes ``xmlexists(xpath, doc)``: the same
  two operands, as an ordinary call.

What is still nested (parentheses and brackets) deeper than :data:`MAX_DEPTH` levels after this is not given to sqlglot at all
(:func:`nesting_depth`): the statement is ``unknown`` with the ``too_deep`` flag, and protocol plugins refuse it
saying so.  Deep nesting then costs one linear pass, never a RecursionError or seconds of parser time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from .lexer import STRING, SYMBOL, WORD, token_kind

T = TypeVar("T")

#: Deepest parenthesis nesting (after removing redundant pairs) that gw analyses.  PostgreSQL itself accepts
#: far deeper statements, and generated SQL (ORMs, query builders, nested CASE) goes past fifty levels, so the
#: limit is well above what people write and far below what would cost seconds of parser time.
MAX_DEPTH = 128
#: Up to this depth the caller's stack is used as it is.
SHALLOW_DEPTH = 10
#: Python frames the analysis needs per level of nesting: sqlglot's parser and gw's own walks together take
#: up to about sixty per level (nested ``CASE``, measured), with room to spare.
_FRAMES_PER_LEVEL = 80
#: The stack of the thread a deep statement is analysed on: the frames above, with a wide margin (only the
#: pages used are ever committed).
_DEEP_STACK_BYTES = 256 * 1024 * 1024
_stack_lock = threading.Lock()


def _ensure_recursion_limit() -> None:
    """Python's recursion limit is one per process; raise it (never lower it) to what a statement nested
    :data:`MAX_DEPTH` levels needs.  Deep statements only ever recurse on the big stack of
    :func:`with_fresh_stack`'s thread, and a Python call does not grow the C stack on CPython 3.11+, so the
    raised limit does not put the event loop's own stack at risk."""
    needed = 1000 + _FRAMES_PER_LEVEL * MAX_DEPTH
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def with_fresh_stack(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a new thread with a large stack (whose recursion depth starts at zero), waiting for it;
    exceptions propagate."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller as raised
            error.append(e)

    _ensure_recursion_limit()
    with _stack_lock:  # the stack size is a process-wide setting for threads started after it
        previous = threading.stack_size(_DEEP_STACK_BYTES)
        try:
            thread = threading.Thread(target=target, name="gw-sqlanalysis-deep", daemon=True)
            thread.start()
        finally:
            threading.stack_size(previous)
    thread.join()
    if error:
        raise error[0]
    return result[0]

#: A group that starts with one of these is a subquery, whose parentheses are part of the syntax
#: (``values ((select 1))`` is a row holding a scalar subquery; ``values (select 1)`` is not valid).
_QUERY_WORDS = frozenset({"select", "with", "values", "table"})

#: Words after which an operator is a prefix operator (they cannot end an expression).
_PREFIX_AFTER = frozenset({
    "select", "where", "and", "or", "not", "when", "then", "else", "on", "having", "distinct", "returning",
    "limit", "offset", "case", "between", "like", "ilike", "is", "in", "by", "set", "values", "all", "any",
    "some", "array", "return", "as",
})


def for_parser(tokens: list[str]) -> list[str]:
    """``tokens`` rewritten for sqlglot (see the module docstring); the input list is not changed."""
    if "[" in tokens:
        tokens = _array_constructors(tokens)
    if "(" in tokens:
        tokens = collapse_parentheses(tokens)
    if "@" in tokens:
        tokens = _prefix_at(tokens)
    if any(len(t) == 9 and t.lower() == "xmlexists" for t in tokens):
        tokens = _xmlexists(tokens)
    return tokens


def _matches(tokens: list[str]) -> tuple[dict[int, int], set[int]]:
    """Opening index -> closing index of every balanced ``(``, and the groups with a top-level comma."""
    match: dict[int, int] = {}
    commas: set[int] = set()
    stack: list[int] = []
    for i, t in enumerate(tokens):
        if t == "(":
            stack.append(i)
        elif t == ")":
            if stack:
                match[stack.pop()] = i
        elif t == "," and stack:
            commas.add(stack[-1])
    return match, commas


def collapse_parentheses(tokens: list[str]) -> list[str]:
    """Drop every pair of parentheses that only repeats the pair around it: ``((x))`` -> ``(x)``."""
    match, commas = _matches(tokens)
    drop: set[int] = set()
    for i in sorted(match):
        if i in drop:
            continue
        close = match[i]
        k = i + 1
        while (k < close and tokens[k] == "(" and match.get(k) == close - (k - i) and k not in commas
               and match[k] > k + 1 and tokens[k + 1].lower() not in _QUERY_WORDS):
            drop.add(k)
            drop.add(match[k])
            k += 1
    if not drop:
        return tokens
    return [t for i, t in enumerate(tokens) if i not in drop]


def nesting_depth(tokens: list[str]) -> int:
    """The deepest nesting of parentheses and brackets in ``tokens`` once redundant pairs are dropped."""
    if "(" not in tokens and "[" not in tokens:
        return 0
    depth = deepest = 0
    for t in collapse_parentheses(tokens) if "(" in tokens else tokens:
        if t == "(" or t == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif (t == ")" or t == "]") and depth:
            depth -= 1
    return deepest


def _array_constructors(tokens: list[str]) -> list[str]:
    out = list(tokens)
    stack: list[int] = []
    for i, t in enumerate(tokens):
        if t == "[":
            stack.append(i)
        elif t == "]" and stack:
            start = stack.pop()
            if start and token_kind(tokens[start - 1]) == WORD and tokens[start - 1].lower() == "array":
                out[start], out[i] = "(", ")"
    return out


def _prefix_at(tokens: list[str]) -> list[str]:
    out = list(tokens)
    for i, t in enumerate(tokens):
        if t != "@":
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        if not after or after[0] in (STRING, '"', "`"):
            continue  # MySQL's @'name', @"name", @`name` are user variables, not an operator
        prev = tokens[i - 1] if i else ""
        kind = token_kind(prev) if prev else SYMBOL
        if (not prev or (kind == SYMBOL and prev not in (")", "]"))
                or (kind == WORD and prev.lower() in _PREFIX_AFTER)):
            out[i] = "-"
    return out


def _xmlexists(tokens: list[str]) -> list[str]:
    match, _ = _matches(tokens)
    out = list(tokens)
    for i, t in enumerate(tokens):
        if token_kind(t) != WORD or t.lower() != "xmlexists" or i + 1 >= len(tokens) or tokens[i + 1] != "(":
            continue
        close = match.get(i + 1)
        if close is None:
            continue
        depth = 0
        passing = -1
        for k in range(i + 2, close):
            if tokens[k] == "(":
                depth += 1
            elif tokens[k] == ")":
                depth -= 1
            elif depth == 0 and token_kind(tokens[k]) == WORD and tokens[k].lower() == "passing":
                passing = k
                break
        if passing == -1:
            continue
        out[passing] = ","
        for k in (passing + 1, close - 2):  # BY REF / BY VALUE before or after the document
            if (k > passing and k + 1 < close and tokens[k].lower() == "by"
                    and tokens[k + 1].lower() in ("ref", "value")):
                out[k] = out[k + 1] = ""
    return [t for t in out if t]
