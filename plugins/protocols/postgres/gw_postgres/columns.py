"""Where a result's columns come from: RowDescription -> :class:`gw.model.Column` with ``sources``.

Two sources of truth are combined: the wire (a plain column reference carries its table OID and attribute
number, resolved to ``schema.table.column`` through the upstream catalog, cached per listener) and SQL lineage
from gw_sqlanalysis (``upper(ssn)`` and ``ssn AS x`` derive from ``public.people.ssn``).  Only built when a
stage wants rows, so the pass-through path never pays for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from .errors import CONNECTION_FAILURE, UpstreamError
from .messages import FieldDescription
from .upstream import UpstreamConnection

log = logging.getLogger("gw.postgres.catalog")

#: Names of the built-in types clients meet most (pg_type.dat); others show as ``oid:N``.
TYPE_NAMES: dict[int, str] = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 24: "regproc",
    25: "text", 26: "oid", 114: "json", 142: "xml", 194: "pg_node_tree", 650: "cidr", 700: "float4",
    701: "float8", 774: "macaddr8", 790: "money", 829: "macaddr", 869: "inet", 1042: "bpchar",
    1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz", 1186: "interval",
    1266: "timetz", 1560: "bit", 1562: "varbit", 1700: "numeric", 2249: "record", 2278: "void",
    2950: "uuid", 3614: "tsvector", 3615: "tsquery", 3802: "jsonb", 4072: "jsonpath", 705: "unknown",
    1000: "bool[]", 1001: "bytea[]", 1005: "int2[]", 1007: "int4[]", 1009: "text[]", 1014: "bpchar[]",
    1015: "varchar[]", 1016: "int8[]", 1021: "float4[]", 1022: "float8[]", 1028: "oid[]",
    1115: "timestamp[]", 1182: "date[]", 1185: "timestamptz[]", 1231: "numeric[]", 2951: "uuid[]",
    199: "json[]", 3807: "jsonb[]", 1041: "inet[]",
}


def type_name(oid: int) -> str:
    return TYPE_NAMES.get(oid, f"oid:{oid}")


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A relation as the catalog knows it: its columns in order, and a view's definition."""

    columns: tuple[str, ...]
    #: The defining query of a view or materialized view; None for tables.
    definition: str | None = None
    #: The OID of the relation's row type (what a whole-row value's RowDescription says).
    type_oid: int = 0
    #: The type OIDs of its columns, in order.
    column_types: tuple[int, ...] = ()


class Catalog:
    """Resolves (table OID, attribute number) to ``schema.table.column`` on a connection of its own.

    One per listener; lookups are serialised on that connection and cached (OIDs are stable for a table's
    life).  The connection is opened on first use and re-opened after a failure.
    """

    MAX_ENTRIES = 100_000
    #: Seconds a relation's columns and definition are trusted without a DDL seen on a session.
    TABLES_TTL = 30.0

    def __init__(self, connect: Callable[[], Awaitable[UpstreamConnection]]) -> None:
        self._connect = connect
        self._conn: UpstreamConnection | None = None
        self._lock = trio.Lock()
        self._names: dict[tuple[int, int], tuple[str, str] | None] = {}
        self._tables: dict[str, TableInfo | None] = {}
        self._fetched = 0.0
        #: Changes whenever cached relations are forgotten (callers key their own caches on it).
        self.generation = 0

    def forget(self) -> None:
        """DDL was seen: table columns and view definitions may have changed."""
        self._tables.clear()
        self._names.clear()
        self.generation += 1

    async def tables(self, names: Iterable[str]) -> dict[str, TableInfo | None]:
        """``schema.table`` -> its :class:`TableInfo` (None: no such relation); raises UpstreamError."""
        wanted = set(names)
        if time.monotonic() - self._fetched > self.TABLES_TTL:
            # DDL of other sessions is not seen: relations are looked up again after a while.
            self._tables.clear()
            self._fetched = time.monotonic()
            self.generation += 1
        missing = {n for n in wanted if n not in self._tables}
        if missing:
            async with self._lock:
                missing = {n for n in missing if n not in self._tables}
                if missing:
                    await self._lookup_tables(missing)
        return {n: self._tables.get(n) for n in wanted}

    async def _lookup_tables(self, names: set[str]) -> None:
        pairs = []
        for name in sorted(names):
            schema, _, table = name.rpartition(".")
            # Names come from the client's SQL: passed as hex, never spliced in as text.
            pairs.append(f"(convert_from(decode('{schema.encode().hex()}', 'hex'), 'UTF8'), "
                         f"convert_from(decode('{table.encode().hex()}', 'hex'), 'UTF8'))")
        sql = ("SELECT n.nspname, c.relname, CASE WHEN c.relkind IN ('v', 'm') THEN "
               "pg_catalog.pg_get_viewdef(c.oid) END, (SELECT pg_catalog.array_to_json(pg_catalog.array_agg("
               "pg_catalog.json_build_array(a.attname::text, a.atttypid::int8) ORDER BY a.attnum)) "
               "FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid "
               "AND a.attnum > 0 AND NOT a.attisdropped)::text, c.reltype::int8 FROM pg_catalog.pg_class c "
               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
               f"WHERE (n.nspname::text, c.relname::text) IN (VALUES {', '.join(pairs)})")
        rows = await self._query(sql)
        if len(self._tables) > self.MAX_ENTRIES:
            self._tables.clear()
        for n in names:
            self._tables[n] = None
        for nsp, rel, definition, columns, reltype in rows:
            if nsp is None or rel is None:
                continue
            attrs: list[list[Any]] = json.loads(columns.decode()) if columns else []  # [[name, oid], ...]
            self._tables[f"{nsp.decode()}.{rel.decode()}"] = TableInfo(
                tuple(str(name) for name, _ in attrs), definition.decode() if definition is not None else None,
                int(reltype) if reltype is not None else 0, tuple(int(oid) for _, oid in attrs))

    async def _query(self, sql: str) -> list[list[bytes | None]]:
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                return await self._conn.simple_query(sql)
            except UpstreamError:
                if self._conn is not None:
                    await self._conn.aclose()
                    self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def resolve(self, keys: set[tuple[int, int]]) -> dict[tuple[int, int], tuple[str, str] | None]:
        """``(oid, attnum) -> (schema.table, column)``; raises UpstreamError when the catalog is
        unreachable."""
        missing = {k for k in keys if k not in self._names}
        if missing:
            async with self._lock:
                missing = {k for k in missing if k not in self._names}
                if missing:
                    await self._lookup(missing)
        return {k: self._names.get(k) for k in keys}

    async def describe(self, query: str) -> tuple[FieldDescription, ...]:
        """The columns ``query`` returns (for COPY under a row filter); raises UpstreamError."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = await self._connect()
                    return await self._conn.describe(query)
                except UpstreamError as e:
                    if e.sqlstate != CONNECTION_FAILURE or attempt == 2:
                        raise
                    await self.aclose()
        raise AssertionError("unreachable")

    async def _lookup(self, keys: set[tuple[int, int]]) -> None:
        # Integers only, so building the literal list is safe.
        pairs = ",".join(f"({int(oid)},{int(att)})" for oid, att in sorted(keys))
        sql = ("SELECT c.oid, a.attnum, n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a "
               "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
               f"WHERE (a.attrelid::int8, a.attnum::int8) IN ({pairs})")
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                rows = await self._conn.simple_query(sql)
                break
            except UpstreamError:
                if self._conn is not None:
                    await self._conn.aclose()
                    self._conn = None
                if attempt == 2:
                    raise
        if len(self._names) > self.MAX_ENTRIES:
            self._names.clear()
        for k in keys:
            self._names[k] = None
        for oid, att, nsp, rel, col in rows:
            if oid is None or att is None or nsp is None or rel is None or col is None:
                continue
            self._names[(int(oid), int(att))] = (f"{nsp.decode()}.{rel.decode()}", col.decode())

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None
