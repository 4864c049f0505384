"""The tables in the configured schema and their versioned migrations.

The version lives in ``<schema>.gw_schema`` (one row).  :func:`migrate` runs in one transaction that first takes
a transaction-level advisory lock derived from the schema name, so gateways starting at once line up: the first
creates or upgrades the schema, the others find it done.  PostgreSQL's DDL is transactional, so a crash mid-way
leaves the previous version intact.  A schema written by a newer gw-store-postgres is refused, not guessed at.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is imported when a store is used (see gw_store_postgres.store), not at start
    import psycopg


class SchemaError(Exception):
    """The schema belongs to a newer gw-store-postgres, or to another program."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Sequence[str]


# ``{s}`` is replaced by the quoted schema name.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "append-only streams with indexed fields; versioned documents; stream catalogue", (
        # An identity never hands out a number twice, even after the newest record is pruned: an audit
        # record's id names one record for the life of the store.  ``data`` is the JSON text gw wrote
        # (exact, whatever it contains); ``ts`` is Unix time.
        """CREATE TABLE {s}.entries (
               seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               stream text NOT NULL,
               ts double precision NOT NULL,
               data text NOT NULL)""",
        "CREATE INDEX entries_by_stream ON {s}.entries (stream, seq)",
        "CREATE INDEX entries_by_time ON {s}.entries (stream, ts)",
        """CREATE TABLE {s}.entry_fields (
               seq bigint NOT NULL REFERENCES {s}.entries (seq) ON DELETE CASCADE,
               stream text NOT NULL,
               field text NOT NULL,
               value text NOT NULL,
               PRIMARY KEY (seq, field))""",
        "CREATE INDEX fields_lookup ON {s}.entry_fields (stream, field, value, seq)",
        "CREATE TABLE {s}.streams (name text PRIMARY KEY)",
        # ``data`` is the exact JSON text; ``doc`` a jsonb copy for queries (jsonb cannot hold U+0000, so the
        # copy has U+FFFD there and every match is confirmed against ``data``).
        """CREATE TABLE {s}.documents (
               collection text NOT NULL,
               key text NOT NULL,
               version bigint NOT NULL,
               data text NOT NULL,
               doc jsonb NOT NULL,
               updated double precision NOT NULL,
               PRIMARY KEY (collection, key))""",
        "CREATE INDEX documents_by_update ON {s}.documents (collection, updated DESC)",
        "CREATE INDEX documents_by_content ON {s}.documents USING gin (doc jsonb_path_ops)",
    )),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def lock_key(schema: str) -> int:
    """The advisory lock that serialises migrations of one schema (a signed 64-bit number)."""
    return zlib.crc32(f"gw-store-postgres:{schema}".encode()) - 2**31


def schema_version(conn: psycopg.Connection, schema: str) -> int:
    from psycopg import sql

    row = conn.execute("SELECT to_regclass(%s)", (f"{sql.Identifier(schema).as_string(conn)}.gw_schema",)
                       ).fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.execute(sql.SQL("SELECT version FROM {}.gw_schema").format(sql.Identifier(schema))).fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection, schema: str, *, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring ``schema`` to ``target`` (default: the newest); returns ``(from, to)``.  ``conn`` is in
    autocommit mode; the work happens in one transaction of its own."""
    from psycopg import sql

    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        start = schema_version(conn, schema)
        if start == 0:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1 LIMIT 5", (schema,))]
            if tables:
                raise SchemaError(f"schema {schema!r} already holds tables of another program "
                                  f"({', '.join(tables)}); set storage.schema to a schema of gw's own")
            conn.execute(sql.SQL("CREATE TABLE {}.gw_schema (version integer NOT NULL, "
                                 "updated timestamptz NOT NULL DEFAULT now())").format(ident))
            conn.execute(sql.SQL("INSERT INTO {}.gw_schema (version) VALUES (0)").format(ident))
        if start > SCHEMA_VERSION:
            raise SchemaError(f"schema {schema!r} has version {start}, written by a newer gw-store-postgres "
                              f"(this one knows up to {SCHEMA_VERSION}); upgrade gw-store-postgres on every "
                              "gateway")
        version = start
        for step in MIGRATIONS:
            if step.version <= version or step.version > target:
                continue
            for statement in step.statements:
                conn.execute(sql.SQL(statement.replace("{s}", "{schema}")).format(schema=ident))
            version = step.version
        if version != start:
            conn.execute(sql.SQL("UPDATE {}.gw_schema SET version = %s, updated = now()").format(ident),
                         (version,))
    return start, version
