"""`gw serve --workers 2` end to end: two worker processes accept on one port (SO_REUSEPORT) and share the
SQLite store (WAL); psql and pgbench through them; SIGHUP validated once and applied by every worker; a worker
killed with SIGKILL is restarted; SIGTERM drains all; each worker writes its own chain NAME.w1 / NAME.w2 and
`gw audit verify` passes."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gw.testing import GatewayProcess, free_port, require_program, require_service, wait_for

GW = str(Path(sys.executable).with_name("gw"))

PIPELINE = """
[gateway]
name = "edge"
data_dir = ".gw"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
groups_claim = "groups"

[pipelines.agents]
stages = [
  { use = "audit" },
  { use = "guard", deny = [ { verb = "truncate" }DENY ] },
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:PORT"
identity = "dev"
pipeline = "agents"

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""


def gw(path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GW, *args, "-c", str(path)], check=False, capture_output=True, text=True, env=env,
                          timeout=60)


def psql(port: int, token: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-XAtq", "-c", sql],
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGPASSWORD": token})


def worker_pids(proc: GatewayProcess) -> dict[int, int]:
    """Worker number -> pid of its newest start, from the supervisor's log."""
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)",
                                                                   proc.output())}


def test_two_workers_serve_reload_restart_and_drain(tmp_path: Path) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    pgbench = require_program("pgbench")
    port = free_port()
    path = tmp_path / "edge.toml"
    path.write_text(PIPELINE.replace("PORT", str(port)).replace("DENY", ""))
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    out = gw(path, env, "token", "issue", "--sub", "agent-7", "--group", "agents", "--ttl", "1h")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()

    proc = GatewayProcess(path, env=env, args=["--workers", "2"], timeout=90).start()
    try:
        wait_for(lambda: len(worker_pids(proc)) == 2 and proc.output().count("listener orders") >= 2, timeout=30)
        pids = worker_pids(proc)
        assert psql(port, token, "select 1").stdout.strip() == "1"

        # pgbench, one connection per transaction: the kernel spreads them over both workers
        script = tmp_path / "select.sql"
        script.write_text("SELECT 1;\n")
        bench = subprocess.run([pgbench, "-n", "-C", "-c", "4", "-j", "2", "-t", "25", "-f", str(script),
                                "-h", "127.0.0.1", "-p", str(port), "-U", "agent-7", "test"], check=False,
                               capture_output=True, text=True, timeout=120, env={**env, "PGPASSWORD": token})
        assert bench.returncode == 0, bench.stdout + bench.stderr
        assert "number of failed transactions: 0" in bench.stdout

        # SIGHUP: the supervisor validates the file once, then every worker applies it
        path.write_text(PIPELINE.replace("PORT", str(port)).replace("DENY", ', { verb = "select" }'))
        proc.signal(signal.SIGHUP)
        wait_for(lambda: proc.output().count("reloaded") >= 2, timeout=20)
        for _ in range(6):  # new connections land on either worker: all refuse now
            refused = psql(port, token, "select 2")
            assert refused.returncode != 0 and "guard" in refused.stderr, refused.stderr
        path.write_text("this is not toml [")
        proc.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused, the workers keep the running configuration" in proc.output(), timeout=20)
        assert psql(port, token, "select 3").returncode != 0  # still the reloaded (valid) configuration

        # a worker killed with SIGKILL is started again (it reads the file as it is now); service goes on
        path.write_text(PIPELINE.replace("PORT", str(port)).replace("DENY", ', { verb = "select" }'))
        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: worker_pids(proc).get(1, pids[1]) != pids[1], timeout=30)
        wait_for(lambda: proc.output().count("listener orders") >= 3, timeout=30)
        assert "worker 1" in proc.output() and "starting it again" in proc.output()
        assert psql(port, token, "truncate x").returncode != 0

        # SIGTERM: every worker drains and exits, then the supervisor
        assert proc.proc is not None
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
        for pid in worker_pids(proc).values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        proc.stop()

    path.write_text(PIPELINE.replace("PORT", str(port)).replace("DENY", ""))
    verify = gw(path, env, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    chains = {r["chain"]: r for r in json.loads(verify.stdout)}
    assert set(chains) == {"edge.w1", "edge.w2"}, chains
    assert all(c["ok"] for c in chains.values())
