"""Audit chains are claimed in the store: two real `gw serve` processes, real psql, `gw audit verify`.

* examples/quickstart.toml and examples/agents.toml run side by side (the newcomer's path): separate data
  directories, both chains verify;
* two gateways on one store with one chain name: the second refuses to start and names the holder and the
  setting to change; with `gw serve --name` both run and every chain verifies;
* a gateway killed with SIGKILL and started again continues its own chain (the dead holder's claim is taken).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gw.testing import GatewayProcess, free_port, require_program, require_service

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))


def gw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GW, *args], check=False, capture_output=True, text=True, env=env, timeout=60)


def psql(port: int, token: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-XAtq", "-v",
                           "ON_ERROR_STOP=1", "-c", sql], check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": token})


def token(path: Path, env: dict[str, str]) -> str:
    out = gw("token", "issue", "-c", str(path), "--identity", "dev", "--sub", "agent-7", "--group", "agents",
             "--ttl", "1h", env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def example(tmp_path: Path, name: str, *, listen: str) -> tuple[Path, int]:
    port = free_port()
    text = (ROOT / "examples" / f"{name}.toml").read_text().replace(listen, f"127.0.0.1:{port}")
    text = text.replace('admin_listen = "127.0.0.1:9464"', 'admin_listen = "127.0.0.1:0"')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, port


def verify(path: Path, env: dict[str, str]) -> list[dict[str, object]]:
    out = gw("audit", "verify", "-c", str(path), "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    reports = json.loads(out.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.fixture
def env() -> dict[str, str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    env.pop("ORDERS_DB_PASSWORD", None)
    return env


def test_quickstart_and_agents_examples_run_together_and_verify(tmp_path: Path, env: dict[str, str]) -> None:
    quick, quick_port = example(tmp_path, "quickstart", listen="127.0.0.1:15432")
    agents, agents_port = example(tmp_path, "agents", listen="127.0.0.1:15433")
    with GatewayProcess(quick, env=env), GatewayProcess(agents, env=env):
        for path, port in ((quick, quick_port), (agents, agents_port)):
            tok = token(path, env)
            for i in range(3):
                out = psql(port, tok, f"select {i}")
                assert out.returncode == 0, out.stderr
    assert (tmp_path / ".gw" / "quickstart" / "gw.db").exists()
    assert (tmp_path / ".gw" / "agents" / "gw.db").exists()
    for path in (quick, agents):
        reports = verify(path, env)
        assert len(reports) == 1 and reports[0]["ok"] and int(reports[0]["verified"]) >= 6  # type: ignore[call-overload]


def shared_store(tmp_path: Path, name: str) -> tuple[Path, int]:
    """The quickstart pipeline with the old shared layout: every copy on one database file."""
    port = free_port()
    text = (ROOT / "examples" / "quickstart.toml").read_text().replace("127.0.0.1:15432", f"127.0.0.1:{port}")
    text = text.replace('".gw/quickstart/gw.db"', '".gw/shared.db"')
    text = text.replace("[gateway]\n", "[gateway]\nname = \"gw-a\"\nchain_lease = \"30s\"\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, port


def test_second_gateway_on_the_same_chain_refuses_then_runs_under_its_own_name(tmp_path: Path,
                                                                              env: dict[str, str]) -> None:
    first, first_port = shared_store(tmp_path, "first")
    second, second_port = shared_store(tmp_path, "second")
    with GatewayProcess(first, env=env) as a:
        tok = token(first, env)
        assert psql(first_port, tok, "select 1").returncode == 0

        refused = subprocess.run([GW, "serve", str(second)], check=False, capture_output=True, text=True, env=env,
                                 timeout=30)
        assert refused.returncode != 0
        assert "audit chain 'gw-a' is held by gateway 'gw-a'" in refused.stderr, refused.stderr
        assert f"pid {a.proc.pid}" in refused.stderr  # type: ignore[union-attr]
        assert "[gateway] name" in refused.stderr and "gw serve --name NAME" in refused.stderr
        assert "Traceback" not in refused.stderr

        with GatewayProcess(second, env=env, args=["--name", "gw-b"]):
            for port in (first_port, second_port):
                for i in range(5):
                    out = psql(port, tok, f"select {i}")
                    assert out.returncode == 0, out.stderr
    reports = {str(r["chain"]): r for r in verify(first, env)}
    assert set(reports) == {"gw-a", "gw-b"}
    assert all(r["ok"] for r in reports.values())
    listing = gw("audit", "list", "-c", str(first), "--json", "--chain", "gw-b", env=env)
    assert listing.returncode == 0, listing.stderr
    assert {r["gateway"] for r in json.loads(listing.stdout)} == {"gw-b"}


def test_gateway_killed_with_sigkill_continues_its_own_chain(tmp_path: Path, env: dict[str, str]) -> None:
    path, port = shared_store(tmp_path, "gw")
    a = GatewayProcess(path, env=env).start()
    tok = token(path, env)
    try:
        for i in range(3):
            assert psql(port, tok, f"select {i}").returncode == 0
    finally:
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
    before = verify(path, env)[0]
    # The claim's heartbeat is fresh (lease 30s) but its holder is a dead process on this host: taken over.
    with GatewayProcess(path, env=env) as b:
        for i in range(3):
            assert psql(port, tok, f"select {i}").returncode == 0
        assert "took over the claim of 'gw-a'" in b.output()
    after = verify(path, env)
    assert len(after) == 1 and after[0]["ok"] and after[0]["complete"]
    assert int(after[0]["verified"]) > int(before["verified"])  # type: ignore[call-overload]
