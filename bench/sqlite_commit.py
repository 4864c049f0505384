"""The SQLite store's commit, A/B in one run: index rows written with every commit vs in bulk (the default).

    python bench/sqlite_commit.py [--commits 600] [--batch 16] [--dir /path/on/the/disk/to/measure]

Two stores (``synchronous = "full"``) are warmed with 20,000 audit-like records (command and outcome records
of 300 sessions, with the index fields the audit stage writes), then take alternating commits of ``--batch``
records each -- one commit per batch, as eight sessions produce under load.  Store A writes ``entry_fields``
with every commit (``INDEX_EVERY = 1``), store B every 512 records.  Checkpoints are off while measuring, so
the WAL's growth is what each commit wrote.  Prints the median and mean time per commit (the fsync included)
and the WAL pages written per commit; a bare ``fdatasync`` on the same directory gives the disk's floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gw_sqlite.store as sqlite_store
import trio
from common import fdatasync_ms
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_sqlite import SqliteStore

RECORD = {"v": 1, "type": "command", "text": "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
          "pad": "y" * 300}


def index(i: int, j: int) -> dict[str, str]:
    session = f"s{(i * 8 + j) % 300}"
    if j % 2:
        return {"type": "command", "subject": "agent", "session": session, "listener": "pg", "verdict": "allowed",
                "chain": "c"}
    return {"type": "outcome", "session": session, "chain": "c"}


async def open_store(where: str | None) -> SqliteStore:
    d = Path(tempfile.mkdtemp(prefix="gw-bench-sqlite-", dir=where))
    store = Runtime.build(write_pipeline(d, '[storage]\nuse = "sqlite"\n')).store
    assert isinstance(store, SqliteStore)
    await store.open()
    return store




async def main(args: Any) -> None:
    every = {"A: index with every commit": 1, "B: index in bulk (default)": sqlite_store.INDEX_EVERY}
    stores = {name: await open_store(args.dir) for name in every}
    try:
        for name, store in stores.items():
            sqlite_store.INDEX_EVERY = every[name]
            for i in range(40):
                await store.append("audit", [RECORD] * 500, index=[index(i, j) for j in range(500)])
        # From here on the WAL only grows (no checkpoint), so its growth counts the pages each commit wrote.
        sqlite_store.CHECKPOINT_EVERY = sqlite_store.WAL_LIMIT = 1 << 40
        for store in stores.values():
            assert store._writer is not None
            store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        times: dict[str, list[float]] = {name: [] for name in stores}
        frames: dict[str, int] = dict.fromkeys(stores, 0)
        for i in range(args.commits):
            for name, store in stores.items():
                sqlite_store.INDEX_EVERY = every[name]
                wal = Path(f"{store.path}-wal")
                size = wal.stat().st_size
                t = time.perf_counter()
                await store.append("audit", [RECORD] * args.batch, index=[index(i, j) for j in range(args.batch)])
                times[name].append(time.perf_counter() - t)
                frames[name] += (wal.stat().st_size - size) // (4096 + 24)
        floor = fdatasync_ms(args.dir)
    finally:
        for store in stores.values():
            await store.close()
    print(f"\n{args.commits} commits of {args.batch} records each per store, alternating; "
          f"fdatasync here: {floor:.2f} ms (median)\n")
    print(f"{'store':30}{'median ms':>10}{'mean ms':>9}{'WAL pages/commit':>18}")
    for name, ts in times.items():
        print(f"{name:30}{statistics.median(ts) * 1e3:>10.2f}{statistics.mean(ts) * 1e3:>9.2f}"
              f"{frames[name] / args.commits:>18.1f}")
    a, b = (statistics.median(ts) for ts in times.values())
    print(f"\nB / A, median commit time: {b / a:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: the temp dir)")
    trio.run(main, ap.parse_args())
