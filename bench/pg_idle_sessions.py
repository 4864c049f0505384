"""Memory (RSS) of gw holding N idle client sessions (default 1,000).

PostgreSQL allows ~100 connections here, so gw's upstream is a pgbouncer in transaction mode (started by this
script) that multiplexes gw's 1,000 upstream connections onto a small pool; what is measured is gw's own RSS
(from /proc/PID/status) before and after the sessions are open.

    python bench/pg_idle_sessions.py [--sessions 1000]
"""

from __future__ import annotations

import argparse
import time

import psycopg

from common import Gateway, PgBouncer, psql

DB = "gw_bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1000)
    args = ap.parse_args()
    if psql(f"select 1 from pg_database where datname = '{DB}'") != "1":
        psql(f"create database {DB}")
    bouncer = PgBouncer(DB, pool_mode="transaction", max_client_conn=args.sessions + 100, pool_size=10).start()
    gw = Gateway("audit", DB, upstream_port=bouncer.port).start()
    conns = []
    try:
        token = gw.token()
        time.sleep(0.5)
        before = gw.rss_kb()
        for _ in range(args.sessions):
            conn = psycopg.connect(host="127.0.0.1", port=gw.port, user="bench-agent", password=token, dbname=DB,
                                   autocommit=True, prepare_threshold=None)
            conns.append(conn)
        conns[0].execute("select 1")
        time.sleep(1)
        after = gw.rss_kb()
        print(f"\ngw RSS: {before / 1024:.1f} MB at start, {after / 1024:.1f} MB with {len(conns)} idle sessions "
              f"({(after - before) / len(conns):.1f} kB per session)")
    finally:
        for c in conns:
            c.close()
        gw.stop()
        bouncer.stop()


if __name__ == "__main__":
    main()
