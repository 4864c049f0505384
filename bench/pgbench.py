"""pgbench -S through gw vs PostgreSQL directly, pgbouncer and a bare trio relay, in one run.

For each protocol mode (simple, extended) and client count (1, 8) the targets run in turn, alternating,
for a fixed duration each; the script prints TPS and mean latency per target and the ratios to direct and to
the bare relay, and the CPU time per statement of gw, pgbouncer and the relay.  Rounds repeat with --rounds and
the median is reported.  While the gateways run, the size of their ``gw.db-wal`` is sampled every 50 ms; a
sustained run (``--sustained``, 60 s of pgbench -S with 8 clients through gw with audit) follows, and the
largest WAL seen is reported.  The last table is the target table of docs/performance.md, row by row.

    python bench/pgbench.py                    # 10 s per measurement, 1 round, 60 s sustained
    python bench/pgbench.py --duration 5 --clients 8 --modes simple --sustained 0

Targets: direct, pgbouncer (session mode), relay (bench/trio_relay.py), gw-none (no stage: gw's own cost),
gw-audit, gw-full (every stage).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Self

from common import PG, Gateway, PgBouncer, Relay, cpu_seconds, fdatasync_ms, psql

DB = "gw_bench"


def prepare(scale: int) -> None:
    if psql(f"select 1 from pg_database where datname = '{DB}'") != "1":
        psql(f"create database {DB}")
    if psql("select to_regclass('public.pgbench_accounts') is not null", DB) != "t":
        print(f"initialising pgbench tables (scale {scale}) in database {DB} ...", file=sys.stderr)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", PG["host"], "-p", str(PG["port"]),
                        "-U", PG["user"], DB], check=True, capture_output=True)


def run_pgbench(port: int, mode: str, clients: int, duration: int, user: str = "postgres",
                password: str | None = None) -> tuple[float, float]:
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    out = subprocess.run(
        ["pgbench", "-n", "-S", "-M", mode, "-c", str(clients), "-j", str(min(clients, 4)), "-T", str(duration),
         "-h", "127.0.0.1", "-p", str(port), "-U", user, DB],
        capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()[-500:]}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))  # type: ignore[union-attr]
    return tps, lat


class WalWatch:
    """Samples the size of gateways' ``-wal`` files every 50 ms in a thread; ``largest``: the maximum seen."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for p in self.paths:
                try:
                    self.largest = max(self.largest, p.stat().st_size)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def summary(med: dict[tuple[str, int, str], tuple[float, float]], wal: dict[str, int],
            floor: float | None = None) -> None:
    """The rows of the target table (docs/performance.md) that this run measured."""
    def ratio(mode: str, clients: int, a: str, b: str) -> str:
        if (mode, clients, a) in med and (mode, clients, b) in med:
            return f"{med[(mode, clients, a)][0] / med[(mode, clients, b)][0]:.2f}"
        return "-"

    def added(mode: str, clients: int, a: str, b: str) -> str:
        if (mode, clients, a) in med and (mode, clients, b) in med:
            return f"+{med[(mode, clients, a)][1] - med[(mode, clients, b)][1]:.3f} ms"
        return "-"

    rows = []
    for mode in ("simple", "extended"):
        both = f"{ratio(mode, 1, 'gw-none', 'relay')} / {ratio(mode, 8, 'gw-none', 'relay')}"
        rows.append((f"gw, no stage / relay, c1 and c8 ({mode})", both, ">= 0.9"))
    for mode in ("simple", "extended"):
        rows.append((f"gw, audit / relay, c8 ({mode})", ratio(mode, 8, "gw-audit", "relay"), ">= 0.6"))
    rows.append(("gw, audit, added latency at c1 (vs relay, simple)", added("simple", 1, "gw-audit", "relay"),
                 "<= +0.3 ms"))
    if floor is not None:  # a durable commit cannot take less than this
        rows.append(("  one fdatasync of a 4 kB append where gw's store is (median)", f"{floor:.3f} ms", ""))
    for mode in ("simple", "extended"):
        rows.append((f"gw, full pipeline / relay, c8 ({mode})", ratio(mode, 8, "gw-full", "relay"),
                     ">= 0.45"))
    for what, size in wal.items():
        rows.append((f"sqlite WAL, largest seen ({what})", f"{size / 2**20:.1f} MB", "<= 64 MB"))
    print("\ntarget table\n")
    print(f"{'measurement':66}{'this run':>12}  target")
    for name, value, target in rows:
        print(f"{name:66}{value:>12}  {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["simple", "extended"],
                    choices=["simple", "extended", "prepared"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--targets", nargs="+",
                    default=["direct", "pgbouncer", "relay", "gw-none", "gw-audit", "gw-full"])
    ap.add_argument("--sustained", type=int, default=60,
                    help="seconds of pgbench -S c8 through gw with audit while the WAL is watched (0: skip)")
    args = ap.parse_args()

    prepare(args.scale)
    started: list[Gateway | PgBouncer | Relay] = []
    gateways: list[Gateway] = []
    targets: dict[str, tuple[int, str, str | None]] = {}
    #: Processes whose CPU time per statement is reported: each proxy (gw, pgbouncer, the bare relay).
    pids: dict[str, int] = {}
    try:
        if "direct" in args.targets:
            targets["direct"] = (PG["port"], "postgres", None)
        if "pgbouncer" in args.targets:
            b = PgBouncer(DB).start()
            started.append(b)
            targets["pgbouncer"] = (b.port, "postgres", None)
            assert b.proc is not None
            pids["pgbouncer"] = b.proc.pid
        if "relay" in args.targets:
            r = Relay().start()
            started.append(r)
            targets["relay"] = (r.port, "postgres", None)
            assert r.proc is not None
            pids["relay"] = r.proc.pid
        for name, stages in (("gw-none", "none"), ("gw-audit", "audit"), ("gw-full", "full")):
            if name in args.targets:
                g = Gateway(stages, DB).start()
                started.append(g)
                gateways.append(g)
                targets[name] = (g.port, "bench-agent", g.token())
                assert g.proc is not None
                pids[name] = g.proc.pid

        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        #: CPU time per statement (µs), per process and client count: gw's is the sizing figure.
        cpu: dict[tuple[str, int], list[float]] = {}
        wal: dict[str, int] = {}
        with WalWatch([g.dir / "state" / "gw.db-wal" for g in gateways]) as watch:
            for _ in range(args.rounds):
                for mode in args.modes:
                    for clients in args.clients:
                        for name, (port, user, password) in targets.items():
                            used = cpu_seconds(pids[name]) if name in pids else 0.0
                            results.setdefault((mode, clients, name), []).append(
                                run_pgbench(port, mode, clients, args.duration, user, password))
                            if name in pids:
                                statements = results[(mode, clients, name)][-1][0] * args.duration
                                cpu.setdefault((name, clients), []).append(
                                    (cpu_seconds(pids[name]) - used) / statements * 1e6)
                            tps = results[(mode, clients, name)][-1][0]
                            print(f"  {mode:8} c={clients:<3} {name:10} tps={tps:.0f}", file=sys.stderr,
                                  flush=True)
        if gateways:
            wal["all runs above"] = watch.largest
        if args.sustained and "gw-audit" in targets:
            port, user, password = targets["gw-audit"]
            audit = next(g for g in gateways if g.stages == "audit")
            with WalWatch([audit.dir / "state" / "gw.db-wal"]) as watch:
                tps, _ = run_pgbench(port, "simple", 8, args.sustained, user, password)
            wal[f"{args.sustained} s of pgbench -S c8, audit, {tps:.0f} tps"] = watch.largest

        print(f"\npgbench -S, {args.duration}s per run, median of {args.rounds} round(s)\n")
        print(f"{'mode':9}{'clients':>8}  {'target':11}{'tps':>10}{'lat ms':>9}{'/direct':>9}{'/relay':>8}")
        for mode in args.modes:
            for clients in args.clients:
                med = {n: (statistics.median(t for t, _ in results[(mode, clients, n)]),
                           statistics.median(lat for _, lat in results[(mode, clients, n)])) for n in targets}
                for name in targets:
                    tps, lat = med[name]
                    d = f"{tps / med['direct'][0]:.2f}" if "direct" in med else "-"
                    vs_relay = f"{tps / med['relay'][0]:.2f}" if "relay" in med else "-"
                    print(f"{mode:9}{clients:>8}  {name:11}{tps:>10.0f}{lat:>9.3f}{d:>9}{vs_relay:>8}")
        if cpu:
            print("\nCPU time per statement of each proxy (all threads, all modes; 1e6 / us = "
                  "statements per second per core)\n")
            for (name, clients), us in sorted(cpu.items()):
                per = statistics.median(us)
                print(f"  {name:10} c={clients:<3} {per:7.0f} us  ~{1e6 / per:,.0f} statements/s per core")
        floor = fdatasync_ms(gateways[0].dir / "state") if gateways else None
        summary({(m, c, n): (statistics.median(t for t, _ in v), statistics.median(lat for _, lat in v))
                 for (m, c, n), v in results.items()}, wal, floor)
    finally:
        for s in started:
            s.stop()


if __name__ == "__main__":
    main()
