"""SQL analysis shared by gw's SQL protocol plugins (PostgreSQL, MySQL): classification, fingerprints, lineage.

A library, not a plugin (it registers no entry point): protocol plugins build one :class:`Classifier` per
dialect and call it for every statement.

* :meth:`Classifier.classify` -> :class:`Classification` (``kind``, ``verb``, ``objects``, ``flags``): the
  vocabulary guard and approve rules match on.  Fail closed: what gw cannot parse or does not recognise is
  ``unknown``, never ``read``.  See docs/sql-classification.md.
* :func:`fingerprint` -> the statement with literals replaced by ``?``, comments dropped, whitespace
  collapsed, keywords case-folded (a real lexer, per dialect).
* :meth:`Classifier.column_sources` -> per output column the ``schema.table.column`` sources it derives from.

Cost: classification never depends on literal values, so results are cached by the literal-normalised shape
(sqlglot runs once per distinct shape), after a cheaper cache by exact text (by exact text and
``standard_conforming_strings`` setting for a PostgreSQL text whose lexing depends on it).  A pgbench-style
statement with a new literal each time costs one lexer pass and a dictionary lookup.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from gw.model import Kind

from .dialects import DialectRules, rules_for
from .grammar import SHALLOW_DEPTH, nesting_depth, with_fresh_stack
from .lexer import Lexed, lex, public_fingerprint, split_tokens, sql_text
from .lineage import ANYTHING, Lineage, statement_lineage
from .model import Classification, combine
from .statements import classify_statement
from .tree import ParseFailure, parse_one, table_objects

__all__ = ["ANYTHING", "Classification", "Classifier", "Lineage", "count_statements", "fingerprint"]

K = TypeVar("K")
V = TypeVar("V")

#: Keys longer than this are not cached (a 10,000-row INSERT should not pin megabytes per entry).
MAX_CACHED_KEY = 16384

#: Statements of one long text whose parse trees are kept (see ``Classifier.prepare_lineage``).
MAX_LARGE_STATEMENTS = 64


class _LRU(Generic[K, V]):
    """A small bounded LRU map (entries and total key length both bounded).  One classifier serves the event
    loop and the worker threads that analyse long statements, so every access holds the map's lock (a lookup
    and its move to the end must not interleave with another thread's eviction)."""

    __slots__ = ("chars", "entries", "lock", "max_chars", "max_entries", "max_key")

    def __init__(self, max_entries: int, max_chars: int, max_key: int = MAX_CACHED_KEY) -> None:
        self.entries: OrderedDict[K, V] = OrderedDict()
        self.max_entries = max(1, max_entries)
        self.max_chars = max_chars
        self.max_key = max_key
        self.chars = 0
        self.lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.max_key:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = value
            self.chars += size
            while len(self.entries) > self.max_entries or self.chars > self.max_chars:
                old, _ = self.entries.popitem(last=False)
                self.chars -= _size(old)

    def __len__(self) -> int:
        return len(self.entries)


def _size(key: object) -> int:
    if isinstance(key, str):
        return len(key)
    if isinstance(key, tuple):
        return sum(_size(k) for k in key)
    return 0


class _Parsed(NamedTuple):
    """One statement of a text, parsed."""

    #: (shape of the whole text, index of the statement in it): the key of its tree and lineage.
    key: tuple[str, int]
    tree: Any
    #: The tables (``schema.table``) it names.
    tables: tuple[str, ...]
    #: Its nesting of parentheses and brackets (:func:`gw_sqlanalysis.grammar.nesting_depth`): deeper than
    #: :data:`SHALLOW_DEPTH`, its tree is walked on a big stack.
    depth: int


#: A text lexed, and its tokens split into statements (none when it could not be lexed).
_Split = tuple[Lexed, list[list[str]]]


def _unreadable(reason_flags: frozenset[str]) -> Classification:
    return Classification(Kind.UNKNOWN, "", (), frozenset({"unparsed"}) | reason_flags)


class Classifier:
    """Classifies SQL text in one dialect (``postgres``, ``mysql``), cached by literal-normalised fingerprint.

    ``default_schema`` is the schema reported for unqualified tables (``public`` for PostgreSQL; none for
    MySQL, where unqualified names are reported bare unless a database is given here).  ``safe_functions``
    adds functions (lower-case names) that the operator vouches for: calls to them do not make a statement
    ``unknown``.  ``lexer`` replaces the dialect's default lexer (a MySQL session's character set and
    sql_mode: :func:`gw_sqlanalysis.mysql.lexer_for`).
    """

    def __init__(self, dialect: str = "postgres", cache_size: int = 4096, *, default_schema: str | None = None,
                 safe_functions: frozenset[str] | set[str] | tuple[str, ...] = (),
                 lexer: Callable[[str], Lexed] | None = None, functions: dict[str, str] | None = None) -> None:
        self.rules: DialectRules = rules_for(dialect, default_schema=default_schema,
                                             safe_functions=frozenset(f.lower() for f in safe_functions),
                                             function_kinds=functions)
        self.dialect = self.rules.name
        self._lex: Callable[[str], Lexed] = lexer if lexer is not None else self._default_lex
        budget = max(1, cache_size) * 512
        self._by_text: _LRU[str, Classification] = _LRU(cache_size, budget)
        self._by_shape: _LRU[str, Classification] = _LRU(cache_size, budget)
        #: Texts that read differently under the two ``standard_conforming_strings`` settings, classified in
        #: the one the caller knows, keyed by (text, setting): an answer is only ever returned for the
        #: setting it was lexed under (``_by_text`` holds only answers that do not depend on it).
        self._by_text_and_mode: _LRU[tuple[str, bool], Classification] = _LRU(cache_size, budget)
        #: (shape, statement index) -> (tree, or None when it does not parse; tables; nesting depth).
        self._trees: _LRU[tuple[str, int], tuple[Any, tuple[str, ...], int]] = _LRU(cache_size, budget)
        self._lineages: _LRU[tuple[object, ...], Lineage] = _LRU(cache_size, budget)
        #: The trees and lineages of the last few statements too long for the caches above, so that a protocol
        #: can work them out off its event loop (:meth:`prepare_lineage`) and then ask again cheaply.
        #: The parsed statements of the last long texts, per statement index (None: the text's only statement).
        self._large_trees: _LRU[str, dict[int | None, _Parsed | None]] = _LRU(2, 1 << 62, max_key=1 << 62)
        self._large_lineages: _LRU[tuple[object, ...], Lineage] = _LRU(8, 1 << 62, max_key=1 << 62)
        #: How many times a statement shape was analysed from scratch (sqlglot); for tests and metrics.
        self.analyses = 0

    def _default_lex(self, text: str) -> Lexed:
        return lex(text, self.dialect)

    # -- classification -------------------------------------------------------------------------------------
    def classify(self, text: str, standard_strings: bool | None = None) -> Classification:
        """Classify ``text`` (one or several statements).  Never raises: on anything unexpected the answer is
        ``unknown`` with the ``unparsed`` flag.

        ``standard_strings`` (PostgreSQL): the session's ``standard_conforming_strings`` when the caller knows
        for certain what the server will lex this text under; ``None`` (the default) when it does not: a text
        that reads differently under the two settings is then ``unknown`` (``ambiguous_quoting``)."""
        if standard_strings is not None and "\\" in text and self.dialect == "postgres":
            # Only a backslash reads differently under the two settings: such a text is lexed in the mode the
            # server is in, and cached with that mode.
            key = (text, standard_strings)
            cached = self._by_text_and_mode.get(key)
            if cached is not None:
                return cached
            try:
                result = self._classify(text, standard_strings)
            except Exception:  # noqa: BLE001 - fail closed
                result = _unreadable(frozenset({"internal_error"}))
            self._by_text_and_mode.put(key, result, len(text))
            return result
        cached = self._by_text.get(text)
        if cached is not None:
            return cached
        try:
            result = self._classify(text)
        except Exception:  # noqa: BLE001 - fail closed on a bug rather than let a statement through
            result = _unreadable(frozenset({"internal_error"}))
        self._by_text.put(text, result, len(text))
        return result

    def _classify(self, text: str, standard_strings: bool | None = None) -> Classification:
        lexed = self._lex(text) if standard_strings is None else lex(text, self.dialect, standard_strings)
        if lexed.error is not None:
            return _unreadable(frozenset(lexed.flags))
        shape = lexed.shape
        result = self._by_shape.get(shape)
        if result is None:
            self.analyses += 1
            parts = [classify_statement(s, self.rules) for s in split_tokens(lexed.tokens)]
            result = combine(parts, public_fingerprint(shape))
            self._by_shape.put(shape, result, len(shape))
        if lexed.flags:
            # The server might read this text differently from gw (executable comments, quoting that depends
            # on session settings): whatever it looks like, it is unknown.
            result = dataclasses.replace(result, kind=Kind.UNKNOWN, flags=result.flags | lexed.flags)
        return result

    def fingerprint(self, text: str) -> str:
        return fingerprint(text, self.dialect)

    # -- lineage --------------------------------------------------------------------------------------------
    def column_sources(self, text: str, statement: int | None = None,
                       tables: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, ...]] | None:
        """For a query returning rows: per output column (in order), the source columns it derives from as
        ``schema.table.column`` (``public.people.ssn``), ``schema.table.*`` (every column of the table: a
        whole-row reference, or something gw could not trace) or :data:`ANYTHING`; an empty tuple for a column
        that derives from none (a literal, ``count(*)``).  None when the number of columns is not known
        (``SELECT *`` from a table not in ``tables``), the statement cannot be parsed, or ``text`` holds
        several statements and ``statement`` -- the 0-based index of one -- is not given."""
        lineage = self.lineage(text, statement, tables)
        if lineage is None or lineage.columns is None:
            return None
        return list(lineage.columns)

    def lineage(self, text: str, statement: int | None = None,
                tables: Mapping[str, Sequence[str]] | None = None) -> Lineage | None:
        """The :class:`Lineage` of one statement of ``text`` (see :meth:`column_sources`); ``tables`` gives
        the columns of tables by ``schema.table`` (from the database's catalog).  None when the statement
        cannot be parsed (callers treat every value as derived from anything)."""
        return self._lineage(text, statement, tables, None)

    def _lineage(self, text: str, statement: int | None, tables: Mapping[str, Sequence[str]] | None,
                 split: _Split | None) -> Lineage | None:
        try:
            parsed = self._parsed(text, statement, split)
            if parsed is None:
                return None
            known = tuple((t, tuple(tables[t])) for t in parsed.tables if tables is not None and t in tables)
            key = (*parsed.key, known)
            large = len(text) > MAX_CACHED_KEY
            cache = self._large_lineages if large else self._lineages
            cached = cache.get(key)
            if cached is not None:
                return cached
            if parsed.depth > SHALLOW_DEPTH:  # the walk recurses per level: give it a big stack
                result = with_fresh_stack(statement_lineage, parsed.tree, self.rules, dict(known))
            else:
                result = statement_lineage(parsed.tree, self.rules, dict(known))
            cache.put(key, result, len(parsed.key[0]) + sum(len(c) for _, cs in known for c in cs))
            return result
        except Exception:  # noqa: BLE001 - callers fail closed on None
            return None

    def tables(self, text: str, statement: int | None = None) -> tuple[str, ...] | None:
        """The tables (``schema.table``) one statement of ``text`` names; None when it cannot be parsed."""
        try:
            parsed = self._parsed(text, statement)
        except Exception:  # noqa: BLE001
            return None
        return parsed.tables if parsed is not None else None

    def prepare_lineage(self, text: str) -> None:
        """Work out the lineage of every statement of a long ``text`` now (call it in a worker thread): the
        next :meth:`lineage` / :meth:`tables` calls for it then skip lexing and parsing (the trees of up to
        :data:`MAX_LARGE_STATEMENTS` statements of the last two long texts are kept; a shorter text's are
        cached by shape, and it is lexed again).  The text is lexed once, for all its statements."""
        try:
            split = self._split(text)
        except Exception:  # noqa: BLE001 - lineage() fails closed on such a text anyway
            return
        count = len(split[1])
        for i in range(max(1, count)):
            self._lineage(text, i, None, split)
        trees = self._large_trees.get(text)
        if count == 1 and trees is not None:  # asked without an index, the only statement is meant
            trees[None] = trees.get(0)

    def _split(self, text: str) -> _Split:
        lexed = self._lex(text)
        return lexed, split_tokens(lexed.tokens) if lexed.error is None else []

    def _parsed(self, text: str, statement: int | None, split: _Split | None = None) -> _Parsed | None:
        if len(text) <= MAX_CACHED_KEY:
            return self._parse(text, statement, split)
        trees = self._large_trees.get(text)
        if trees is None:
            trees = {}
            self._large_trees.put(text, trees, 1)
        if statement in trees:  # None too: a text that does not parse
            return trees[statement]
        parsed = self._parse(text, statement, split)
        if len(trees) < MAX_LARGE_STATEMENTS:
            trees[statement] = parsed  # entries are only ever added: no lookup can race a removal
        return parsed

    def _parse(self, text: str, statement: int | None, split: _Split | None = None) -> _Parsed | None:
        """One statement of ``text`` parsed (``split``: ``text`` already lexed and split into statements)."""
        lexed, statements = self._split(text) if split is None else split
        if lexed.error is not None or lexed.flags:
            return None
        if statement is None:
            if len(statements) != 1:
                return None
            statement = 0
        if not 0 <= statement < len(statements):
            return None
        key = (lexed.shape, statement)
        cached = self._trees.get(key)
        if cached is None:
            tokens = statements[statement]
            depth = nesting_depth(tokens)
            try:
                if depth > SHALLOW_DEPTH:
                    tree = with_fresh_stack(parse_one, sql_text(tokens), self.rules)
                else:
                    tree = parse_one(sql_text(tokens), self.rules)
            except ParseFailure:
                cached = (None, (), depth)
            else:
                cached = (tree, tuple(table_objects(tree, self.rules)), depth)
            self._trees.put(key, cached, len(lexed.shape))
        if cached[0] is None:
            return None
        return _Parsed(key, *cached)


def fingerprint(text: str, dialect: str = "postgres") -> str:
    """The statement with literals replaced by ``?`` and comments/whitespace normalised; keywords and
    unquoted identifiers case-folded (PostgreSQL folds them too), quoted identifiers kept exactly.
    Text that cannot be lexed (an unterminated literal) yields ``""``."""
    lexed = lex(text, "mysql" if dialect in ("mysql", "mariadb") else "postgres")
    return public_fingerprint(lexed.shape) if lexed.error is None else ""


def count_statements(text: str, dialect: str = "postgres") -> int:
    """How many statements ``text`` holds (``;`` inside literals, comments and parentheses do not count);
    -1 when it cannot be lexed.  Use with :meth:`Classifier.column_sources` ``statement=``."""
    lexed = lex(text, "mysql" if dialect in ("mysql", "mariadb") else "postgres")
    if lexed.error is not None:
        return -1
    return len(split_tokens(lexed.tokens))
