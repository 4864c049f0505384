"""``gw audit tail --follow [--json]`` beside a running ``gw serve``: events appear as real psql commands run."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gw.testing import GatewayProcess, require_program, require_service, wait_for

GW = str(Path(sys.executable).with_name("gw"))

PIPELINE = """
[gateway]
data_dir = ".gw"
name = "tail-test"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[pipelines.agents]
stages = [ { use = "audit" }, { use = "guard", deny = [ { verb = "truncate" } ] } ]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""


def psql(port: int, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-XAtq", "-c", sql],
                          check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": password})


class Follower:
    """``gw audit tail --follow`` in a subprocess, its lines collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([GW, "audit", "tail", "--follow", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> tuple[int, str]:
        """SIGINT, then the exit status and stderr (killed if it does not end within 15 s)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_tail_follow_json_and_text(tmp_path: Path) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE)
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "GW_CONFIG": str(path)}
    with GatewayProcess(path, env=env, timeout=90) as proc:
        out = subprocess.run([GW, "token", "issue", "--identity", "dev", "--sub", "agent-7", "--group", "agents"],
                             check=False, capture_output=True, text=True, env=env, timeout=60)
        tok = out.stdout.strip()
        assert psql(proc.port("orders"), tok, "select 'before'").returncode == 0
        as_json = Follower("--json", "--limit", "1", env=env)
        as_text = Follower(env=env)
        try:
            # both print the newest events first: then they are following
            wait_for(lambda: as_json.lines and as_text.lines, timeout=60)
            marker = secrets.token_hex(4)
            assert psql(proc.port("orders"), tok, f"select '{marker}'").returncode == 0
            assert psql(proc.port("orders"), tok, "truncate gw_none").returncode != 0
            def denied_seen() -> list[dict[str, object]] | None:
                evs = [json.loads(x) for x in list(as_json.lines)]
                return evs if any(e.get("verdict") == "denied" for e in evs) else None

            events = wait_for(denied_seen, timeout=20)
            wait_for(lambda: any("denied: truncate gw_none" in x for x in as_text.lines), timeout=20)
        finally:
            stopped = [as_json.stop(), as_text.stop()]
    assert [code for code, _ in stopped] == [0, 0], stopped  # Ctrl-C ends a follow cleanly
    # --limit 1: the newest event, then what happened since, oldest first, every record type
    assert all("before" not in str(e.get("text")) for e in events)
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    command = next(e for e in events if e.get("event") == "command")
    session = [e["event"] for e in events if e.get("session") == command["session"]]
    assert session[:3] == ["session_start", "command", "outcome"]
    assert command["text"] == f"select '{marker}'" and command["gateway"] == "tail-test"
    assert command["verdict"] == "allowed" and isinstance(command["id"], int) and command["time"]
    # the text form starts with the newest 20 (the earlier session included)
    assert any("allowed: select 'before'" in x for x in as_text.lines)
    assert any(f"allowed: select '{marker}'" in x for x in as_text.lines)
