"""Where each column of a result comes from, failing closed: SQL lineage, the catalog, SQL cursors.

For every result a stage may filter, gw works out per column the source columns its values derive from
(``schema.table.column``; ``schema.table.*`` for every column of a table; ``*.*.*`` for anything):

* the statement that produced the result -- in a simple Query of several statements, the one whose turn it is;
  for ``FETCH``/``MOVE``, the query of the cursor as ``DECLARE`` established it;
* lineage from gw_sqlanalysis, with the columns of the tables it names read from the catalog (``SELECT *``,
  alias column lists), views and materialized views followed through their definitions;
* whatever the statement's lineage cannot say derives from every table it names, and a statement gw cannot
  analyse (or a cursor it did not see declared) from anything.

``*`` sources left after this (a table the catalog does not know, ``*.*.*``) match every mask rule.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from gw.model import Column
from gw.stage import UNKNOWN_SOURCES
from gw_sqlanalysis import ANYTHING, Classifier, Lineage
from gw_sqlanalysis.lexer import (
    QIDENT,
    WORD,
    Lexed,
    identifier_value,
    lex,
    split_tokens,
    sql_text,
    token_kind,
)

from .columns import Catalog, TableInfo, type_name
from .copyout import parse_copy_tokens
from .messages import FieldDescription

Sources = tuple[str, ...]
#: How deep views over views are followed before gw gives up (and the column derives from anything).
MAX_VIEW_DEPTH = 6
#: Statements whose rows hold no table data: settings, plans.
_NO_TABLE_DATA = frozenset({"show", "explain"})
#: Statements that neither read table data nor write values (facts need not be worked out).
_NO_FACTS = frozenset({"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "set",
                       "reset", "show", "listen", "unlisten", "deallocate", "discard", "close", "prepare",
                       "explain", "declare", "fetch", "move"})
#: Statements gw cannot analyse that may write values: treated as writing anything.
_MAY_WRITE = frozenset({"do", "call", "execute", "insert", "update", "delete", "merge", "create", "select",
                        "with", "values", "table", "alter", "refresh", "copy", "import"})
#: Statements that leave the session's cursors as gw knows them.
_CURSOR_NEUTRAL = frozenset({"select", "with", "values", "table", "fetch", "move", "show", "explain",
                             "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release",
                             "insert", "update", "delete", "merge", "set", "reset", "listen", "unlisten",
                             "prepare", "deallocate", "discard"})


#: Command tags whose statements make or drop the names :meth:`Provenance.completed` follows.
_NAMING_TAGS = frozenset({"DECLARE CURSOR", "PREPARE", "CLOSE CURSOR", "CLOSE CURSOR ALL", "DISCARD ALL"})
#: Command tags of statements that may change what the catalog says about relations.
_CHANGES_CATALOG = frozenset({"CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "REFRESH", "SECURITY",
                              "TRUNCATE", "IMPORT"})


def wire_columns(fields: Sequence[FieldDescription]) -> list[Column]:
    """A result's columns as the wire describes them, for pipelines whose stages want no sources: names and
    types only, every column deriving from anything (:data:`gw.stage.UNKNOWN_SOURCES`)."""
    return [Column(name=f.name, type_name=type_name(f.type_oid), binary=f.format == 1, sources=UNKNOWN_SOURCES)
            for f in fields]


#: The texts lexed last: one statement is read several times on its way (its classification, its facts, its
#: result's columns, its completion), and lexing is the costly part of each.  Sessions interleave, so the oldest
#: text is dropped first, and the texts kept are bounded in number and in total length.  Worker threads lex
#: long statements through it too: changes hold the lock (a lookup is one dictionary read).
_LEXED: dict[tuple[str, str], Lexed] = {}
_LEXED_ENTRIES = 64
_LEXED_SIZE = 64 * 1024
_LEXED_BUDGET = 256 * 1024
_lexed_lock = threading.Lock()
_lexed_chars = 0


#: The last text too long for ``_LEXED`` (lexed in a worker thread by :meth:`Provenance.prepare`).
_LARGE_LEXED: list[tuple[tuple[str, str], Lexed]] = []


def lexed_text(text: str, dialect: str) -> Lexed:
    """``lex(text, dialect)``, from the texts lexed last when it is one of them (callers must not change it)."""
    global _lexed_chars
    key = (text, dialect)
    hit = _LEXED.get(key)
    if hit is None:
        large = _LARGE_LEXED[0] if _LARGE_LEXED else None
        if large is not None and large[0] == key:
            return large[1]
        hit = lex(text, dialect)
        if len(text) > _LEXED_SIZE:
            _LARGE_LEXED[:] = [(key, hit)]
            return hit
        with _lexed_lock:
            if key not in _LEXED:
                _LEXED[key] = hit
                _lexed_chars += len(text)
                while len(_LEXED) > _LEXED_ENTRIES or _lexed_chars > _LEXED_BUDGET:
                    old = next(iter(_LEXED))
                    del _LEXED[old]
                    _lexed_chars -= len(old[0])
    return hit


def classifier(functions: Mapping[str, str]) -> Classifier:
    """The listener's classifier: it lexes through :func:`lexed_text`, so the statement it has just classified
    is not lexed again for its facts, its result's columns and its completion."""
    return Classifier(dialect="postgres", functions=dict(functions),
                      lexer=lambda text: lexed_text(text, "postgres"))


def statement_tokens(classifier: Classifier, text: str, index: int | None) -> list[str] | None:
    """The tokens of statement ``index`` (0-based; None: the only one) of ``text``; None if unreadable."""
    lexed = lexed_text(text, classifier.dialect)
    if lexed.error is not None or lexed.flags:
        return None
    statements = split_tokens(lexed.tokens)
    if len(statements) > 1 and any(a.lower() == "begin" and b.lower() == "atomic"
                                   for a, b in zip(lexed.tokens, lexed.tokens[1:])):
        return None  # a SQL-standard function body: the server's statement boundaries are not the lexer's
    if index is None:
        index = 0 if len(statements) == 1 else -1
    if not 0 <= index < len(statements):
        return None
    return statements[index]


def _cursor_name(tokens: Sequence[str]) -> str | None:
    """The cursor a FETCH/MOVE reads: its last token, an identifier."""
    if len(tokens) < 2 or token_kind(tokens[-1]) not in (WORD, QIDENT):
        return None
    return identifier_value(tokens[-1])


def _prepared(tokens: Sequence[str]) -> tuple[str, str] | None:
    """``PREPARE name [(types)] AS statement`` -> (name, statement)."""
    if len(tokens) < 4 or tokens[0].lower() != "prepare" or token_kind(tokens[1]) not in (WORD, QIDENT):
        return None
    depth = 0
    for i in range(2, len(tokens)):
        t = tokens[i]
        depth += t == "("
        depth -= t == ")"
        if depth == 0 and t.lower() == "as":
            return identifier_value(tokens[1]), sql_text(list(tokens[i + 1:]))
    return None


def _declared(tokens: Sequence[str]) -> tuple[str, str] | None:
    """``DECLARE name ... CURSOR ... FOR query`` -> (name, query)."""
    if len(tokens) < 4 or tokens[0].lower() != "declare":
        return None
    name = identifier_value(tokens[1])
    for i in range(2, len(tokens)):
        if tokens[i].lower() == "cursor":
            for j in range(i + 1, len(tokens)):
                if tokens[j].lower() == "for":
                    return name, sql_text(list(tokens[j + 1:]))
            return None
    return None


class Provenance:
    """One session's view of result provenance (its SQL cursors); the catalog is the listener's."""

    def __init__(self, classifier: Classifier, catalog: Catalog) -> None:
        self.classifier = classifier
        self.catalog = catalog
        #: cursor name -> the query it was declared for (only after the server confirmed the DECLARE).
        self.cursors: dict[str, str] = {}
        #: Column index -> the row type OID of the table whose whole row it is (for the result being built).
        self.row_types: dict[int, int] = {}
        #: (statement shape, catalog generation) -> facts; statements reading cursors or prepared statements
        #: are not cached (they depend on the session's state).
        self._facts: dict[tuple[str, int], tuple[Sources | None, Sources]] = {}
        self._results: dict[tuple[str, int | None, int, int],
                            tuple[list[Sources], list[tuple[Sources, ...] | None], dict[int, int]]] = {}
        #: SQL ``PREPARE`` name -> its statement (after the server confirmed it).
        self.prepared: dict[str, str] = {}

    def resolve(self, text: str, index: int | None) -> tuple[str, int | None] | None:
        """The statement that really runs: a cursor's query for FETCH/MOVE, a prepared statement's text for
        EXECUTE; None when gw did not see it established (the statement is untraceable)."""
        tokens = statement_tokens(self.classifier, text, index)
        if not tokens:
            return None
        first = tokens[0].lower()
        if first in ("fetch", "move"):
            name = _cursor_name(tokens)
            query = self.cursors.get(name) if name is not None else None
            return (query, None) if query is not None else None
        if first == "execute":
            if len(tokens) < 2 or token_kind(tokens[1]) not in (WORD, QIDENT):
                return None
            query = self.prepared.get(identifier_value(tokens[1]))
            return (query, None) if query is not None else None
        return text, index

    def prepare(self, text: str) -> None:
        """Lex and parse a long ``text`` now, in a worker thread, so that :meth:`facts` and the result side then
        find it done instead of stalling the event loop (a 1 MB statement takes seconds to parse)."""
        lexed_text(text, self.classifier.dialect)
        self.classifier.prepare_lineage(text)

    async def facts(self, text: str) -> tuple[Sources | None, Sources]:
        """(what ``text`` reads -- None when gw cannot tell --, what the values it writes derive from), over
        all its statements, expanded through the catalog."""
        lexed = lexed_text(text, self.classifier.dialect)
        if lexed.error is not None or lexed.flags:
            return None, (ANYTHING,)
        key = (lexed.shape, self.catalog.generation)
        cached = self._facts.get(key)
        if cached is not None:
            return cached
        statements = split_tokens(lexed.tokens)
        stateful = any(t and t[0].lower() in ("fetch", "move", "execute") for t in statements)
        result = await self._facts_of(text, statements)
        if not stateful and key[1] == self.catalog.generation:
            if len(self._facts) > 2048:
                self._facts.clear()
            self._facts[key] = result
        return result

    async def _facts_of(self, text: str, statements: list[list[str]]) -> tuple[Sources | None, Sources]:
        reads: set[str] | None = set()
        writes: set[str] = set()
        for i, tokens in enumerate(statements):
            first = tokens[0].lower() if tokens else ""
            if first in _NO_FACTS:
                continue
            if first == "copy":
                copy = parse_copy_tokens(tokens)
                if copy is None:
                    reads = None
                    writes.add(ANYTHING)
                    continue
                read = await self.reads(copy.query, None)
                if read is None:
                    reads = None
                elif reads is not None:
                    reads.update(read)
                if copy.target != "stdout":
                    writes.update(read if read is not None else (ANYTHING,))
                continue
            resolved = self.resolve(text, i)
            if resolved is None:
                reads = None
                continue
            read = await self.reads(*resolved)
            write = await self.writes(*resolved)
            if read is None:
                reads = None
            elif reads is not None:
                reads.update(read)
            if write is None:
                if first in _MAY_WRITE:
                    writes.add(ANYTHING)
            else:
                writes.update(write)
        return (tuple(sorted(reads)) if reads is not None else None), tuple(sorted(writes))

    # -- statements seen --------------------------------------------------------------------------------------
    def catalog_changed(self, tag: str) -> bool:
        """A statement completed with ``tag``: when it may have changed relations (DDL), the catalog forgets
        what it knew.  True when it did."""
        if tag.split(" ", 1)[0].upper() in _CHANGES_CATALOG:
            self.catalog.forget()
            return True
        return False

    def completed(self, text: str, index: int | None, tag: str) -> None:
        """A statement of ``text`` completed with ``tag``: follow cursors and DDL."""
        self.catalog_changed(tag)
        if not (self.cursors or tag in _NAMING_TAGS or tag.startswith("DEALLOCATE")):
            return  # nothing to follow: no cursor to forget, no name made or dropped
        tokens = statement_tokens(self.classifier, text, index)
        if tag == "DECLARE CURSOR":
            declared = _declared(tokens) if tokens is not None else None
            if declared is None:
                self.cursors.clear()  # a cursor gw cannot name: forget them all (FETCH masks in full)
            else:
                self.cursors[declared[0]] = declared[1]
            return
        if tag == "PREPARE" and tokens is not None:
            prepared = _prepared(tokens)
            if prepared is None:
                self.prepared.clear()
            else:
                self.prepared[prepared[0]] = prepared[1]
            return
        if tag.startswith("DEALLOCATE"):
            name = identifier_value(tokens[-1]) if tokens and tag == "DEALLOCATE" else None
            if name is None:
                self.prepared.clear()
            else:
                self.prepared.pop(name, None)
            return
        if tag == "DISCARD ALL":
            self.prepared.clear()
            self.cursors.clear()
            return
        if tag == "CLOSE CURSOR ALL":
            self.cursors.clear()
            return
        if tag == "CLOSE CURSOR":
            name = _cursor_name(tokens) if tokens is not None else None
            if name is None:
                self.cursors.clear()
            else:
                self.cursors.pop(name, None)
            return
        if not self.cursors:
            return  # what follows only decides whether to forget the cursors gw knows
        first = tokens[0].lower() if tokens else ""
        if first not in _CURSOR_NEUTRAL:
            self.cursors.clear()  # CALL, DO, ...: may open or replace cursors gw cannot see
            return
        lineage = self.classifier.lineage(text, index) if first not in ("fetch", "move") else None
        if first not in ("fetch", "move", "show", "explain", "set", "reset", "listen", "unlisten", "begin",
                         "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare",
                         "deallocate", "discard") and (lineage is None or _mentions_anything(lineage)):
            self.cursors.clear()  # a function gw does not know may have declared a cursor

    # -- results ----------------------------------------------------------------------------------------------
    async def sources(self, text: str, index: int | None, width: int) -> list[Sources]:
        """Per column of a result ``width`` wide produced by statement ``index`` of ``text``, its sources
        (expanded through the catalog).  Raises UpstreamError when the catalog is unreachable."""
        return (await self._sources(text, index, width))[0]

    async def _sources(self, text: str, index: int | None, width: int
                       ) -> tuple[list[Sources], list[tuple[Sources, ...] | None]]:
        """:meth:`sources`, and per column the sources of each field when the column is exactly the whole row
        of a table (its row type OID must then match, checked by the caller against the wire).  Cached per
        statement shape (literals do not change lineage) unless it reads a cursor or a prepared statement."""
        lexed = lexed_text(text, self.classifier.dialect)
        key = (lexed.shape, index, width, self.catalog.generation)
        cached = self._results.get(key) if lexed.error is None else None
        if cached is not None:
            self.row_types = dict(cached[2])
            return cached[0], cached[1]
        result = await self._sources_of(text, index, width)
        tokens = statement_tokens(self.classifier, text, index)
        first = tokens[0].lower() if tokens else ""
        if lexed.error is None and first not in ("fetch", "move", "execute") and \
                key[3] == self.catalog.generation:
            if len(self._results) > 2048:
                self._results.clear()
            self._results[key] = (result[0], result[1], dict(self.row_types))
        return result

    async def _sources_of(self, text: str, index: int | None, width: int
                          ) -> tuple[list[Sources], list[tuple[Sources, ...] | None]]:
        rows: list[tuple[Sources, ...] | None] = [None] * width
        anything: tuple[list[Sources], list[tuple[Sources, ...] | None]] = [(ANYTHING,)] * width, rows
        tokens = statement_tokens(self.classifier, text, index)
        if not tokens:
            return anything
        first = tokens[0].lower()
        if first in _NO_TABLE_DATA:
            return [()] * width, rows
        if first in ("fetch", "move", "execute"):
            resolved = self.resolve(text, index)
            if resolved is None:
                return anything
            text, index = resolved
        lineage = self.classifier.lineage(text, index)
        if lineage is None:
            return anything
        infos = await self._closure(lineage.tables)
        known = _columns(infos)
        lineage = self.classifier.lineage(text, index, known) or lineage
        columns: Sequence[Sources]
        if lineage.columns is not None and len(lineage.columns) == width:
            columns = lineage.columns
            for i, table in enumerate(lineage.rows or ()):
                info = infos.get(table) if table is not None else None
                if info is not None and info.definition is None and info.columns:
                    rows[i] = tuple(self.expand((f"{table}.{c}",), infos, known) for c in info.columns)
                    self.row_types[i] = info.type_oid
        else:
            columns = [lineage.fallback] * width
        return [self.expand(c, infos, known) for c in columns], rows

    async def writes(self, text: str, index: int | None) -> Sources | None:
        """What the values statement ``index`` of ``text`` writes derive from (expanded); None when gw cannot
        analyse the statement."""
        lineage = self.classifier.lineage(text, index)
        if lineage is None:
            return None
        infos = await self._closure(lineage.tables)
        known = _columns(infos)
        lineage = self.classifier.lineage(text, index, known) or lineage
        return self.expand(lineage.writes, infos, known)

    async def reads(self, text: str, index: int | None) -> Sources | None:
        """Every source statement ``index`` of ``text`` reads (its tables, whole, expanded); None when gw
        cannot analyse it."""
        lineage = self.classifier.lineage(text, index)
        if lineage is None:
            return None
        infos = await self._closure(lineage.tables)
        return self.expand(lineage.fallback, infos, _columns(infos))

    async def columns(self, fields: Sequence[FieldDescription], text: str, index: int | None) -> list[Column]:
        """The result's columns with their sources: the wire's origin and the lineage, expanded."""
        keys = {(f.table_oid, f.column_number) for f in fields if f.table_oid and f.column_number > 0}
        names = await self.catalog.resolve(keys) if keys else {}
        self.row_types = {}
        lineage, rows = await self._sources(text, index, len(fields))
        wire_tables = {hit[0] for hit in names.values() if hit is not None}
        infos = await self._closure(wire_tables) if wire_tables else {}
        known = _columns(infos)
        out = []
        for i, f in enumerate(fields):
            table = column = None
            sources: list[str] = []
            hit = names.get((f.table_oid, f.column_number)) if f.table_oid else None
            if hit is not None:
                table, column = hit
                sources.extend(self.expand((f"{table}.{column}",), infos, known))
            sources.extend(s for s in lineage[i] if s not in sources)
            row = rows[i] if rows[i] is not None and self.row_types.get(i) == f.type_oid else None
            out.append(Column(name=f.name, table=table, column=column, type_name=type_name(f.type_oid),
                              binary=f.format == 1, sources=tuple(sources), fields=row))
        return out

    # -- the catalog ------------------------------------------------------------------------------------------
    async def _closure(self, names: Sequence[str] | set[str]) -> dict[str, TableInfo | None]:
        """Infos of ``names`` and of every relation the views among them read, to :data:`MAX_VIEW_DEPTH`."""
        infos: dict[str, TableInfo | None] = {}
        todo = set(names)
        for _ in range(MAX_VIEW_DEPTH):
            todo -= set(infos)
            if not todo:
                break
            found = await self.catalog.tables(todo)
            infos.update(found)
            nxt: set[str] = set()
            for info in found.values():
                if info is not None and info.definition is not None:
                    nxt.update(self.classifier.tables(info.definition) or ())
            todo = nxt
        return infos

    def expand(self, sources: Sources, infos: Mapping[str, TableInfo | None],
               known: Mapping[str, Sequence[str]], depth: int = 0) -> Sources:
        """``schema.table.*`` -> the table's columns; a view's column -> what its definition derives it
        from (the view's own name kept, so rules naming view columns match too)."""
        out: set[str] = set()
        for source in sources:
            table, _, column = source.rpartition(".")
            info = infos.get(table)
            if source == ANYTHING or info is None:
                out.add(source)
                continue
            if info.definition is None:
                if column == "*":
                    out.update(f"{table}.{c}" for c in info.columns)
                else:
                    out.add(source)
                continue
            out.add(source)
            view = self.classifier.lineage(info.definition, None, known) if depth < MAX_VIEW_DEPTH else None
            if view is None or view.columns is None or len(view.columns) != len(info.columns):
                out.update(self.expand(view.fallback, infos, known, depth + 1) if view is not None
                           and depth < MAX_VIEW_DEPTH else (ANYTHING,))
                continue
            if column != "*" and column in info.columns:
                picked = [view.columns[info.columns.index(column)]]
            else:
                picked = list(view.columns)
            for p in picked:
                out.update(self.expand(p, infos, known, depth + 1))
        return tuple(sorted(out))


def _columns(infos: Mapping[str, TableInfo | None]) -> dict[str, Sequence[str]]:
    return {t: info.columns for t, info in infos.items() if info is not None}


def _mentions_anything(lineage: Lineage) -> bool:
    if ANYTHING in lineage.fallback or ANYTHING in lineage.writes:
        return True
    return lineage.columns is not None and any(ANYTHING in c for c in lineage.columns)
