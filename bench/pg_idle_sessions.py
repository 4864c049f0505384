"""Memory (RSS) of gw holding idle client sessions: 1,000, then 10,000, in one run.

PostgreSQL allows ~100 connections here, so gw's upstream is a pgbouncer in transaction mode (started by this
script) that multiplexes gw's upstream connections onto a small pool; what is measured is gw's own RSS (from
/proc/PID/status) at start and once each count of sessions is open.  Every session costs a client socket here,
one in gw, an upstream socket in gw and one in pgbouncer, so the script raises its open-file limit (the
gateway and pgbouncer inherit it) to what the largest count needs, up to the hard limit.

Two gateways are measured one after the other: one loading every plugin of the development install, and one
loading only what a PostgreSQL deployment installs (``pip install gw gw-postgres gw-jwt gw-audit gw-sqlite``;
the others are left out with ``GW_DISABLE_PLUGINS``, which keeps them from being imported at all).

    python bench/pg_idle_sessions.py [--sessions 1000 10000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

import psycopg
from common import Gateway, PgBouncer, psql

DB = "gw_bench"

TARGETS = {1000: 100, 10000: 500}  # sessions: RSS target in MB (docs/performance.md)

#: What ``pip install gw gw-postgres gw-jwt gw-audit gw-sqlite`` installs: every other installed plugin is left out.
POSTGRES_INSTALL = {"postgres", "jwt", "audit", "sqlite"}


def not_postgres() -> str:
    """The installed plugins a PostgreSQL gateway with audit does not install (for ``GW_DISABLE_PLUGINS``)."""
    return ",".join(sorted({ep.name for ep in entry_points(group="gw")} - POSTGRES_INSTALL))


def raise_open_files(sessions: int) -> int:
    """Raise the soft open-file limit for ``sessions``; returns how many sessions the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * sessions + 1000  # gw and pgbouncer each hold a client and an upstream socket per session
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root with CAP_SYS_RESOURCE may
            return sessions
        except (ValueError, OSError):
            allowed = (hard - 1000) // 2
            print(f"{sessions} sessions need {want} open files and the hard limit is {hard}: measuring "
                  f"{allowed} instead (raise the limit with ulimit -Hn to measure {sessions})", file=sys.stderr)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return allowed
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return sessions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    counts = sorted(args.sessions)
    counts[-1] = raise_open_files(counts[-1])
    if psql(f"select 1 from pg_database where datname = '{DB}'") != "1":
        psql(f"create database {DB}")
    bouncer = PgBouncer(DB, pool_mode="transaction", max_client_conn=counts[-1] + 100, pool_size=10).start()
    rows = []
    try:
        for what, disabled in (("every plugin", ""), ("postgres install", not_postgres())):
            rows += measure(what, Gateway("audit", DB, upstream_port=bouncer.port, disable_plugins=disabled),
                            counts)
    finally:
        bouncer.stop()
    print(f"\n{'measurement':52}{'RSS':>10}{'at start':>10}{'per session':>13}  target")
    for what, count, before, after in rows:
        target = f"<= {TARGETS[count]} MB" if count in TARGETS else "-"
        print(f"{f'{count:,} idle sessions, RSS ({what})':52}{after / 1024:>7.1f} MB{before / 1024:>7.1f} MB"
              f"{(after - before) / count:>10.1f} kB  {target}")
    for want in args.sessions:
        measured = [r for r in rows if r[1] == max(counts)]
        if want not in counts and measured:  # the open-file limit stopped short: extrapolate, and say so
            for what, count, before, after in measured:
                estimate = before + (after - before) / count * want
                print(f"{f'{want:,} idle sessions, RSS ({what})':52}{estimate / 1024:>7.1f} MB  extrapolated "
                      f"from {count:,}  <= {TARGETS.get(want, '-')} MB")


def measure(what: str, gw: Gateway, counts: list[int]) -> list[tuple[str, int, int, int]]:
    gw.start()
    conns: list[psycopg.Connection] = []
    rows = []
    try:
        token = gw.token()
        time.sleep(0.5)
        before = gw.rss_kb()
        for count in counts:
            def connect(_: int) -> psycopg.Connection:
                return psycopg.connect(host="127.0.0.1", port=gw.port, user="bench-agent", password=token,
                                       dbname=DB, autocommit=True, prepare_threshold=None)

            with ThreadPoolExecutor(16) as pool:  # sessions open concurrently, as a fleet of agents would
                conns += pool.map(connect, range(count - len(conns)))
            conns[0].execute("select 1")
            time.sleep(1)
            after = gw.rss_kb()
            rows.append((what, count, before, after))
            print(f"  {what}: {count} sessions open, RSS {after / 1024:.1f} MB", file=sys.stderr, flush=True)
    finally:
        for c in conns:
            c.close()
        gw.stop()
    return rows


if __name__ == "__main__":
    main()
