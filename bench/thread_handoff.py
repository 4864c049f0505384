"""The floor of an audited statement's latency at one client, in its parts, on this machine.

    python bench/thread_handoff.py [--n 2000] [--dir /path/on/the/disk/to/measure]

gw's audit stage hands each batch of records to the store's writer thread (a queue ``put``) and is woken when
it has committed (``TrioToken.run_sync_soon``); at one client every statement waits for one such round trip
and one commit.  This measures, with nothing of gw in the way:

* the round trip alone: a trio task queues a job for a thread that does nothing but answer;
* the round trip with an ``fdatasync`` of a 4 kB append in the thread (the shape of a commit);
* the same ``fdatasync`` run inline, for what the two thread switches add to it.

Prints medians and 90th percentiles in microseconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from queue import SimpleQueue

import trio


def _percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.9)] * 1e6


async def _round_trips(n: int, fd: int | None) -> list[float]:
    jobs: SimpleQueue[trio.Event | None] = SimpleQueue()
    token = trio.lowlevel.current_trio_token()

    def writer() -> None:
        while (done := jobs.get()) is not None:
            if fd is not None:
                os.write(fd, b"x" * 4096)
                os.fdatasync(fd)
            token.run_sync_soon(done.set)

    thread = threading.Thread(target=writer, name="bench-writer")
    thread.start()
    times = []
    try:
        for _ in range(n):
            done = trio.Event()
            start = time.perf_counter()
            jobs.put(done)
            await done.wait()
            times.append(time.perf_counter() - start)
    finally:
        jobs.put(None)
        thread.join()
    return times


def _inline(n: int, fd: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        os.write(fd, b"x" * 4096)
        os.fdatasync(fd)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per measurement")
    parser.add_argument("--dir", default=None, help="where the fdatasync'd file goes (default: a temp dir)")
    args = parser.parse_args()
    fd, path = tempfile.mkstemp(dir=args.dir)
    try:
        rows = [
            ("trio -> thread -> trio, nothing done", trio.run(_round_trips, args.n, None)),
            ("trio -> thread (4 kB append + fdatasync) -> trio", trio.run(_round_trips, args.n // 4, fd)),
            ("4 kB append + fdatasync inline", _inline(args.n // 4, fd)),
        ]
    finally:
        os.close(fd)
        os.unlink(path)
    print(f"{'measurement':52}{'median us':>11}{'p90 us':>9}")
    for name, times in rows:
        median, p90 = _percentiles(times)
        print(f"{name:52}{median:>11.0f}{p90:>9.0f}")


if __name__ == "__main__":
    main()
