"""API keys through the postgres listener against the real PostgreSQL at 127.0.0.1:5432, with real clients:
one listener accepting both dev JWTs and API keys, revocation refusing new connections and ending open
sessions, and the operator's path end to end (`gw keys create` -> `gw serve` -> psql -> `gw keys revoke`)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from gw.testing import (
    GatewayProcess,
    free_port,
    require_program,
    require_service,
    running_gateway,
    write_pipeline,
)
from gw_apikey import ApiKeyProvider, keys

GW = str(Path(sys.executable).with_name("gw"))

PIPELINE = """
[gateway]
data_dir = ".gw"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[identity.ci-keys]
use = "apikey"
revocation_check = "{check}"

[pipelines.p]
stages = [{stages}]

[[listeners]]
name = "pg"
protocol = "postgres"
listen = "127.0.0.1:{port}"
identity = ["dev", "ci-keys"]
pipeline = "p"

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""


@pytest.fixture
def postgres() -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")


@pytest.fixture
def dev_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("GW_DEV_SECRET", secret)
    return secret


def dsn(port: int, user: str, password: str) -> str:
    return f"host=127.0.0.1 port={port} user={user} dbname=test password={password} connect_timeout=5"


async def connect(port: int, user: str, password: str) -> psycopg.Connection[Any]:
    return await trio.to_thread.run_sync(lambda: psycopg.connect(dsn(port, user, password), autocommit=True))


async def query(conn: psycopg.Connection[Any], sql: str) -> Any:
    return await trio.to_thread.run_sync(lambda: conn.execute(sql).fetchone())


async def test_one_listener_accepts_jwts_and_keys_and_revocation_ends_sessions(
        tmp_path: Path, postgres: None, dev_secret: str) -> None:
    path = write_pipeline(tmp_path, PIPELINE.format(check="100ms", stages="", port=0))
    async with running_gateway(path) as gw:
        port, listener = gw.port("pg"), gw.runtime.listeners["pg"]
        provider = gw.runtime.identity["ci-keys"]
        assert isinstance(provider, ApiKeyProvider)
        text, record = await provider.create_key("ci-nightly", ["etl"])
        with_key = await connect(port, "ci-nightly", text)
        with_jwt = await connect(port, "agent-7", gw.token("agent-7", ["agents"], identity="dev"))
        try:
            assert await query(with_key, "select 41 + 1") == (42,)
            assert await query(with_jwt, "select 'jwt'") == ("jwt",)
            assert sorted((s.session.identity.subject, s.session.identity.provider) for s in listener.sessions) \
                == [("agent-7", "dev"), ("ci-nightly", "ci-keys")]
            forged_head = f"gwk_{record.id}_{'A' * keys.SECRET_LENGTH}"
            with pytest.raises(psycopg.OperationalError, match="does not verify"):
                await connect(port, "ci-nightly", forged_head + keys.checksum(forged_head))

            await provider.revoke_key(record.id)
            with pytest.raises(psycopg.OperationalError, match="API key .* was revoked at"):
                await connect(port, "ci-nightly", text)
            with trio.fail_after(5):  # the open session ends at the next revocation check (100ms here)
                while any(s.session.identity.provider == "ci-keys" for s in listener.sessions):
                    await trio.sleep(0.05)
            with pytest.raises(psycopg.OperationalError, match="access was revoked"):
                await query(with_key, "select 1")
            assert await query(with_jwt, "select 'still here'") == ("still here",)  # other sessions unaffected
        finally:
            for conn in (with_key, with_jwt):
                await trio.to_thread.run_sync(conn.close)


async def test_reload_applies_new_deny_rules_and_keeps_reading_the_running_store(
        tmp_path: Path, postgres: None, dev_secret: str) -> None:
    text = PIPELINE.format(check="30s", stages="", port=0)
    path = write_pipeline(tmp_path, text)
    async with running_gateway(path) as gw:
        port, listener = gw.port("pg"), gw.runtime.listeners["pg"]
        before = gw.runtime.identity["ci-keys"]
        assert isinstance(before, ApiKeyProvider)
        mallory_key, _ = await before.create_key("mallory", ["etl"])
        ci_key, _ = await before.create_key("ci-nightly", ["etl"])
        mallory = await connect(port, "mallory", mallory_key)
        try:
            path.write_text(text.replace('revocation_check = "30s"',
                                         'revocation_check = "30s"\ndeny_subjects = ["mallory"]'))
            assert await gw.gateway.reload()
            after = gw.runtime.identity["ci-keys"]
            assert isinstance(after, ApiKeyProvider) and after is not before
            with trio.fail_after(5):  # core re-admits open sessions through the provider's admit()
                while any(s.session.identity.subject == "mallory" for s in listener.sessions):
                    await trio.sleep(0.05)
            with pytest.raises(psycopg.OperationalError, match="access was revoked"):
                await query(mallory, "select 1")
            with pytest.raises(psycopg.OperationalError, match="subject 'mallory' is denied by identity provider"):
                await connect(port, "mallory", mallory_key)
            # the new provider instance uses the running gateway's open store
            new_key, _ = await after.create_key("ci-weekly", [])
            for user, key in (("ci-nightly", ci_key), ("ci-weekly", new_key)):
                conn = await connect(port, user, key)
                assert await query(conn, "select 1") == (1,)
                await trio.to_thread.run_sync(conn.close)
        finally:
            await trio.to_thread.run_sync(mallory.close)


def gw_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GW, *args], check=False, capture_output=True, text=True, env=env, timeout=60)


def psql(port: int, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", f"host=127.0.0.1 port={port} user={user} dbname=test connect_timeout=5",
                           "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=False, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PGPASSWORD": password})


@pytest.fixture
def served(tmp_path: Path, postgres: None) -> Iterator[tuple[Path, int, dict[str, str], GatewayProcess]]:
    """The pipeline (with the audit stage) served by a real `gw serve` process."""
    require_program("psql")
    port = free_port()
    path = write_pipeline(tmp_path, PIPELINE.format(check="30s", stages='{ use = "audit" }', port=port))
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    proc = GatewayProcess(path, env=env).start()
    try:
        yield path, port, env, proc
    finally:
        proc.stop()


def test_operator_path_through_psql(served: tuple[Path, int, dict[str, str], GatewayProcess],
                                    tmp_path: Path) -> None:
    path, port, env, proc = served
    created = gw_cli("keys", "create", "-c", str(path), "--sub", "ci-nightly", "--group", "etl", "--ttl", "30d",
                     env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = keys.parse(key, "gwk_").key_id

    ok = psql(port, "ci-nightly", key, "select 'hello from ' || 'ci'")
    assert ok.returncode == 0 and ok.stdout.strip() == "hello from ci", ok.stderr + proc.output()
    token = gw_cli("token", "issue", "-c", str(path), "--identity", "dev", "--sub", "agent-7", "--group",
                   "agents", env=env).stdout.strip()
    assert psql(port, "agent-7", token, "select 2").stdout.strip() == "2"  # same listener, a JWT

    revoked = gw_cli("keys", "revoke", "-c", str(path), key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    refused = psql(port, "ci-nightly", key, "select 1")
    assert refused.returncode != 0
    assert f"API key {key_id} (subject 'ci-nightly') was revoked at" in refused.stderr, refused.stderr
    assert "ask the gateway operator for a new key" in refused.stderr

    audit = gw_cli("audit", "sessions", "-c", str(path), "--json", env=env)
    assert audit.returncode == 0, audit.stderr
    events = json.loads(audit.stdout)
    assert any(e["type"] == "session_refused" and e["reason"] == "revoked" for e in events), events
    assert any(e["type"] == "session_start" and e.get("subject") == "ci-nightly" for e in events), events

    # the key's clear text is nowhere in what gw stored -- while serving (WAL) and after shutdown
    secret = keys.parse(key, "gwk_").secret
    for moment in ("serving", "stopped"):
        if moment == "stopped":
            assert proc.stop() == 0
        files = [p for p in (tmp_path / ".gw").rglob("*") if p.is_file()]
        assert files
        for file in files:
            data = file.read_bytes()
            assert key.encode() not in data and secret.encode() not in data, (moment, file)
        assert key not in proc.output()
