"""pgbench -S through: PostgreSQL directly, a bare trio relay, gw with no stage, gw with the audit stage.

    /work/venv/bin/python compare.py [--seconds 5] [--clients 1,8] [--modes simple,extended]

Prints TPS and mean latency for each, and the ratios to direct and to the bare relay.  Needs pgbench, the
local PostgreSQL at 127.0.0.1:5432 (trust auth) and, for the gw runs, the gw-jwt/gw-audit/gw-sqlite plugins.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
GW = str(Path(sys.executable).with_name("gw"))
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"

CONFIG = """
[gateway]
data_dir = "{data}"
[storage]
use = "sqlite"
path = "{data}/gw.db"
[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
groups_claim = "groups"
[pipelines.none]
stages = []
[pipelines.audit]
stages = [{{ use = "audit" }}]
{full}
[[listeners]]
name = "none"
protocol = "postgres"
listen = "127.0.0.1:{p1}"
identity = "dev"
pipeline = "none"
[listeners.upstream]
host = "127.0.0.1"
database = "test"
user = "postgres"
sslmode = "disable"
[[listeners]]
name = "audit"
protocol = "postgres"
listen = "127.0.0.1:{p2}"
identity = "dev"
pipeline = "audit"
[listeners.upstream]
host = "127.0.0.1"
database = "test"
user = "postgres"
sslmode = "disable"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def pgbench(port: int, mode: str, clients: int, seconds: int, password: str | None) -> tuple[float, float]:
    env = {**os.environ}
    if password:
        env["PGPASSWORD"] = password
    out = subprocess.run(["pgbench", "-n", "-S", "-M", mode, "-c", str(clients), "-j", str(min(clients, 2)),
                          "-T", str(seconds), "-h", "127.0.0.1", "-p", str(port), "-U",
                          "agent" if password else "postgres", "test"],
                         capture_output=True, text=True, env=env, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return tps, lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--modes", default="simple,extended")
    args = ap.parse_args()
    subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-U", "postgres", "test"],
                   capture_output=True, check=False)
    relay_port, p1, p2 = free_port(), free_port(), free_port()
    relay = [sys.executable, str(HERE / "bare_relay.py"), str(relay_port), "127.0.0.1", "5432"]
    procs = [subprocess.Popen(relay)]
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    cfg = tmp / "bench.toml"
    cfg.write_text(CONFIG.format(data=tmp, p1=p1, p2=p2, full=""))
    env = {**os.environ, "GW_DEV_SECRET": SECRET}
    procs.append(subprocess.Popen([GW, "serve", str(cfg)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    try:
        for port in (relay_port, p1, p2):
            wait_port(port)
        token = subprocess.run([GW, "token", "issue", "-c", str(cfg), "--identity", "dev", "--sub", "agent",
                                "--group", "agents", "--ttl", "2h"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        targets = [("direct", 5432, None), ("bare relay", relay_port, None), ("gw no stage", p1, token),
                   ("gw audit", p2, token)]
        for mode in args.modes.split(","):
            for clients in (int(c) for c in args.clients.split(",")):
                results = {name: pgbench(port, mode, clients, args.seconds, pw) for name, port, pw in targets}
                d, r = results["direct"][0], results["bare relay"][0]
                print(f"-M {mode} -c {clients}")
                for name, (tps, lat) in results.items():
                    print(f"  {name:12s} {tps:9.0f} tps  {lat:7.3f} ms   x{tps / d:5.2f} direct   "
                          f"x{tps / r:5.2f} relay")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
