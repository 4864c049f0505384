"""Streams: durability, order, indexed filters, retention pruning, and readers beside a writer."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gw_sqlite.store
import pytest
import trio
import trio.lowlevel
from gw.errors import ConfigError
from gw_sqlite import SqliteStore


async def test_append_is_on_disk_when_it_returns(store: SqliteStore, raw: Callable[..., sqlite3.Connection]) -> None:
    seqs = await store.append("audit", [{"text": "select 1"}, {"text": "select 2"}],
                              index=[{"subject": "alice"}, {"subject": "bob"}])
    assert seqs[1] > seqs[0]
    conn = raw(store)  # another connection (as another process would) sees both, in order
    rows = conn.execute("SELECT seq, data FROM entries WHERE stream = 'audit' ORDER BY seq").fetchall()
    assert [(s, json.loads(d)["text"]) for s, d in rows] == [(seqs[0], "select 1"), (seqs[1], "select 2")]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer_sync = store._writer.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
    assert writer_sync == 2  # FULL: the WAL is fsynced at every commit


async def test_scan_filters_orders_and_pages(store: SqliteStore) -> None:
    records = [{"i": i} for i in range(10)]
    index = [{"subject": "alice" if i % 2 else "bob", "verdict": "denied" if i % 3 == 0 else "allowed"}
             for i in range(10)]
    seqs = await store.append("audit", records, index=index)
    await store.append("other", [{"i": 99}], index=[{"subject": "alice"}])

    every = await store.scan("audit")
    assert [e.data["i"] for e in every] == list(range(10))
    assert [e.seq for e in every] == seqs
    alice = await store.scan("audit", where={"subject": "alice"})
    assert [e.data["i"] for e in alice] == [1, 3, 5, 7, 9]
    both = await store.scan("audit", where={"subject": "alice", "verdict": "denied"})
    assert [e.data["i"] for e in both] == [3, 9]
    newest = await store.scan("audit", where={"subject": "bob"}, newest_first=True, limit=2)
    assert [e.data["i"] for e in newest] == [8, 6]
    window = await store.scan("audit", after=seqs[2], before=seqs[6])
    assert [e.data["i"] for e in window] == [3, 4, 5]
    assert await store.scan("audit", where={"subject": "nobody"}) == []
    assert await store.scan("missing") == []
    last = await store.last("audit")
    assert last is not None and last.data == {"i": 9} and last.ts <= time.time()
    assert await store.streams() == ["audit", "other"]


async def test_bad_records_fail_their_own_call_only(store: SqliteStore) -> None:
    async def good() -> list[int]:
        return await store.append("s", [{"ok": True}])

    async def bad() -> None:
        with pytest.raises(TypeError, match="not plain JSON"):
            await store.append("s", [{"value": object()}])
        with pytest.raises(ValueError, match="index entries"):
            await store.append("s", [{"a": 1}, {"a": 2}], index=[{"x": "1"}])
        with pytest.raises(ValueError, match="not valid UTF-8"):
            await store.append("s", [{"a": 1}], index=[{"x": "\udc80"}])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bad)
        nursery.start_soon(good)
    # a lone surrogate inside a record is stored escaped and reads back as it was
    await store.append("s", [{"text": "bad \udc80 byte"}])
    assert [e.data for e in await store.scan("s")] == [{"ok": True}, {"text": "bad \udc80 byte"}]


async def test_prune_deletes_old_records_in_short_transactions(
        store: SqliteStore, raw: Callable[..., sqlite3.Connection], monkeypatch: pytest.MonkeyPatch) -> None:
    seqs = await store.append("audit", [{"i": i} for i in range(10)], index=[{"subject": "a"}] * 10)
    await store.append("other", [{"i": 0}])
    conn = raw(store)
    # age the first seven records by 100 days, as if they had been written then
    conn.execute("UPDATE entries SET ts = ts - 8640000 WHERE seq <= ?", (seqs[6],))
    monkeypatch.setattr(gw_sqlite.store, "PRUNE_CHUNK", 3)
    before = store.transactions
    assert await store.prune("audit", time.time() - 90 * 86400) == 7
    assert store.transactions - before >= 3  # 3 + 3 + 1 rows: one short transaction per chunk
    assert [e.data["i"] for e in await store.scan("audit")] == [7, 8, 9]
    assert [e.data["i"] for e in await store.scan("audit", where={"subject": "a"})] == [7, 8, 9]
    assert conn.execute("SELECT count(*) FROM entry_fields WHERE seq <= ?", (seqs[6],)).fetchone()[0] == 0
    assert await store.prune("other", time.time() - 86400) == 0
    assert await store.prune("audit", time.time() + 1) == 3
    assert await store.streams() == ["other"]  # streams() lists only streams that hold records


async def test_a_reader_process_reads_while_gw_writes(store: SqliteStore, tmp_path: Path,
                                                       raw: Callable[..., sqlite3.Connection]) -> None:
    """WAL: a reader's open transaction does not block the writer, and a CLI process reads meanwhile."""
    await store.append("audit", [{"i": 0}])
    reader = raw(store)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 1
    await store.append("audit", [{"i": 1}])  # commits although a read transaction is open
    assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 1  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 2

    gw = str(Path(sys.executable).with_name("gw"))
    async with trio.open_nursery() as nursery:
        async def keep_writing() -> None:
            for i in range(20):
                await store.append("audit", [{"i": i}])
                await trio.lowlevel.checkpoint()

        nursery.start_soon(keep_writing)
        done = await trio.run_process([gw, "storage", "info", "-c", str(tmp_path / "pipeline.toml"), "--json"],
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    info = json.loads(done.stdout)
    assert info["backend"] == "sqlite" and info["streams"][0]["stream"] == "audit"


def test_paths_resolve_against_the_pipeline_file(make_store: Callable[..., SqliteStore], tmp_path: Path) -> None:
    assert make_store().path == tmp_path / ".gw" / "gw.db"
    assert make_store('path = "state/audit.db"').path == tmp_path / "state" / "audit.db"
    assert make_store(f'path = "{tmp_path}/abs.db"').path == tmp_path / "abs.db"


@pytest.mark.parametrize("line, message", [
    ('retention = "90 days"', "storage.retention: expected a duration"),
    ('synchronous = "off"', "storage.synchronous"),
    ('busy_timeout = "soon"', "storage.busy_timeout: expected a duration"),
    ('pth = "x.db"', "storage.pth: unknown key"),
])
def test_option_errors_name_the_key(make_store: Callable[..., SqliteStore], line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_store(line)
