"""What a storage backend implements: append-only streams and small documents.

Core does not know what stages keep; it offers two generic shapes that every stage can use and every backend
can implement (SQLite embedded, PostgreSQL shared by replicas):

* **streams** -- append-only, ordered records (audit events, recordings).  ``append`` returns once the records
  are durable; backends group-commit concurrent appends.
* **collections** -- documents by key with an optimistic version (approval requests, grants, API keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .types import Duration, StrictModel

if TYPE_CHECKING:
    from .runtime import Services


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
                     *, index: Sequence[Mapping[str, str]] | None = None) -> list[int]:
        """Append records durably and atomically (all or none) and return their sequence numbers.  ``index`` gives, per record, string
        fields the backend indexes for :meth:`scan` filters (``subject``, ``session`` ...)."""
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
