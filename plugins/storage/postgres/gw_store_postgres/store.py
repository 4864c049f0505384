"""The PostgreSQL storage backend: one store that several gateways share (see docs/plugins/postgres-store.md).

Design points:

* **psycopg 3, synchronous, in worker threads.**  psycopg's async API needs asyncio; gw runs on trio.  Each
  operation takes a connection from a small pool (``pool_size`` connections, a trio capacity limiter in front)
  and runs in a worker thread via ``trio.to_thread``: the event loop never waits for the network or the disk.
* **Durability.**  Every write is one transaction, committed before the call returns (``append`` returns once
  PostgreSQL confirmed the COMMIT; the audit stage forwards a command only after that).  PostgreSQL's own group
  commit batches concurrent commits of every gateway; the audit chain already hands over one batch per call.
* **Failure.**  A connection that fails is discarded; the next operation connects again.  While the database is
  unreachable every operation raises :class:`gw.errors.StoreError` with a message that says so (commands that
  need the store are refused: fail closed), and service resumes by itself when the database is back.
* **Several gateways.**  Sequence numbers come from an identity column; documents use an optimistic version
  checked in ``UPDATE ... WHERE version = ...``; migrations line up on an advisory lock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from gw.config import Duration
from gw.errors import StoreError
from gw.store import Document, Entry, StorageOptions, Store, VersionConflict, decode_stored
from pydantic import Field, field_validator, model_validator

from .schema import SCHEMA_VERSION, SchemaError, migrate, schema_version

if TYPE_CHECKING:
    import psycopg
    from gw.runtime import Services
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo


def _import_psycopg() -> None:
    """Import psycopg (about 10 MB with the asyncio it pulls in) when a store is built, not when gw loads the
    plugin: a gateway with another storage backend never imports it.  Binds the module's names once."""
    global psycopg, sql, conninfo_to_dict, make_conninfo
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger("gw.store_postgres")

T = TypeVar("T")

#: Rows deleted per transaction by :meth:`PostgresStore.prune` (short transactions while gateways write).
PRUNE_CHUNK = 5000


class PostgresStoreOptions(StorageOptions):
    """``[storage] use = "postgres"``."""

    #: libpq connection string or URI (``host=db.internal dbname=gw user=gw``).  Prefer ``dsn_env`` when it
    #: holds a password.
    dsn: str | None = None
    #: Name of an environment variable that holds the connection string.
    dsn_env: str | None = None
    #: Schema that holds gw's tables (created if missing).
    schema_: str = Field(default="gw", alias="schema")
    #: Connections per gateway process.
    pool_size: int = Field(default=8, ge=1, le=100)
    #: Limit on opening a connection.
    connect_timeout: Duration = timedelta(seconds=5)
    #: Limit on one statement (PostgreSQL's ``statement_timeout``); a stuck store refuses instead of hanging.
    statement_timeout: Duration = timedelta(seconds=10)

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", v):
            raise ValueError(f"schema {v!r}: use lower-case letters, digits and _ (at most 63), e.g. \"gw\"")
        return v

    @model_validator(mode="after")
    def _one_dsn(self) -> PostgresStoreOptions:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("set exactly one of dsn and dsn_env (for example dsn_env = \"GW_STORE_DSN\")")
        for value, key in ((self.connect_timeout, "connect_timeout"), (self.statement_timeout,
                                                                       "statement_timeout")):
            if value < timedelta(seconds=1):
                raise ValueError(f"{key} must be at least 1s")
        return self


class PostgresStore(Store):
    """Streams and documents in PostgreSQL tables (see the module docstring)."""

    name = "postgres"
    Options = PostgresStoreOptions

    def __init__(self, options: PostgresStoreOptions, services: Services) -> None:
        _import_psycopg()
        super().__init__(options, services)
        self.options: PostgresStoreOptions = options
        self.schema = options.schema_
        self._s = sql.Identifier(self.schema)
        self._idle: list[psycopg.Connection] = []
        self._all: set[psycopg.Connection] = set()
        self._slots: trio.CapacityLimiter | None = None
        self._open = False
        self._streams_known: set[str] = set()
        self._conninfo: str | None = None

    # -- connection string ----------------------------------------------------------------------------------
    def _dsn(self) -> str:
        if self.options.dsn is not None:
            return self.options.dsn
        assert self.options.dsn_env is not None
        value = os.environ.get(self.options.dsn_env)
        if not value:
            raise StoreError(f"storage.dsn_env names ${self.options.dsn_env}, which is not set; export the "
                             "store's connection string in it (for example host=db dbname=gw user=gw)")
        return value

    def where(self) -> str:
        """``user@host:port/dbname`` (never the password) for messages and ``gw storage info``."""
        try:
            parts = conninfo_to_dict(self._dsn())
        except (psycopg.ProgrammingError, StoreError):
            return "(invalid connection string)"
        host = parts.get("host") or parts.get("hostaddr") or "localhost"
        return (f"{parts.get('user') or '?'}@{host}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'} "
                f"schema {self.schema}")

    # -- lifetime -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Check the connection string, connect once and create or migrate the schema."""
        if self._open:
            return
        try:
            params = conninfo_to_dict(self._dsn())
        except psycopg.ProgrammingError:
            raise StoreError("storage.dsn is not a valid PostgreSQL connection string (libpq key=value or a "
                             "postgresql:// URI)") from None
        timeout_ms = int(self.options.statement_timeout.total_seconds() * 1000)
        params.setdefault("application_name", "gw")
        params["connect_timeout"] = str(max(1, int(self.options.connect_timeout.total_seconds())))
        params["options"] = (str(params.get("options") or "") + f" -c statement_timeout={timeout_ms}").strip()
        self._conninfo = make_conninfo("", **params)
        self._slots = trio.CapacityLimiter(self.options.pool_size)
        self._streams_known = set()
        self._open = True
        try:
            before, after = await self._run(lambda conn: migrate(conn, self.schema), "preparing the schema")
        except BaseException:
            await self.close()
            raise
        if before != after:
            log.info("%s: schema migrated from version %d to %d", self.where(), before, after)

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        assert self._slots is not None
        for _ in range(int(self._slots.total_tokens)):  # wait for operations in flight
            await self._slots.acquire_on_behalf_of(object())
        connections, self._idle, self._all = list(self._all), [], set()

        def close_all() -> None:
            for conn in connections:
                try:
                    conn.close()
                except psycopg.Error as e:
                    log.debug("closing a connection failed: %s", e)

        await trio.to_thread.run_sync(close_all)

    # -- running operations ---------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        assert self._conninfo is not None
        conn = psycopg.connect(self._conninfo, autocommit=True)
        self._all.add(conn)
        return conn

    async def _run(self, fn: Callable[[psycopg.Connection], T], doing: str) -> T:
        """Run ``fn`` with a pooled connection in a worker thread; errors become :class:`StoreError`."""
        if not self._open or self._slots is None:
            raise StoreError(f"the PostgreSQL store ({self.where()}) is not open (gw is starting or shutting "
                             "down); retry in a moment")
        async with self._slots:
            conn = self._idle.pop() if self._idle else None

            def work() -> T:
                nonlocal conn
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        self._all.discard(conn)
                    conn = self._connect()
                return fn(conn)

            try:
                result = await trio.to_thread.run_sync(work)
            except (VersionConflict, TypeError, ValueError):
                self._release(conn)
                raise
            except SchemaError as e:
                self._discard(conn)
                raise StoreError(f"PostgreSQL store ({self.where()}): {e}") from None
            except psycopg.Error as e:
                self._discard(conn)
                raise self._error(e, doing) from None
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn)
            return result

    def _release(self, conn: psycopg.Connection | None) -> None:
        if conn is None:
            return
        if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: psycopg.Connection | None) -> None:
        if conn is None:
            return
        self._all.discard(conn)
        try:
            conn.close()
        except psycopg.Error:
            pass

    def _error(self, e: psycopg.Error, doing: str) -> StoreError:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, psycopg.OperationalError):
            return StoreError(f"the PostgreSQL store ({self.where()}) is unreachable while {doing}: {detail}; "
                              "commands that need it are refused until it is back")
        if isinstance(e, psycopg.errors.QueryCanceled):
            return StoreError(f"the PostgreSQL store ({self.where()}) did not answer within "
                              f"statement_timeout while {doing}; check the database's load and locks")
        return StoreError(f"the PostgreSQL store ({self.where()}) failed while {doing}: {detail}")

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    # -- streams --------------------------------------------------------------------------------------------
    async def append(self, stream: str, records: Sequence[Mapping[str, Any]],
                     *, index: Sequence[Mapping[str, str]] | None = None,
                     encoded: Sequence[str] | None = None) -> list[int]:
        if not records:
            return []
        if index is not None and len(index) != len(records):
            raise ValueError("index must have one entry per record")
        if encoded is not None and len(encoded) != len(records):
            raise ValueError("encoded must have one entry per record")
        _check_text(stream, "stream name")
        texts = list(encoded) if encoded is not None else [_encode(stream, r) for r in records]
        fields = [_fields(index[i]) if index else [] for i in range(len(records))]
        new_stream = stream not in self._streams_known
        now = time.time()
        fseq: list[int] = []
        fname: list[str] = []
        fvalue: list[str] = []
        for i, pairs in enumerate(fields, 1):
            for f, v in pairs:
                fseq.append(i)
                fname.append(f)
                fvalue.append(v)
        # One statement, one round trip (autocommit: its own transaction).  Numbers are drawn first and handed
        # out in record order (the smallest to the first record), so a batch's order is its records' order.
        insert = self._q(
            "WITH drawn AS (SELECT nextval(pg_get_serial_sequence(%s, 'seq')) AS seq FROM generate_series(1, %s)), "
            "s AS (SELECT seq, row_number() OVER (ORDER BY seq) AS i FROM drawn), "
            "t AS (SELECT s.seq, r.d FROM s JOIN unnest(%s::text[]) WITH ORDINALITY AS r(d, i) ON r.i = s.i), "
            "e AS (INSERT INTO {s}.entries (seq, stream, ts, data) OVERRIDING SYSTEM VALUE "
            "SELECT seq, %s, %s, d FROM t RETURNING seq), "
            "f AS (INSERT INTO {s}.entry_fields (seq, stream, field, value) SELECT s.seq, %s, u.f, u.v FROM s "
            "JOIN unnest(%s::bigint[], %s::text[], %s::text[]) AS u(i, f, v) ON u.i = s.i) "
            "SELECT seq FROM e ORDER BY seq")
        insert_stream = self._q("INSERT INTO {s}.streams (name) VALUES (%s) ON CONFLICT DO NOTHING")
        table = f"{sql.Identifier(self.schema).as_string(None)}.entries"

        def apply(conn: psycopg.Connection) -> list[int]:
            if new_stream:
                conn.execute(insert_stream, (stream,))
            return [int(r[0]) for r in conn.execute(
                insert, (table, len(texts), texts, stream, now, stream, fseq, fname, fvalue)).fetchall()]

        seqs = await self._run(apply, f"appending to stream {stream!r}")
        self._streams_known.add(stream)
        return seqs

    async def scan(self, stream: str, *, where: Mapping[str, str] | None = None, after: int | None = None,
                   before: int | None = None, limit: int | None = None, newest_first: bool = False
                   ) -> list[Entry]:
        params: list[Any] = []
        conditions = (where or {}).items()
        if conditions:
            # The first field drives the lookup through fields_lookup; the others must match too.
            (f0, v0), *rest = list(conditions)
            text = ("SELECT e.seq, e.ts, e.data FROM {s}.entry_fields f JOIN {s}.entries e ON e.seq = f.seq "
                    "WHERE f.stream = %s AND f.field = %s AND f.value = %s")
            params += [stream, f0, str(v0)]
            seq_col = "f.seq"
            for f, v in rest:
                text += (" AND EXISTS (SELECT 1 FROM {s}.entry_fields x WHERE x.seq = f.seq AND x.field = %s "
                         "AND x.value = %s)")
                params += [f, str(v)]
        else:
            text = "SELECT e.seq, e.ts, e.data FROM {s}.entries e WHERE e.stream = %s"
            params.append(stream)
            seq_col = "e.seq"
        if after is not None:
            text += f" AND {seq_col} > %s"
            params.append(after)
        if before is not None:
            text += f" AND {seq_col} < %s"
            params.append(before)
        text += f" ORDER BY {seq_col} {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            text += " LIMIT %s"
            params.append(max(0, limit))
        query = self._q(text)

        def run(conn: psycopg.Connection) -> list[Entry]:
            return [Entry(int(seq), float(ts), decode_stored(f"record {seq} of stream {stream!r}", data))
                    for seq, ts, data in conn.execute(query, params)]

        return await self._run(run, f"reading stream {stream!r}")

    async def streams(self) -> list[str]:
        query = self._q("SELECT name FROM {s}.streams s WHERE EXISTS "
                        "(SELECT 1 FROM {s}.entries e WHERE e.stream = s.name) ORDER BY name")
        return await self._run(lambda conn: [r[0] for r in conn.execute(query)], "listing streams")

    async def prune(self, stream: str, older_than: float) -> int:
        query = self._q("DELETE FROM {s}.entries WHERE seq IN (SELECT seq FROM {s}.entries WHERE stream = %s "
                        "AND ts < %s ORDER BY seq LIMIT %s)")

        def run(conn: psycopg.Connection) -> int:
            return conn.execute(query, (stream, older_than, PRUNE_CHUNK)).rowcount

        total = 0
        while True:
            n = await self._run(run, f"pruning stream {stream!r}")
            total += n
            if n < PRUNE_CHUNK:
                return total

    # -- documents ------------------------------------------------------------------------------------------
    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        _check_text(collection, "collection name")
        _check_text(key, "document key")
        encoded = _encode(f"{collection}/{key}", data)
        doc = _jsonb(encoded)
        updated = time.time()
        create = self._q("INSERT INTO {s}.documents (collection, key, version, data, doc, updated) "
                         "VALUES (%s, %s, 1, %s, %s::jsonb, %s) ON CONFLICT DO NOTHING")
        replace_if = self._q("UPDATE {s}.documents SET version = version + 1, data = %s, doc = %s::jsonb, "
                             "updated = %s WHERE collection = %s AND key = %s AND version = %s RETURNING version")
        upsert = self._q("INSERT INTO {s}.documents (collection, key, version, data, doc, updated) "
                         "VALUES (%s, %s, 1, %s, %s::jsonb, %s) ON CONFLICT (collection, key) DO UPDATE SET "
                         "version = {s}.documents.version + 1, data = excluded.data, doc = excluded.doc, "
                         "updated = excluded.updated RETURNING version")
        current = self._q("SELECT version FROM {s}.documents WHERE collection = %s AND key = %s")

        def conflict(conn: psycopg.Connection) -> VersionConflict:
            row = conn.execute(current, (collection, key)).fetchone()
            have = int(row[0]) if row else 0
            return VersionConflict(f"document {collection}/{key} is at version {have}, not {expect_version}: "
                                   "someone changed it first; read it again and retry")

        def apply(conn: psycopg.Connection) -> int:
            if expect_version is None:
                row = conn.execute(upsert, (collection, key, encoded, doc, updated)).fetchone()
                assert row is not None
                return int(row[0])
            if expect_version == 0:
                if conn.execute(create, (collection, key, encoded, doc, updated)).rowcount == 1:
                    return 1
                raise conflict(conn)
            row = conn.execute(replace_if, (encoded, doc, updated, collection, key, expect_version)).fetchone()
            if row is None:
                raise conflict(conn)
            return int(row[0])

        return await self._run(apply, f"writing document {collection}/{key}")

    async def get(self, collection: str, key: str) -> Document | None:
        query = self._q("SELECT version, data, updated FROM {s}.documents WHERE collection = %s AND key = %s")

        def run(conn: psycopg.Connection) -> Document | None:
            row = conn.execute(query, (collection, key)).fetchone()
            if row is None:
                return None
            return Document(key, int(row[0]), decode_stored(f"document {collection}/{key}", row[1]),
                            float(row[2]))

        return await self._run(run, f"reading document {collection}/{key}")

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        text = "SELECT key, version, data, updated FROM {s}.documents WHERE collection = %s"
        params: list[Any] = [collection]
        wanted: dict[str, Any] = {}
        stand_in = False
        for field, value in (where or {}).items():
            _check_text(field, "document field name")
            encoded = _encode("a query", value)
            wanted[field] = json.loads(encoded)
            stand_in = stand_in or "\\u0000" in encoded
            # containment finds candidates through the GIN index; jsonb equality makes the match exact
            text += " AND doc @> %s::jsonb AND doc -> %s = %s::jsonb"
            params += [_jsonb(_encode("a query", {field: value})), field, _jsonb(encoded)]
        text += " ORDER BY updated DESC, key"
        if limit is not None and not stand_in:
            text += " LIMIT %s"
            params.append(max(0, limit))
        query = self._q(text)

        def run(conn: psycopg.Connection) -> list[Document]:
            out: list[Document] = []
            for key, version, data, updated in conn.execute(query, params):
                doc = decode_stored(f"document {collection}/{key}", data)
                if any(not _same(doc.get(f, _MISSING), v) for f, v in wanted.items()):
                    continue  # a U+0000 stand-in matched: the exact text decides
                out.append(Document(key, int(version), doc, float(updated)))
                if limit is not None and len(out) >= limit:
                    break
            return out

        return await self._run(run, f"querying collection {collection!r}")

    async def delete(self, collection: str, key: str) -> bool:
        query = self._q("DELETE FROM {s}.documents WHERE collection = %s AND key = %s")
        return bool(await self._run(lambda conn: conn.execute(query, (collection, key)).rowcount > 0,
                                    f"deleting document {collection}/{key}"))

    # -- status ---------------------------------------------------------------------------------------------
    async def check_ready(self) -> str | None:
        """Why the store cannot serve gw now (``/readyz``), or None: one round trip to the database."""
        try:
            await self._run(lambda conn: conn.execute("SELECT 1").fetchone(), "checking readiness")
        except StoreError as e:
            return str(e)
        return None

    async def describe(self) -> dict[str, Any]:
        """Where the store is (never the password), schema version and sizes for ``gw storage info``."""
        size = self._q("SELECT pg_total_relation_size(format('%%I.entries', %s::text)::regclass) "
                       "+ pg_total_relation_size(format('%%I.entry_fields', %s::text)::regclass) "
                       "+ pg_total_relation_size(format('%%I.documents', %s::text)::regclass)")
        count = self._q("SELECT count(*) FROM {s}.documents")

        def run(conn: psycopg.Connection) -> dict[str, Any]:
            row = conn.execute(size, (self.schema, self.schema, self.schema)).fetchone()
            docs = conn.execute(count).fetchone()
            return {
                "database": self.where(),
                "server_version": conn.info.server_version,
                "schema_version": schema_version(conn, self.schema),
                "schema_version_supported": SCHEMA_VERSION,
                "size_bytes": int(row[0]) if row else None,
                "documents": int(docs[0]) if docs else 0,
                "pool_size": self.options.pool_size,
            }

        return await self._run(run, "describing the store")


_MISSING = object()

#: Built once (see gw-sqlite): ASCII JSON, so any string survives, and NaN is refused.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _encode(what: str, record: Any) -> str:
    try:
        return _ENCODER.encode(record)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store a record in {what!r}: it is not plain JSON ({e})") from None


def _jsonb(text: str) -> str:
    """The jsonb copy of JSON text: jsonb cannot hold U+0000, so it becomes U+FFFD there."""
    return text.replace("\\u0000", "\\ufffd")


def _same(have: Any, want: Any) -> bool:
    if have is _MISSING:
        return False
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    return bool(have == want)


def _fields(index: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = [(f, v if isinstance(v, str) else str(v)) for f, v in index.items() if v is not None]
    for f, v in out:
        _check_text(f, "index field name")
        _check_text(v, f"index field {f!r}")
    return out


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"the {what} {value!r} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the {what} {value!r} is not valid UTF-8 text") from None
