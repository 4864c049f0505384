"""Where key records live: gw's storage backend (the default) or a JSON file of hashed keys.

Both keep records (:class:`~gw_apikey.records.ApiKey`) with an optimistic version, so a revocation by
``gw keys revoke`` can never be overwritten by the gateway recording a key's last use at the same moment: the
second writer sees :class:`~gw.store.VersionConflict` and its (unimportant) write is dropped.

Every authentication reads the record (no cache), so a revocation applies to the very next connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio
from gw.errors import StoreError
from gw.store import Store, VersionConflict

from .records import ApiKey, DamagedRecord

log = logging.getLogger("gw.apikey")

#: Collection of key documents in gw's storage backend; document key = key id.
COLLECTION = "apikeys"
#: ``format`` of a key file, checked on every read so gw never misreads some other JSON file as keys.
FILE_FORMAT = "gw-apikeys/1"


class KeyStore(ABC):
    """Records of one provider's namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    @abstractmethod
    def describe(self) -> str:
        """Where the keys are, for messages (``gw's storage (sqlite)``, ``file /etc/gw/keys.json``)."""

    @abstractmethod
    async def get(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id`` in this namespace; :class:`DamagedRecord` when it cannot be read."""

    @abstractmethod
    async def add(self, key: ApiKey) -> ApiKey:
        """Store a new record (its id must be unused); returns it with its version."""

    @abstractmethod
    async def replace(self, key: ApiKey) -> ApiKey:
        """Store a changed record if nobody changed it since ``key.version`` was read, else
        :class:`VersionConflict`."""

    @abstractmethod
    async def all(self) -> list[ApiKey]:
        """Every readable record of this namespace (damaged ones are logged and left out)."""

    def _record(self, data: Any, version: int) -> ApiKey | None:
        """A record of this namespace, None for another namespace's; raises :class:`DamagedRecord`."""
        if not isinstance(data, dict):
            raise DamagedRecord("the record is not an object")
        if data.get("namespace") != self.namespace:
            return None
        return ApiKey.from_data(data, version)

    def _readable(self, items: Iterator[tuple[Any, int]]) -> list[ApiKey]:
        out = []
        for data, version in items:
            try:
                key = self._record(data, version)
            except DamagedRecord as e:
                name = data.get("id") if isinstance(data, dict) else None
                log.warning("API key record %r in %s is damaged and ignored: %s", name, self.describe(), e)
                continue
            if key is not None:
                out.append(key)
        return out


class DocumentKeyStore(KeyStore):
    """Keys as documents of collection ``apikeys`` in the configured storage backend, so every gateway
    replica sharing that backend sees a revocation at once."""

    def __init__(self, store: Store, namespace: str) -> None:
        super().__init__(namespace)
        self.store = store

    def describe(self) -> str:
        return f"gw's storage ({self.store.name})"

    async def get(self, key_id: str) -> ApiKey | None:
        doc = await self.store.get(COLLECTION, key_id)
        return None if doc is None else self._record(doc.data, doc.version)

    async def add(self, key: ApiKey) -> ApiKey:
        version = await self.store.put(COLLECTION, key.id, key.to_data(), expect_version=0)
        return _with_version(key, version)

    async def replace(self, key: ApiKey) -> ApiKey:
        version = await self.store.put(COLLECTION, key.id, key.to_data(), expect_version=key.version)
        return _with_version(key, version)

    async def all(self) -> list[ApiKey]:
        docs = await self.store.query(COLLECTION, where={"namespace": self.namespace})
        return self._readable((d.data, d.version) for d in docs)


def _with_version(key: ApiKey, version: int) -> ApiKey:
    return dataclasses.replace(key, version=version)


_Signature = tuple[int, int, int, int]


class FileKeyStore(KeyStore):
    """Keys in one JSON file (mode 0600), for gateways without a storage backend or keys kept in
    configuration management.

    Reads are cached by the file's identity (inode, size, mtime, ctime): each authentication costs one
    ``stat`` and re-reads the file only when it changed.  Writes (``gw keys``, and last-use updates by
    ``gw serve``) hold an exclusive ``flock`` on ``<file>.lock``, re-read the file under it and replace it
    atomically (write a temporary file, fsync, rename), so readers only ever see a whole file.
    """

    def __init__(self, path: Path, namespace: str) -> None:
        super().__init__(namespace)
        self.path = path
        self._signature: _Signature | None = None
        self._records: dict[str, tuple[Any, int]] = {}

    def describe(self) -> str:
        return f"file {str(self.path)!r}"

    # -- reading --------------------------------------------------------------------------------------------
    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read the API key {self.describe()}: {e.strerror}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> tuple[_Signature | None, dict[str, tuple[Any, int]]]:
        """The file's records by id with their versions, and the signature of exactly what was read."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return None, {}
        except OSError as e:
            raise StoreError(f"cannot read the API key {self.describe()}: {e.strerror}") from None
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise StoreError(f"the API key {self.describe()} is not valid JSON ({e}); restore it from a backup "
                             "or move it away and create new keys") from None
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT or not isinstance(doc.get("keys"), dict):
            raise StoreError(f"the API key {self.describe()} is not a gw API key file (expected "
                             f"{{\"format\": \"{FILE_FORMAT}\", \"keys\": {{...}}}}); point `file` at another "
                             "path")
        records: dict[str, tuple[Any, int]] = {}
        for key_id, data in doc["keys"].items():
            version = data.get("version", 0) if isinstance(data, dict) else 0
            records[key_id] = (data, version if isinstance(version, int) else 0)
        return signature, records

    async def _current(self) -> dict[str, tuple[Any, int]]:
        signature = self._stat()
        if signature is None:
            self._signature, self._records = None, {}
        elif signature != self._signature:
            self._signature, self._records = await trio.to_thread.run_sync(self._read)
        return self._records

    async def get(self, key_id: str) -> ApiKey | None:
        found = (await self._current()).get(key_id)
        return None if found is None else self._record(*found)

    async def all(self) -> list[ApiKey]:
        return self._readable(iter((await self._current()).values()))

    # -- writing --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, records: dict[str, tuple[Any, int]]) -> None:
        doc = {"format": FILE_FORMAT,
               "keys": {key_id: {**data, "version": version} for key_id, (data, version) in records.items()}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _change(self, key: ApiKey, expect_version: int) -> int:
        """Under the lock: check the version the caller read, write the record, return its new version."""
        try:
            with self._locked():
                _, records = self._read()
                current = records.get(key.id, (None, 0))[1]
                if current != expect_version:
                    raise VersionConflict(f"API key {key.id} is at version {current}, not {expect_version}: "
                                          "someone changed it first; read it again and retry")
                records[key.id] = (key.to_data(), current + 1)
                self._write(records)
                return current + 1
        except OSError as e:
            raise StoreError(f"cannot write the API key {self.describe()}: {e.strerror}") from None

    async def _apply(self, fn: Callable[[], int]) -> int:
        version = await trio.to_thread.run_sync(fn)
        self._signature = None  # our own write: read it back next time
        return version

    async def add(self, key: ApiKey) -> ApiKey:
        return _with_version(key, await self._apply(lambda: self._change(key, 0)))

    async def replace(self, key: ApiKey) -> ApiKey:
        return _with_version(key, await self._apply(lambda: self._change(key, key.version)))
