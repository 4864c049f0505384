"""Facts from a sqlglot syntax tree: walk *all* of it, because effects hide in nested places.

A ``DELETE`` inside a CTE makes a ``SELECT`` a write; ``SELECT ... INTO`` creates a table; ``FOR UPDATE``
takes row locks (PostgreSQL requires UPDATE privilege for it); a function gw does not know may do anything.
Table references are resolved against the CTEs in scope, so a CTE name is not reported as a table but a
real table that merely shares a CTE's name (a DML target, a CTE body's own reference) is.
"""

from __future__ import annotations

import logging

import sqlglot
from gw.model import Kind
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .dialects import DialectRules
from .model import Facts

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DML_VERBS: dict[type[exp.Expr], str] = {exp.Insert: "insert", exp.Update: "update", exp.Delete: "delete",
                                         exp.Merge: "merge"}
_QUERY_ROOTS = (exp.Query, exp.Values, *_DML)

# sqlglot logs a warning each time it falls back to a generic Command node; gw treats those as unknown and
# says so in the classification, so the log line is noise (and would repeat per distinct statement).
logging.getLogger("sqlglot").addFilter(lambda record: "unsupported syntax" not in record.getMessage())


class ParseFailure(Exception):
    """sqlglot could not turn the statement into one tree gw can trust."""


class TooDeep(ParseFailure):
    """The statement is nested deeper than sqlglot's recursive parser can follow."""


def parse_one(sql: str, rules: DialectRules) -> exp.Expr:
    """Parse exactly one statement; anything else (error, several statements, a Command fallback) fails."""
    try:
        trees = sqlglot.parse(sql, read=rules.sqlglot)
    except SqlglotError as e:
        raise ParseFailure(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    except RecursionError:
        raise TooDeep("nested too deeply for sqlglot") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        # sqlglot is not hardened against every input; whatever it trips on is a parse failure here.
        raise ParseFailure(f"{type(e).__name__} in sqlglot") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise ParseFailure(f"expected one statement, sqlglot found {len(trees)}")
    tree = trees[0]
    assert tree is not None
    if isinstance(tree, exp.Command):
        raise ParseFailure("sqlglot does not support this statement")
    return tree


def query_facts(tree: exp.Expr, rules: DialectRules) -> Facts:
    """Facts of a query or DML statement (SELECT, VALUES, INSERT, UPDATE, DELETE, MERGE, and WITH ...)."""
    if not isinstance(tree, _QUERY_ROOTS):
        raise ParseFailure(f"expected a query, sqlglot parsed a {type(tree).__name__}")
    verb = _DML_VERBS.get(type(tree), "select")
    facts = Facts(Kind.WRITE if isinstance(tree, _DML) else Kind.READ, verb, verbs=[verb])
    walk_effects(tree, rules, facts)
    facts.add_objects(table_objects(tree, rules))
    return facts


def walk_effects(tree: exp.Expr, rules: DialectRules, facts: Facts) -> None:
    """Raise ``facts`` for every effect anywhere in ``tree``: nested DML, SELECT INTO, locking clauses,
    functions gw cannot vouch for, and nodes sqlglot could only keep as opaque commands."""
    for node in tree.walk():
        if isinstance(node, _DML):
            facts.raise_kind(Kind.WRITE)
            facts.add_verb(_DML_VERBS[type(node)])
            if node is not tree:
                facts.flags.add("cte_write")
            if isinstance(node, (exp.Update, exp.Delete)) and _unfiltered(node.args.get("where"), node):
                facts.flags.add("no_where")
            if isinstance(node, exp.Merge) and _unfiltered(node.args.get("on"), node):
                facts.flags.add("no_where")
            if isinstance(node, exp.Insert) and _unfiltered_upsert(node):
                facts.flags.add("no_where")
        elif isinstance(node, exp.Select):
            into = node.args.get("into")
            if into is not None and isinstance(into.this, exp.Table) and isinstance(into.this.this,
                                                                                    exp.Identifier):
                # SELECT ... INTO new_table (PostgreSQL) creates a table.  MySQL's INTO @var is harmless.
                facts.flags.add("select_into")
                facts.raise_kind(Kind.DDL)
            if node.args.get("locks"):
                facts.flags.add("for_update")
                facts.raise_kind(Kind.WRITE)
        elif isinstance(node, exp.Func):
            _function(node, rules, facts)
        elif isinstance(node, exp.Command):
            facts.raise_kind(Kind.UNKNOWN)
            facts.flags.add("unparsed")


def _unfiltered(condition: exp.Expr | None, statement: exp.Expr) -> bool:
    """No condition, or an obvious tautology: every row.

    Syntax cannot prove a condition selective (``rows_over`` asks the database for that); this catches the
    shapes that plainly select everything: no column at all (``WHERE 1 = 1``, ``WHERE true``), a column
    compared with itself (``id = id``, ``v IS NOT DISTINCT FROM v``), a table joined with itself on the same
    column (``DELETE FROM t USING t t2 WHERE t.id = t2.id``: every row matches itself), ``true OR ...``, and
    conjunctions of these."""
    if condition is None:
        return True
    if isinstance(condition, exp.Where):
        condition = condition.this
    return _tautology(condition, _table_aliases(statement))


def _unfiltered_upsert(insert: exp.Insert) -> bool:
    """``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` (MySQL ``ON DUPLICATE KEY UPDATE``) without a WHERE
    on the update can rewrite every row the query yields, which may be the whole table.  A VALUES list
    changes at most its own rows."""
    conflict = insert.args.get("conflict")
    if not isinstance(conflict, exp.OnConflict):
        return False
    action = conflict.args.get("action")
    updates = conflict.args.get("duplicate") or (action is not None and "UPDATE" in str(action.name).upper())
    if not updates:
        return False
    if isinstance(insert.expression, exp.Values):
        return False
    return _unfiltered(conflict.args.get("where"), insert)


#: Comparisons that hold for every row when both sides are the same expression.
_REFLEXIVE = (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)


def _tautology(condition: exp.Expr, aliases: dict[str, str]) -> bool:
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if condition.find(exp.Column) is None:
        return True
    if isinstance(condition, exp.Or):
        return _tautology(condition.this, aliases) or _tautology(condition.expression, aliases)
    if isinstance(condition, exp.And):
        return _tautology(condition.this, aliases) and _tautology(condition.expression, aliases)
    if isinstance(condition, _REFLEXIVE):
        return _resolved(condition.this, aliases) == _resolved(condition.expression, aliases)
    if isinstance(condition, exp.In) and condition.this is not None:
        mine = _resolved(condition.this, aliases)
        return any(_resolved(e, aliases) == mine for e in condition.expressions)
    return False


def _table_aliases(statement: exp.Expr) -> dict[str, str]:
    """Alias (or name) -> table name for the tables of a DML statement; the target is also what unqualified
    columns are taken to belong to (key ``""``)."""
    out: dict[str, str] = {}
    for table in statement.find_all(exp.Table):
        if isinstance(table.this, exp.Identifier):
            name = ".".join(p.name for p in (table.args.get("db"), table.this) if p is not None)
            out.setdefault(table.alias_or_name, name)
    target = statement.this
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(target, exp.Table) and isinstance(target.this, exp.Identifier):
        out[""] = out.get(target.alias_or_name, target.name)
    return out


def _resolved(node: exp.Expr | None, aliases: dict[str, str]) -> str:
    """``node`` as SQL with every column qualified by its table's real name (aliases resolved)."""
    if node is None:
        return ""
    copy = node.copy()
    for column in [copy, *copy.find_all(exp.Column)] if isinstance(copy, exp.Column) else copy.find_all(
            exp.Column):
        table = aliases.get(column.table, column.table) if column.table else aliases.get("", "")
        column.set("table", exp.to_identifier(table) if table else None)
    return copy.sql()


def _function(node: exp.Func, rules: DialectRules, facts: Facts) -> None:
    """Judge one function call.  Calls named in the side-effect lists are raised by the token scan (which
    also sees names sqlglot folds into typed nodes); here: calls gw cannot vouch for become ``unknown``."""
    parent = node.parent
    qualifier = None
    if isinstance(parent, exp.Dot) and parent.expression is node:
        qualifier = parent.this.sql(dialect=rules.sqlglot).strip('"`').lower()
    if rules.function_kinds:
        bare = str(node.this.this if isinstance(node.this, exp.Identifier) else node.this).lower()
        if (f"{qualifier}.{bare}" if qualifier is not None else bare) in rules.function_kinds:
            return  # the operator's own function: raised to its kind by the token scan
    if qualifier is not None and qualifier not in rules.builtin_schemas:
        facts.flags.add("unknown_function")
        facts.raise_kind(Kind.UNKNOWN)
        return
    if not isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return  # a built-in sqlglot models (upper, count, coalesce ...)
    name_node = node.this
    if isinstance(name_node, exp.Identifier):
        name = name_node.this if name_node.quoted else name_node.this.lower()
    else:
        name = str(name_node).lower()
    if rules.name == "mysql":
        name = name.lower()
    if name in rules.safe_functions:
        return
    if name in rules.admin_functions or name in rules.write_functions or name in rules.sql_text_functions:
        return  # raised by the token scan with the right kind
    facts.flags.add("unknown_function")
    facts.raise_kind(Kind.UNKNOWN)


# ---------------------------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------------------------


def qualify(parts: list[str], rules: DialectRules) -> str:
    """``["t"]`` -> ``public.t``; ``["s", "t"]`` -> ``s.t``; a catalog prefix is dropped (PostgreSQL cannot
    reach another database; MySQL has no catalogs).  Unqualified ``pg_*`` names are system catalogs, found
    first whatever the search_path."""
    if len(parts) >= 2:
        return f"{parts[-2]}.{parts[-1]}"
    name = parts[0]
    if rules.name == "postgres" and name.startswith("pg_"):
        return f"pg_catalog.{name}"
    return f"{rules.default_schema}.{name}" if rules.default_schema else name


def table_objects(tree: exp.Expr, rules: DialectRules) -> list[str]:
    """Every real table the tree names (CTE references resolved away), in order of appearance."""
    targets = _dml_targets(tree)
    out: list[str] = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function, a variable (MySQL INTO @v) ...
        if id(table) not in targets and not table.args.get("db") and _is_cte_reference(table):
            continue
        parts = [p for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p is not None]
        name = qualify([p.name for p in parts], rules)
        if name not in out:
            out.append(name)
    return out


def _dml_targets(tree: exp.Expr) -> set[int]:
    """Tables written by INSERT/UPDATE/DELETE/MERGE: never CTE references, even when a CTE has their name."""
    targets: set[int] = set()
    for node in tree.find_all(*_DML):
        target = node.this
        if isinstance(target, exp.Schema):
            target = target.this
        if isinstance(target, exp.Table):
            targets.add(id(target))
        for extra in node.args.get("tables") or []:  # MySQL multi-table DELETE a, b FROM ...
            if isinstance(extra, exp.Table):
                targets.add(id(extra))
    return targets


def _with_clause(node: exp.Expr) -> exp.With | None:
    w = node.args.get("with_") or node.args.get("with")
    return w if isinstance(w, exp.With) else None


def _is_cte_reference(table: exp.Table) -> bool:
    """Whether an unqualified table reference names a CTE visible at its position.

    Walking up: inside a CTE's own body only the earlier CTEs of that WITH are visible (all of them, itself
    included, with RECURSIVE); below a statement that carries a WITH, all its CTEs are."""
    name = table.name
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            ctes = node.expressions
            position = next(i for i, c in enumerate(ctes) if c is child)
            visible = ctes if node.args.get("recursive") else ctes[:position]
            if any(c.alias == name for c in visible):
                return True
        else:
            w = _with_clause(node)
            if w is not None and w is not child and any(c.alias == name for c in w.expressions):
                return True
        child, node = node, node.parent
    return False
