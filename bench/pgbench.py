"""pgbench -S through gw vs PostgreSQL directly, pgbouncer and a bare trio relay, in one run.

For each protocol mode (simple, extended) and client count (1, 8, 32) the targets run in turn, alternating,
for a fixed duration each; the script prints TPS and mean latency per target and the ratios to direct and to the
bare relay.  Rounds repeat with --rounds and the median is reported.

    python bench/pgbench.py                    # 10 s per measurement, 1 round
    python bench/pgbench.py --duration 5 --clients 8 --modes simple

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

from common import PG, Gateway, PgBouncer, Relay, psql

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
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()[-500:]}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))  # type: ignore[union-attr]
    return tps, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--modes", nargs="+", default=["simple", "extended"],
                    choices=["simple", "extended", "prepared"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--targets", nargs="+", default=["direct", "pgbouncer", "relay", "gw-audit", "gw-full"])
    args = ap.parse_args()

    prepare(args.scale)
    started = []
    targets: dict[str, tuple[int, str, str | None]] = {}
    try:
        if "direct" in args.targets:
            targets["direct"] = (PG["port"], "postgres", None)
        if "pgbouncer" in args.targets:
            b = PgBouncer(DB).start()
            started.append(b)
            targets["pgbouncer"] = (b.port, "postgres", None)
        if "relay" in args.targets:
            r = Relay().start()
            started.append(r)
            targets["relay"] = (r.port, "postgres", None)
        for name, stages in (("gw-none", "none"), ("gw-audit", "audit"), ("gw-full", "full")):
            if name in args.targets:
                g = Gateway(stages, DB).start()
                started.append(g)
                targets[name] = (g.port, "bench-agent", g.token())

        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for mode in args.modes:
                for clients in args.clients:
                    for name, (port, user, password) in targets.items():
                        results.setdefault((mode, clients, name), []).append(
                            run_pgbench(port, mode, clients, args.duration, user, password))
                        print(f"  {mode:8} c={clients:<3} {name:10} tps={results[(mode, clients, name)][-1][0]:.0f}",
                              file=sys.stderr, flush=True)

        print(f"\npgbench -S, {args.duration}s per run, median of {args.rounds} round(s)\n")
        print(f"{'mode':9}{'clients':>8}  {'target':11}{'tps':>10}{'lat ms':>9}{'/direct':>9}{'/relay':>8}")
        for mode in args.modes:
            for clients in args.clients:
                med = {n: (statistics.median(t for t, _ in results[(mode, clients, n)]),
                           statistics.median(lat for _, lat in results[(mode, clients, n)])) for n in targets}
                for name in targets:
                    tps, lat = med[name]
                    d = f"{tps / med['direct'][0]:.2f}" if "direct" in med else "-"
                    r = f"{tps / med['relay'][0]:.2f}" if "relay" in med else "-"
                    print(f"{mode:9}{clients:>8}  {name:11}{tps:>10.0f}{lat:>9.3f}{d:>9}{r:>8}")
    finally:
        for s in started:
            s.stop()


if __name__ == "__main__":
    main()
