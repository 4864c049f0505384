"""Table columns from the upstream's catalog, for attributing a result column gw cannot trace.

A result column with no origin on the wire (an expression) and no SQL lineage (the statement is beyond what
gw_sqlanalysis can trace) could derive from any column of any table the statement reads.  gw attributes it to
all of them, so a mask rule on any of them applies (fail closed): ``select f(ssn) from people`` whose
lineage gw cannot follow is masked as if it were ``ssn``.  Lookups run on one connection of gw's own per
listener (the session's connection is busy relaying the result) and are cached per table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from .errors import UpstreamError
from .upstream import UpstreamConnection

log = logging.getLogger("gw.mysql.catalog")


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "''") + "'"


class Catalog:
    """``schema.table`` -> its column names, from ``information_schema.COLUMNS``."""

    MAX_ENTRIES = 10_000

    def __init__(self, connect: Callable[[], Awaitable[UpstreamConnection]]) -> None:
        self._connect = connect
        self._conn: UpstreamConnection | None = None
        self._lock = trio.Lock()
        self._columns: dict[str, tuple[str, ...]] = {}

    async def columns(self, tables: Sequence[str], database: str | None) -> dict[str, tuple[str, ...]]:
        """Columns of each table (qualified with ``database`` when bare); raises UpstreamError when the catalog
        cannot be reached (callers fail closed)."""
        wanted = {}
        for t in tables:
            schema, _, name = t.rpartition(".")
            schema = schema or (database or "")
            if name and name != "*" and schema:
                wanted[f"{schema}.{name}"] = (schema, name)
        missing = [k for k in wanted if k not in self._columns]
        if missing:
            async with self._lock:
                missing = [k for k in missing if k not in self._columns]
                if missing:
                    await self._lookup({k: wanted[k] for k in missing})
        return {k: self._columns.get(k, ()) for k in wanted}

    async def _lookup(self, tables: dict[str, tuple[str, str]]) -> None:
        where = " OR ".join(f"(TABLE_SCHEMA = {_quote(s)} AND TABLE_NAME = {_quote(t)})" for s, t in tables.values())
        sql = f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE {where}"
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                result = await self._conn.query(sql)
                break
            except UpstreamError:
                await self.aclose()
                if attempt == 2:
                    raise
        if len(self._columns) > self.MAX_ENTRIES:
            self._columns.clear()
        found: dict[str, list[str]] = {k: [] for k in tables}
        for schema, table, column in result.rows:
            key = f"{(schema or b'').decode()}.{(table or b'').decode()}"
            if key in found and column is not None:
                found[key].append(column.decode("utf-8", "surrogateescape"))
        for key, cols in found.items():
            self._columns[key] = tuple(cols)

    def forget(self) -> None:
        """Drop cached definitions (after DDL on a session)."""
        self._columns.clear()

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.quit()
            await conn.aclose()
