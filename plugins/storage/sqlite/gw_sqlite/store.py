"""The embedded SQLite storage backend.

Design points (see docs/plugins/sqlite.md):

* **WAL mode.** Readers (``gw audit list`` in another process) never block ``gw serve``'s writer and see every
  committed record.
* **Durability.** ``synchronous = "full"`` (the default) fsyncs the WAL at every commit, so a record is on disk
  when :meth:`SqliteStore.append` returns -- the audit stage relies on that before a command is forwarded.
  ``"normal"`` skips that fsync (a commit survives a gw crash but may be lost on power failure or an OS crash).
* **Pipelined group commit.** All writes of this process go through one writer connection, owned by one
  long-lived writer thread fed by a queue.  The thread takes everything queued as one batch, applies it in one
  ``BEGIN IMMEDIATE ... COMMIT`` (one fsync; a batch of one single-statement write, such as an append, is that
  statement alone, which SQLite commits as it runs), hands the results back to the event loop in one call, and
  takes the next batch, which filled while the previous one was being synced.  Each call returns once the
  transaction holding its writes has committed.
* **Nothing that waits for the disk on the trio thread.** Commits, their fsync, waiting for a write lock
  another process holds, and WAL checkpoints happen in the writer thread; reads use a small pool of read-only
  connections in worker threads, bounded by a capacity limiter.
* **Index rows in bulk.** An entry's indexed fields are stored with it (a JSON column); the index table
  ``entry_fields`` catches up every :data:`INDEX_EVERY` records, inside the transaction of a batch.  A commit
  then touches the end of one table instead of a page per indexed value, and :meth:`SqliteStore.scan` reads the
  few entries past the index from their JSON column.
* **A bounded WAL.** The writer thread checkpoints between batches (see :data:`CHECKPOINT_EVERY`), so the
  ``-wal`` file is reused from its start and stays below :data:`WAL_LIMIT` while gw writes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import trio
from gw.config import Duration
from gw.errors import StoreError
from gw.store import Document, Entry, StorageOptions, Store, VersionConflict, decode_stored
from pydantic import Field

from .schema import SCHEMA_VERSION, SchemaError, migrate, schema_version

if TYPE_CHECKING:
    from gw.runtime import Services

log = logging.getLogger("gw.sqlite")

T = TypeVar("T")

#: Rows deleted per transaction by :meth:`SqliteStore.prune`, so a large prune (possibly from the CLI, in
#: another process) never holds the write lock long enough to make ``gw serve``'s writes time out.
PRUNE_CHUNK = 2000

#: Commits between two WAL checkpoints.  The writer thread checkpoints between batches instead of letting SQLite
#: do it inside a commit (its default, every 1000 WAL pages), where the waiters of that commit would wait for it.
CHECKPOINT_EVERY = 64

#: Entries whose index rows are written together: ``entry_fields`` catches up once this many have no rows yet.
#: Scans filter the entries past the index by their JSON ``fields`` column, so this also bounds that work.
INDEX_EVERY = 512

#: The ``-wal`` file's bound (SQLite's ``journal_size_limit``: the file is cut back to it when the WAL starts
#: over).  Past half of it (readers kept passive checkpoints from finishing) the writer truncates the WAL as
#: soon as no reader uses it.
WAL_LIMIT = 64 * 1024 * 1024


class SqliteOptions(StorageOptions):
    """``[storage] use = "sqlite"``."""

    #: Database file; relative paths are relative to the pipeline file.  Default: ``<data_dir>/gw.db``.
    path: str | None = None
    #: How long a write waits for a lock held by another process before failing.
    busy_timeout: Duration = timedelta(seconds=5)
    #: ``full``: every commit is fsynced (durable across power loss).  ``normal``: durable across a gw crash
    #: only; faster on slow disks.
    synchronous: Literal["full", "normal"] = "full"
    #: Read connections used concurrently (CLI queries, stages reading documents).
    readers: int = Field(default=4, ge=1, le=64)


class _Write:
    """One write waiting for the next transaction; ``apply`` runs in the writer thread.  ``single``: ``apply``
    runs one statement, which SQLite makes a transaction of its own when it is alone in its batch; ``entries``:
    how many entries it appends (they count towards the next index catch-up)."""

    __slots__ = ("apply", "done", "entries", "error", "result", "single")

    def __init__(self, apply: Callable[[sqlite3.Connection], Any], *, single: bool = False,
                 entries: int = 0) -> None:
        self.apply = apply
        self.single = single
        self.entries = entries
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = trio.Event()


#: Put on the writer thread's queue by :meth:`SqliteStore.close`: commit what came before, then stop.
_STOP = _Write(lambda conn: None)


def _settle(batch: list[_Write]) -> None:
    """On the event loop: wake every waiter of a committed (or failed) batch."""
    for op in batch:
        op.done.set()


class SqliteStore(Store):
    """Streams and documents in one SQLite file (see the module docstring)."""

    name = "sqlite"
    Options = SqliteOptions

    def __init__(self, options: SqliteOptions, services: Services) -> None:
        super().__init__(options, services)
        self.options: SqliteOptions = options
        self.path: Path = (services.resolve_path(options.path) if options.path
                           else services.data_dir / "gw.db")
        self._timeout = options.busy_timeout.total_seconds()
        self._writer: sqlite3.Connection | None = None
        self._connections: list[sqlite3.Connection] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._wal_path = Path(f"{self.path}-wal")
        self._queue: SimpleQueue[_Write] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader_slots: trio.CapacityLimiter | None = None
        self._closed = False
        #: Transactions committed by this process, and the writes they carried (observability and tests:
        #: ``writes / transactions`` is the group-commit batching factor).
        self.transactions = 0
        #: Streams this process knows to be in the ``streams`` catalogue (saves an insert per append).
        self._streams_known: set[str] = set()
        self.writes = 0
        #: Batches the writer thread took from its queue (tests wait for it: "the writer is on this batch").
        self.batches_taken = 0
        #: WAL checkpoints run by the writer thread.
        self.checkpoints = 0
        self._commits_since_checkpoint = 0
        #: Entries written since ``entry_fields`` last caught up (writer thread only; an estimate).
        self._unindexed = 0

    # -- lifetime -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file (and its directory) if needed, switch to WAL and migrate the schema."""
        if self._writer is not None:
            return
        self._closed = False
        self._queue = SimpleQueue()
        self._streams_known = set()
        self._commits_since_checkpoint = 0
        self._unindexed = 0
        self._reader_slots = trio.CapacityLimiter(self.options.readers)
        self._writer = await trio.to_thread.run_sync(self._open_writer)
        self._thread = threading.Thread(target=self._run_writer, name=f"gw-sqlite-writer {self.path.name}",
                                        args=(self._writer, trio.lowlevel.current_trio_token()), daemon=True)
        self._thread.start()

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the directory {self.path.parent} for the gw database "
                             f"({e.strerror}); create it or set storage.path") from None
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect(reader=False)
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (journal mode is {mode!r}); put the "
                                 "database on a local file system")
            conn.execute(f"PRAGMA synchronous = {self.options.synchronous.upper()}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # see CHECKPOINT_EVERY
            before, after = migrate(conn)
            if before != after:
                log.info("%s: schema migrated from version %d to %d", self.path, before, after)
            self._unindexed = conn.execute(
                "SELECT count(*) FROM entries WHERE seq > (SELECT through FROM index_state)").fetchone()[0]
            return conn
        except SchemaError as e:
            self._discard(conn)
            raise StoreError(f"{self.path}: {e}") from None
        except sqlite3.Error as e:
            self._discard(conn)
            raise self._error(e, "opening the database") from None
        except BaseException:
            self._discard(conn)
            raise

    def _discard(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()
            self._connections.remove(conn)

    def _connect(self, *, reader: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self._timeout, isolation_level=None,
                               check_same_thread=False)
        self._connections.append(conn)
        if reader:
            conn.execute("PRAGMA query_only = 1")
        return conn

    async def close(self) -> None:
        """Commit writes still queued, then close every connection (the last close checkpoints the WAL)."""
        if self._writer is None or self._closed:
            return
        self._closed = True
        assert self._reader_slots is not None and self._thread is not None
        self._queue.put(_STOP)
        # Shielded: the writes queued before _STOP are committed and their waiters told, whatever happens here.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join)
            await trio.lowlevel.checkpoint()  # let the last batch's waiters be woken before the store is gone
        self._thread = None
        for _ in range(int(self._reader_slots.total_tokens)):
            await self._reader_slots.acquire_on_behalf_of(object())
        connections, self._connections, self._idle_readers = self._connections, [], []
        self._writer = None

        def close_all() -> None:
            for conn in connections:
                try:
                    conn.close()
                except sqlite3.Error as e:
                    log.warning("%s: closing a connection failed: %s", self.path, e)

        await trio.to_thread.run_sync(close_all)

    def _require_open(self) -> None:
        if self._writer is None or self._closed:
            raise StoreError(f"the SQLite store {self.path} is not open (gw is starting or shutting down); "
                             "retry in a moment")

    # -- errors ---------------------------------------------------------------------------------------------
    def _error(self, e: sqlite3.Error, doing: str) -> StoreError:
        """Turn an SQLite error into a message that says what happened to which file and what to do."""
        code = getattr(e, "sqlite_errorname", "") or ""
        where = str(self.path)
        if code.startswith("SQLITE_FULL"):
            msg = f"{where}: the disk is full (or the database hit its size limit) while {doing}; free space"
        elif code.startswith("SQLITE_READONLY"):
            msg = (f"{where} is read-only ({e}) while {doing}; gw needs write access to the file and its "
                   "directory (for the -wal and -shm files)")
        elif code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            msg = (f"{where} stayed locked by another process for more than {self._timeout:g}s while {doing}; "
                   "look for a stuck process holding a write transaction, or raise storage.busy_timeout")
        elif code.startswith("SQLITE_CANTOPEN"):
            msg = f"cannot open {where} while {doing}; check that its directory exists and is writable"
        elif code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            msg = (f"{where} is not a valid SQLite database ({e}); restore it from a backup or point "
                   "storage.path at another file")
        elif code.startswith("SQLITE_IOERR"):
            msg = f"{where}: I/O error while {doing} ({e}); check the disk and the kernel log"
        else:
            msg = f"{where}: SQLite error while {doing}: {e}"
        return StoreError(msg)

    # -- the write path (a writer thread with pipelined group commit) ---------------------------------------
    async def _write(self, apply: Callable[[sqlite3.Connection], T], *, single: bool = False,
                     entries: int = 0) -> T:
        """Queue ``apply`` for the writer thread and return its result once the transaction holding it committed.

        The writer thread takes everything queued as one batch: one ``BEGIN IMMEDIATE ... COMMIT`` (one fsync)
        for all of it.  While it commits, new writes queue up and become the next batch, so the batch grows
        with the number of writers instead of each write waiting for a commit cycle of its own.
        """
        self._require_open()
        op = _Write(apply, single=single, entries=entries)
        self._queue.put(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[no-any-return]

    def _run_writer(self, conn: sqlite3.Connection, token: trio.lowlevel.TrioToken) -> None:
        """The writer thread: batches until :data:`_STOP`, each settled on the event loop in one call."""
        queue = self._queue
        stopping = False
        while not stopping:
            first = queue.get()
            if first is _STOP:
                break
            batch = [first]
            while True:  # everything that queued meanwhile joins this transaction
                try:
                    op = queue.get_nowait()
                except Empty:
                    break
                if op is _STOP:
                    stopping = True
                    break
                batch.append(op)
            self.batches_taken += 1
            self._commit(conn, batch)
            # Decided before the event loop is woken, so that, in the common case, this thread only goes back
            # to the queue after the wake-up instead of taking the interpreter lock back from the loop.
            checkpoint = self._checkpoint_due()
            try:
                token.run_sync_soon(_settle, batch)
            except trio.RunFinishedError:  # the event loop is gone: nobody is waiting any more
                pass
            if checkpoint is not None:
                self._checkpoint(conn, checkpoint)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        """One transaction for the batch; waits up to busy_timeout for a lock another process holds."""
        indexing = self._unindexed + sum(op.entries for op in batch) >= INDEX_EVERY
        try:
            if len(batch) == 1 and batch[0].single and not indexing:
                # One statement (an audit batch's INSERT, the usual case): SQLite commits it as it runs, which
                # spares the separate BEGIN and COMMIT statements and the thread switches around each of them.
                batch[0].result = batch[0].apply(conn)
            else:
                conn.execute("BEGIN IMMEDIATE")
                for op in batch:
                    try:
                        op.result = op.apply(conn)
                    except VersionConflict as e:  # raised before that write changed anything
                        op.error = e
                if indexing:
                    _catch_up_index(conn)
                conn.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001 -- in this thread nobody is above us: every waiter must learn it
            self._fail(conn, batch, e)
            return
        self.transactions += 1
        self.writes += len(batch)
        if indexing:
            self._unindexed = 0

    def _checkpoint_due(self) -> Literal["passive", "truncate"] | None:
        """After a commit: whether to checkpoint now to keep the WAL bounded (see :data:`CHECKPOINT_EVERY` and
        :data:`WAL_LIMIT`)."""
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= 4:
            try:
                wal_size = os.stat(self._wal_path).st_size
            except OSError:
                wal_size = 0
            if wal_size >= WAL_LIMIT // 2:
                # Readers kept the passive checkpoints from finishing and the file grew: copy everything and
                # cut the file to zero as soon as no reader uses it (without waiting for them).
                return "truncate"
        return "passive" if self._commits_since_checkpoint >= CHECKPOINT_EVERY else None

    def _checkpoint(self, conn: sqlite3.Connection, mode: Literal["passive", "truncate"]) -> None:
        """Checkpoint the WAL between two batches, on the writer's connection.

        No write of this process is in flight, so a passive checkpoint copies the whole WAL (unless a reader
        still uses old pages) and the next commit starts the WAL over from its beginning.  Commits meanwhile
        queue up for the next batch; the waiters of the batch just committed already have their answer."""
        try:
            if mode == "truncate":
                conn.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            else:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:
            log.warning("%s: WAL checkpoint failed (%s); the -wal file grows until one succeeds", self.path, e)
        self._commits_since_checkpoint = 0
        self.checkpoints += 1

    def _fail(self, conn: sqlite3.Connection, batch: list[_Write], e: BaseException) -> None:
        """Roll back and settle every write of the batch with the failure (whatever failed, all must learn it)."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        self._streams_known.clear()  # a catalogue insert of this batch may have been rolled back
        failure: BaseException = self._error(e, "writing") if isinstance(e, sqlite3.Error) else e
        for op in batch:
            if not isinstance(op.error, VersionConflict):
                op.error = failure
            op.result = None

    # -- the read path --------------------------------------------------------------------------------------
    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        self._require_open()
        return await trio.to_thread.run_sync(self._run_read, query, limiter=self._reader_slots)

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._idle_readers.pop() if self._idle_readers else self._connect(reader=True)
        except sqlite3.Error as e:
            raise self._error(e, "opening a read connection") from None
        try:
            return query(conn)
        except sqlite3.Error as e:
            raise self._error(e, "reading") from None
        finally:
            self._idle_readers.append(conn)

    # -- streams --------------------------------------------------------------------------------------------
    async def append(self, stream: str, records: Sequence[Mapping[str, Any]],
                     *, index: Sequence[Mapping[str, str]] | None = None,
                     encoded: Sequence[str] | None = None) -> list[int]:
        if not records:
            return []
        if index is not None and len(index) != len(records):
            raise ValueError(f"append to {stream!r}: {len(records)} records but {len(index)} index entries")
        if encoded is not None and len(encoded) != len(records):
            raise ValueError(f"append to {stream!r}: {len(records)} records but {len(encoded)} encodings")
        _check_text(stream, "stream name")
        ts = time.time()
        # Encode here, in the caller's task: a record that cannot be stored fails its own call, never the batch.
        # The caller's own encoding is stored as is when it is ASCII text (nothing in it can fail the insert).
        texts = [text if encoded is not None and (text := encoded[i]).isascii() else _encode(stream, r)
                 for i, r in enumerate(records)]
        fields = [_ENCODER.encode(dict(_fields(i))) for i in index] if index is not None else [None] * len(texts)
        # One multi-row INSERT per chunk: one statement step for the whole batch, and its lastrowid is the id of
        # its last row (executemany leaves lastrowid unset and needs a query of its own).
        chunks = []
        for start in range(0, len(texts), _ROWS_PER_INSERT):
            chunk = range(start, min(start + _ROWS_PER_INSERT, len(texts)))
            chunks.append((_insert_rows(len(chunk)), [v for i in chunk for v in (stream, ts, texts[i], fields[i])]))
        count = len(texts)
        known = self._streams_known
        # One statement when the stream is catalogued and the rows fit one INSERT (see _Write.single).
        single = stream in known and len(chunks) == 1

        def apply(conn: sqlite3.Connection) -> list[int]:
            if stream not in known:
                conn.execute("INSERT OR IGNORE INTO streams (name) VALUES (?)", (stream,))
                known.add(stream)  # forgotten again if this transaction fails (see _fail)
            for sql, params in chunks:
                last = conn.execute(sql, params).lastrowid
            assert last is not None
            self._unindexed += count
            # AUTOINCREMENT under the write lock: this call's rows got consecutive ids ending at ``last``.
            return list(range(last - count + 1, last + 1))

        return await self._write(apply, single=single, entries=count)

    async def scan(self, stream: str, *, where: Mapping[str, str] | None = None, after: int | None = None,
                   before: int | None = None, limit: int | None = None, newest_first: bool = False
                   ) -> list[Entry]:
        order = " ORDER BY e.seq DESC" if newest_first else " ORDER BY e.seq ASC"
        bounds, bound_params = "", []
        if after is not None:
            bounds += " AND e.seq > ?"
            bound_params.append(after)
        if before is not None:
            bounds += " AND e.seq < ?"
            bound_params.append(before)

        def rows(conn: sqlite3.Connection, sql: str, params: list[Any], room: int | None) -> list[Entry]:
            if room is not None:
                sql += " LIMIT ?"
                params = [*params, max(0, room)]
            return [Entry(seq, ts, _decode(f"record {seq} of stream {stream!r}", data))
                    for seq, ts, data in conn.execute(sql, params)]

        if not where:
            def scan(conn: sqlite3.Connection) -> list[Entry]:
                sql = "SELECT e.seq, e.ts, e.data FROM entries e WHERE e.stream = ?" + bounds + order
                return rows(conn, sql, [stream, *bound_params], limit)

            return await self._read(scan)

        # Entries up to index_state.through: driven by the index of the first field (rows come in seq order from
        # it, so ORDER BY ... LIMIT stops early); every other field is a primary-key lookup on (seq, field).
        pairs = sorted(_fields(where))
        (first_field, first_value), *others = pairs
        indexed = "SELECT e.seq, e.ts, e.data FROM entry_fields f0 JOIN entries e ON e.seq = f0.seq"
        indexed_params: list[Any] = []
        for i, (f, v) in enumerate(others, 1):
            indexed += f" JOIN entry_fields f{i} ON f{i}.seq = f0.seq AND f{i}.field = ? AND f{i}.value = ?"
            indexed_params += [f, v]
        indexed += " WHERE f0.stream = ? AND f0.field = ? AND f0.value = ? AND f0.seq <= ?"
        indexed += bounds.replace("e.seq", "f0.seq") + order.replace("e.seq", "f0.seq")
        # The entries past it (about INDEX_EVERY at most): matched on their own ``fields``.
        tail = "SELECT e.seq, e.ts, e.data FROM entries e WHERE e.stream = ? AND e.seq > ?"
        tail_params: list[Any] = []
        for f, v in pairs:
            tail += " AND EXISTS (SELECT 1 FROM json_each(e.fields) j WHERE j.key = ? AND j.value = ?)"
            tail_params += [f, v]
        tail += bounds + order

        def query(conn: sqlite3.Connection) -> list[Entry]:
            # Two statements, one snapshot: the index cannot catch up between them.
            conn.execute("BEGIN")
            try:
                (through,) = conn.execute("SELECT through FROM index_state").fetchone()
                first_sql, first_params, then_sql, then_params = (
                    indexed, [*indexed_params, stream, first_field, first_value, through, *bound_params],
                    tail, [stream, through, *tail_params, *bound_params])
                if newest_first:  # the tail holds the newest entries
                    first_sql, first_params, then_sql, then_params = then_sql, then_params, first_sql, first_params
                found = rows(conn, first_sql, first_params, limit)
                if limit is None or len(found) < limit:
                    found += rows(conn, then_sql, then_params, None if limit is None else limit - len(found))
                return found
            finally:
                conn.execute("COMMIT")

        return await self._read(query)

    async def streams(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                "SELECT name FROM streams s WHERE EXISTS (SELECT 1 FROM entries e WHERE e.stream = s.name) "
                "ORDER BY name")]

        return await self._read(query)

    async def prune(self, stream: str, older_than: float) -> int:
        """Delete in chunks of :data:`PRUNE_CHUNK` rows per transaction (short write locks)."""

        def apply(conn: sqlite3.Connection) -> int:
            doomed = [r[0] for r in conn.execute(
                "SELECT seq FROM entries WHERE stream = ? AND ts < ? ORDER BY seq LIMIT ?",
                (stream, older_than, PRUNE_CHUNK))]
            if doomed:
                marks = ",".join("?" * len(doomed))
                conn.execute(f"DELETE FROM entry_fields WHERE seq IN ({marks})", doomed)
                conn.execute(f"DELETE FROM entries WHERE seq IN ({marks})", doomed)
            return len(doomed)

        total = 0
        while True:
            n = await self._write(apply)
            total += n
            if n < PRUNE_CHUNK:
                return total

    # -- documents ------------------------------------------------------------------------------------------
    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        _check_text(collection, "collection name")
        _check_text(key, "document key")
        encoded = _encode(f"{collection}/{key}", data)
        updated = time.time()

        def apply(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version FROM documents WHERE collection = ? AND key = ?",
                               (collection, key)).fetchone()
            current = int(row[0]) if row else 0
            if expect_version is not None and current != expect_version:
                raise VersionConflict(f"document {collection}/{key} is at version {current}, not "
                                      f"{expect_version}: someone changed it first; read it again and retry")
            conn.execute(
                "INSERT INTO documents (collection, key, version, data, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (collection, key) DO UPDATE SET version = excluded.version, data = excluded.data, "
                "updated = excluded.updated", (collection, key, current + 1, encoded, updated))
            return current + 1

        return await self._write(apply)

    async def get(self, collection: str, key: str) -> Document | None:
        def query(conn: sqlite3.Connection) -> Document | None:
            row = conn.execute("SELECT version, data, updated FROM documents WHERE collection = ? AND key = ?",
                               (collection, key)).fetchone()
            return Document(key, row[0], _decode(f"document {collection}/{key}", row[1]), row[2]) if row else None

        return await self._read(query)

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        sql = "SELECT key, version, data, updated FROM documents WHERE collection = ?"
        params: list[Any] = [collection]
        nested: dict[str, Any] = {}
        for field, value in (where or {}).items():
            path = _json_path(field)
            if value is None:
                sql += " AND json_type(data, ?) = 'null'"
                params.append(path)
            elif isinstance(value, bool):
                sql += " AND json_type(data, ?) = ?"
                params += [path, "true" if value else "false"]
            elif isinstance(value, (int, float)):
                sql += " AND json_type(data, ?) IN ('integer', 'real') AND json_extract(data, ?) = ?"
                params += [path, path, value]
            elif isinstance(value, str):
                sql += " AND json_type(data, ?) = 'text' AND json_extract(data, ?) = ?"
                params += [path, path, value]
            else:  # lists and objects: compared in Python after decoding (JSON text is not canonical)
                nested[field] = json.loads(json.dumps(value))
        sql += " ORDER BY updated DESC, key"
        if limit is not None and not nested:
            sql += " LIMIT ?"
            params.append(max(0, limit))

        def query(conn: sqlite3.Connection) -> list[Document]:
            out: list[Document] = []
            for key, version, data, updated in conn.execute(sql, params):
                doc = _decode(f"document {collection}/{key}", data)
                if nested and any(doc.get(f) != v for f, v in nested.items()):
                    continue
                out.append(Document(key, version, doc, updated))
                if limit is not None and len(out) >= limit:
                    break
            return out

        return await self._read(query)

    async def delete(self, collection: str, key: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM documents WHERE collection = ? AND key = ?",
                                (collection, key)).rowcount > 0

        return bool(await self._write(apply))

    # -- status ---------------------------------------------------------------------------------------------
    async def describe(self) -> dict[str, Any]:
        """File, sizes and schema version for ``gw storage info``."""
        def query(conn: sqlite3.Connection) -> dict[str, Any]:
            def size(p: Path) -> int | None:
                try:
                    return os.stat(p).st_size
                except OSError:
                    return None

            return {
                "path": str(self.path),
                "schema_version": schema_version(conn),
                "schema_version_supported": SCHEMA_VERSION,
                "size_bytes": size(self.path),
                "wal_bytes": size(Path(f"{self.path}-wal")),
                "synchronous": self.options.synchronous,
                "documents": conn.execute("SELECT count(*) FROM documents").fetchone()[0],
            }

        return await self._read(query)


#: Rows per INSERT statement of :meth:`SqliteStore.append` (4 parameters each: well under SQLite's limit of
#: 32,766 bound parameters).
_ROWS_PER_INSERT = 256


@functools.lru_cache(maxsize=64)
def _insert_rows(n: int) -> str:
    """``INSERT INTO entries ... VALUES (...), (...)`` for ``n`` rows."""
    return "INSERT INTO entries (stream, ts, data, fields) VALUES " + ",".join(["(?,?,?,?)"] * n)


#: Built once: ``json.dumps`` with options constructs an encoder per call, a measurable cost per record.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _catch_up_index(conn: sqlite3.Connection) -> None:
    """Write the ``entry_fields`` rows of every entry past ``index_state.through`` (in the open transaction)."""
    (through,) = conn.execute("SELECT through FROM index_state").fetchone()
    conn.execute("INSERT OR IGNORE INTO entry_fields (seq, field, value, stream) "
                 "SELECT e.seq, j.key, j.value, e.stream FROM entries e, json_each(e.fields) j "
                 "WHERE e.seq > ? AND e.fields IS NOT NULL", (through,))
    conn.execute("UPDATE index_state SET through = (SELECT coalesce(max(seq), ?) FROM entries)", (through,))


def _encode(what: str, record: Mapping[str, Any]) -> str:
    """JSON text of a record.  ASCII-only, so a stray surrogate in a string can never fail the transaction."""
    try:
        return _ENCODER.encode(record)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store a record in {what!r}: it is not plain JSON ({e})") from None


def _decode(what: str, text: str) -> dict[str, Any]:
    """A stored JSON object (:func:`gw.store.decode_stored`); the error names the file, as SQLite's database is."""
    return decode_stored(what, text, edited="the file")


def _fields(index: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = [(f, v if isinstance(v, str) else str(v)) for f, v in index.items() if v is not None]
    try:  # one encode for the whole entry (the common case); the loop below only names the culprit
        "".join(f"{f}{v}" for f, v in out).encode("utf-8")
    except UnicodeEncodeError:
        for f, value in out:
            _check_text(f, "index field name")
            _check_text(value, f"index field {f!r}")
    return out


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the {what} {value!r} is not valid UTF-8 text") from None


def _json_path(field: str) -> str:
    if '"' in field or "\\" in field:
        raise ValueError(f"document field name {field!r} cannot be queried (it contains a quote or backslash)")
    return f'$."{field}"'
