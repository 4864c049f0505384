"""The database schema and its migrations.

The schema version lives in SQLite's ``PRAGMA user_version`` (part of the database header, so it changes in
the same transaction as the tables).  Each :class:`Migration` moves the schema from ``version - 1`` to
``version``; :func:`migrate` applies the missing ones in order, each in its own ``BEGIN IMMEDIATE``
transaction, so a crash mid-way leaves the database at the last completed version and the next start resumes.

A database written by a newer gw-sqlite (a higher version than :data:`SCHEMA_VERSION`) is refused rather than
guessed at: downgrading the plugin must not silently corrupt data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

#: ``PRAGMA application_id`` of gw databases ("gw" in ASCII), so a path pointing at another program's SQLite file
#: is refused instead of having gw's tables added to it.
APPLICATION_ID = 0x6777


class SchemaError(Exception):
    """The file is not a gw database, or one written by a newer gw-sqlite."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Sequence[str]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "append-only streams with indexed fields; versioned documents", (
        # ``seq`` is AUTOINCREMENT so an id is never reused, even after the newest record is deleted: an audit
        # record's id names one record for the life of the database.
        """CREATE TABLE entries (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               stream TEXT NOT NULL,
               ts REAL NOT NULL,
               data TEXT NOT NULL)""",
        "CREATE INDEX entries_by_stream ON entries (stream, seq)",
        # One row per indexed string field of an entry; ``scan(where=...)`` walks fields_lookup in seq order.
        """CREATE TABLE entry_fields (
               seq INTEGER NOT NULL,
               field TEXT NOT NULL,
               value TEXT NOT NULL,
               stream TEXT NOT NULL,
               PRIMARY KEY (seq, field)) WITHOUT ROWID""",
        "CREATE INDEX fields_lookup ON entry_fields (stream, field, value, seq)",
        """CREATE TABLE documents (
               collection TEXT NOT NULL,
               key TEXT NOT NULL,
               version INTEGER NOT NULL,
               data TEXT NOT NULL,
               updated REAL NOT NULL,
               PRIMARY KEY (collection, key)) WITHOUT ROWID""",
    )),
    Migration(2, "stream catalogue (cheap streams()); documents ordered by update time", (
        "CREATE TABLE streams (name TEXT PRIMARY KEY) WITHOUT ROWID",
        "INSERT INTO streams (name) SELECT DISTINCT stream FROM entries",
        "CREATE INDEX documents_by_update ON documents (collection, updated)",
    )),
    Migration(3, "index rows written in bulk after their records (entries.fields, index_state)", (
        # An entry's indexed fields (a JSON object) travel with it, so its commit touches only the end of
        # ``entries``; ``entry_fields`` catches up in bulk, and ``index_state.through`` is the newest seq whose
        # fields are in it.  Scans read the rows past ``through`` from ``fields`` directly.
        "ALTER TABLE entries ADD COLUMN fields TEXT",
        "CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 1), through INTEGER NOT NULL)",
        "INSERT INTO index_state (id, through) SELECT 1, coalesce(max(seq), 0) FROM entries",
    )),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the database to ``target`` (default: the newest schema); returns ``(from, to)`` versions.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each step opens its own transaction.  Two
    processes starting at once are safe: the version is re-read inside the write transaction.
    """
    start = schema_version(conn)
    _check_ownership(conn, start)
    if start > SCHEMA_VERSION:
        raise SchemaError(f"the database has schema version {start}, written by a newer gw-sqlite (this one "
                          f"knows up to {SCHEMA_VERSION}); upgrade gw-sqlite or point storage.path at "
                          "another file")
    for step in MIGRATIONS:
        if step.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= step.version:  # another process got here first
                conn.execute("ROLLBACK")
                continue
            for statement in step.statements:
                conn.execute(statement)
            if step.version == 1:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {step.version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return start, schema_version(conn)


def _check_ownership(conn: sqlite3.Connection, version: int) -> None:
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if version == 0:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        if tables or app_id not in (0, APPLICATION_ID):
            raise SchemaError(f"the file already holds tables of another program ({', '.join(tables[:5])}); "
                              "point storage.path at a new file")
    elif app_id != APPLICATION_ID:
        raise SchemaError("the file is an SQLite database of another program (application_id "
                          f"{app_id:#x}); point storage.path at a new file")
