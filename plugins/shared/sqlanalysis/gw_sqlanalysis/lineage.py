"""Which source columns each output column of a statement derives from, for masking -- failing closed.

``select ssn as x, upper(ssn), note from people`` -> ``[("public.people.ssn",), ("public.people.ssn",),
("public.people.note",)]``.  Resolution follows the query's scopes: table aliases (with column lists),
parenthesised joins, derived tables, ``LATERAL``, CTEs (including one that shares a table's name, and
data-modifying ones), set operations (a column of a UNION derives from every branch), ``VALUES``, subqueries in
any position, correlated references, ``RETURNING``.

Sources are ``schema.table.column`` strings, plus two wider forms:

* ``schema.table.*`` -- every column of that table: a whole-row reference (``select p from people p``,
  ``to_jsonb(p)``, ``p::text``), or something gw could not trace inside a statement reading the table;
* :data:`ANYTHING` (``*.*.*``) -- any column of any table: a function that runs SQL given as text
  (``query_to_xml``), a function gw does not know (its body may read any table), data from outside.

The answer errs towards *more* sources, never fewer, because masking decides on it: an unqualified column in
a join is attributed to every table that might hold it.  Each output column is judged on its own: a column
gw cannot trace gets the statement's fallback (every table the statement names, whole), and never affects
its neighbours.

Table columns come from ``tables`` (``schema.table`` -> its column names in order) when the caller knows them
(the PostgreSQL plugin reads them from the catalog); without them ``SELECT *`` from a table leaves the width
of the result unknown (:attr:`Lineage.columns` is None and every column gets the fallback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from .dialects import DialectRules
from .tree import qualify, table_objects

Sources = tuple[str, ...]
#: Any column of any table.
ANYTHING = "*.*.*"
#: CTEs visible at a point of a query: name -> (the CTE, the CTEs visible inside its body).
Ctes = dict[str, tuple[exp.Expr, "Ctes"]]
#: Functions whose result comes from outside what the statement shows (SQL given as text, other databases,
#: files): their values may hold anything.
PG_OPAQUE_FUNCTIONS = frozenset({
    "dblink", "dblink_fetch", "dblink_get_result", "pg_read_file", "pg_read_binary_file", "lo_get",
    "loread", "current_setting", "pg_ls_dir", "pg_stat_file", "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes", "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_binary_changes",
    "pg_stat_get_activity", "pg_get_viewdef", "pg_get_functiondef", "pg_get_expr", "pg_get_ruledef",
    "pg_get_triggerdef", "pg_get_constraintdef", "pg_get_indexdef", "pg_get_statisticsobjdef",
    "pg_get_partkeydef", "obj_description", "col_description", "shobj_description",
})
#: Functions whose arguments leave the statement (written to a setting, a channel, a large object): what
#: their arguments derive from is *written*.
PG_COPYING_FUNCTIONS = frozenset({
    "set_config", "pg_notify", "lo_from_bytea", "lo_put", "lowrite", "pg_logical_emit_message",
    "dblink_exec", "dblink", "dblink_send_query", "dblink_open", "setval",
})


class Undeterminable(Exception):
    """What an expression derives from cannot be known from the text (and the known table columns)."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """What one statement's results and writes derive from."""

    #: Per output column, its sources; None when the number of columns is not known (``SELECT *`` from a
    #: table whose columns are not known): then every column derives from :attr:`fallback`.
    columns: tuple[Sources, ...] | None
    #: What any value of the statement may derive from: every table it names, whole (or :data:`ANYTHING`).
    fallback: Sources
    #: What values the statement writes derive from (INSERT ... SELECT, UPDATE ... SET, CREATE TABLE AS,
    #: SELECT INTO, set_config, pg_notify ...).
    writes: Sources
    #: Tables (``schema.table``) the statement names, whose columns the caller may look up.
    tables: tuple[str, ...]
    #: Per output column (when :attr:`columns` is known): the table whose whole row the column is, exactly
    #: (``select p from people p``), else None.
    rows: tuple[str | None, ...] | None = None
    #: Per output column (when :attr:`columns` is known): its name as the text gives it (the alias, the column's
    #: own name, ``?column?`` for an unnamed expression); the server's names may differ for expressions.
    names: tuple[str, ...] | None = None


@dataclass(slots=True)
class _Out:
    """One output column of a query; ``name`` None stands for the unknown columns of ``sources[0]``'s
    table (``SELECT *`` without the table's definition)."""

    name: str | None
    sources: Sources
    #: The column is exactly the whole row of this table.
    row: str | None = None


@dataclass
class _Source:
    """One FROM item: a real table, a query (derived table / CTE) with known outputs, or something opaque
    (a table function) whose columns derive from the columns its arguments mention."""

    table: str | None = None
    columns: tuple[str, ...] | None = None  # the table's columns when known
    outputs: list[_Out] | None = None
    opaque: Sources | None = None

    def whole(self) -> Sources:
        """What a whole-row reference to this item derives from."""
        if self.table is not None:
            return (f"{self.table}.*",)
        if self.outputs is not None:
            found: Sources = ()
            for out in self.outputs:
                found = _merge(found, out.sources)
            return found
        return self.opaque or ()

    def column(self, name: str) -> tuple[bool, Sources]:
        """(definitely has it, sources) for a column ``name`` of this item; (False, ()) when it has none."""
        if self.table is not None:
            if self.columns is not None:
                return (True, (f"{self.table}.{name}",)) if name in self.columns else (False, ())
            return False, (f"{self.table}.{name}",)  # maybe: the table's columns are not known
        if self.outputs is not None:
            found: Sources = ()
            definite = False
            for out in self.outputs:
                if out.name == name:
                    found = _merge(found, out.sources)
                    definite = True
                elif out.name is None:
                    found = _merge(found, out.sources)
            return definite, found
        return False, self.opaque or ()


@dataclass
class _Scope:
    sources: dict[str, _Source] = field(default_factory=dict)
    parent: _Scope | None = None


def statement_lineage(tree: exp.Expr, rules: DialectRules,
                      tables: Mapping[str, Sequence[str]] | None = None) -> Lineage:
    """The lineage of one parsed statement.  Never raises for a parsed tree: what cannot be traced widens."""
    named = tuple(table_objects(tree, rules))
    fallback: Sources = tuple(sorted(f"{t}.*" for t in named)) or (ANYTHING,)
    walker = _Walker(rules, tables or {}, fallback)
    columns: tuple[Sources, ...] | None
    rows: tuple[str | None, ...] | None
    names: tuple[str, ...] | None
    try:
        outs = walker.outputs(tree, {}, None)
        if any(o.name is None for o in outs):
            columns = rows = names = None
        else:
            columns = tuple(o.sources for o in outs)
            rows = tuple(o.row for o in outs)
            names = tuple(o.name or "?column?" for o in outs)
    except (Undeterminable, RecursionError):
        columns = rows = names = None
    try:
        writes = walker.writes(tree)
    except (Undeterminable, RecursionError):
        writes = fallback
    return Lineage(columns, fallback, writes, named, rows, names)


def column_sources(tree: exp.Expr, rules: DialectRules,
                   tables: Mapping[str, Sequence[str]] | None = None) -> list[Sources] | None:
    """Per output column of ``tree`` (a query, or DML with RETURNING), its sources; None when the number of
    columns is not known."""
    lineage = statement_lineage(tree, rules, tables)
    return list(lineage.columns) if lineage.columns is not None else None


class _Walker:
    def __init__(self, rules: DialectRules, tables: Mapping[str, Sequence[str]], fallback: Sources) -> None:
        self.rules = rules
        self.tables = tables
        self.fallback = fallback
        self.resolving: set[int] = set()
        self.partial: dict[int, list[_Out]] = {}

    # -- queries --------------------------------------------------------------------------------------------
    def outputs(self, query: exp.Expr, ctes: Ctes, outer: _Scope | None) -> list[_Out]:
        while isinstance(query, (exp.Subquery, exp.Paren)) and not _is_joined_table(query):
            query = query.this
        ctes = self._with_ctes(query, ctes)
        if isinstance(query, exp.SetOperation):
            left = self.outputs(query.left, ctes, outer)
            right = self.outputs(query.right, ctes, outer)
            if len(left) != len(right) or any(o.name is None for o in left + right):
                found: Sources = ()
                for o in left + right:
                    found = _merge(found, o.sources)
                return [_Out(None, found or self.fallback)]
            return [_Out(a.name, _merge(a.sources, b.sources)) for a, b in zip(left, right)]
        if isinstance(query, exp.Values):
            return self._values(query, ctes, outer)
        if isinstance(query, exp.Select):
            scope = self._scope(query, ctes, outer)
            return self._projections(query.expressions, scope, ctes)
        if isinstance(query, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            returning = query.args.get("returning")
            if returning is None:
                return []
            scope = self._dml_scope(query, ctes, outer)
            return self._projections(returning.expressions, scope, ctes)
        raise Undeterminable(f"not a query: {type(query).__name__}")

    def _values(self, query: exp.Values, ctes: Ctes, outer: _Scope | None) -> list[_Out]:
        width = 0
        per: list[Sources] = []
        scope = _Scope(parent=outer)
        for row in query.expressions:
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            width = max(width, len(items))
            while len(per) < width:
                per.append(())
            for i, item in enumerate(items):
                per[i] = _merge(per[i], self._guarded(item, scope, ctes))
        return [_Out(f"column{i + 1}", s) for i, s in enumerate(per)]

    def _with_ctes(self, query: exp.Expr, ctes: Ctes) -> Ctes:
        w = query.args.get("with_") or query.args.get("with")
        if not isinstance(w, exp.With):
            return ctes
        recursive = bool(w.args.get("recursive"))
        extended = dict(ctes)
        for cte in w.expressions:
            # A non-recursive CTE sees the CTEs before it; in a recursive WITH all of them (the shared dict
            # holds every CTE once the loop is done).
            extended[cte.alias] = (cte, extended if recursive else dict(extended))
        return extended

    def _cte_outputs(self, cte: exp.Expr, visible: Ctes) -> list[_Out]:
        key = id(cte)
        alias = cte.args.get("alias") if isinstance(cte, exp.CTE) else None
        names = alias.columns if isinstance(alias, exp.TableAlias) else []
        if key in self.resolving:
            # A recursive CTE's self-reference: what its first branch gives (the other branches add theirs
            # to the CTE's outputs when they are merged).
            return self.partial.get(key) or [_Out(None, self.fallback)]
        self.resolving.add(key)
        try:
            body = cte.this if isinstance(cte, exp.CTE) else cte
            if isinstance(body, exp.SetOperation):
                first: exp.Query = body
                while isinstance(first, exp.SetOperation):
                    first = first.left
                self.partial[key] = _rename(self.outputs(first, visible, None), names)
            outs = self.outputs(body, visible, None)
        finally:
            self.resolving.discard(key)
            self.partial.pop(key, None)
        return _rename(outs, names)

    # -- scopes ---------------------------------------------------------------------------------------------
    def _scope(self, select: exp.Select, ctes: Ctes, outer: _Scope | None) -> _Scope:
        scope = _Scope(parent=outer)
        from_ = select.args.get("from_") or select.args.get("from")
        items = [from_.this] if from_ is not None else []
        items += [j.this for j in select.args.get("joins") or []]
        for item in items:
            self._add_source(scope, item, ctes)
        return scope

    def _dml_scope(self, query: exp.Expr, ctes: Ctes, outer: _Scope | None) -> _Scope:
        scope = _Scope(parent=outer)
        target = query.this
        if isinstance(target, exp.Schema):
            target = target.this
        if isinstance(target, exp.Table):
            self._add_source(scope, target, {})  # a DML target is never a CTE
        from_ = query.args.get("from_") or query.args.get("from")
        extra = [from_.this] if from_ is not None else []
        extra += [j.this for j in query.args.get("joins") or []]
        using = query.args.get("using")
        extra += using if isinstance(using, list) else [using] if isinstance(using, exp.Expr) else []
        for item in extra:
            self._add_source(scope, item, ctes)
        return scope

    def _add_source(self, scope: _Scope, item: exp.Expr, ctes: Ctes) -> None:
        if _is_joined_table(item):
            # ``(a join b on ...)``: the items inside are visible by their own aliases.
            inner = item.this
            while isinstance(inner, (exp.Subquery, exp.Paren)):
                inner = inner.this
            self._add_table_and_joins(scope, inner, ctes)
            alias = item.alias
            if alias:  # ``(a join b) as j``: j's columns are the join's
                merged = [_Out(None, s.whole()) for s in list(scope.sources.values())]
                scope.sources[alias] = _Source(outputs=merged)
            return
        alias_node = item.args.get("alias")
        alias_columns = alias_node.columns if isinstance(alias_node, exp.TableAlias) else []
        alias = item.alias
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            name = item.name
            joins = item.args.get("joins") or []
            if not item.args.get("db") and name in ctes:
                cte, visible = ctes[name]
                outs = _rename(self._cte_outputs(cte, visible), alias_columns)
                scope.sources[alias or name] = _Source(outputs=outs)
            else:
                parts = [p.name for p in (item.args.get("db"), item.this) if p is not None]
                table = qualify(parts, self.rules)
                known = self.tables.get(table)
                columns = tuple(known) if known is not None else None
                if alias_columns:
                    if columns is not None:
                        outs = [_Out(c, (f"{table}.{c}",)) for c in columns]
                    else:
                        outs = [_Out(None, (f"{table}.*",))]
                    scope.sources[alias or name] = _Source(outputs=_rename(outs, alias_columns, widen=True))
                else:
                    scope.sources[alias or name] = _Source(table=table, columns=columns)
            for join in joins:
                self._add_source(scope, join.this, ctes)
            return
        if isinstance(item, exp.Lateral):
            inner = item.this
            if isinstance(inner, (exp.Subquery, exp.Select)):
                outs = _rename(self.outputs(inner, ctes, scope), alias_columns)
                scope.sources[alias or f"?{len(scope.sources)}"] = _Source(outputs=outs)
                return
            mentioned = self._guarded(inner, scope, ctes)
            scope.sources[alias or f"?{len(scope.sources)}"] = _Source(opaque=mentioned)
            return
        if isinstance(item, (exp.Subquery, exp.Select, exp.Values)) or (
                isinstance(item, exp.Table) and isinstance(item.this, (exp.Values, exp.Subquery))):
            query = item.this if isinstance(item, exp.Table) else item
            outs = _rename(self.outputs(query, ctes, scope), alias_columns)
            scope.sources[alias or f"?{len(scope.sources)}"] = _Source(outputs=outs)
            return
        # A table function (generate_series, unnest, jsonb_each_text ...): its columns derive from whatever
        # its arguments mention (a function gw does not know: from anything).  Its arguments may refer to
        # items before it (implicitly lateral).
        mentioned = self._guarded(item, scope, ctes)
        scope.sources[alias or f"?{len(scope.sources)}"] = _Source(opaque=mentioned)

    def _add_table_and_joins(self, scope: _Scope, node: exp.Expr, ctes: Ctes) -> None:
        if isinstance(node, exp.Table):
            self._add_source(scope, node, ctes)
            return
        if isinstance(node, exp.Select) and not node.expressions:
            from_ = node.args.get("from_") or node.args.get("from")
            if from_ is not None:
                self._add_source(scope, from_.this, ctes)
            for j in node.args.get("joins") or []:
                self._add_source(scope, j.this, ctes)
            return
        raise Undeterminable(f"a parenthesised FROM item gw does not know: {type(node).__name__}")

    # -- projections ----------------------------------------------------------------------------------------
    def _projections(self, expressions: list[exp.Expr], scope: _Scope, ctes: Ctes) -> list[_Out]:
        out: list[_Out] = []
        for projection in expressions:
            if isinstance(projection, exp.Star):
                for source in scope.sources.values():
                    out.extend(self._expand(source))
                continue
            if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                try:
                    out.extend(self._expand(self._lookup(projection.table, scope)))
                except Undeterminable:
                    out.append(_Out(None, self.fallback))
                continue
            out.append(_Out(projection.alias_or_name, self._guarded(projection, scope, ctes),
                            self._whole_row(projection, scope)))
        return out

    def _whole_row(self, projection: exp.Expr, scope: _Scope) -> str | None:
        """The table whose whole row ``projection`` is, exactly (a bare alias that names no column)."""
        node = projection.this if isinstance(projection, exp.Alias) else projection
        if not isinstance(node, exp.Column) or node.table or isinstance(node.this, exp.Star):
            return None
        source = scope.sources.get(node.name)
        if source is None or source.table is None or source.columns is None or node.name in source.columns:
            return None
        if any(s is not source and s.column(node.name)[1] for s in scope.sources.values()):
            return None
        return source.table

    def _guarded(self, expression: exp.Expr, scope: _Scope, ctes: Ctes) -> Sources:
        """An expression's sources; what cannot be traced derives from every table the statement names."""
        try:
            return self.expression_sources(expression, scope, ctes)
        except (Undeterminable, RecursionError):
            return self.fallback

    def _expand(self, source: _Source) -> list[_Out]:
        if source.table is not None:
            if source.columns is not None:
                return [_Out(c, (f"{source.table}.{c}",)) for c in source.columns]
            return [_Out(None, (f"{source.table}.*",))]
        if source.outputs is not None:
            return list(source.outputs)
        return [_Out(None, source.opaque or ())]

    def expression_sources(self, expression: exp.Expr, scope: _Scope, ctes: Ctes) -> Sources:
        found: Sources = ()
        stack = [expression]
        while stack:
            node = stack.pop()
            if node is not expression and isinstance(node, (exp.Select, exp.SetOperation, exp.Values)):
                for out in self.outputs(node, ctes, scope):
                    found = _merge(found, out.sources)
                continue
            if isinstance(node, exp.Column):
                found = _merge(found, self._column(node, scope))
                continue
            if isinstance(node, exp.Func):
                extra = self._function(node)
                if extra:
                    found = _merge(found, extra)
            if node is not expression and isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                raise Undeterminable("a * inside an expression")
            stack.extend(node.iter_expressions())
        return found

    def _function(self, node: exp.Func) -> Sources:
        """Sources a function call adds beyond its arguments (a function that reads what gw cannot see)."""
        parent = node.parent
        if isinstance(parent, exp.Dot) and parent.expression is node:
            qualifier = parent.this.sql(dialect=self.rules.sqlglot).strip('"`').lower()
            if qualifier not in self.rules.builtin_schemas:
                return (ANYTHING,)
        if not isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
            return ()
        name = _function_name(node, self.rules)
        if name in self.rules.sql_text_functions or (self.rules.name == "postgres" and name in PG_OPAQUE_FUNCTIONS):
            return (ANYTHING,)
        if name in self.rules.safe_functions or name in self.rules.write_functions or \
                name in self.rules.admin_functions:
            return ()
        return (ANYTHING,)  # a function gw does not know: its body may read any table

    def _column(self, column: exp.Column, scope: _Scope) -> Sources:
        if isinstance(column.this, exp.Star):  # t.* inside an expression: every column of t
            found: Sources = ()
            for out in self._expand(self._lookup(column.table, scope)):
                found = _merge(found, out.sources)
            return found
        name = column.name
        if column.table:
            source = self._lookup(column.table, scope, required=False)
            if source is None:
                if column.args.get("db"):  # schema.table.column
                    table = qualify([column.args["db"].name, column.table], self.rules)
                    return (f"{table}.{name}", f"{table}.*")
                # ``x.y`` where x is no table in scope: a field of a composite column x
                return self._column(exp.Column(this=exp.to_identifier(column.table)), scope)
            definite, found = source.column(name)
            if not found:
                # a field of a composite column (``t.addr.city`` spelt ``t.addr``?) or an error: whole row
                return source.whole()
            return found
        found = ()
        level: _Scope | None = scope
        while level is not None:
            definite_here = False
            for source in level.sources.values():
                definite, sources = source.column(name)
                found = _merge(found, sources)
                definite_here = definite_here or definite
            if not definite_here:
                # PostgreSQL reads a bare name that is no column as a whole-row reference to the item so named.
                whole = level.sources.get(name)
                if whole is not None:
                    found = _merge(found, whole.whole())
                    definite_here = True
            if definite_here:
                return found
            level = level.parent
        if not found:
            raise Undeterminable(f"column {name} belongs to nothing gw can see")
        return found

    def _lookup(self, alias: str, scope: _Scope, required: bool = True) -> _Source:
        level: _Scope | None = scope
        while level is not None:
            if alias in level.sources:
                return level.sources[alias]
            level = level.parent
        if required:
            raise Undeterminable(f"unknown table alias {alias}")
        return None  # type: ignore[return-value]

    # -- writes ---------------------------------------------------------------------------------------------
    def writes(self, tree: exp.Expr) -> Sources:
        """What the values a statement stores (in tables, settings, channels) derive from."""
        found: Sources = ()
        for node in tree.walk():
            if isinstance(node, exp.Insert):
                query = node.args.get("expression")
                inserted = self._all_outputs(query) if query is not None else ()
                found = _merge(found, inserted)
                conflict = node.args.get("conflict")
                if isinstance(conflict, exp.Expr) and conflict.expressions:
                    # ON CONFLICT DO UPDATE SET c = <expr>: the existing row's columns, or the row proposed
                    # for insertion (``excluded``).
                    ctes = self._ctes_above(node)
                    scope = self._dml_scope(node, ctes, None)
                    scope.sources["excluded"] = _Source(opaque=inserted)
                    for assignment in conflict.expressions:
                        value = assignment.expression if isinstance(assignment, exp.EQ) else assignment
                        found = _merge(found, self._guarded(value, scope, ctes))
            elif isinstance(node, exp.Update):
                scope = self._dml_scope(node, self._ctes_above(node), None)
                for assignment in node.expressions:
                    value = assignment.expression if isinstance(assignment, exp.EQ) else assignment
                    found = _merge(found, self._guarded(value, scope, self._ctes_above(node)))
            elif isinstance(node, (exp.Merge, exp.Alter)):
                # MERGE: every table it names; ALTER: renaming a table or column moves its values out from
                # under rules that name it.
                found = _merge(found, self.fallback)
            elif isinstance(node, exp.Create):
                query = node.args.get("expression")
                if isinstance(query, (exp.Query, exp.Values)):
                    found = _merge(found, self._all_outputs(query))
            elif isinstance(node, exp.Select) and isinstance(node.args.get("into"), exp.Into):
                found = _merge(found, self._all_outputs(node))
            elif isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)) and self.rules.name == "postgres":
                name = _function_name(node, self.rules)
                if name.startswith("dblink"):
                    found = _merge(found, (ANYTHING,))  # SQL given as text, run elsewhere
                elif name in PG_COPYING_FUNCTIONS:
                    found = _merge(found, self._in_place(node))
                elif self._function(node) == (ANYTHING,) and name not in self.rules.sql_text_functions \
                        and name not in PG_OPAQUE_FUNCTIONS:
                    found = _merge(found, (ANYTHING,))  # a function gw does not know may write anything
            elif isinstance(node, exp.Func) and isinstance(node.parent, exp.Dot) and \
                    node.parent.expression is node and self._function(node) == (ANYTHING,):
                found = _merge(found, (ANYTHING,))  # a schema-qualified user function
        return found

    def _all_outputs(self, query: exp.Expr) -> Sources:
        found: Sources = ()
        try:
            for out in self.outputs(query, self._ctes_above(query), None):
                found = _merge(found, out.sources)
        except Undeterminable:
            return self.fallback
        return found

    def _in_place(self, node: exp.Expr) -> Sources:
        """The sources of an expression where it stands in its statement (its scope rebuilt): widened to the
        statement's fallback, which is what a value inside a statement may derive from."""
        if node.find(exp.Column) is None and node.find(exp.Select) is None and node.find(exp.Func) is None:
            return ()
        args: Sources = ()
        for arg in node.expressions:
            if arg.find(exp.Column) is not None or arg.find(exp.Query) is not None:
                args = self.fallback
            if isinstance(arg, exp.Func):
                args = _merge(args, self._function(arg))
        return args

    def _ctes_above(self, node: exp.Expr) -> Ctes:
        chain = []
        current: exp.Expr | None = node
        while current is not None:
            chain.append(current)
            current = current.parent
        ctes: Ctes = {}
        for n in reversed(chain):
            ctes = self._with_ctes(n, ctes)
        return ctes


def _is_joined_table(item: exp.Expr) -> bool:
    """``(a join b on ...)`` in FROM: sqlglot reads it as a subquery around a table carrying joins."""
    if not isinstance(item, (exp.Subquery, exp.Paren)):
        return False
    inner = item.this
    while isinstance(inner, (exp.Subquery, exp.Paren)):
        inner = inner.this
    if isinstance(inner, exp.Table) and inner.args.get("joins"):
        return True
    return isinstance(inner, exp.Select) and not inner.expressions


def _function_name(node: exp.Expr, rules: DialectRules) -> str:
    name_node = node.this
    if isinstance(name_node, exp.Identifier):
        text: str = name_node.this  # an Identifier's text (sqlglot types ``this`` as Any)
        return text if name_node.quoted else text.lower()
    return str(name_node).lower()


def _rename(outputs: list[_Out], columns: list[exp.Expr], widen: bool = False) -> list[_Out]:
    """Outputs renamed by an alias column list.  Where the outputs' width is unknown (``None`` entries), every
    renamed column may be any of them."""
    if not columns:
        return outputs
    if any(o.name is None for o in outputs[:len(columns)]) or (widen and any(o.name is None for o in outputs)):
        everything: Sources = ()
        for o in outputs:
            everything = _merge(everything, o.sources)
        return [_Out(c.name, everything) for c in columns] + [_Out(None, everything)]
    renamed = [_Out(c.name, outputs[i].sources if i < len(outputs) else ()) for i, c in enumerate(columns)]
    return renamed + outputs[len(columns):]


def _merge(a: Sources, b: Sources) -> Sources:
    if not b:
        return a
    if not a:
        return b
    return tuple(sorted(set(a) | set(b)))
