"""A large result through gw vs PostgreSQL directly: rows/s with no mask rule and with two masked columns.

    python bench/pg_large_result.py               # 1,000,000 rows x 5 columns, 3 alternating rounds

Each round fetches the whole table with psql (unaligned output to /dev/null) from: direct, gw with the audit
stage only (no mask rule applies, so result bytes are forwarded untouched), gw masking two of the five columns
by name, and gw masking the same two columns with the value detectors of examples/agents.toml on (us_ssn,
credit_card, email, iban: every text column is scanned).  Prints median rows/s and the ratio to direct.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from common import PG, Gateway, cpu_seconds, psql

DB = "gw_bench"


def prepare(rows: int) -> None:
    if psql(f"select 1 from pg_database where datname = '{DB}'") != "1":
        psql(f"create database {DB}")
    have = psql("select count(*) from bench_people", DB, check=False)
    if have != str(rows):
        psql("drop table if exists bench_people", DB)
        psql("create table bench_people (id int primary key, name text, ssn text, email text, note text)", DB)
        psql(f"""insert into bench_people
                 select i, 'name ' || i, lpad((i % 899 + 100)::text, 3, '0') || '-45-' || lpad((i % 9999 + 1)::text, 4, '0'),
                        'user' || i || '@example.com', 'free text note number ' || i
                 from generate_series(1, {rows}) i""", DB)
        psql("analyze bench_people", DB)


def fetch(port: int, user: str, password: str | None) -> float:
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    started = time.perf_counter()
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", DB, "-At", "-o", os.devnull,
                    "-c", "select id, name, ssn, email, note from bench_people"], check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    prepare(args.rows)
    plain = Gateway("audit", DB).start()
    masked = Gateway("mask", DB, mask_columns='["ssn", "bench_people.email"]').start()
    detect = Gateway("mask-detect", DB, mask_columns='["ssn", "bench_people.email"]').start()
    targets = {"direct": (PG["port"], "postgres", None),
               "gw (no mask rule)": (plain.port, "bench-agent", plain.token()),
               "gw (2 masked cols)": (masked.port, "bench-agent", masked.token()),
               "gw (2 cols + detectors)": (detect.port, "bench-agent", detect.token())}
    pids = {name: g.proc.pid for name, g in (("gw (no mask rule)", plain), ("gw (2 masked cols)", masked),
                                             ("gw (2 cols + detectors)", detect)) if g.proc is not None}
    try:
        times: dict[str, list[float]] = {n: [] for n in targets}
        #: gw's CPU time per row (µs, all threads): the figure to compare when the machine is loaded.
        cpu: dict[str, list[float]] = {n: [] for n in pids}
        for _ in range(args.rounds):
            for name, (port, user, password) in targets.items():
                used = cpu_seconds(pids[name]) if name in pids else 0.0
                times[name].append(fetch(port, user, password))
                if name in pids:
                    cpu[name].append((cpu_seconds(pids[name]) - used) / args.rows * 1e6)
        direct = args.rows / statistics.median(times["direct"])
        print(f"\n{args.rows:,} rows x 5 columns, psql, median of {args.rounds} round(s)\n")
        print(f"{'target':26}{'seconds':>9}{'rows/s':>12}{'/direct':>9}{'gw CPU us/row':>15}")
        for name, ts in times.items():
            med = statistics.median(ts)
            us = f"{statistics.median(cpu[name]):>15.2f}" if name in cpu else ""
            print(f"{name:26}{med:>9.2f}{args.rows / med:>12,.0f}{(args.rows / med) / direct:>9.2f}{us}")
        ratio = {n: statistics.median(times["direct"]) / statistics.median(ts) for n, ts in times.items()}
        print("\ntarget table\n")
        print(f"{'measurement':78}{'this run':>9}  target")
        print(f"{'large result, no mask rule / direct':78}{ratio['gw (no mask rule)']:>9.2f}  >= 0.85")
        print(f"{'large result, two masked columns by name / direct':78}"
              f"{ratio['gw (2 masked cols)']:>9.2f}  -")
        print(f"{'large result, two masked columns, detectors of examples/agents.toml / direct':78}"
              f"{ratio['gw (2 cols + detectors)']:>9.2f}  >= 0.4")
    finally:
        plain.stop()
        masked.stop()
        detect.stop()


if __name__ == "__main__":
    main()
