"""gw-storagekit: an in-memory store and the storage contract test suite every backend runs.

A backend's tests subclass :class:`StoreContract` and provide one fixture, ``store_factory``: a callable that
returns a new, *unopened* store on the same backing data each time it is called (two gateways sharing one
database).  Every test of the contract then runs against that backend::

    class TestMyStoreContract(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda: make_my_store(tmp_path)

:class:`MemoryStore` keeps everything in a :class:`MemoryData` object: it is the reference implementation of
the contract, a fast store for plugin tests, and ``[storage] use = "memory"`` once registered (see
:class:`MemoryStorePlugin`).  It is not durable and is not meant for production.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from gw.errors import StoreError
from gw.hookspecs import hookimpl
from gw.store import (
    CLAIMS,
    Claim,
    ClaimLost,
    ClaimRefused,
    Document,
    Entry,
    StorageOptions,
    Store,
    VersionConflict,
)


@dataclass
class MemoryData:
    """What a :class:`MemoryStore` holds; share one between stores to model gateways on one database."""

    seq: int = 0
    entries: dict[str, list[tuple[Entry, dict[str, str]]]] = field(default_factory=dict)
    documents: dict[tuple[str, str], Document] = field(default_factory=dict)


def _plain(what: str, value: Mapping[str, Any]) -> dict[str, Any]:
    try:
        copied = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store a record in {what!r}: it is not plain JSON ({e})") from None
    if not isinstance(copied, dict):
        raise TypeError(f"cannot store a record in {what!r}: it is not a JSON object")
    return copied


class MemoryStore(Store):
    """Streams and documents in memory (see the module docstring)."""

    name = "memory"
    Options = StorageOptions

    def __init__(self, options: Any = None, services: Any = None, *, data: MemoryData | None = None) -> None:
        super().__init__(options if options is not None else StorageOptions(use="memory"), services)
        self.data = data if data is not None else MemoryData()
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _require_open(self) -> None:
        if not self._open:
            raise StoreError("the memory store is not open")

    async def append(self, stream: str, records: Sequence[Mapping[str, Any]],
                     *, index: Sequence[Mapping[str, str]] | None = None,
                     encoded: Sequence[str] | None = None) -> list[int]:
        self._require_open()
        await trio.lowlevel.checkpoint()
        if index is not None and len(index) != len(records):
            raise ValueError("index must have one entry per record")
        rows = []
        for i, record in enumerate(records):
            fields = {f: v if isinstance(v, str) else str(v) for f, v in (index[i] if index else {}).items()
                      if v is not None}
            rows.append((_plain(stream, record), fields))
        now, out = time.time(), []
        target = self.data.entries.setdefault(stream, [])
        for data, fields in rows:
            self.data.seq += 1
            target.append((Entry(self.data.seq, now, data), fields))
            out.append(self.data.seq)
        return out

    async def scan(self, stream: str, *, where: Mapping[str, str] | None = None, after: int | None = None,
                   before: int | None = None, limit: int | None = None, newest_first: bool = False
                   ) -> list[Entry]:
        self._require_open()
        await trio.lowlevel.checkpoint()
        rows = self.data.entries.get(stream, [])
        found = [e for e, fields in (reversed(rows) if newest_first else rows)
                 if (after is None or e.seq > after) and (before is None or e.seq < before)
                 and all(fields.get(f) == v for f, v in (where or {}).items())]
        return found[:max(0, limit)] if limit is not None else found

    async def streams(self) -> list[str]:
        self._require_open()
        return sorted(name for name, rows in self.data.entries.items() if rows)

    async def prune(self, stream: str, older_than: float) -> int:
        self._require_open()
        rows = self.data.entries.get(stream, [])
        kept = [(e, f) for e, f in rows if e.ts >= older_than]
        self.data.entries[stream] = kept
        return len(rows) - len(kept)

    async def describe(self) -> dict[str, Any]:
        return {"documents": len(self.data.documents)}

    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        self._require_open()
        await trio.lowlevel.checkpoint()
        plain = _plain(f"{collection}/{key}", data)
        current = self.data.documents.get((collection, key))
        version = current.version if current else 0
        if expect_version is not None and version != expect_version:
            raise VersionConflict(f"document {collection}/{key} is at version {version}, not {expect_version}: "
                                  "someone changed it first; read it again and retry")
        self.data.documents[(collection, key)] = Document(key, version + 1, plain, time.time())
        return version + 1

    async def get(self, collection: str, key: str) -> Document | None:
        self._require_open()
        await trio.lowlevel.checkpoint()
        return self.data.documents.get((collection, key))

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        self._require_open()
        await trio.lowlevel.checkpoint()
        wanted = {f: json.loads(json.dumps(v)) for f, v in (where or {}).items()}

        def matches(doc: Document) -> bool:
            for f, v in wanted.items():
                if f not in doc.data:
                    return False
                have = doc.data[f]
                if isinstance(v, bool) or isinstance(have, bool):
                    if not (isinstance(v, bool) and isinstance(have, bool) and v == have):
                        return False
                elif have != v:
                    return False
            return True

        docs = sorted((d for (c, _), d in self.data.documents.items() if c == collection and matches(d)),
                      key=lambda d: (-d.updated, d.key))
        return docs[:max(0, limit)] if limit is not None else docs

    async def delete(self, collection: str, key: str) -> bool:
        self._require_open()
        return self.data.documents.pop((collection, key), None) is not None


class MemoryStorePlugin:
    """Register on a plugin manager (``gw_register(MemoryStorePlugin())``) for ``[storage] use = "memory"``."""

    @hookimpl
    def gw_register_storage(self, register: Callable[[type[Any]], None]) -> None:
        register(MemoryStore)


# -- the contract -----------------------------------------------------------------------------------------------

@asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Store]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class StoreContract:
    """What every storage backend guarantees to the stages (see :mod:`gw.store`).  Subclass it and provide
    the ``store_factory`` fixture (see the module docstring)."""

    @pytest.fixture
    async def store(self, store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
        async with opened(store_factory()) as s:
            yield s

    # -- streams ---------------------------------------------------------------------------------------------
    async def test_append_returns_increasing_sequence_numbers(self, store: Store) -> None:
        first = await store.append("audit", [{"n": 1}, {"n": 2}])
        second = await store.append("audit", [{"n": 3}])
        assert len(first) == 2 and len(second) == 1
        assert first[0] < first[1] < second[0]
        entries = await store.scan("audit")
        assert [e.seq for e in entries] == first + second
        assert [dict(e.data) for e in entries] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert all(abs(e.ts - time.time()) < 60 for e in entries)
        assert await store.append("audit", []) == []

    async def test_records_round_trip_as_plain_json(self, store: Store) -> None:
        record = {"text": "sélect 'ü' -- \u2603 \x00", "nested": {"a": [1, 2.5, None, True]}, "big": 2**53,
                  "neg": -1, "empty": {}}
        [seq] = await store.append("s", [record])
        [entry] = await store.scan("s")
        assert entry.seq == seq and dict(entry.data) == record
        with pytest.raises(TypeError):
            await store.append("s", [{"bad": object()}])
        with pytest.raises(TypeError):
            await store.append("s", [{"nan": float("nan")}])
        assert len(await store.scan("s")) == 1  # nothing of a refused append is stored

    async def test_a_record_appended_with_its_encoding_reads_back_as_the_record(self, store: Store) -> None:
        records: list[dict[str, Any]] = [{"b": 1, "a": "\u00e9"}, {"n": 2}]
        seqs = await store.append("s", records, index=[{"k": "x"}, {"k": "y"}],
                                  encoded=['{"a":"\\u00e9","b":1}', '{"n":2}'])
        assert [(e.seq, dict(e.data)) for e in await store.scan("s")] == list(zip(seqs, records))
        assert [dict(e.data) for e in await store.scan("s", where={"k": "y"})] == [{"n": 2}]

    async def test_scan_filters_orders_and_pages(self, store: Store) -> None:
        seqs = []
        for i in range(10):
            [s] = await store.append("audit", [{"i": i}], index=[{"session": f"s{i % 2}", "type": "command",
                                                                   "n": i}])  # type: ignore[dict-item]
            seqs.append(s)
        await store.append("other", [{"i": 99}], index=[{"session": "s0"}])
        assert [e.data["i"] for e in await store.scan("audit", where={"session": "s0"})] == [0, 2, 4, 6, 8]
        assert [e.data["i"] for e in await store.scan("audit", where={"session": "s1", "type": "command"})] == [
            1, 3, 5, 7, 9]
        assert await store.scan("audit", where={"session": "s1", "type": "outcome"}) == []
        assert [e.data["i"] for e in await store.scan("audit", where={"n": "3"})] == [3]  # values are text
        assert [e.data["i"] for e in await store.scan("audit", newest_first=True, limit=3)] == [9, 8, 7]
        assert [e.data["i"] for e in await store.scan("audit", after=seqs[6])] == [7, 8, 9]
        assert [e.data["i"] for e in await store.scan("audit", before=seqs[2])] == [0, 1]
        assert [e.data["i"] for e in await store.scan("audit", after=seqs[1], before=seqs[5],
                                                      where={"session": "s0"})] == [2, 4]
        assert [e.data["i"] for e in await store.scan("audit", after=seqs[1], limit=2)] == [2, 3]
        assert await store.scan("audit", limit=0) == []
        assert await store.scan("nothing-here") == []
        last = await store.last("audit")
        assert last is not None and last.seq == seqs[-1]
        assert await store.last("nothing-here") is None
        assert set(await store.streams()) >= {"audit", "other"}
        assert "nothing-here" not in await store.streams()

    async def test_prune_deletes_older_records_only(self, store: Store) -> None:
        await store.append("old", [{"i": 1}, {"i": 2}], index=[{"k": "a"}, {"k": "b"}])
        await trio.sleep(0.05)
        cut = time.time()
        await trio.sleep(0.05)
        [kept] = await store.append("old", [{"i": 3}], index=[{"k": "a"}])
        await store.append("young", [{"i": 4}])
        assert await store.prune("old", cut) == 2
        assert [e.seq for e in await store.scan("old")] == [kept]
        assert [e.seq for e in await store.scan("old", where={"k": "a"})] == [kept]
        assert await store.prune("old", cut) == 0
        assert len(await store.scan("young")) == 1
        [later] = await store.append("old", [{"i": 5}])
        assert later > kept  # a sequence number is never reused

    async def test_concurrent_appends_get_distinct_ordered_numbers(self, store: Store) -> None:
        got: list[list[int]] = []

        async def writer(w: int) -> None:
            for i in range(5):
                got.append(await store.append("busy", [{"w": w, "i": i}, {"w": w, "i": i, "second": True}],
                                              index=[{"w": str(w)}, {"w": str(w)}]))

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
        flat = [s for batch in got for s in batch]
        assert len(flat) == len(set(flat)) == 80
        assert all(b[1] > b[0] for b in got)
        for w in range(8):
            mine = await store.scan("busy", where={"w": str(w)})
            assert [(e.data["i"], "second" in e.data) for e in mine] == [
                (i, second) for i in range(5) for second in (False, True)]

    # -- documents -------------------------------------------------------------------------------------------
    async def test_document_versions_and_conflicts(self, store: Store) -> None:
        assert await store.get("grants", "g1") is None
        assert await store.put("grants", "g1", {"user": "alice"}, expect_version=0) == 1
        with pytest.raises(VersionConflict):
            await store.put("grants", "g1", {"user": "mallory"}, expect_version=0)
        with pytest.raises(VersionConflict):
            await store.put("grants", "g1", {"user": "mallory"}, expect_version=5)
        assert await store.put("grants", "g1", {"user": "alice", "until": 5}, expect_version=1) == 2
        assert await store.put("grants", "g1", {"user": "alice", "until": 6}) == 3
        doc = await store.get("grants", "g1")
        assert doc is not None and (doc.key, doc.version, dict(doc.data)) == ("g1", 3, {"user": "alice",
                                                                                         "until": 6})
        assert abs(doc.updated - time.time()) < 60
        assert await store.get("other", "g1") is None
        assert await store.delete("grants", "g1") is True
        assert await store.delete("grants", "g1") is False
        assert await store.get("grants", "g1") is None
        assert await store.put("grants", "g1", {"user": "bob"}, expect_version=0) == 1

    async def test_query_matches_top_level_values_newest_first(self, store: Store) -> None:
        docs = {
            "a": {"status": "pending", "n": 1, "urgent": True, "tags": ["x"], "note": None},
            "b": {"status": "pending", "n": 2, "urgent": False, "tags": ["y"]},
            "c": {"status": "approved", "n": 1, "urgent": True, "tags": ["x"], "note": "1"},
        }
        for key, data in docs.items():
            await store.put("requests", key, data)
            await trio.sleep(0.01)
        await store.put("elsewhere", "z", {"status": "pending"})

        async def keys(limit: int | None = None, **where: object) -> list[str]:
            return [d.key for d in await store.query("requests", where=where, limit=limit)]

        assert await keys() == ["c", "b", "a"]
        assert await keys(status="pending") == ["b", "a"]
        assert await keys(status="pending", n=2) == ["b"]
        assert await keys(n=1) == ["c", "a"]
        assert await keys(urgent=True) == ["c", "a"]
        assert await keys(urgent=False) == ["b"]
        assert await keys(n=True) == []  # a boolean is not the number 1
        assert await keys(note=None) == ["a"]
        assert await keys(note="1") == ["c"]
        assert await keys(n="1") == []  # text is not a number
        assert await keys(tags=["x"]) == ["c", "a"]
        assert await keys(missing="x") == []
        assert await keys(limit=1, status="pending") == ["b"]
        await store.put("requests", "a", {"status": "pending", "n": 1})
        assert await keys(status="pending") == ["a", "b"]  # the newest update comes first

    async def test_only_one_of_racing_creations_wins(self, store: Store) -> None:
        wins: list[int] = []
        conflicts: list[int] = []

        async def create(i: int) -> None:
            try:
                await store.put("locks", "one", {"by": i}, expect_version=0)
                wins.append(i)
            except VersionConflict:
                conflicts.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(create, i)
        assert len(wins) == 1 and len(conflicts) == 5
        doc = await store.get("locks", "one")
        assert doc is not None and doc.data == {"by": wins[0]} and doc.version == 1

    # -- several gateways on one store -----------------------------------------------------------------------
    async def test_a_second_store_on_the_same_data_sees_everything(self, store: Store,
                                                                   store_factory: Callable[[], Store]) -> None:
        async with opened(store_factory()) as other:
            [seq] = await store.append("audit", [{"from": "a"}], index=[{"gateway": "a"}])
            [seq2] = await other.append("audit", [{"from": "b"}], index=[{"gateway": "b"}])
            assert seq2 > seq
            assert [e.data["from"] for e in await other.scan("audit")] == ["a", "b"]
            assert [e.data["from"] for e in await store.scan("audit", where={"gateway": "b"})] == ["b"]
            await store.put("requests", "r1", {"status": "pending"}, expect_version=0)
            doc = await other.get("requests", "r1")
            assert doc is not None and doc.data["status"] == "pending"
            await other.put("requests", "r1", {"status": "approved"}, expect_version=doc.version)
            mine = await store.get("requests", "r1")
            assert mine is not None and mine.data["status"] == "approved" and mine.version == 2
            with pytest.raises(VersionConflict):
                await store.put("requests", "r1", {"status": "denied"}, expect_version=1)

    async def test_claims_refuse_a_live_holder_and_take_over_a_stale_one(
            self, store: Store, store_factory: Callable[[], Store]) -> None:
        async with opened(store_factory()) as other:
            mine = Claim(store, "chain-x", lease=1.0, what="audit chain", holder="gw-a")
            await mine.acquire()
            mine.check()
            theirs = Claim(other, "chain-x", lease=1.0, what="audit chain", holder="gw-b")
            theirs.host = "another-host"  # a gateway elsewhere: only the heartbeat's age counts
            with pytest.raises(ClaimRefused, match=r"audit chain 'chain-x' is held by gateway 'gw-a'.*"
                                                   r"\[gateway\] name.*gw serve --name NAME"):
                await theirs.acquire()
            await mine.renew()
            await trio.sleep(1.2)  # no heartbeat for longer than the lease
            with pytest.raises(ClaimLost, match="could not renew"):
                mine.check()
            await theirs.acquire()
            assert theirs.took_over is not None and theirs.took_over["holder"] == "gw-a"
            with pytest.raises(ClaimLost, match="taken over by gateway 'gw-b'"):
                await mine.renew()
            with pytest.raises(ClaimLost):
                mine.check()
            await theirs.release()
            doc = await store.get(CLAIMS, "chain-x")
            assert doc is not None and doc.data["released"] is True
            again = Claim(store, "chain-x", lease=30.0, what="audit chain", holder="gw-c")
            again.host = "a-third-host"
            await again.acquire()  # a released claim is free at once
            assert again.took_over is None
