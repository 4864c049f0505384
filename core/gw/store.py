"""What a storage backend implements: append-only streams and small documents.

Core does not know what stages keep; it offers two generic shapes that every stage can use and every backend
can implement (SQLite embedded, PostgreSQL shared by replicas):

* **streams** -- append-only, ordered records (audit events, recordings).  ``append`` returns once the records
  are durable; backends group-commit concurrent appends.
* **collections** -- documents by key with an optimistic version (approval requests, grants, API keys).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import GwError, StoreError
from .services import Services
from .types import Duration, StrictModel


class StorageOptions(StrictModel):
    use: str
    #: How long stream records are kept (``gw storage prune`` applies it); None keeps everything.
    retention: Duration | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of a stream.  ``seq`` increases within the stream; ``ts`` is Unix time."""

    seq: int
    ts: float
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Document:
    key: str
    version: int
    data: Mapping[str, Any]
    updated: float


class VersionConflict(Exception):
    """``put`` with ``expect_version`` found another version: someone else changed the document first."""


class Store:
    """Base class of storage backends.  Subclasses set ``name`` and ``Options``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[StorageOptions]] = StorageOptions

    def __init__(self, options: Any, services: Services) -> None:
        self.options = options
        self.services = services

    async def open(self) -> None:
        """Create or migrate the schema; called once before use."""

    async def close(self) -> None:
        """Flush pending writes and release resources."""

    # -- streams ---------------------------------------------------------------------------------------------
    async def append(self, stream: str, records: Sequence[Mapping[str, Any]],
                     *, index: Sequence[Mapping[str, str]] | None = None,
                     encoded: Sequence[str] | None = None) -> list[int]:
        """Append records durably and atomically (all or none) and return their sequence numbers.  ``index`` gives, per record, string
        fields the backend indexes for :meth:`scan` filters (``subject``, ``session`` ...).  ``encoded``, when
        the caller already has it, is each record's JSON text (ASCII, decoding to exactly the record): a backend
        that stores JSON may store it as is instead of encoding the record again."""
        raise NotImplementedError

    async def scan(self, stream: str, *, where: Mapping[str, str] | None = None, after: int | None = None,
                   before: int | None = None, limit: int | None = None, newest_first: bool = False
                   ) -> list[Entry]:
        """Records of a stream in sequence order (or newest first), filtered by indexed fields."""
        raise NotImplementedError

    async def last(self, stream: str) -> Entry | None:
        """The newest record of a stream."""
        found = await self.scan(stream, limit=1, newest_first=True)
        return found[0] if found else None

    async def check_ready(self) -> str | None:
        """Why the store cannot serve gw now, or None (``/readyz``).  The default reads one record."""
        try:
            await self.scan("audit", limit=1)
        except Exception as e:  # noqa: BLE001 -- any failure means not ready; the reason is reported
            return f"the store does not answer ({type(e).__name__}: {e})"
        return None

    async def describe(self) -> dict[str, Any]:
        """Backend details for ``gw storage info`` (file, size, schema version ...); never credentials."""
        return {}

    async def streams(self) -> list[str]:
        """Names of the streams that hold records (for retention and status)."""
        raise NotImplementedError

    async def prune(self, stream: str, older_than: float) -> int:
        """Delete records with ``ts`` before ``older_than``; returns how many."""
        raise NotImplementedError

    # -- collections -----------------------------------------------------------------------------------------
    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        """Create or replace a document; returns its new version.  With ``expect_version`` (0 = must not
        exist) raises :class:`VersionConflict` when the stored version differs."""
        raise NotImplementedError

    async def get(self, collection: str, key: str) -> Document | None:
        raise NotImplementedError

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        """Documents whose top-level fields equal ``where``'s values, newest update first."""
        raise NotImplementedError

    async def delete(self, collection: str, key: str) -> bool:
        raise NotImplementedError


# -- claims: one writer per named resource across every gateway sharing a store ---------------------------------

#: The collection that holds claims (one document per claimed name).
CLAIMS = "gw.claims"


class ClaimRefused(GwError):
    """Another live gateway holds the claim."""


def decode_stored(what: str, text: str | bytes, *, edited: str = "it") -> dict[str, Any]:
    """The JSON object a backend stored as ``what`` (``record 5 of stream 'audit'``): anything else means the
    database was edited or damaged, which the error says.  ``edited`` names what was edited in the message
    (``"the file"`` for an embedded database)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"{what} is not a JSON object in the database ({edited} was edited or is damaged); "
                         "restore it from a backup")
    return value


class ClaimLost(StoreError):
    """This gateway's claim expired or was taken over: it must stop writing what the claim protects."""


def _process_alive(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` on this host is the one that made a claim (a reused pid is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    if started is not None:
        born = _process_start(pid)
        if born is not None and abs(born - started) > 2:
            return False
    return True


def _process_start(pid: int) -> float | None:
    """Unix time a process started (Linux /proc), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Claim:
    """A lease on ``name`` in a store (an audit chain: one writer at a time, whatever the number of gateways).

    :meth:`acquire` takes the claim when nobody holds it, when the holder's heartbeat is older than the lease,
    or when the holder was a process on this host that is gone (``kill -9``, a crash); otherwise it raises
    :class:`ClaimRefused` naming the holder.  The holder calls :meth:`renew` (the heartbeat) well within the
    lease and :meth:`release` when it stops; :meth:`check` raises :class:`ClaimLost` once the claim can no
    longer be trusted (not renewed within the lease, or taken over), so the holder stops writing.
    """

    def __init__(self, store: Store, name: str, *, lease: float, what: str, holder: str) -> None:
        self.store = store
        self.name = name
        self.lease = lease
        self.what = what
        self.holder = holder
        self.instance = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.process_started = _process_start(self.pid)
        self.version = 0
        self.renewed = 0.0
        self.lost: str | None = None
        self.took_over: dict[str, Any] | None = None

    def _data(self, now: float) -> dict[str, Any]:
        return {"instance": self.instance, "holder": self.holder, "host": self.host, "pid": self.pid,
                "process_started": self.process_started, "heartbeat": now, "lease": self.lease,
                "released": False}

    async def acquire(self) -> None:
        while True:
            doc = await self.store.get(CLAIMS, self.name)
            now = time.time()
            if doc is not None and doc.data.get("instance") != self.instance:
                held = doc.data
                if not held.get("released") and not self._stale(held, now):
                    age = max(0.0, now - float(held.get("heartbeat", 0)))
                    raise ClaimRefused(
                        f"{self.what} {self.name!r} is held by gateway {held.get('holder')!r} "
                        f"(pid {held.get('pid')} on {held.get('host')}, heartbeat {age:.0f}s ago); two gateways "
                        f"writing one chain would corrupt it.  Give this gateway its own name: set [gateway] "
                        f"name = \"...\" in the pipeline file or run `gw serve --name NAME`")
                if not held.get("released"):
                    self.took_over = dict(held)
            try:
                self.version = await self.store.put(CLAIMS, self.name, self._data(now),
                                                    expect_version=doc.version if doc else 0)
            except VersionConflict:
                continue  # another gateway moved first: look again
            self.renewed = now
            self.lost = None
            return

    def _stale(self, held: Mapping[str, Any], now: float) -> bool:
        lease = max(float(held.get("lease") or 0), self.lease)
        if now - float(held.get("heartbeat", 0)) > lease:
            return True
        pid = held.get("pid")
        if held.get("host") == self.host and isinstance(pid, int):
            return not _process_alive(pid, held.get("process_started"))
        return False

    async def renew(self) -> None:
        """The heartbeat; raises :class:`ClaimLost` when another gateway holds the claim now."""
        if self.lost:
            raise ClaimLost(self.lost)
        now = time.time()
        try:
            self.version = await self.store.put(CLAIMS, self.name, self._data(now), expect_version=self.version)
        except VersionConflict:
            doc = await self.store.get(CLAIMS, self.name)
            if doc is None or doc.data.get("instance") != self.instance:
                other = doc.data.get("holder") if doc else None
                self.lost = (f"{self.what} {self.name!r} was taken over by gateway {other!r} after this gateway "
                             "could not renew its claim in time; this gateway stops writing it (restart it)")
                raise ClaimLost(self.lost) from None
            self.version = doc.version
            return await self.renew()
        self.renewed = now

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless the claim was renewed within the lease."""
        if self.lost:
            raise ClaimLost(self.lost)
        age = time.time() - self.renewed
        if age > self.lease:
            raise ClaimLost(f"{self.what} {self.name!r}: this gateway could not renew its claim in the store for "
                            f"{age:.0f}s (lease {self.lease:g}s), so it writes nothing until it can")

    async def release(self) -> None:
        if self.lost:
            return
        data = self._data(time.time()) | {"released": True}
        try:
            await self.store.put(CLAIMS, self.name, data, expect_version=self.version)
        except VersionConflict:
            pass
