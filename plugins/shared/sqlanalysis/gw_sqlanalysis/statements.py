"""Classify one statement from its tokens: the leading keyword decides, sqlglot fills in what it can.

sqlglot is a good parser of queries and DML but a lenient one: for much of PostgreSQL it returns a generic
``Command`` or, worse, a plausible wrong tree (``START TRANSACTION`` parses as a column alias).  So the verb
and baseline kind come from gw's own tokens and a table of statement keywords; sqlglot is asked only where a
tree is needed (queries and DML, to find nested writes, functions and tables) and for best-effort objects of
DDL.  A leading keyword that is not in the table, or a query sqlglot cannot parse, is ``unknown``.

Independently of the statement type, every call ``name(`` in the tokens is checked against the dialect's
lists of functions with side effects (:mod:`gw_sqlanalysis.dialects`), so ``SELECT pg_terminate_backend(1)``
is ``admin`` however the call is spelt (qualified, quoted, inside a CTE, an UPDATE, a SET value ...).
"""

from __future__ import annotations

from collections.abc import Callable

from gw.model import Kind

from .dialects import MYSQL_SAFE_CHARSETS, PG_GRAMMAR_CALLS, PG_NOT_CATALOG_FUNCTIONS, DialectRules
from .grammar import MAX_DEPTH, SHALLOW_DEPTH, nesting_depth, with_fresh_stack
from .lexer import QIDENT, STRING, WORD, identifier_value, sql_text, token_kind
from .model import Facts, unknown
from .tree import ParseFailure, TooDeep, parse_one, qualify, query_facts, table_objects

Handler = Callable[["Statement"], Facts]


class Statement:
    """The tokens of one statement plus lower-cased views for keyword matching."""

    __slots__ = ("low", "rules", "tokens")

    def __init__(self, tokens: list[str], rules: DialectRules) -> None:
        self.tokens = tokens
        self.rules = rules
        self.low = [t.lower() if token_kind(t) == WORD else t for t in tokens]

    def word(self, i: int) -> str:
        """The keyword at ``i`` (lower case), or "" past the end / for a non-word."""
        if i < len(self.low) and token_kind(self.tokens[i]) == WORD:
            return self.low[i]
        return ""

    def find(self, word: str, start: int = 0) -> int:
        """Index of ``word`` at parenthesis depth 0 from ``start``, or -1."""
        depth = 0
        for i in range(start, len(self.low)):
            t = self.low[i]
            if t == "(":
                depth += 1
            elif t == ")":
                depth -= 1
            elif depth == 0 and t == word and token_kind(self.tokens[i]) == WORD:
                return i
        return -1

    def skip_group(self, i: int) -> int:
        """If a parenthesised group starts at ``i``, the index after its closing parenthesis."""
        if i >= len(self.low) or self.low[i] != "(":
            return i
        depth = 0
        for j in range(i, len(self.low)):
            if self.low[j] == "(":
                depth += 1
            elif self.low[j] == ")":
                depth -= 1
                if depth == 0:
                    return j + 1
        return len(self.low)

    def skip_words(self, i: int, words: frozenset[str]) -> int:
        while self.word(i) in words and self.word(i):
            i += 1
        return i

    def name(self, i: int) -> tuple[list[str], int]:
        """A dotted name at ``i`` (``s.t``, ``"S"."T"``, MySQL ``db.*``): its parts and the index after."""
        parts: list[str] = []
        while i < len(self.tokens) and token_kind(self.tokens[i]) in (WORD, QIDENT):
            parts.append(identifier_value(self.tokens[i]))
            i += 1
            if i + 1 < len(self.tokens) and self.tokens[i] == ".":
                if self.tokens[i + 1] == "*":
                    parts.append("*")
                    return parts, i + 2
                i += 1
                continue
            break
        if not parts and i + 2 < len(self.tokens) and self.tokens[i:i + 3] == ["*", ".", "*"]:
            return ["*", "*"], i + 3
        return parts, i

    def names(self, i: int, skip: frozenset[str] = frozenset(), schema_wide: bool = False) -> list[str]:
        """A comma-separated list of names from ``i`` (column lists and inheritance ``*`` skipped), qualified;
        ``schema_wide`` names are schemas, reported as ``s.*``."""
        out: list[str] = []
        while i < len(self.tokens):
            i = self.skip_words(i, skip)
            parts, i = self.name(i)
            if not parts:
                break
            if schema_wide:
                out.append(f"{parts[-1]}.*")
            else:
                out.append(qualify(parts, self.rules))
            if i < len(self.tokens) and self.tokens[i] == "*":
                i += 1
            i = self.skip_group(i)
            if i < len(self.tokens) and self.tokens[i] == ",":
                i += 1
                continue
            break
        return out

    def nested(self, start: int) -> Facts:
        """Classify the statement that starts at token ``start`` (EXPLAIN's, PREPARE's, a cursor's)."""
        if start >= len(self.tokens):
            return unknown()
        return classify_statement(self.tokens[start:], self.rules)


# ---------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------


def classify_statement(tokens: list[str], rules: DialectRules) -> Facts:
    """Facts of one statement (tokens from :func:`gw_sqlanalysis.lexer.split_tokens`)."""
    depth = nesting_depth(tokens) if "(" in tokens or "[" in tokens else 0
    if depth > MAX_DEPTH:
        # Deeper than gw hands to its parser: refused as such (a clear message, never a RecursionError).
        facts = unknown(tokens[0].lower() if token_kind(tokens[0]) == WORD else "", "too_deep")
        scan_calls(Statement(tokens, rules), facts)
        return facts
    if depth > SHALLOW_DEPTH:
        # sqlglot recurses per level: parse on a fresh stack, so the result does not depend on how deep the
        # caller already is (an event loop, a test runner).
        return with_fresh_stack(_classify_statement, tokens, rules)
    return _classify_statement(tokens, rules)


def _classify_statement(tokens: list[str], rules: DialectRules) -> Facts:
    st = Statement(tokens, rules)
    first = "(" if tokens[0] == "(" else st.word(0)
    handlers = MYSQL_HANDLERS if rules.name == "mysql" else PG_HANDLERS
    handler = handlers.get(first)
    if handler is None:
        return unknown(first)
    facts = handler(st)
    if handler not in _SCAN_THEMSELVES:
        scan_calls(st, facts)
    return facts


def scan_calls(st: Statement, facts: Facts) -> None:
    """Raise ``facts`` for every call ``name(`` of a function with side effects, however it is qualified or
    quoted.  Also: a quoted name that sqlglot would silently read as a built-in (``"LOWER"(x)`` is a user
    function in PostgreSQL, sqlglot says ``LOWER``) is a function gw cannot vouch for."""
    rules, tokens = st.rules, st.tokens
    for i in range(len(tokens) - 1):
        if tokens[i + 1] != "(":
            continue
        kind = token_kind(tokens[i])
        if kind == WORD:
            name = st.low[i]
        elif kind == QIDENT:
            exact = identifier_value(tokens[i])
            name = exact.lower()
            if ((rules.name == "mysql" or exact != name) and exact.upper() in rules.sqlglot_functions
                    or rules.name == "postgres" and name in PG_NOT_CATALOG_FUNCTIONS):
                facts.flags.add("unknown_function")
                facts.raise_kind(Kind.UNKNOWN)
        else:
            continue
        if rules.function_kinds:
            qualified = (f"{identifier_value(tokens[i - 2]).lower()}.{name}"
                         if i >= 2 and tokens[i - 1] == "." else name)
            declared = rules.function_kinds.get(qualified)
            if declared is not None:
                facts.flags.add(f"{declared}_function" if declared in ("admin", "write") else "operator_function")
                facts.raise_kind(Kind(declared))
                continue
        if name in rules.admin_functions:
            facts.flags.add("admin_function")
            facts.raise_kind(Kind.ADMIN)
        elif name in rules.write_functions:
            facts.flags.add("write_function")
            facts.raise_kind(Kind.WRITE)
        elif name in rules.sql_text_functions:
            facts.flags.add("sql_in_string")
            facts.raise_kind(Kind.UNKNOWN)
        elif (rules.name == "postgres" and name not in rules.safe_functions
              and name not in PG_GRAMMAR_CALLS and name.upper() in rules.sqlglot_functions):
            # sqlglot models it (another database's built-in), PostgreSQL has no such built-in: in PostgreSQL
            # the call runs a user or extension function of that name, which may do anything.
            facts.flags.add("unknown_function")
            facts.raise_kind(Kind.UNKNOWN)


# ---------------------------------------------------------------------------------------------------------------
# Queries and DML: sqlglot
# ---------------------------------------------------------------------------------------------------------------


def _query(st: Statement) -> Facts:
    tokens = st.tokens
    verb_override = None
    if st.rules.name == "mysql":
        if st.word(0) == "replace":  # REPLACE INTO is INSERT that deletes conflicting rows first
            tokens = ["insert", *tokens[1:]]
            verb_override = "replace"
        into = st.find("into")
        if into != -1 and st.word(into + 1) in ("outfile", "dumpfile"):
            f = unknown("select", "server_file")
            return f
    try:
        tree = parse_one(sql_text(tokens), st.rules)
        facts = query_facts(tree, st.rules)
    except (TooDeep, RecursionError):
        return unknown(st.word(0) or "select", "too_deep")
    except ParseFailure:
        return unknown(st.word(0) or "select")
    expected = _EXPECTED_ROOT.get(st.word(0))
    if expected is not None and facts.verbs[0] != expected:
        return unknown(st.word(0))
    if verb_override:
        facts.verbs[0] = verb_override
        if facts.verb == "insert":
            facts.verb = verb_override
    return facts


_EXPECTED_ROOT = {"insert": "insert", "replace": "insert", "update": "update", "delete": "delete",
                  "merge": "merge"}


# ---------------------------------------------------------------------------------------------------------------
# DDL and object management
# ---------------------------------------------------------------------------------------------------------------

_DDL_MODIFIERS = frozenset(["or", "replace", "temp", "temporary", "unlogged", "global", "local", "materialized", "unique", "recursive", "foreign", "trusted", "procedural", "default", "constraint", "aggregate", "algorithm", "definer", "sql", "security", "invoker", "undefined", "merge", "temptable", "online", "offline", "ignore"])
_TABLE_LIKE = frozenset({"table", "view", "sequence", "tables"})
_NAME_FILLER = frozenset({"if", "not", "exists", "only", "concurrently"})
_ROLE_OBJECTS = frozenset({"role", "user", "group"})
_SERVER_CODE_OBJECTS = frozenset({"extension", "language", "server"})
_RELATION_KINDS = frozenset({"TABLE", "VIEW", "INDEX", "SEQUENCE", "MATERIALIZED VIEW"})


def _ddl(st: Statement) -> Facts:
    verb = st.word(0)
    facts = Facts(Kind.DDL, verb, verbs=[verb])
    i = st.skip_words(1, _DDL_MODIFIERS)
    objtype = st.word(i)
    if objtype in _ROLE_OBJECTS and st.word(i + 1) != "mapping":
        facts.kind = Kind.ADMIN  # roles and users are privilege management
    elif verb == "alter" and objtype == "system" or verb == "alter" and st.word(1) == "default" and st.word(2) == "privileges":
        facts.kind = Kind.ADMIN
    elif st.rules.name == "postgres" and (
            objtype in _SERVER_CODE_OBJECTS or objtype == "user" and st.word(i + 1) == "mapping"
            or objtype == "data" and st.word(i + 1) == "wrapper"):
        # Extensions, languages, foreign servers and their user mappings: code and credentials on the
        # database host, reaching other servers -- privilege management, not schema changes.
        facts.kind = Kind.ADMIN
        facts.flags.add("server_side_effect")
    if facts.kind is Kind.ADMIN:
        return facts  # roles, system settings, default privileges: no relations named
    if objtype in _TABLE_LIKE:
        facts.add_objects(st.names(i + 1, _NAME_FILLER))
    elif objtype in ("schema", "database") and not (st.rules.name == "postgres" and objtype == "database"):
        facts.add_objects(st.names(i + 1, _NAME_FILLER, schema_wide=True))
    on = st.find("on", i)
    if on != -1:
        facts.add_objects(st.names(on + 1, _NAME_FILLER | {"table"}))
    _tree_objects(st, facts)
    return facts


def _tree_objects(st: Statement, facts: Facts) -> None:
    """Best effort: tables sqlglot finds in DDL on relations (CREATE TABLE ... AS SELECT reads tables too).
    Other object types are skipped: sqlglot models a function or schema name as a table."""
    try:
        tree = parse_one(sql_text(st.tokens), st.rules)
    except ParseFailure:
        return
    if str(tree.args.get("kind") or "").upper() not in _RELATION_KINDS:
        return
    facts.add_objects(table_objects(tree, st.rules))


def _truncate(st: Statement) -> Facts:
    facts = Facts(Kind.WRITE, "truncate", flags={"no_where"}, verbs=["truncate"])
    facts.add_objects(st.names(1, _NAME_FILLER | {"table"}))
    return facts


def _grant(st: Statement) -> Facts:
    verb = st.word(0)
    facts = Facts(Kind.ADMIN, verb, verbs=[verb])
    on = st.find("on")
    if on == -1:
        return facts  # GRANT role TO user
    i = on + 1
    if st.word(i) == "all" and st.word(i + 2) == "in" and st.word(i + 3) == "schema":
        facts.add_objects(st.names(i + 4, schema_wide=True))
    elif st.word(i) == "schema":
        facts.add_objects(st.names(i + 1, schema_wide=True))
    elif st.word(i) in ("", "table", "sequence") or st.word(i + 1) in ("", "to", "from", ","):
        facts.add_objects(st.names(i, frozenset({"table", "sequence"})))
    return facts


def _comment(st: Statement) -> Facts:
    facts = Facts(Kind.DDL, "comment", verbs=["comment"])
    i = st.skip_words(2, frozenset({"materialized", "foreign"}))
    objtype = st.word(i)
    if objtype in ("table", "view"):
        facts.add_objects(st.names(i + 1))
    elif objtype == "column":
        parts, _ = st.name(i + 1)
        if len(parts) >= 2:
            facts.add_objects([qualify(parts[:-1], st.rules)])
    return facts


def _verb_only(verb: str, kind: Kind) -> Handler:
    def handler(st: Statement) -> Facts:
        return Facts(kind, verb, verbs=[verb])
    handler.__doc__ = f"{verb}: always {kind.value}"
    return handler


def _maintenance(verb: str, skip: frozenset[str], kind: Kind = Kind.ADMIN) -> Handler:
    """VACUUM / ANALYZE / CLUSTER / LOCK / REFRESH ...: a kind, and the tables named after the options."""
    def handler(st: Statement) -> Facts:
        facts = Facts(kind, verb, verbs=[verb])
        i = st.skip_group(1)
        i = st.skip_words(i, skip)
        facts.add_objects(st.names(i, skip))
        return facts
    return handler


def _reindex(st: Statement) -> Facts:
    facts = Facts(Kind.ADMIN, "reindex", verbs=["reindex"])
    i = st.skip_group(1)
    objtype = st.word(i)
    if objtype in ("table", "index"):
        facts.add_objects(st.names(i + 1, frozenset({"concurrently"})))
    elif objtype == "schema":
        facts.add_objects(st.names(i + 1, frozenset({"concurrently"}), schema_wide=True))
    return facts


# ---------------------------------------------------------------------------------------------------------------
# Transactions, sessions
# ---------------------------------------------------------------------------------------------------------------

_TRANSACTION_VERBS = {"begin": "begin", "start": "begin", "commit": "commit", "end": "commit",
                      "rollback": "rollback", "abort": "rollback", "savepoint": "savepoint",
                      "release": "release", "xa": "xa"}


def _transaction(st: Statement) -> Facts:
    first = st.word(0)
    verb = _TRANSACTION_VERBS[first]
    if "(" in st.low:
        return unknown(verb)
    if first == "start" and st.word(1) != "transaction":
        if st.rules.name == "mysql":  # START SLAVE / REPLICA / GROUP_REPLICATION
            return Facts(Kind.ADMIN, "start", verbs=["start"])
        return unknown("start")
    if first == "begin" and ("atomic" in st.low or st.word(1) == "not"):
        return unknown("begin")  # MariaDB BEGIN NOT ATOMIC ... END: a compound statement
    return Facts(Kind.TRANSACTION, verb, verbs=[verb])


def _pg_set(st: Statement) -> Facts:
    """PostgreSQL SET: role changes are ``admin`` with ``set_role``; harmless session settings are ``read``;
    transaction modes are ``transaction``; any other setting (search_path, client_encoding, custom GUCs that
    row-level security may read ...) is ``admin``."""
    facts = Facts(Kind.ADMIN, "set", verbs=["set"])
    i = 1
    if st.word(i) in ("session", "local"):
        if st.word(i) == "session" and st.word(i + 1) == "authorization":
            facts.flags.add("set_role")
            return facts
        if st.word(i) == "session" and st.word(i + 1) == "characteristics":
            facts.kind = Kind.TRANSACTION
            return facts
        i += 1
    parts, _ = st.name(i)
    parameter = ".".join(parts).lower()
    if parameter in _ROLE_SETTINGS:
        facts.flags.add("set_role")
    elif st.word(i) in ("transaction", "constraints"):
        facts.kind = Kind.TRANSACTION
    elif st.word(i) == "time" and st.word(i + 1) == "zone":
        facts.kind = Kind.READ
    else:
        facts.kind = _setting_kind(parameter, st.rules)
    return facts


_ROLE_SETTINGS = frozenset({"role", "session_authorization"})


def _pg_reset(st: Statement) -> Facts:
    facts = Facts(Kind.ADMIN, "reset", verbs=["reset"])
    parts, _ = st.name(1)
    parameter = ".".join(parts).lower()
    if parameter in _ROLE_SETTINGS or (parameter == "session" and st.word(2) == "authorization"):
        facts.flags.add("set_role")
    elif parameter != "all":
        facts.kind = _setting_kind(parameter, st.rules)
    return facts


def _setting_kind(setting: str, rules: DialectRules) -> Kind:
    if setting in rules.harmless_settings:
        return Kind.READ
    if setting in rules.transaction_settings:
        return Kind.TRANSACTION
    return Kind.ADMIN


def _mysql_set(st: Statement) -> Facts:
    """MySQL SET: each comma-separated assignment judged on its own, the most dangerous wins.  ``SET @v``
    (user variables) and harmless session variables are ``read``; GLOBAL / PERSIST, sql_mode, character sets
    other than utf8, passwords and roles are ``admin``.  The assigned expressions are scanned for calls like
    any other tokens (``SET @x = SLEEP(10)`` is admin)."""
    facts = Facts(Kind.READ, "set", verbs=["set"])
    low = st.low
    first = st.word(1)
    if first == "statement":  # MariaDB: SET STATEMENT var = value FOR <statement>
        return unknown("set")
    if first in ("transaction",):
        facts.kind = Kind.TRANSACTION
        return facts
    if first == "password" or (first == "default" and st.word(2) == "role"):
        facts.kind = Kind.ADMIN
        return facts
    if first == "role":
        facts.kind = Kind.ADMIN
        facts.flags.add("set_role")
        return facts
    if first in ("names", "character", "charset"):
        value_at = 3 if first == "character" else 2
        if st.word(value_at) not in MYSQL_SAFE_CHARSETS:
            facts.kind = Kind.ADMIN
        return facts
    start = 1
    depth = 0
    for i in range(1, len(low) + 1):
        if i < len(low) and low[i] in ("(", ")"):
            depth += 1 if low[i] == "(" else -1
        if i == len(low) or (low[i] == "," and depth == 0):
            facts.raise_kind(_mysql_assignment_kind(st, start))
            start = i + 1
    return facts


def _mysql_assignment_kind(st: Statement, i: int) -> Kind:
    token = st.low[i] if i < len(st.low) else ""
    if token.startswith("@@"):
        scope, _, name = token[2:].rpartition(".")
        if scope in ("global", "persist", "persist_only"):
            return Kind.ADMIN
        return _setting_kind(name, st.rules)
    if token.startswith("@"):
        return Kind.READ
    if token in ("global", "persist", "persist_only"):
        return Kind.ADMIN
    if token in ("session", "local"):
        i += 1
    name = st.low[i] if i < len(st.low) else ""
    return _setting_kind(name.strip("`").lower(), st.rules)


# ---------------------------------------------------------------------------------------------------------------
# Statements that wrap statements
# ---------------------------------------------------------------------------------------------------------------

_STATEMENT_STARTS = frozenset({"select", "with", "values", "table", "insert", "update", "delete", "merge",
                               "replace", "execute", "declare", "create", "("})


def _explain(st: Statement) -> Facts:
    """EXPLAIN plans a statement; EXPLAIN ANALYZE *runs* it, so it is classified as that statement (with the
    ``explain_analyze`` flag).  Any ANALYZE option that is not literally ``false``/``off`` counts as
    analyze.  A plain EXPLAIN is ``read`` unless its statement is ``unknown`` (planning evaluates immutable
    functions, and gw cannot vouch for one it does not know)."""
    mysql = st.rules.name == "mysql"
    analyze = False
    i = 1
    if st.low[i:i + 1] == ["("]:
        end = st.skip_group(i)
        options = st.low[i + 1:end - 1]
        for j, option in enumerate(options):
            if option in ("analyze", "analyse") and (j + 1 >= len(options)
                                                       or options[j + 1] not in ("false", "off")):
                analyze = True
        i = end
    while True:
        w = st.word(i)
        if w in ("analyze", "analyse"):
            analyze = True
            i += 1
        elif w in ("verbose", "extended", "partitions"):
            i += 1
        elif mysql and w == "format" and i + 2 < len(st.low) and st.low[i + 1] == "=":
            i += 3
        else:
            break
    if st.word(i) not in _STATEMENT_STARTS and st.low[i:i + 1] != ["("]:
        if mysql:  # EXPLAIN / DESCRIBE table [column], EXPLAIN FOR CONNECTION n
            facts = Facts(Kind.READ, "describe", verbs=["describe"])
            if st.word(i) != "for":
                facts.add_objects(st.names(i))
            return facts
        return unknown("explain")
    inner = st.nested(i)
    if analyze:
        inner.flags.add("explain_analyze")
        return inner
    facts = Facts(Kind.UNKNOWN if inner.kind is Kind.UNKNOWN else Kind.READ, "explain", verbs=["explain"])
    facts.add_objects(inner.objects)
    facts.flags |= inner.flags | {"explain"}
    return facts


def _mysql_analyze(st: Statement) -> Facts:
    """MySQL ANALYZE TABLE is maintenance; MariaDB's ANALYZE <statement> runs the statement."""
    if st.word(1) != "table" and (st.word(1) in _STATEMENT_STARTS or st.word(1) == "format"):
        return _explain(st)
    return _maintenance("analyze", frozenset({"no_write_to_binlog", "local", "table", "tables"}))(st)


def _pg_prepare(st: Statement) -> Facts:
    """PREPARE name AS <statement> is classified as its statement (flag ``prepare``), so preparing a DELETE
    meets the same rules as running one; EXECUTE of a prepared name is ``unknown``."""
    if st.word(1) == "transaction":
        return Facts(Kind.TRANSACTION, "prepare_transaction", verbs=["prepare_transaction"])
    i = st.skip_group(2)
    if st.word(i) != "as":
        return unknown("prepare")
    inner = st.nested(i + 1)
    inner.flags.add("prepare")
    return inner


def _pg_declare(st: Statement) -> Facts:
    """DECLARE c CURSOR FOR <query>: the query runs as the cursor is fetched; classify it now."""
    cursor = st.find("cursor")
    at = st.find("for", cursor + 1) if cursor != -1 else -1
    if at == -1:
        return unknown("declare")
    inner = st.nested(at + 1)
    facts = Facts(Kind.READ, "declare", flags={"cursor"}, verbs=["declare"])
    facts.absorb(inner)
    return facts


def _pg_copy(st: Statement) -> Facts:
    """COPY: FROM STDIN is ``write``, TO STDOUT ``read`` (or the kind of ``COPY (query)``); a server-side
    file (``server_file``) or ``PROGRAM`` (``program``) is ``admin``.  Flags ``copy_from`` / ``copy_to``."""
    i = 2 if st.word(1) == "binary" else 1
    if st.low[i:i + 1] == ["("]:
        end = st.skip_group(i)
        inner = classify_statement(st.tokens[i + 1:end - 1], st.rules) if end - 1 > i + 1 else unknown()
        i = end
    else:
        parts, i = st.name(i)
        if not parts:
            return unknown("copy")
        inner = Facts(Kind.READ, "copy", [qualify(parts, st.rules)])
        i = st.skip_group(i)
    direction = st.word(i)
    target = st.low[i + 1] if i + 1 < len(st.low) else ""
    if direction not in ("from", "to") or not target:
        return unknown("copy")
    if st.find("where", i) != -1:
        return unknown("copy")  # COPY ... FROM ... WHERE <expression>: gw does not analyse the expression
    facts = Facts(Kind.WRITE if direction == "from" else Kind.READ, "copy", verbs=["copy"])
    facts.flags.add("copy_from" if direction == "from" else "copy_to")
    facts.absorb(inner)
    if target == "program":
        facts.flags.add("program")
        facts.raise_kind(Kind.ADMIN)
    elif target == STRING:
        facts.flags.add("server_file")
        facts.raise_kind(Kind.ADMIN)
    elif target not in ("stdin", "stdout"):
        return unknown("copy")
    return facts


def _mysql_load(st: Statement) -> Facts:
    """LOAD DATA [LOCAL] INFILE: LOCAL reads a client file (``write``); without it a server file (``admin``,
    ``server_file``).  LOAD INDEX INTO CACHE is maintenance."""
    if st.word(1) not in ("data", "xml"):
        return Facts(Kind.ADMIN, "load", verbs=["load"])
    local = st.find("local") != -1
    facts = Facts(Kind.WRITE if local else Kind.ADMIN, "load", verbs=["load"])
    facts.flags.add("local_infile" if local else "server_file")
    into = st.find("into")
    if into != -1 and st.word(into + 1) == "table":
        facts.add_objects(st.names(into + 2))
    return facts


def _mysql_rename(st: Statement) -> Facts:
    if st.word(1) == "user":
        return Facts(Kind.ADMIN, "rename", verbs=["rename"])
    facts = Facts(Kind.DDL, "rename", verbs=["rename"])
    i = 2
    while i < len(st.tokens):
        parts, i = st.name(i)
        if parts:
            facts.add_objects([qualify(parts, st.rules)])
        i += 1
    return facts


def _mysql_handler(st: Statement) -> Facts:
    facts = Facts(Kind.READ, "handler", verbs=["handler"])
    facts.add_objects(st.names(1))
    return facts


_READ = Kind.READ
PG_HANDLERS: dict[str, Handler] = {
    "select": _query, "with": _query, "values": _query, "table": _query, "(": _query,
    "insert": _query, "update": _query, "delete": _query, "merge": _query,
    "create": _ddl, "alter": _ddl, "drop": _ddl,
    "truncate": _truncate, "comment": _comment, "grant": _grant, "revoke": _grant,
    "security": _verb_only("security_label", Kind.DDL), "import": _verb_only("import", Kind.ADMIN),
    "reassign": _verb_only("reassign", Kind.ADMIN),
    "refresh": _maintenance("refresh", frozenset({"materialized", "view", "concurrently"}), Kind.WRITE),
    "vacuum": _maintenance("vacuum", frozenset({"full", "freeze", "verbose", "analyze", "analyse"})),
    "analyze": _maintenance("analyze", frozenset({"verbose"})),
    "analyse": _maintenance("analyze", frozenset({"verbose"})),
    "cluster": _maintenance("cluster", frozenset({"verbose"})),
    "lock": _maintenance("lock", frozenset({"table", "only"})),
    "reindex": _reindex,
    "checkpoint": _verb_only("checkpoint", Kind.ADMIN), "load": _verb_only("load", Kind.ADMIN),
    "discard": _verb_only("discard", Kind.ADMIN),
    **dict.fromkeys(("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"),
                    _transaction),
    "set": _pg_set, "reset": _pg_reset, "show": _verb_only("show", _READ),
    "explain": _explain, "prepare": _pg_prepare, "declare": _pg_declare, "copy": _pg_copy,
    "execute": lambda st: unknown("execute"), "deallocate": _verb_only("deallocate", _READ),
    "fetch": _verb_only("fetch", _READ), "move": _verb_only("move", _READ), "close": _verb_only("close", _READ),
    "listen": _verb_only("listen", _READ), "unlisten": _verb_only("unlisten", _READ),
    "notify": _verb_only("notify", Kind.WRITE),
    "do": lambda st: unknown("do"), "call": lambda st: unknown("call"),
}

MYSQL_HANDLERS: dict[str, Handler] = {
    "select": _query, "with": _query, "values": _query, "table": _query, "(": _query,
    "insert": _query, "update": _query, "delete": _query, "replace": _query,
    "create": _ddl, "alter": _ddl, "drop": _ddl, "rename": _mysql_rename,
    "truncate": _truncate, "grant": _grant, "revoke": _grant,
    "analyze": _mysql_analyze,
    **{verb: _maintenance(verb, frozenset({"no_write_to_binlog", "local", "table", "tables"}))
       for verb in ("optimize", "repair", "check", "checksum")},
    **{verb: _verb_only(verb, Kind.ADMIN) for verb in (
        "flush", "kill", "purge", "install", "uninstall", "shutdown", "restart", "change", "stop", "binlog",
        "cache", "reset", "lock", "unlock", "import", "clone")},
    **dict.fromkeys(("begin", "start", "commit", "rollback", "savepoint", "release", "xa"), _transaction),
    "set": _mysql_set, "load": _mysql_load,
    "show": _verb_only("show", _READ), "help": _verb_only("help", _READ), "use": _verb_only("use", _READ),
    "explain": _explain, "describe": _explain, "desc": _explain,
    "handler": _mysql_handler, "deallocate": _verb_only("deallocate", _READ),
    "prepare": lambda st: unknown("prepare"), "execute": lambda st: unknown("execute"),
    "do": lambda st: unknown("do"), "call": lambda st: unknown("call"),
}

#: Handlers whose nested statement is classified (and scanned) on its own; scanning the outer tokens too
#: would, for a plain EXPLAIN, raise the kind of a statement that does not run.
_SCAN_THEMSELVES = frozenset({_explain, _pg_prepare, _pg_declare, _mysql_analyze})

__all__ = ["classify_statement"]
