"""Identity on the data path, end to end with `gw serve`, psycopg and the real PostgreSQL: least-privilege
upstream roles by group, and SIGHUP reload (new policy for the next command of an open session; a broken file
is refused and the running policy kept; a newly denied subject's session is closed)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gw.testing import GatewayProcess, free_port, require_service, wait_for

psycopg = pytest.importorskip("psycopg")
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

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [ {{ verb = "truncate", message = "{message}" }} ] }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:{port}"
identity = "dev"
pipeline = "agents"
deny_subjects = [{deny}]

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
{upstream}
"""


def direct(sql: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True) as c:
        c.execute(sql)


class Gw:
    def __init__(self, tmp_path: Path, upstream: str = 'user = "postgres"') -> None:
        require_service("127.0.0.1", 5432, "PostgreSQL")
        self.port = free_port()
        self.path = tmp_path / "pipeline.toml"
        self.upstream = upstream
        self.write(message="truncate needs a DBA")
        self.env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
        self.proc = GatewayProcess(self.path, env=self.env).start()

    def write(self, *, message: str, deny: str = "") -> None:
        self.path.write_text(PIPELINE.format(port=self.port, message=message, deny=deny, upstream=self.upstream))

    def token(self, sub: str, group: str) -> str:
        out = subprocess.run([GW, "token", "issue", "-c", str(self.path), "--sub", sub, "--group", group],
                             capture_output=True, text=True, env=self.env, check=True)
        return out.stdout.strip()

    def connect(self, sub: str = "agent-7", group: str = "agents"):  # type: ignore[no-untyped-def]
        return psycopg.connect(host="127.0.0.1", port=self.port, user=sub, password=self.token(sub, group),
                               dbname="test", autocommit=True)

    def reload(self, marker: str) -> None:
        seen = len(self.proc.log)
        self.proc.signal(signal.SIGHUP)
        wait_for(lambda: any(marker in line for line in self.proc.log[seen:]), timeout=10)


@pytest.fixture
def reader_role():  # type: ignore[no-untyped-def]
    require_service("127.0.0.1", 5432, "PostgreSQL")
    role, table = f"gw_reader_{secrets.token_hex(3)}", f"gw_roles_{secrets.token_hex(3)}"
    direct(f"create role {role} login; create table {table} (id int); insert into {table} values (1); "
           f"grant select on {table} to {role}")
    yield role, table
    direct(f"drop table if exists {table}; drop role if exists {role}")


def test_groups_map_to_least_privileged_upstream_role(tmp_path: Path, reader_role) -> None:  # type: ignore[no-untyped-def]
    role, table = reader_role
    gw = Gw(tmp_path, upstream=f'roles = [\n  {{ groups = ["dba"], user = "postgres" }},\n'
                               f'  {{ groups = ["agents"], user = "{role}" }},\n]')
    try:
        with gw.connect("agent-7", "agents") as agent:
            assert agent.execute("select current_user").fetchone() == (role,)
            assert agent.execute(f"select count(*) from {table}").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                agent.execute(f"insert into {table} values (2)")
            assert "permission denied" in str(err.value)  # PostgreSQL's own error, relayed
        with gw.connect("dora", "dba") as dba:
            assert dba.execute("select current_user").fetchone() == ("postgres",)
            dba.execute(f"insert into {table} values (2)")
        with pytest.raises(psycopg.OperationalError) as refused:
            gw.connect("visitor", "guests")
        assert "upstream.roles" in str(refused.value)
    finally:
        gw.proc.stop()


def test_sighup_reload_applies_to_open_sessions_and_keeps_policy_on_error(tmp_path: Path) -> None:
    table = f"gw_reload_{secrets.token_hex(3)}"
    direct(f"create table {table} (id int)")
    gw = Gw(tmp_path)
    try:
        with gw.connect() as conn, gw.connect("mallory", "agents") as doomed:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="truncate needs a DBA"):
                conn.execute(f"truncate {table}")
            gw.write(message="truncate is for the nightly job only")
            gw.reload("reloaded")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="nightly job only"):
                conn.execute(f"truncate {table}")

            gw.path.write_text("[gateway\nbroken")
            gw.reload("reload refused")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="nightly job only"):
                conn.execute(f"truncate {table}")

            gw.write(message="truncate is for the nightly job only", deny='"mallory"')
            gw.reload("reloaded")
            assert conn.execute("select 1").fetchone() == (1,)
            with pytest.raises(psycopg.OperationalError):
                for _ in range(50):  # the session is closed by gw as soon as the reload lands
                    doomed.execute("select 1")
                    time.sleep(0.1)
        with pytest.raises(psycopg.OperationalError, match="denied"):
            gw.connect("mallory", "agents")
    finally:
        gw.proc.stop()
        direct(f"drop table if exists {table}")
