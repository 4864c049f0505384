"""A real gateway for the console tests: ``gw serve`` with a PostgreSQL listener (audit, approve, mask, record
in front of the real PostgreSQL) and a console listener, and helpers to log in and to hold a psql command."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gw.testing import GatewayProcess, require_program, require_service, wait_for

GW = str(Path(sys.executable).with_name("gw"))
SECRET_ENV = "GW_CONSOLE_TEST_SECRET"
SSN = "123-45-6789"

PIPELINE = """\
[gateway]
data_dir = ".gw"
drain_timeout = "2s"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-console-test"
audience = "gw"
secret_env = "{secret_env}"

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "approve", approvers = ["dba"], timeout = "2m", poll_interval = "50ms", require = [
      {{ kind = "write", flags = ["no_where"] }},
  ] }},
  {{ use = "mask", columns = ["ssn"], detectors = ["us_ssn"] }},
  {{ use = "record", flush_interval = "100ms" }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"
allow_groups = ["agents", "dba"]

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"

[[listeners]]
name = "console"
protocol = "console"
listen = "127.0.0.1:0"
identity = "dev"
allow_groups = ["dba", "auditors", "ops"]
operator_groups = ["ops"]
login_attempts = {login_attempts}
"""


def direct(sql: str) -> str:
    return subprocess.run(["psql", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-XAtq", "-c", sql],
                          capture_output=True, text=True, check=True).stdout


@dataclass
class Held:
    """A psql command running in a thread (held for approval until someone decides)."""

    thread: threading.Thread
    result: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def wait(self, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "psql is still waiting"
        return self.result["out"]


class Gateway:
    def __init__(self, directory: Path, config: Path, process: GatewayProcess, table: str) -> None:
        self.directory, self.config, self.process, self.table = directory, config, process, table
        self.env = {**os.environ, SECRET_ENV: process.env[SECRET_ENV]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.port('console')}"

    def token(self, sub: str, *groups: str, ttl: str = "1h") -> str:
        args = [GW, "token", "issue", "-c", str(self.config), "--sub", sub, "--ttl", ttl]
        for g in groups:
            args += ["--group", g]
        out = subprocess.run(args, check=False, capture_output=True, text=True, env=self.env, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=20)

    def login(self, token: str) -> httpx.Client:
        c = self.client()
        page = c.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        reply = c.post("/login", data={"csrf": csrf.group(1), "token": token})
        assert reply.status_code == 303, reply.text
        return c

    def psql(self, token: str, sql: str, *, user: str = "agent-7") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["psql", f"host=127.0.0.1 port={self.process.port('orders')} user={user} dbname=test",
                               "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=False, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PGPASSWORD": token})

    def hold(self, token: str, sql: str, *, user: str = "agent-7") -> Held:
        held = Held(threading.Thread(target=lambda: None))

        def run() -> None:
            held.result["out"] = self.psql(token, sql, user=user)

        held.thread = threading.Thread(target=run, daemon=True)
        held.thread.start()
        return held

    def pending(self, client: httpx.Client, text: str) -> dict[str, object]:
        def find() -> dict[str, object] | None:
            for r in client.get("/api/approvals").json():
                if text in r["text"]:
                    return r  # type: ignore[no-any-return]
            return None

        return wait_for(find, timeout=20)  # type: ignore[no-any-return]


def start_gateway(directory: Path, *, login_attempts: int = 10) -> Gateway:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    config = directory / "pipeline.toml"
    config.write_text(PIPELINE.format(secret_env=SECRET_ENV, login_attempts=login_attempts))
    table = f"gw_console_{secrets.token_hex(4)}"
    direct(f"create table {table} (id int, name text, ssn text); "
           f"insert into {table} values (1, 'ann', '{SSN}'), (2, 'bob', '219-09-9999')")
    process = GatewayProcess(config, env={SECRET_ENV: secrets.token_urlsafe(32)}).start()
    return Gateway(directory, config, process, table)


DOCS = Path(__file__).resolve().parents[4] / "docs" / "plugins" / "console"
CHROMIUM = os.environ.get("GW_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def shot(page: object, name: str) -> None:
    if os.environ.get("GW_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def log_in(page: object, gateway: Gateway, token: str) -> None:
    page.goto(gateway.url + "/")  # type: ignore[attr-defined]
    page.get_by_label("Token").fill(token)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/approvals")  # type: ignore[attr-defined]
