"""sysbench (oltp_point_select, oltp_read_only) through gw vs MariaDB/MySQL directly and a bare trio relay,
in one run.

For each test and thread count the targets run in turn for a fixed duration each; the script prints
transactions/s, mean latency and the ratios to direct and to the bare relay.  The targets the issue sets
for the postgres path hold here too: gw with no stage >= 0.9x the relay, gw with audit >= 0.6x.

    python bench/sysbench.py                         # 10 s per measurement, 1 and 8 threads
    python bench/sysbench.py --duration 5 --threads 4 --tests oltp_point_select

Targets: direct, relay (bench/trio_relay.py), gw-none (no stage: gw's own cost), gw-audit, gw-full (every
stage of the canonical agents pipeline).  sysbench comes from Debian (``apt-get install sysbench``); it uses
prepared statements (the binary protocol) where the test allows.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

from common import BIN, STAGES, Relay, free_port, wait_port


class MariaDB(TypedDict):
    host: str
    port: int
    user: str
    password: str


MY: MariaDB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
DB = "gw_sysbench"


def sysbench(test: str, port: int, user: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sysbench", test, "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
         f"--mysql-user={user}", f"--mysql-password={password}", f"--mysql-db={DB}", "--mysql-ssl=off",
         "--tables=1", "--table-size=10000", *args], capture_output=True, text=True, check=False)


def prepare() -> None:
    subprocess.run(["mariadb", "-h", MY["host"], "-P", str(MY["port"]), "-u", MY["user"], "-e",
                    f"CREATE DATABASE IF NOT EXISTS {DB}"], check=True)
    check = subprocess.run(["mariadb", "-h", MY["host"], "-u", MY["user"], "-N", "-e",
                            f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{DB}'"],
                           capture_output=True, text=True, check=True)
    if check.stdout.strip() == "0":
        print(f"preparing sysbench tables in database {DB} ...", file=sys.stderr)
        out = sysbench("oltp_read_only", MY["port"], MY["user"], MY["password"], "prepare")
        if out.returncode != 0:
            raise RuntimeError(out.stderr)


def run(test: str, port: int, user: str, password: str, threads: int, duration: int) -> tuple[float, float]:
    out = sysbench(test, port, user, password, f"--threads={threads}", f"--time={duration}", "--report-interval=0",
                   "run")
    if out.returncode != 0:
        raise RuntimeError(f"sysbench failed on port {port}: {(out.stderr or out.stdout).strip()[-500:]}")
    tps = float(re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", out.stdout).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"avg:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    return tps, lat


class MySQLGateway:
    """``gw serve`` with one mysql listener in front of the local server, on a generated pipeline."""

    def __init__(self, stages: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gw-bench-my-"))
        self.port = free_port()
        stage_text = STAGES[stages].replace("MASK_COLUMNS", '["ssn", "*.card_number"]')
        (self.dir / "pipeline.toml").write_text(f"""
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-bench"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[pipelines.bench]
stages = [
  {stage_text}
]

[[listeners]]
name = "my"
protocol = "mysql"
listen = "127.0.0.1:{self.port}"
identity = "dev"
pipeline = "bench"

[listeners.upstream]
host = "{MY['host']}"
port = {MY['port']}
database = "{DB}"
user = "{MY['user']}"
""")
        self.env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MySQLGateway:
        self.log = open(self.dir / "gw.log", "wb")  # noqa: SIM115 - open while gw runs
        self.proc = subprocess.Popen([str(BIN / "gw"), "serve", str(self.dir / "pipeline.toml"), "--log-level",
                                      "warning"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def token(self) -> str:
        return subprocess.run([str(BIN / "gw"), "token", "issue", "-c", str(self.dir / "pipeline.toml"),
                               "--identity", "dev", "--sub", "bench-agent", "--group", "agents", "--ttl", "2h"],
                              env=self.env, capture_output=True, text=True, check=True).stdout.strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--tests", nargs="+", default=["oltp_point_select", "oltp_read_only"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--targets", nargs="+", default=["direct", "relay", "gw-none", "gw-audit", "gw-full"])
    args = ap.parse_args()
    if shutil.which("sysbench") is None:
        sys.exit("sysbench is not installed: apt-get install sysbench")

    prepare()
    started: list[object] = []
    targets: dict[str, tuple[int, str, str]] = {}
    try:
        if "direct" in args.targets:
            targets["direct"] = (MY["port"], MY["user"], MY["password"])
        if "relay" in args.targets:
            r = Relay(upstream_port=MY["port"]).start()
            started.append(r)
            targets["relay"] = (r.port, MY["user"], MY["password"])
        for name, stages in (("gw-none", "none"), ("gw-audit", "audit"), ("gw-full", "full")):
            if name in args.targets:
                g = MySQLGateway(stages).start()
                started.append(g)
                targets[name] = (g.port, "bench-agent", g.token())

        results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for test in args.tests:
                for threads in args.threads:
                    for name, (port, user, password) in targets.items():
                        results.setdefault((test, threads, name), []).append(
                            run(test, port, user, password, threads, args.duration))
                        print(f"  {test:18} t={threads:<3} {name:9} tps={results[(test, threads, name)][-1][0]:.0f}",
                              file=sys.stderr, flush=True)

        print(f"\nsysbench, {args.duration}s per run, median of {args.rounds} round(s)\n")
        print(f"{'test':19}{'threads':>8}  {'target':10}{'tps':>10}{'lat ms':>9}{'/direct':>9}{'/relay':>8}")
        for test in args.tests:
            for threads in args.threads:
                med = {n: (statistics.median(t for t, _ in results[(test, threads, n)]),
                           statistics.median(lat for _, lat in results[(test, threads, n)])) for n in targets}
                for name in targets:
                    tps, lat = med[name]
                    d = f"{tps / med['direct'][0]:.2f}" if "direct" in med else "-"
                    vs_relay = f"{tps / med['relay'][0]:.2f}" if "relay" in med else "-"
                    print(f"{test:19}{threads:>8}  {name:10}{tps:>10.0f}{lat:>9.3f}{d:>9}{vs_relay:>8}")
    finally:
        for s in started:
            s.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
