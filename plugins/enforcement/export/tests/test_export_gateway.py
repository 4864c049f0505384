"""The export stage end to end: ``gw serve`` with real psql traffic against the real PostgreSQL, streaming to
receivers the test runs -- syslog over TCP (RFC 5424, octet counting) that goes down and comes back, across a
gateway restart too; syslog over UDP; an HTTPS collector that refuses for a while; a file -- and bad
configuration."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gw.testing import GatewayProcess, gw_cli, require_program, require_service, wait_for

sys.path.insert(0, str(Path(__file__).parent))
from receivers import HTTPSCollector, SyslogTCPReceiver, SyslogUDPReceiver

ADMIN = re.compile(r"admin endpoint on http://([0-9.]+):(\d+)")

PIPELINE = """
[gateway]
data_dir = ".gw"
name = "gw-test"
admin_listen = "127.0.0.1:0"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [ {{ verb = "truncate" }} ] }},
  {export},
]

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


@pytest.fixture
def env() -> dict[str, str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    return {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "SIEM_TOKEN": secrets.token_hex(8)}


def write(tmp_path: Path, export: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(export=export))
    return path


def psql(port: int, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-XAtq", "-c", sql],
                          check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": password})


def marked(events: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "command" and marker in str(e.get("text"))]


def metric(proc: GatewayProcess, name: str) -> float:
    m = wait_for(lambda: ADMIN.search(proc.output()))
    out = subprocess.run(["curl", "-s", f"http://{m.group(1)}:{m.group(2)}/metrics"], check=False,
                         capture_output=True, text=True, timeout=30)
    total = 0.0
    for line in out.stdout.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_commands(proc: GatewayProcess, tok: str, marker: str, n: int = 3) -> None:
    for i in range(n):
        started = time.monotonic()
        out = psql(proc.port("orders"), tok, f"select '{marker}-{i}'")
        assert out.returncode == 0, out.stderr  # a sink outage never refuses a command
        assert time.monotonic() - started < 10  # ... nor holds it (the sink is not on the data path)


def test_syslog_tcp_down_and_back_nothing_lost(tmp_path: Path, env: dict[str, str]) -> None:
    receiver = SyslogTCPReceiver()
    receiver.up()
    path = write(tmp_path, f'{{ use = "export", to = "syslog+tcp://127.0.0.1:{receiver.port}" }}')
    try:
        with GatewayProcess(path, env=env, timeout=90) as proc:
            tok = proc.token()
            run_commands(proc, tok, "first")
            events = wait_for(lambda: len(marked(receiver.events(), "first")) == 3 and receiver.events())
            # the gw audit list --json record plus event and gateway
            first = marked(events, "first")
            assert [e["text"] for e in first] == [f"select 'first-{i}'" for i in range(3)]
            for e in first:
                assert e["gateway"] == "gw-test" and e["listener"] == "orders" and e["subject"] == "agent-7"
                assert e["verdict"] == "allowed" and isinstance(e["id"], int) and e["time"].endswith("+00:00")
                assert e["hash"] and e["chain"] == "gw-test"
            kinds = {e["event"] for e in events}
            assert {"session_start", "command", "outcome", "session_end"} <= kinds
            # in order per session: start, (command, outcome)*, end
            session = first[0]["session"]
            order = [e["event"] for e in events if e.get("session") == session]
            assert order == ["session_start", "command", "outcome", "session_end"]
            messages = receiver.messages()
            assert {m["hostname"] for m in messages} == {"gw-test"}
            assert all(m["pri"] // 8 == 10 for m in messages)  # authpriv

            receiver.down()
            run_commands(proc, tok, "during")
            assert wait_for(lambda: metric(proc, "gw_export_backlog") > 0)
            assert metric(proc, "gw_export_sink_up") == 0
            info = proc.gw("storage", "info", "-c", str(path))
            assert info.returncode == 0, info.stderr
            assert re.search(r"export syslog\+tcp://127\.0\.0\.1:\d+: delivered up to audit id \d+; [1-9]\d* "
                             r"record\(s\) behind", info.stdout), info.stdout
            receiver.up()
            wait_for(lambda: len(marked(receiver.events(), "during")) == 3, timeout=30)
            wait_for(lambda: metric(proc, "gw_export_backlog") == 0, timeout=15)
            assert metric(proc, "gw_export_sink_up") == 1

            # down again, and gw restarts while it is down: nothing is lost across the restart
            receiver.down()
            run_commands(proc, tok, "before-restart")
        with GatewayProcess(path, env=env, timeout=90) as proc:
            run_commands(proc, tok, "after-restart")
            receiver.up()
            wait_for(lambda: len(marked(receiver.events(), "after-restart")) == 3, timeout=30)
            wait_for(lambda: len(marked(receiver.events(), "before-restart")) == 3, timeout=30)
            ids = [e["id"] for e in receiver.events()]  # at least once: duplicates allowed, gaps not
            audit = proc.gw("audit", "list", "-c", str(path), "--json", "--limit", "1000")
            listed = {r["id"] for r in json.loads(audit.stdout)}
            assert listed <= set(ids), "every audited command reached the receiver"
    finally:
        receiver.down()


def test_syslog_udp_and_cef(tmp_path: Path, env: dict[str, str]) -> None:
    receiver = SyslogUDPReceiver()
    path = write(tmp_path, f'{{ use = "export", to = "syslog+udp://127.0.0.1:{receiver.port}" }}')
    try:
        with GatewayProcess(path, env=env, timeout=90) as proc:
            tok = proc.token()
            run_commands(proc, tok, "udp", n=2)
            assert psql(proc.port("orders"), tok, "truncate gw_nothing").returncode != 0
            wait_for(lambda: len(marked(receiver.events(), "udp")) == 2)
            denied = wait_for(lambda: [e for e in receiver.events() if e.get("verdict") == "denied"])
            assert denied[0]["stage"] == "guard" and denied[0]["text"] == "truncate gw_nothing"
    finally:
        receiver.close()


def test_https_collector_that_fails_for_a_while(tmp_path: Path, env: dict[str, str]) -> None:
    collector = HTTPSCollector(tmp_path, fail=3)
    export = (f'{{ use = "export", to = "https://127.0.0.1:{collector.port}/ingest", ca_file = "{collector.cert}", '
              'headers = { Authorization = "Bearer ${SIEM_TOKEN}" }, retry_max = "1s" }')
    path = write(tmp_path, export)
    try:
        with GatewayProcess(path, env=env, timeout=90) as proc:
            tok = proc.token()
            run_commands(proc, tok, "https")
            wait_for(lambda: len(marked(collector.events(), "https")) == 3, timeout=30)
            assert collector.refused == 3
            assert all(h["authorization"] == f"Bearer {env['SIEM_TOKEN']}" for h in collector.headers)
            assert all(h["content-type"] == "application/json" for h in collector.headers)
            assert metric(proc, "gw_export_errors_total") >= 3
        log = proc.output()
        assert "answered HTTP 503" in log and env["SIEM_TOKEN"] not in log
    finally:
        collector.close()


def test_file_sink_json_and_cef(tmp_path: Path, env: dict[str, str]) -> None:
    jsonl, cef = tmp_path / "audit" / "audit.jsonl", tmp_path / "audit.cef"
    export = (f'{{ use = "export", to = "file://{jsonl}" }},\n'
              f'  {{ use = "export", to = "file://{cef}", format = "cef" }}')
    path = write(tmp_path, export)
    with GatewayProcess(path, env=env, timeout=90) as proc:
        tok = proc.token()
        run_commands(proc, tok, "file", n=2)
        wait_for(lambda: jsonl.exists() and len(marked([json.loads(x) for x in jsonl.read_text().splitlines()],
                                                        "file")) == 2)
        wait_for(lambda: cef.exists() and "file-1" in cef.read_text())
    lines = cef.read_text().splitlines()
    command = next(x for x in lines if "file-0" in x)
    assert command.startswith("CEF:0|gw|gw|") and "|command:allowed|command allowed|3|" in command
    assert "suser=agent-7" in command and "cs1=select 'file-0'" in command and "cs1Label=statement" in command
    assert "dvchost=gw-test" in command


@pytest.mark.parametrize(("export", "message"), [
    ('{ use = "export", to = "ftp://siem.example/x" }', 'stages[2].to: expected "syslog+tcp://HOST:PORT"'),
    ('{ use = "export", to = "http://siem.example/ingest" }', "stages[2].to: http:// sends the audit trail"),
    ('{ use = "export", to = "https://user:pw@siem.example/" }', "stages[2].to: put credentials in headers"),
    ('{ use = "export", to = "syslog+tcp://127.0.0.1:514", headers = { A = "b" } }',
     "headers apply to https sinks only"),
    ('{ use = "export", to = "syslog+tcp://127.0.0.1:514", format = "xml" }', "stages[2].format"),
    ('{ use = "export", to = "syslog+tcp://127.0.0.1:514", batch = 0 }', "stages[2].batch"),
])
def test_bad_config(tmp_path: Path, env: dict[str, str], export: str, message: str) -> None:
    path = write(tmp_path, export)
    out = gw_cli("check", str(path), env=env)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_export_needs_audit_and_set_env(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(export='{ use = "export", to = "file:///tmp/x.jsonl" }')
                    .replace('{ use = "audit" },', ""))
    out = gw_cli("check", str(path), env=env)
    assert out.returncode != 0 and "has no audit stage" in out.stderr

    path = write(tmp_path, '{ use = "export", to = "https://127.0.0.1:1/x", headers = { A = "${GW_NOPE_UNSET}" } }')
    out = gw_cli("serve", str(path), env=env)
    assert out.returncode != 0
    assert "environment variable GW_NOPE_UNSET is not set" in out.stderr
