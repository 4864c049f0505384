"""The canonical agents pipeline (examples/agents.toml, issue 3's pipeline as written) end to end: `gw serve`
as a subprocess, real psql against the real PostgreSQL, `gw approvals` / `gw audit` / `gw sessions` / `gw policy
explain` as an operator runs them.  Nothing unmasked may reach anything gw persists."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gw.testing import GatewayProcess, free_port, require_program, require_service, wait_for

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))

SSN = "123-45-6789"
CARD = "4111 1111 1111 1111"          # Luhn-valid test card number
NOT_A_CARD = "4111 1111 1111 1112"    # 16 digits, Luhn-invalid: must pass unmasked


class Env:
    def __init__(self, path: Path, port: int, env: dict[str, str], proc: GatewayProcess, table: str) -> None:
        self.path, self.port, self.env, self.proc, self.table = path, port, env, proc, table

    def gw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GW, *args], capture_output=True, text=True, env=self.env, timeout=60)

    def token(self, sub: str, group: str) -> str:
        out = self.gw("token", "issue", "-c", str(self.path), "--sub", sub, "--group", group, "--ttl", "1h")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def psql(self, token: str, sql: str, user: str = "agent-7") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["psql", f"host=127.0.0.1 port={self.port} user={user} dbname=test", "-XAtq",
                               "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PGPASSWORD": token})


def direct(sql: str) -> str:
    return subprocess.run(["psql", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-XAtq", "-c", sql],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def agents(tmp_path: Path):  # type: ignore[no-untyped-def]
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    port = free_port()
    text = (ROOT / "examples" / "agents.toml").read_text().replace("127.0.0.1:15433", f"127.0.0.1:{port}")
    text = text.replace("127.0.0.1:18080", f"127.0.0.1:{free_port()}")  # the console listener
    text = text.replace('admin_listen = "127.0.0.1:9464"', 'admin_listen = "127.0.0.1:0"')
    path = tmp_path / "agents.toml"
    path.write_text(text)
    table = f"gw_people_{secrets.token_hex(4)}"
    direct(f"create table {table} (id int, name text, ssn text, note text); "
           f"insert into {table} values (1, 'ann', '{SSN}', 'card {CARD} on file'), "
           f"(2, 'bob', '219-09-9999', 'order ref {NOT_A_CARD}')")
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    env.pop("ORDERS_DB_PASSWORD", None)
    proc = GatewayProcess(path, env=env).start()
    try:
        yield Env(path, port, env, proc, table)
    finally:
        proc.stop()
        direct(f"drop table if exists {table}; drop table if exists {table}_x")


def test_ddl_denied_for_agents_and_allowed_for_dba(agents: Env) -> None:
    agent = agents.token("agent-7", "agents")
    out = agents.psql(agent, f"DROP TABLE {agents.table}")
    assert out.returncode != 0
    assert "42501" in out.stderr or "guard" in out.stderr
    assert "kind" in out.stderr and "ddl" in out.stderr
    assert direct(f"select count(*) from {agents.table}").strip() == "2"

    dba = agents.token("dora", "dba")
    out = agents.psql(dba, f"CREATE TABLE {agents.table}_x (id int); DROP TABLE {agents.table}_x", user="dora")
    assert out.returncode == 0, out.stderr

    out = agents.psql(agent, "DO $$ BEGIN PERFORM 1; END $$")
    assert out.returncode != 0 and "statement not recognised; rewrite it in plain SQL" in out.stderr


def test_masking_and_nothing_unmasked_is_persisted(agents: Env) -> None:
    agent = agents.token("agent-7", "agents")
    out = agents.psql(agent, f"select ssn as x, upper(ssn), note from {agents.table} order by id")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.strip().splitlines()]
    assert SSN not in out.stdout and CARD not in out.stdout
    assert rows[0][0] != SSN and rows[0][1] != SSN
    assert "card" in rows[0][2] and CARD not in rows[0][2]
    assert NOT_A_CARD in rows[1][2]  # Luhn-invalid: not a card number, not masked

    # a card number the agent typed itself is not stored either
    agents.psql(agent, f"select count(*) from {agents.table} where note like '%{CARD}%'")
    agents.proc.stop()  # flush recordings and audit, close the database
    state = agents.path.parent / ".gw"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files, "gw wrote nothing under data_dir"
    for p in files:
        data = p.read_bytes()
        for raw in (SSN, CARD, SSN.replace("-", "")):
            assert raw.encode() not in data, f"{raw} found in {p}"
    log = agents.proc.output()
    assert SSN not in log and CARD not in log


def test_delete_without_where_is_held_until_a_dba_approves(agents: Env) -> None:
    agent = agents.token("agent-7", "agents")
    dba = agents.token("dora", "dba")
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    held = threading.Thread(target=lambda: result.setdefault("out", agents.psql(agent, f"DELETE FROM {agents.table}")))
    held.start()

    def pending() -> list[dict[str, object]]:
        out = agents.gw("approvals", "list", "-c", str(agents.path), "--json")
        return [r for r in json.loads(out.stdout or "[]") if r.get("status") == "pending"]

    request = wait_for(pending, timeout=20)[0]
    assert direct(f"select count(*) from {agents.table}").strip() == "2"  # still held
    # the requester cannot approve, nor can a non-approver
    own = agents.gw("approvals", "approve", str(request["id"]), "-c", str(agents.path), "--token", agent)
    assert own.returncode != 0
    ok = agents.gw("approvals", "approve", str(request["id"]), "-c", str(agents.path), "--token", dba,
                   "--reason", "cleanup approved")
    assert ok.returncode == 0, ok.stderr
    held.join(30)
    assert result["out"].returncode == 0, result["out"].stderr
    assert direct(f"select count(*) from {agents.table}").strip() == "0"


def test_audit_verify_sessions_and_policy_explain(agents: Env) -> None:
    agent = agents.token("agent-7", "agents")
    assert agents.psql(agent, "select 1").stdout.strip() == "1"
    time.sleep(0.2)
    verify = agents.gw("audit", "verify", "-c", str(agents.path))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    sessions = agents.gw("sessions", "list", "-c", str(agents.path), "--json")
    assert sessions.returncode == 0, sessions.stderr
    assert any(s.get("subject") == "agent-7" for s in json.loads(sessions.stdout))

    def explain(sql: str, group: str) -> int:
        return agents.gw("policy", "explain", "-c", str(agents.path), "--listener", "orders", "--user", "alice",
                         "--group", group, sql).returncode

    assert explain("select * from users", "agents") == 0
    assert explain("DROP TABLE users", "agents") == 1
    assert explain("DROP TABLE users", "dba") == 0
    assert explain("DELETE FROM users", "agents") == 2
    assert explain("select 1; grant select on users to public", "agents") == 1  # admin: the dba's only
    assert explain("copy users from program 'id -u'", "agents") == 1
    assert explain("select pg_read_file('/etc/passwd')", "agents") == 1
    assert explain("alter system set work_mem = '1GB'", "agents") == 1
    assert explain("set role postgres", "agents") == 1
    assert explain("do $$ begin perform 1; end $$", "agents") == 1  # unknown
