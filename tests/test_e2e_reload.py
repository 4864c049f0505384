"""SIGHUP reload against the live services, end to end with `gw serve`, psycopg and the real PostgreSQL: one
test per plugin kind (stage, identity provider, storage, listener).  Each changes the kind's options in the
file, sends SIGHUP, and checks that the next command works with the new options -- or, for what needs a
restart, that the reload says so and the running configuration keeps working."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw.testing import GatewayProcess, free_port, require_service, wait_for

psycopg = pytest.importorskip("psycopg")
GW = str(Path(sys.executable).with_name("gw"))

PIPELINE = """
[gateway]
data_dir = ".gw"

[storage]
use = "sqlite"
{storage}

[identity.dev]
use = "jwt"
issuer = "gw-dev"
secret_env = "GW_DEV_SECRET"
{identity}

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "record", {record} }},
  {{ use = "approve", approvers = ["dba"], require = [ {{ verb = "truncate" }} ], {approve} }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:{port}"
identity = "dev"
pipeline = "agents"
{listener}

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
{upstream}
"""

DEFAULTS = {"storage": "", "identity": 'audience = "gw"', "record": "max_rows = 100",
            "approve": 'mode = "retry", timeout = "5m"', "listener": "", "upstream": 'user = "postgres"'}


def direct(sql: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True) as c:
        c.execute(sql)


class Gw:
    def __init__(self, tmp_path: Path, **parts: str) -> None:
        require_service("127.0.0.1", 5432, "PostgreSQL")
        self.port = free_port()
        self.path = tmp_path / "pipeline.toml"
        self.parts = dict(DEFAULTS)
        self.write(**parts)
        self.env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
        self.proc = GatewayProcess(self.path, env=self.env).start()

    def write(self, **parts: str) -> None:
        self.parts.update(parts)
        self.path.write_text(PIPELINE.format(port=self.port, **self.parts))

    def gw(self, *args: str) -> str:
        out = subprocess.run([GW, *args, "-c", str(self.path)], capture_output=True, text=True, env=self.env,
                             check=True, timeout=60)
        return out.stdout

    def token(self, sub: str = "agent-7", group: str = "agents") -> str:
        return self.gw("token", "issue", "--sub", sub, "--group", group).strip()

    def connect(self, sub: str = "agent-7", group: str = "agents", token: str | None = None) -> Any:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=sub, dbname="test", autocommit=True,
                               password=token if token is not None else self.token(sub, group))

    def reload(self, *, expect: str) -> str:
        """SIGHUP; wait for the reload's log line, which must contain ``expect``; return that line."""
        seen = len(self.proc.log)
        self.proc.signal(signal.SIGHUP)
        line = wait_for(lambda: next((x for x in self.proc.log[seen:] if "gw.server" in x and "reload" in x),
                                     None), timeout=15)
        assert expect in line, line
        return str(line)

    def problems(self) -> list[str]:
        return [x for x in self.proc.log if " ERROR " in x or "Traceback" in x or "not open" in x]


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Any]:
    made: list[Gw] = []

    def start(**parts: str) -> Gw:
        made.append(Gw(tmp_path, **parts))
        return made[-1]

    yield start
    for g in made:
        g.proc.stop()


def test_stage_reload_record_and_approve_keep_working_with_new_options(gw: Any) -> None:
    g = gw()
    with g.connect() as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        g.write(record="max_rows = 1", approve='mode = "retry", timeout = "7m"')
        g.reload(expect="pipeline agents reloaded")
        # record: the next command is recorded by the new stage (max_rows = 1), against the running store
        assert conn.execute("select * from generate_series(1, 5)").fetchall() == [(i,) for i in range(1, 6)]
        # approve: its ledger works after the reload -- the held command becomes a request an approver sees
        with pytest.raises(psycopg.Error, match="approv"):
            conn.execute("truncate gw_no_such_table_for_reload")
        pending = json.loads(g.gw("approvals", "list", "--json"))
        assert [r["text"] for r in pending] == ["truncate gw_no_such_table_for_reload"]
        assert round(pending[0]["expires"] - pending[0]["created"]) == 7 * 60  # the new timeout
    sessions = wait_for(lambda: json.loads(g.gw("sessions", "list", "--json")), timeout=15)
    events = g.gw("sessions", "export", sessions[0]["id"])
    rows = {e[2]["seq"]: e[2] for e in map(json.loads, events.splitlines()[1:]) if e[1] == "rows"}
    assert rows[2]["rows"] == [["1"]] and rows[2]["truncated"]  # recorded after the reload, max_rows = 1
    assert not g.problems(), g.problems()


def test_identity_reload_new_audience_applies_to_the_next_connection(gw: Any) -> None:
    g = gw()
    old_token = g.token()
    with g.connect(token=old_token) as conn:
        g.write(identity='audience = "gw-reloaded"')
        g.reload(expect="identity dev reloaded")
        assert conn.execute("select 1").fetchone() == (1,)  # an open session is not re-authenticated
    with pytest.raises(psycopg.OperationalError, match="aud"):
        g.connect(token=old_token)
    with g.connect() as conn:  # a token of the new audience
        assert conn.execute("select 2").fetchone() == (2,)
    assert not g.problems(), g.problems()


def test_storage_reload_applies_retention_and_refuses_a_new_file(gw: Any, tmp_path: Path) -> None:
    g = gw()
    with g.connect() as conn:
        g.write(storage='retention = "30d"')
        g.reload(expect="storage retention reloaded")
        assert conn.execute("select 3").fetchone() == (3,)
        g.write(storage=f'path = "{tmp_path / "other.db"}"')
        g.reload(expect="storage changes need a restart")
        assert conn.execute("select 4").fetchone() == (4,)
    assert any("needs a restart" in line for line in g.proc.log)
    g.write(storage="")
    audited = json.loads(g.gw("audit", "list", "--json"))
    assert {"select 3", "select 4"} <= {r["text"] for r in audited}  # both still in the running store
    assert not (tmp_path / "other.db").exists()


@pytest.fixture
def reader_role() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    role = f"gw_reload_reader_{secrets.token_hex(3)}"
    direct(f"create role {role} login")
    yield role
    direct(f"drop role if exists {role}")


def test_listener_reload_roles_apply_to_the_next_session_and_tls_needs_a_restart(gw: Any, reader_role: str,
                                                                                 tmp_path: Path) -> None:
    g = gw(upstream='roles = [ { groups = ["agents"], user = "postgres" } ]')
    with g.connect() as before:
        assert before.execute("select current_user").fetchone() == ("postgres",)
        g.write(upstream=f'roles = [ {{ groups = ["agents"], user = "{reader_role}" }} ]')
        g.reload(expect="listener orders options reloaded")
        with g.connect() as after:
            assert after.execute("select current_user").fetchone() == (reader_role,)
        # the session opened before keeps its login
        assert before.execute("select current_user").fetchone() == ("postgres",)
    # a key read only at start: refused with a log line, the running options stay
    g.write(listener=f'tls = {{ cert = "{tmp_path / "no.pem"}", key = "{tmp_path / "no-key.pem"}" }}')
    line = g.reload(expect="tls need a restart")
    assert "orders" in line
    assert any("needs a restart of gw serve" in x and "tls" in x for x in g.proc.log)
    with g.connect() as conn:
        assert conn.execute("select current_user").fetchone() == (reader_role,)
    assert not g.problems(), g.problems()
