"""The README's quickstart, end to end: examples/quickstart.toml served by `gw serve`, real psql and psycopg
against the real PostgreSQL, `gw token issue` and `gw audit list` as an operator runs them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from gw.testing import GatewayProcess, free_port, require_program, require_service

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))


@pytest.fixture
def quickstart(tmp_path: Path):  # type: ignore[no-untyped-def]
    """examples/quickstart.toml as written, copied to a temporary directory with a free port."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    port = free_port()
    text = (ROOT / "examples" / "quickstart.toml").read_text().replace("127.0.0.1:15432", f"127.0.0.1:{port}")
    path = tmp_path / "quickstart.toml"
    path.write_text(text)
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    env.pop("ORDERS_DB_PASSWORD", None)
    proc = GatewayProcess(path, env=env).start()
    yield path, port, env, proc
    proc.stop()


def gw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GW, *args], capture_output=True, text=True, env=env, timeout=60)


def token(path: Path, env: dict[str, str], sub: str = "agent-7", group: str = "agents", ttl: str = "1h") -> str:
    out = gw("token", "issue", "-c", str(path), "--identity", "dev", "--sub", sub, "--group", group, "--ttl", ttl,
             env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def psql(port: int, password: str, sql: str, user: str = "agent-7") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user={user} dbname=test", "-XAtq", "-v",
                           "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": password})


def direct(sql: str) -> str:
    return subprocess.run(["psql", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-XAtq", "-c", sql],
                          capture_output=True, text=True, check=True).stdout


def test_quickstart_psql_and_audit(quickstart) -> None:  # type: ignore[no-untyped-def]
    path, port, env, _ = quickstart
    tok = token(path, env)
    out = psql(port, tok, "select 1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"

    table = f"gw_qs_{secrets.token_hex(4)}"
    try:
        script = (f"create table {table} (id int, name text); insert into {table} values (1, 'a'), (2, 'b'); "
                  f"select count(*) from {table}")
        out = psql(port, tok, script)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "2"
        same = f"select id, name from {table} order by id"
        assert psql(port, tok, same).stdout == direct(same)
    finally:
        direct(f"drop table if exists {table}")

    listing = gw("audit", "list", "-c", str(path), "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    records = json.loads(listing.stdout)
    texts = [r.get("text") or r.get("statement") for r in records]
    assert "select 1" in texts
    mine = [r for r in records if (r.get("text") or r.get("statement")) == "select 1"][0]
    assert mine["subject"] == "agent-7"
    assert "agents" in mine["groups"]
    table_out = gw("audit", "list", "-c", str(path), "--user", "agent-7", env=env)
    assert "select 1" in table_out.stdout and "agent-7" in table_out.stdout


def test_quickstart_psycopg_simple_protocol(quickstart) -> None:  # type: ignore[no-untyped-def]
    psycopg = pytest.importorskip("psycopg")
    path, port, env, _ = quickstart
    tok = token(path, env)
    with psycopg.connect(host="127.0.0.1", port=port, user="agent-7", password=tok, dbname="test",
                         autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("select 40 + 2 as answer, 'x'::text")
        assert cur.fetchall() == [(42, "x")]


def test_refusals_are_clear_and_others_keep_working(quickstart) -> None:  # type: ignore[no-untyped-def]
    path, port, env, _ = quickstart
    good = token(path, env)
    outsider = token(path, env, sub="visitor", group="guests")
    out = psql(port, outsider, "select 1", user="visitor")
    assert out.returncode != 0
    assert "not in a group allowed" in out.stderr
    out = psql(port, "not-a-token", "select 1")
    assert out.returncode != 0 and "token" in out.stderr.lower()
    assert psql(port, good, "select 2").stdout.strip() == "2"


def test_check_and_disabled_plugin(quickstart) -> None:  # type: ignore[no-untyped-def]
    path, _, env, _ = quickstart
    ok = gw("check", str(path), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "orders" in ok.stdout and "postgres" in ok.stdout and "audit" in ok.stdout
    assert "password" not in ok.stdout.lower() or "password_env" not in ok.stdout
    bad = gw("check", str(path), env={**env, "GW_DISABLE_PLUGINS": "audit"})
    assert bad.returncode != 0
    assert "pipelines.agents.stages[0].use" in bad.stderr
    assert "unknown stage 'audit'" in bad.stderr


def test_plugins_lists_the_bundled_plugins() -> None:
    out = subprocess.run([GW, "plugins", "--json"], capture_output=True, text=True, check=True)
    names = {p["name"] for p in json.loads(out.stdout)}
    assert {"postgres", "jwt", "audit", "sqlite"} <= names


def test_upstream_password_never_reaches_client_or_check(tmp_path: Path) -> None:
    """gw holds the upstream password: `gw check` output never shows it."""
    text = (ROOT / "examples" / "quickstart.toml").read_text()
    path = tmp_path / "q.toml"
    path.write_text(text)
    env = {**os.environ, "ORDERS_DB_PASSWORD": "s3cret-upstream-pw", "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    out = gw("check", str(path), "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert "s3cret-upstream-pw" not in out.stdout + out.stderr


def test_whoami_explains_who_a_token_is_and_where_it_may_go(quickstart) -> None:  # type: ignore[no-untyped-def]
    path, _, env, _ = quickstart
    agent = token(path, env)
    out = gw("whoami", "-c", str(path), "--token", agent, env=env)
    assert out.returncode == 0, out.stderr
    assert "subject:  agent-7" in out.stdout and "agents" in out.stdout
    assert "orders (postgres on" in out.stdout and "allowed" in out.stdout
    guest = token(path, env, sub="visitor", group="guests")
    info = json.loads(gw("whoami", "-c", str(path), "--token", guest, "--json", env=env).stdout)
    assert info["subject"] == "visitor"
    assert info["listeners"][0]["allowed"] is False
    assert "needs one of: agents, dba" in info["listeners"][0]["reason"]
    bad = gw("whoami", "-c", str(path), "--token", agent[:-4] + "AAAA", env=env)
    assert bad.returncode == 1
    assert "token refused" in bad.stdout
