"""gw.testing's helpers for end-to-end tests: gw_cli, cli_token and a GatewayProcess's gw()/token()."""

from __future__ import annotations

import json
from pathlib import Path

from gw.testing import GatewayProcess, cli_token, gw_cli, write_pipeline

PIPELINE = """
[storage]
use = "sqlite"
path = "gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_TEST_KIT_SECRET"

[pipelines.agents]
stages = [{ use = "audit" }]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"
allow_groups = ["dba"]

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""
ENV = {"GW_TEST_KIT_SECRET": "k" * 40}


def whoami(path: Path, token: str) -> dict[str, object]:
    out = gw_cli("whoami", "-c", str(path), "--token", token, "--json", env=ENV)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_cli_token_is_one_the_pipeline_accepts(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, PIPELINE)
    me = whoami(path, cli_token(path, "ann", "dba", "agents", env=ENV))
    assert me["subject"] == "ann" and me["groups"] == ["dba", "agents"]
    assert whoami(path, cli_token(path, env=ENV))["groups"] == ["agents"]  # agent-7 of agents by default


def test_gw_cli_reports_a_failing_command_without_raising(tmp_path: Path) -> None:
    out = gw_cli("check", str(tmp_path / "missing.toml"), env=ENV)
    assert out.returncode != 0 and "missing.toml" in out.stderr


def test_a_gateway_process_runs_gw_commands_in_its_environment(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, PIPELINE)
    with GatewayProcess(path, env=ENV, timeout=90) as proc:
        token = proc.token("dora", "dba")
        out = proc.gw("whoami", "-c", str(path), "--token", token, "--json")
        assert out.returncode == 0, out.stderr
        listeners = json.loads(out.stdout)["listeners"]
        assert listeners == [{"name": "orders", "protocol": "postgres", "listen": "127.0.0.1:0", "allowed": True}]
