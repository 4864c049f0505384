"""The admin endpoint end to end: ``gw serve`` with ``[gateway] admin_listen``, scraped with curl and parsed with
prometheus_client's parser after real psql traffic against the real PostgreSQL; ``/readyz`` following an
upstream that goes away and comes back; bad configuration; JSON logs."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw.testing import GatewayProcess, free_port, gw_cli, require_program, require_service, wait_for
from prometheus_client.parser import text_string_to_metric_families

ADMIN = re.compile(r"admin endpoint on http://([0-9.]+):(\d+)")

PIPELINE = """
[gateway]
data_dir = ".gw"
admin_listen = "127.0.0.1:0"
{gateway_extra}

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
  {{ use = "mask", columns = ["secret_col"], detectors = ["email"] }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"
allow_groups = ["agents"]

[listeners.upstream]
host = "127.0.0.1"
port = {upstream_port}
database = "test"
user = "postgres"
"""


def curl(url: str) -> tuple[int, str]:
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "15", url],
                         check=False, capture_output=True, text=True, timeout=30)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body.removesuffix("\n")


def admin_url(proc: GatewayProcess) -> str:
    m = wait_for(lambda: ADMIN.search(proc.output()))
    return f"http://{m.group(1)}:{m.group(2)}"


def psql(port: int, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-XAtq", "-c", sql],
                          check=False, capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": password})


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in metrics.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


class Forwarder:
    """A TCP forwarder the test can take down and bring back on the same port (the listener's upstream)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            try:
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
            except OSError:
                pass
            self.server.close()
            self.server = None
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    fwd = Forwarder(("127.0.0.1", 5432))
    fwd.up()
    yield fwd
    fwd.down()


def write(tmp_path: Path, upstream_port: int, gateway_extra: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(upstream_port=upstream_port, gateway_extra=gateway_extra))
    return path


def test_metrics_health_and_counters_after_psql(tmp_path: Path, env: dict[str, str]) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    require_program("curl")
    path = write(tmp_path, 5432)
    with GatewayProcess(path, env=env, timeout=90) as proc:
        url = admin_url(proc)
        assert curl(f"{url}/healthz") == (200, "ok")
        assert curl(f"{url}/readyz") == (200, "ready")
        code, body = curl(f"{url}/nope")
        assert code == 404 and "/metrics" in body
        before = samples(curl(f"{url}/metrics")[1])
        assert value(before, "gw_build_info") == 1
        assert value(before, "gw_sessions_active", listener="orders", protocol="postgres") == 0

        tok = proc.token()
        secret = f"s3cr3t-{secrets.token_hex(6)}"
        for _ in range(3):
            assert psql(proc.port("orders"), tok, "select 1").returncode == 0
        assert psql(proc.port("orders"), tok, f"select '{secret}' as v, 'ann@example.com' as mail").returncode == 0
        denied = psql(proc.port("orders"), tok, "truncate some_table")
        assert denied.returncode != 0
        refused = psql(proc.port("orders"), f"not-a-token-{secret}", "select 1")
        assert refused.returncode != 0
        wrong_group = psql(proc.port("orders"), proc.token("agent-7", "others"), "select 1")
        assert wrong_group.returncode != 0

        code, text = curl(f"{url}/metrics")
        assert code == 200
        after = samples(text)
        assert value(after, "gw_commands_total", listener="orders", kind="read", verdict="allowed") == 4
        assert value(after, "gw_commands_total", listener="orders", verdict="denied") == 1
        assert value(after, "gw_sessions_total", listener="orders", protocol="postgres") == 5
        assert value(after, "gw_sessions_active", listener="orders") == 0
        assert value(after, "gw_sessions_refused_total", listener="orders", reason="unsupported_credential") == 1
        assert value(after, "gw_sessions_refused_total", listener="orders", reason="group_not_allowed") == 1
        assert value(after, "gw_command_decision_seconds_count", listener="orders", pipeline="agents") == 5
        assert value(after, "gw_audit_write_seconds_count", pipeline="agents") == 5
        assert value(after, "gw_stage_seconds_count", pipeline="agents", stage="guard", phase="check") == 5
        assert value(after, "gw_command_seconds_count", listener="orders", kind="read") == 4
        assert value(after, "gw_masked_values_total", listener="orders", detector="email") == 1
        assert value(after, "gw_rows_total", listener="orders") == 4
        # labels carry configured names and gw's own words only: no statement text, token or masked value
        assert secret not in text and "example.com" not in text and tok not in text
        assert "truncate" not in text.lower() and "select" not in text.lower()


def test_readyz_follows_the_upstream(tmp_path: Path, env: dict[str, str], forwarder: Forwarder) -> None:
    require_program("curl")
    path = write(tmp_path, forwarder.port)
    with GatewayProcess(path, env=env, timeout=90) as proc:
        url = admin_url(proc)
        assert curl(f"{url}/readyz") == (200, "ready")
        forwarder.down()
        code, body = curl(f"{url}/readyz")
        assert code == 503
        assert f"listener orders: upstream 127.0.0.1:{forwarder.port} is unreachable" in body
        assert curl(f"{url}/healthz") == (200, "ok")  # alive, just not ready
        assert value(samples(curl(f"{url}/metrics")[1]), "gw_ready") == 0
        forwarder.up()
        assert curl(f"{url}/readyz") == (200, "ready")
        assert value(samples(curl(f"{url}/metrics")[1]), "gw_ready") == 1


def test_bad_admin_listen(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(upstream_port=5432, gateway_extra="").replace(
        'admin_listen = "127.0.0.1:0"', 'admin_listen = "localhost"'))
    out = gw_cli("check", str(path), env=env)
    assert out.returncode != 0
    assert "gateway.admin_listen" in out.stderr and "HOST:PORT" in out.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path.write_text(PIPELINE.format(upstream_port=5432, gateway_extra="").replace(
            'admin_listen = "127.0.0.1:0"', f'admin_listen = "127.0.0.1:{port}"'))
        out = gw_cli("serve", str(path), env=env)
        assert out.returncode != 0
        assert f"admin_listen cannot listen on 127.0.0.1:{port}" in out.stderr


def test_admin_listen_without_the_plugin(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, 5432)
    out = gw_cli("serve", str(path), env={**env, "GW_DISABLE_PLUGINS": "metrics"})
    assert out.returncode != 0
    assert "gateway.admin_listen" in out.stderr and "gw-metrics" in out.stderr


def test_json_logs_parse_and_hold_no_secret(tmp_path: Path, env: dict[str, str]) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    path = write(tmp_path, 5432, gateway_extra='log_format = "json"\nlog_level = "debug"')
    with GatewayProcess(path, env=env, timeout=90) as proc:
        admin_url(proc)
        tok = proc.token()
        secret = f"s3cr3t-{secrets.token_hex(6)}"
        assert psql(proc.port("orders"), tok, "select 1").returncode == 0
        assert psql(proc.port("orders"), f"bad-{secret}", "select 1").returncode != 0
        time.sleep(0.3)
    lines = [line for line in proc.log if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    for r in records:
        assert list(r)[:4] == ["time", "level", "logger", "message"]
    assert any(r["logger"] == "gw.server" and "listener orders" in r["message"] for r in records)
    refused = [r for r in records if "refused" in r["message"]]
    assert refused and all(r.get("listener") in (None, "orders") for r in refused)
    text = "\n".join(lines)
    assert tok not in text and secret not in text and env["GW_DEV_SECRET"] not in text


def test_workers_counters_all_reach_metrics(tmp_path: Path, env: dict[str, str]) -> None:
    """Under --workers every worker binds the admin address; whichever answers reports every worker's counts."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    port, admin = free_port(), free_port()
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(upstream_port=5432, gateway_extra="")
                    .replace('admin_listen = "127.0.0.1:0"', f'admin_listen = "127.0.0.1:{admin}"')
                    .replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    with GatewayProcess(path, env=env, timeout=90, args=["--workers", "2"]) as proc:
        wait_for(lambda: len(ADMIN.findall(proc.output())) == 2, timeout=60)
        url = f"http://127.0.0.1:{admin}"
        tok = proc.token()
        sessions = 12
        for _ in range(sessions):
            assert psql(port, tok, "select 1").returncode == 0
        listed = proc.gw("audit", "list", "-c", str(path), "--json")
        served_by = {r["gateway"] for r in json.loads(listed.stdout)}
        assert len(served_by) == 2, served_by  # both workers served sessions (their own audit chains)
        for _ in range(6):  # the kernel spreads scrapes over the workers: each answer holds the total
            code, text = curl(f"{url}/metrics")
            assert code == 200
            got = samples(text)
            assert value(got, "gw_commands_total", listener="orders", verdict="allowed") == sessions
            assert value(got, "gw_sessions_total", listener="orders") == sessions
            assert value(got, "gw_sessions_active", listener="orders") == 0
        assert curl(f"{url}/readyz") == (200, "ready")


def test_approvals_pending_and_decided(tmp_path: Path, env: dict[str, str]) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(upstream_port=5432, gateway_extra='log_format = "json"').replace(
        '  {{ use = "audit" }},'.replace("{{", "{").replace("}}", "}"),
        '  { use = "audit" },\n  { use = "approve", approvers = ["dba"], timeout = "2m", mode = "hold", '
        'require = [ { verb = "delete" } ] },'))
    with GatewayProcess(path, env=env, timeout=90) as proc:
        url = admin_url(proc)
        held = subprocess.Popen(["psql", f"host=127.0.0.1 port={proc.port('orders')} user=agent-7 dbname=test",
                                 "-XAtq", "-c", "delete from gw_metrics_nothing"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PGPASSWORD": proc.token()})
        try:
            wait_for(lambda: value(samples(curl(f"{url}/metrics")[1]), "gw_approvals_pending",
                                   pipeline="agents") == 1, timeout=30)
            listed = proc.gw("approvals", "list", "-c", str(path), "--json")
            request = json.loads(listed.stdout)[0]["id"]
            approver = proc.token("dora", "dba")
            out = proc.gw("approvals", "deny", "-c", str(path), "--token", approver, "--reason", "no", request)
            assert out.returncode == 0, out.stderr
            held.wait(30)
        finally:
            held.kill()
        after = samples(curl(f"{url}/metrics")[1])
        assert value(after, "gw_approvals_pending", pipeline="agents") == 0
        assert value(after, "gw_approvals_decided_total", listener="orders", result="denied") == 1
        assert value(after, "gw_commands_total", listener="orders", kind="write", verdict="denied") == 1
        assert "gw_audit_queue_depth" in after
    # the JSON log lines written while the command was held name the session, the command and the request
    records = [json.loads(line) for line in proc.log if line.startswith("{")]
    about = [r for r in records if r.get("request_id") == request]
    assert about and all(r["listener"] == "orders" and r["subject"] == "agent-7" and r["seq"] == 1
                         for r in about)
