"""Audited pgbench -S through gw: the sqlite store vs the postgres store, and `gw serve --workers 1/2`.

Every target is gw with the audit stage (one durable record per statement before it is forwarded); what
changes is where the records go and how many processes serve.  Prints TPS and mean latency per target, the
ratio to the first one, and the machine's core count (workers only help with cores to run on).

    python bench/stores.py                          # 10 s per target, 8 clients
    python bench/stores.py --duration 5 --clients 4
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys

from common import PG, Gateway, psql, wait_port

DB = "gw_bench"


def prepare() -> None:
    if psql(f"select 1 from pg_database where datname = '{DB}'") != "1":
        psql(f"create database {DB}")
    if psql("select to_regclass('public.pgbench_accounts') is not null", DB) != "t":
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", PG["host"], "-p", str(PG["port"]), "-U",
                        PG["user"], DB], check=True, capture_output=True)


def start(gw: Gateway, store: str, workers: int | None, schema: str) -> subprocess.Popen[bytes]:
    path = gw.dir / "pipeline.toml"
    if store == "postgres":
        text = path.read_text().replace('use = "sqlite"\npath = "state/gw.db"',
                                        f'use = "postgres"\ndsn = "host={PG["host"]} port={PG["port"]} '
                                        f'user={PG["user"]} dbname={DB}"\nschema = "{schema}"')
        path.write_text(text)
    args = [sys.executable, "-c", "from gw.cli import main; main()", "serve", str(path), "--log-level", "warning"]
    if workers:
        args += ["--workers", str(workers)]
    gw.log = open(gw.dir / "gw.log", "wb")  # noqa: SIM115 -- kept open while the gateway runs
    proc = subprocess.Popen(args, env=gw.env, stdout=gw.log, stderr=subprocess.STDOUT)
    wait_port(gw.port, 90)
    return proc


def pgbench(port: int, token: str, clients: int, duration: int) -> tuple[float, float]:
    out = subprocess.run(["pgbench", "-n", "-S", "-c", str(clients), "-j", str(min(clients, 4)), "-T",
                          str(duration), "-h", "127.0.0.1", "-p", str(port), "-U", "bench-agent", DB],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": token}, check=True)
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))  # type: ignore[union-attr]
    return tps, latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    prepare()
    targets = [("sqlite", None), ("postgres", None), ("sqlite", 1), ("sqlite", 2), ("postgres", 2)]
    results = []
    for store, workers in targets:
        gw = Gateway("audit", DB)
        schema = f"gw_bench_{secrets.token_hex(4)}"
        proc = start(gw, store, workers, schema)
        try:
            token = gw.token()
            tps, latency = pgbench(gw.port, token, args.clients, args.duration)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if store == "postgres":
                psql(f"drop schema if exists {schema} cascade", DB)
        label = f"{store} store, " + (f"--workers {workers}" if workers else "one process")
        results.append((label, tps, latency))
        print(f"{label:32} {tps:9.0f} tps  {latency:7.2f} ms", file=sys.stderr)
    print(f"\naudited pgbench -S, {args.clients} clients, {args.duration} s each, {os.cpu_count()} cores")
    print(f"{'target':32} {'tps':>9} {'latency':>10} {'vs first':>9}")
    for label, tps, latency in results:
        print(f"{label:32} {tps:9.0f} {latency:8.2f}ms {tps / results[0][1]:8.2f}x")


if __name__ == "__main__":
    main()
