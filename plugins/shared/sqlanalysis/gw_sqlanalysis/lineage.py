"""Which source columns each output column of a query derives from, for masking.

``select ssn as x, upper(ssn), note from people`` -> ``[("public.people.ssn",), ("public.people.ssn",),
("public.people.note",)]``.  Resolution follows the query's scopes: table aliases, derived tables, CTEs
(including one that shares a table's name), set operations (a column of a UNION derives from every branch),
scalar subqueries, correlated references.

The answer errs towards *more* sources, never fewer, because masking decides on it: an unqualified column in
a join is attributed to every table that might hold it.  When the columns cannot be known without the
database's catalog -- ``SELECT *`` from a table, a whole-row reference such as ``row_to_json(p)``, a table
alias that renames columns -- the whole answer is ``None`` and the caller must fall back to what the wire
protocol says (PostgreSQL's RowDescription) and to value detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from .dialects import DialectRules
from .tree import qualify

Sources = tuple[str, ...]
#: CTEs visible at a point of a query: name -> (the CTE, the CTEs visible inside its body).
Ctes = dict[str, tuple[exp.Expr, "Ctes"]]


class Undeterminable(Exception):
    """The output columns cannot be known from the text alone."""


@dataclass
class _Source:
    """One FROM item: a real table, a query (derived table / CTE) with known outputs, or something opaque
    (a table function) whose columns derive from the columns its arguments mention."""

    table: str | None = None
    outputs: list[tuple[str, Sources]] | None = None
    opaque: Sources = ()


@dataclass
class _Scope:
    sources: dict[str, _Source] = field(default_factory=dict)
    parent: _Scope | None = None


def column_sources(tree: exp.Expr, rules: DialectRules) -> list[Sources] | None:
    """Per output column of ``tree`` (a query, or DML with RETURNING), its source columns; None when not
    determinable."""
    try:
        return [sources for _, sources in _Lineage(rules).outputs(tree, {}, None)]
    except Undeterminable:
        return None
    except RecursionError:
        return None


class _Lineage:
    def __init__(self, rules: DialectRules) -> None:
        self.rules = rules
        self.resolving: set[int] = set()

    # -- queries --------------------------------------------------------------------------------------------
    def outputs(self, query: exp.Expr, ctes: Ctes, outer: _Scope | None) -> list[tuple[str, Sources]]:
        while isinstance(query, (exp.Subquery, exp.Paren)):
            query = query.this
        ctes = self._with_ctes(query, ctes)
        if isinstance(query, exp.SetOperation):
            left = self.outputs(query.left, ctes, outer)
            right = self.outputs(query.right, ctes, outer)
            if len(left) != len(right):
                raise Undeterminable("set operation branches differ in width")
            return [(name, _merge(a, b)) for (name, a), (_, b) in zip(left, right)]
        if isinstance(query, exp.Values):
            rows = query.expressions
            width = len(rows[0].expressions) if rows and isinstance(rows[0], exp.Tuple) else 1
            return [(f"column{i + 1}", ()) for i in range(width)]
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

    def _cte_outputs(self, cte: exp.Expr, visible: Ctes) -> list[tuple[str, Sources]]:
        key = id(cte)
        if key in self.resolving:  # a recursive CTE's self-reference: its other branch says it all
            return []
        self.resolving.add(key)
        try:
            body = cte.this if isinstance(cte, exp.CTE) else cte
            outs = self.outputs(body, visible, None)
        finally:
            self.resolving.discard(key)
        alias = cte.args.get("alias") if isinstance(cte, exp.CTE) else None
        return _rename(outs, alias.columns if isinstance(alias, exp.TableAlias) else [])

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
        using = query.args.get("using")
        extra += using if isinstance(using, list) else [using] if isinstance(using, exp.Expr) else []
        for item in extra:
            self._add_source(scope, item, ctes)
        return scope

    def _add_source(self, scope: _Scope, item: exp.Expr, ctes: Ctes) -> None:
        alias_node = item.args.get("alias")
        alias_columns = alias_node.columns if isinstance(alias_node, exp.TableAlias) else []
        alias = item.alias
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            name = item.name
            if not item.args.get("db") and name in ctes:
                cte, visible = ctes[name]
                outs = _rename(self._cte_outputs(cte, visible), alias_columns)
                scope.sources[alias or name] = _Source(outputs=outs)
                return
            if alias_columns:
                raise Undeterminable("a table alias renames columns")
            parts = [p.name for p in (item.args.get("db"), item.this) if p is not None]
            scope.sources[alias or name] = _Source(table=qualify(parts, self.rules))
            return
        if isinstance(item, exp.Lateral):
            item = item.this if isinstance(item.this, (exp.Subquery, exp.Select)) else item
        if isinstance(item, (exp.Subquery, exp.Select, exp.Values)) or (
                isinstance(item, exp.Table) and isinstance(item.this, (exp.Values, exp.Subquery))):
            query = item.this if isinstance(item, exp.Table) else item
            outs = _rename(self.outputs(query, ctes, scope), alias_columns)
            scope.sources[alias or f"?{len(scope.sources)}"] = _Source(outputs=outs)
            return
        # A table function (generate_series, unnest, json_to_record ...): its columns derive from whatever
        # its arguments mention.
        mentioned = self.expression_sources(item, scope, ctes)
        scope.sources[alias or f"?{len(scope.sources)}"] = _Source(opaque=mentioned)

    # -- projections ----------------------------------------------------------------------------------------
    def _projections(self, expressions: list[exp.Expr], scope: _Scope, ctes: Ctes
                     ) -> list[tuple[str, Sources]]:
        out: list[tuple[str, Sources]] = []
        for projection in expressions:
            if isinstance(projection, exp.Star):
                for source in scope.sources.values():
                    out.extend(_expand(source))
                continue
            if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                out.extend(_expand(self._lookup(projection.table, scope)))
                continue
            out.append((projection.alias_or_name, self.expression_sources(projection, scope, ctes)))
        return out

    def expression_sources(self, expression: exp.Expr, scope: _Scope, ctes: Ctes) -> Sources:
        found: Sources = ()
        stack = [expression]
        while stack:
            node = stack.pop()
            if node is not expression and isinstance(node, (exp.Select, exp.SetOperation)):
                for _, sources in self.outputs(node, ctes, scope):
                    found = _merge(found, sources)
                continue
            if isinstance(node, exp.Column):
                found = _merge(found, self._column(node, scope))
                continue
            if node is not expression and isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                raise Undeterminable("a * inside an expression")
            stack.extend(node.iter_expressions())
        return found

    def _column(self, column: exp.Column, scope: _Scope) -> Sources:
        if isinstance(column.this, exp.Star):  # t.* inside an expression: every column of t
            found: Sources = ()
            for _, sources in _expand(self._lookup(column.table, scope)):
                found = _merge(found, sources)
            return found
        name = column.name
        if column.table:
            source = self._lookup(column.table, scope, required=False)
            if source is None:
                if column.args.get("db"):  # schema.table.column
                    return (f"{qualify([column.args['db'].name, column.table], self.rules)}.{name}",)
                return ()
            return _column_of(source, name)
        found = ()
        level: _Scope | None = scope
        while level is not None:
            for alias, source in level.sources.items():
                if alias == name and source.table is not None:
                    raise Undeterminable(f"whole-row reference to {alias}")
                if alias == name and source.outputs is not None and all(o != name for o, _ in source.outputs):
                    for _, sources in source.outputs:  # whole-row reference to a derived table
                        found = _merge(found, sources)
                    continue
                found = _merge(found, _column_of(source, name))
            level = level.parent
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


def _column_of(source: _Source, name: str) -> Sources:
    if source.table is not None:
        return (f"{source.table}.{name}",)
    if source.outputs is not None:
        for output, sources in source.outputs:
            if output == name:
                return sources
        return ()
    return source.opaque


def _expand(source: _Source) -> list[tuple[str, Sources]]:
    if source.table is not None:
        raise Undeterminable(f"the columns of {source.table} are not known without its definition")
    if source.outputs is not None:
        return list(source.outputs)
    raise Undeterminable("the columns of a table function are not known")


def _rename(outputs: list[tuple[str, Sources]], columns: list[exp.Expr]) -> list[tuple[str, Sources]]:
    if not columns:
        return outputs
    renamed = [(c.name, outputs[i][1] if i < len(outputs) else ()) for i, c in enumerate(columns)]
    return renamed + outputs[len(columns):]


def _merge(a: Sources, b: Sources) -> Sources:
    if not b:
        return a
    if not a:
        return b
    return tuple(sorted(set(a) | set(b)))
