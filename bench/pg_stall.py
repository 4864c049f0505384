"""How long other sessions wait while one session sends a very large statement through gw.

    python bench/pg_stall.py                     # 1.3 MB and 3.4 MB statements, 3 rounds each

A probe session runs ``select 1`` back to back (psycopg, simple protocol) and records each statement's latency.
Meanwhile another session sends ``select 1 where 1 in (0, 1, ..., N)`` (1.3 MB: N = 199,999; 3.4 MB: N =
499,999), which gw must classify before forwarding.  Reported per target (PostgreSQL directly, gw with the
canonical agents pipeline): the probe's median latency with nothing else running, its longest latency while the
large statement was in flight (the delay other sessions see), and how long the large statement itself took.
``--stages audit`` measures classification alone; ``--stages full`` (the default) adds the mask stage, for
which gw also works out the statement's column lineage.

gw analyses statements above 64 KiB in a worker thread, so the probe's worst case should stay in the same order
as its baseline (it shares the CPU and the GIL with the analysis, so it is not zero); before that change a
1.3 MB statement stalled every session for seconds.  Timings vary with the machine: compare the probe's worst
latency with its baseline in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import psycopg
from common import PG, Gateway

SIZES = {"1.3 MB": 199_999, "3.4 MB": 499_999}


def statement(n: int) -> str:
    return "select 1 where 1 in (" + ",".join(str(i) for i in range(n + 1)) + ")"


def dsn(port: int, user: str, password: str | None) -> str:
    return f"host=127.0.0.1 port={port} user={user} dbname=postgres" + (f" password={password}" if password else "")


class Probe(threading.Thread):
    """``select 1`` in a loop; latencies (seconds) with the time each ended."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.conn.execute("select 1").fetchone()
            ended = time.perf_counter()
            self.samples.append((ended, ended - started))
            time.sleep(0.005)
        self.conn.close()

    def worst_between(self, start: float, end: float) -> float:
        # A probe statement that started during the window and ended after it counts too.
        return max((lat for t, lat in self.samples if t >= start and t - lat <= end), default=0.0)


def measure(conninfo: str, text: str, rounds: int) -> tuple[float, float, float]:
    probe = Probe(conninfo)
    probe.start()
    time.sleep(1.0)
    baseline = statistics.median(lat for _, lat in probe.samples) if probe.samples else 0.0
    worst: list[float] = []
    took: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as heavy:
        for _ in range(rounds):
            started = time.perf_counter()
            heavy.execute(text).fetchone()
            ended = time.perf_counter()
            time.sleep(0.2)  # let the probe statement in flight at the end finish
            took.append(ended - started)
            worst.append(probe.worst_between(started, ended))
    probe.stop.set()
    probe.join(10)
    return baseline, max(worst), statistics.median(took)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stages", default="full", choices=["audit", "full"],
                    help="gw's pipeline: audit only, or the canonical agents pipeline (guard, approve, mask)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args()
    gw = Gateway(args.stages, "postgres", extra_listener='max_analysis_size = "4MiB"').start()
    try:
        targets = {"direct": dsn(PG["port"], "postgres", None),
                   f"gw ({args.stages})": dsn(gw.port, "bench-agent", gw.token())}
        print(f"\nprobe = 'select 1' in another session; large statement: median of {args.rounds} round(s)\n")
        print(f"{'target':22}{'statement':>10}{'probe median ms':>17}{'probe worst ms':>16}{'statement s':>13}")
        for label in args.sizes:
            text = statement(SIZES[label])
            for name, conninfo in targets.items():
                try:
                    baseline, worst, took = measure(conninfo, text, args.rounds)
                except psycopg.Error as e:
                    print(f"{name:22}{label:>10}  failed: {str(e).splitlines()[0]}")
                    continue
                print(f"{name:22}{label:>10}{baseline * 1000:>17.2f}{worst * 1000:>16.1f}{took:>13.2f}")
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
