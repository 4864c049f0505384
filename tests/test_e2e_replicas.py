"""Several gateways, one truth: examples/replicas/ as written (plus a third replica), `gw serve` processes on
loopback sharing one PostgreSQL store (a schema of the test's own), real psql and psycopg clients.

* a command held on gw-a is approved through gw-b's CLI and runs on gw-a within a second;
* a just-in-time grant made through gw-c applies on gw-a at once;
* an API key revoked through gw-b is refused by gw-a at once, and gw-a's open session with it ends;
* `gw audit verify` through any gateway verifies every chain;
* kill -9 of a gateway under load loses no audit record of a forwarded statement (compared with a marker
  table in PostgreSQL); a command it held becomes `cancelled` when its lease expires and never runs; started
  again, it continues its own chain;
* the store's database refusing connections: commands are refused with a clear reason, and service resumes
  by itself.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gw.testing import GatewayProcess, free_port, require_program, require_service, wait_for

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))
DIRECT = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def direct(sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(DIRECT, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


class Replicas:
    def __init__(self, tmp_path: Path, schema: str, env: dict[str, str], *, lease: str = "15s") -> None:
        self.tmp_path, self.schema, self.env, self.lease = tmp_path, schema, env, lease
        self.paths: dict[str, Path] = {}
        self.ports: dict[str, int] = {}
        self.procs: dict[str, GatewayProcess] = {}

    def config(self, name: str, *, source: str = "gw-b", dsn_env: str = "GW_STORE_DSN") -> Path:
        text = (ROOT / "examples" / "replicas" / f"{source}.toml").read_text()
        port = free_port()
        text = re.sub(r'listen = "127\.0\.0\.1:\d+"', f'listen = "127.0.0.1:{port}"', text)
        text = text.replace(f'name = "{source}"', f'name = "{name}"')
        text = text.replace(f'data_dir = ".gw/{source}"', f'data_dir = ".gw/{name}"')
        text = text.replace('schema = "gw_replicas"', f'schema = "{self.schema}"')
        text = text.replace('chain_lease = "15s"', f'chain_lease = "{self.lease}"')
        text = text.replace('dsn_env = "GW_STORE_DSN"', f'dsn_env = "{dsn_env}"')
        path = self.tmp_path / f"{name}.toml"
        path.write_text(text)
        self.paths[name], self.ports[name] = path, port
        return path

    def start(self, name: str) -> GatewayProcess:
        proc = GatewayProcess(self.paths[name], env=self.env, timeout=60).start()
        self.procs[name] = proc
        return proc

    def gw(self, *args: str, via: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GW, *args, "-c", str(self.paths[via])], check=False, capture_output=True,
                              text=True, env=self.env, timeout=60)

    def token(self, sub: str, group: str, via: str = "gw-a") -> str:
        out = self.gw("token", "issue", "--identity", "dev", "--sub", sub, "--group", group, "--ttl", "1h",
                      via=via)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def psql(self, name: str, secret: str, sql: str, user: str = "agent-7") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["psql", f"host=127.0.0.1 port={self.ports[name]} user={user} dbname=test",
                               "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=False, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PGPASSWORD": secret})

    def connect(self, name: str, secret: str, user: str = "agent-7") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.ports[name], user=user, dbname="test",
                               password=secret, autocommit=True, connect_timeout=10)

    def pending(self, via: str) -> list[dict[str, object]]:
        out = self.gw("approvals", "list", "--json", via=via)
        assert out.returncode == 0, out.stderr
        return [r for r in json.loads(out.stdout) if r["status"] == "pending"]

    def verify(self, via: str) -> dict[str, dict[str, object]]:
        out = self.gw("audit", "verify", "--json", via=via)
        assert out.returncode == 0, out.stdout + out.stderr
        return {str(r["chain"]): r for r in json.loads(out.stdout)}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture
def store_schema() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    name = f"gw_test_{secrets.token_hex(5)}"
    yield name
    direct(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def env() -> dict[str, str]:
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "GW_STORE_DSN": DIRECT}
    env.pop("ORDERS_DB_PASSWORD", None)
    return env


@pytest.fixture
def table() -> Iterator[str]:
    name = f"gw_rep_{secrets.token_hex(4)}"
    direct(f"CREATE TABLE {name} (id int, note text); INSERT INTO {name} SELECT g, 'n' FROM generate_series(1, 5) g")
    yield name
    direct(f"DROP TABLE IF EXISTS {name}")


def test_three_gateways_share_approvals_grants_and_revocations(tmp_path: Path, store_schema: str,
                                                               env: dict[str, str], table: str) -> None:
    rep = Replicas(tmp_path, store_schema, env)
    rep.config("gw-a", source="gw-a")
    rep.config("gw-b", source="gw-b")
    rep.config("gw-c", source="gw-b")
    try:
        for name in ("gw-a", "gw-b", "gw-c"):
            rep.start(name)
        agent, dba = rep.token("agent-7", "agents"), rep.token("dora", "dba", via="gw-c")
        for name in ("gw-b", "gw-c"):
            assert rep.psql(name, agent, "SELECT 1").returncode == 0

        # hold on A, approve through B: runs on A within a second
        done: dict[str, object] = {}

        def held() -> None:
            done["out"] = rep.psql("gw-a", agent, f"DELETE FROM {table}")
            done["at"] = time.monotonic()

        thread = threading.Thread(target=held)
        thread.start()
        request = wait_for(lambda: rep.pending("gw-b"), timeout=30)[0]
        assert request["gateway"] == "gw-a" and request["text"] == f"DELETE FROM {table}"
        assert direct(f"SELECT count(*) FROM {table}") == [(5,)]
        ok = rep.gw("approvals", "approve", str(request["id"]), "--token", dba, via="gw-b")
        approved_at = time.monotonic()
        assert ok.returncode == 0, ok.stderr
        thread.join(30)
        out = done["out"]
        assert isinstance(out, subprocess.CompletedProcess) and out.returncode == 0, out
        latency = float(done["at"]) - approved_at  # type: ignore[arg-type]
        assert latency < 1.0, f"the approved command ran {latency:.2f}s after the approval"
        assert direct(f"SELECT count(*) FROM {table}") == [(0,)]

        # a grant made through C applies on A at once: the next write without WHERE is not held
        direct(f"INSERT INTO {table} VALUES (1, 'x')")
        granted = rep.gw("approvals", "grant", "--token", dba, "--user", "agent-7", "--listener", "orders",
                         "--for", "10m", "--reason", "migration", via="gw-c")
        assert granted.returncode == 0, granted.stderr
        out = rep.psql("gw-a", agent, f"DELETE FROM {table}")
        assert out.returncode == 0 and "approval required" not in out.stderr, out.stderr
        assert direct(f"SELECT count(*) FROM {table}") == [(0,)]

        # a key revoked through B: A refuses new connections with it at once and ends its open session
        made = rep.gw("keys", "create", "--provider", "keys", "--sub", "ci-job", "--group", "agents", via="gw-a")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        key_id = re.search(r"created API key (\S+)", made.stderr).group(1)  # type: ignore[union-attr]
        session = rep.connect("gw-a", key, user="ci-job")
        assert session.execute("SELECT 1").fetchone() == (1,)
        revoked = rep.gw("keys", "revoke", "--provider", "keys", key_id, via="gw-b")
        assert revoked.returncode == 0, revoked.stderr
        refused_at = time.monotonic()
        out = rep.psql("gw-a", key, "SELECT 1", user="ci-job")
        assert out.returncode != 0 and "revoked" in out.stderr, out.stderr
        assert time.monotonic() - refused_at < 1.0 + 0.5  # psql start-up included

        def ended() -> bool:
            try:
                session.execute("SELECT 1")
            except psycopg.Error:
                return True
            return False

        wait_for(ended, timeout=3)
        session.close()
    finally:
        rep.stop()

    chains = rep.verify("gw-c")
    assert set(chains) == {"gw-a", "gw-b", "gw-c"}
    assert all(c["ok"] for c in chains.values()), chains
    listing = rep.gw("audit", "list", "--json", "--chain", "gw-a", via="gw-b")
    texts = [r.get("text") for r in json.loads(listing.stdout)]
    assert f"DELETE FROM {table}" in texts


def test_kill_9_under_load_loses_no_record_and_a_held_command_never_runs(tmp_path: Path, store_schema: str,
                                                                         env: dict[str, str],
                                                                         table: str) -> None:
    rep = Replicas(tmp_path, store_schema, env, lease="3s")
    rep.config("gw-a", source="gw-a")
    rep.config("gw-b", source="gw-b")
    marks = f"{table}_marks"
    direct(f"CREATE TABLE {marks} (tag text PRIMARY KEY)")
    try:
        a, _ = rep.start("gw-a"), rep.start("gw-b")
        agent, dba = rep.token("agent-7", "agents"), rep.token("dora", "dba")

        # a command held on A
        held = threading.Thread(target=lambda: rep.psql("gw-a", agent, f"DELETE FROM {table}"))
        held.start()
        request = wait_for(lambda: rep.pending("gw-b"), timeout=30)[0]

        # load through A: every writer inserts marker rows until the gateway dies under it
        stop = threading.Event()
        errors: list[str] = []

        def writer(w: int) -> None:
            try:
                with rep.connect("gw-a", agent) as conn:
                    i = 0
                    while not stop.is_set():
                        conn.execute(f"INSERT INTO {marks} VALUES ('w{w}-{i}')")  # type: ignore[arg-type]
                        i += 1
            except psycopg.Error as e:
                errors.append(str(e))

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in writers:
            t.start()
        wait_for(lambda: direct(f"SELECT count(*) FROM {marks}")[0][0] >= 200, timeout=60)  # type: ignore[operator]
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        stop.set()
        for t in writers:
            t.join(30)
        held.join(30)
        assert len(errors) == 4  # every writer lost its gateway mid-load

        # the held command: cancelled once A's lease expired, never approved, never run
        time.sleep(3.5)
        late = rep.gw("approvals", "approve", str(request["id"]), "--token", dba, via="gw-b")
        assert late.returncode != 0
        assert (f"request {request['id']} was cancelled: gateway 'gw-a', which held the command, stopped"
                in late.stderr), late.stderr
        shown = rep.gw("approvals", "show", str(request["id"]), "--json", via="gw-b")
        assert json.loads(shown.stdout)["status"] == "cancelled"
        assert direct(f"SELECT count(*) FROM {table}") == [(5,)]

        # every marker PostgreSQL committed has its audit record (written before the statement was forwarded)
        forwarded = {str(r[0]) for r in direct(f"SELECT tag FROM {marks}")}
        listing = rep.gw("audit", "list", "--json", "--chain", "gw-a", "--limit", "100000", via="gw-b")
        assert listing.returncode == 0, listing.stderr
        audited = {m.group(1) for r in json.loads(listing.stdout)
                   for m in [re.search(r"VALUES \('([^']+)'\)", str(r.get("text")))] if m}
        assert forwarded and forwarded <= audited, sorted(forwarded - audited)[:5]

        # A restarted continues its own chain; every chain verifies
        rep.start("gw-a")
        assert rep.psql("gw-a", agent, "SELECT 1").returncode == 0
    finally:
        rep.stop()
        direct(f"DROP TABLE IF EXISTS {marks}")
    chains = rep.verify("gw-b")
    assert chains["gw-a"]["complete"] and all(c["ok"] for c in chains.values()), chains


@pytest.fixture
def store_database() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    name = f"gw_test_store_{secrets.token_hex(4)}"
    direct(f"CREATE DATABASE {name}")
    yield name
    direct(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    direct(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_store_outage_refuses_commands_clearly_and_recovers(tmp_path: Path, store_database: str,
                                                            env: dict[str, str]) -> None:
    env = {**env, "GW_STORE_DSN": DIRECT.replace("dbname=test", f"dbname={store_database}")}
    rep = Replicas(tmp_path, "gw", env)
    rep.config("gw-a", source="gw-a")
    try:
        rep.start("gw-a")
        agent = rep.token("agent-7", "agents")
        session = rep.connect("gw-a", agent)
        assert session.execute("SELECT 1").fetchone() == (1,)
        direct(f"ALTER DATABASE {store_database} ALLOW_CONNECTIONS false")
        direct(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{store_database}'")
        with pytest.raises(psycopg.Error) as err:
            session.execute("SELECT 2")
        assert "gw could not write the audit record" in str(err.value), err.value
        assert "PostgreSQL store" in str(err.value) and "unreachable" in str(err.value), err.value
        refused = rep.psql("gw-a", agent, "SELECT 4")  # a new session cannot be recorded: not admitted
        assert refused.returncode != 0 and "unreachable" in refused.stderr, refused.stderr
        direct(f"ALTER DATABASE {store_database} ALLOW_CONNECTIONS true")

        def works() -> bool:
            try:
                return session.execute("SELECT 5").fetchone() == (5,)
            except psycopg.Error:
                return False

        wait_for(works, timeout=20, interval=0.5)  # the same session, once the store is back
        assert rep.psql("gw-a", agent, "SELECT 6").returncode == 0
        session.close()
    finally:
        rep.stop()
    chains = rep.verify("gw-a")
    assert chains["gw-a"]["ok"]
