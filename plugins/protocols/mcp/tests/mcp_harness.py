"""Fixtures of the MCP tests: the CRM server (official MCP SDK) over Streamable HTTP and stdio, `gw serve` in
front of it, tokens from `gw token issue`, and the SDK's client run on the asyncio backend in a thread of the
test (so a test can approve a held call with the `gw` CLI while the client waits)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from gw.testing import GatewayProcess, free_port, wait_for

HERE = Path(__file__).resolve().parent
SERVER = HERE / "crm_server.py"
GW = str(Path(sys.executable).with_name("gw"))
UPSTREAM_TOKEN = "crm-upstream-" + "s3cr3t-0123456789"

PIPELINE = """
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
groups_claim = "groups"

[pipelines.tools]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [
      {{ verb = "delete_*", except_groups = ["admins"], message = "deleting is not for agents; ask an admin" }},
  ] }},
  {{ use = "approve", approvers = ["dba"], timeout = "60s", poll_interval = "50ms", mode = "hold",
     require = [ {{ kind = "write" }} ] }},
  {{ use = "mask", strategy = "redact", columns = ["ssn", "card"], detectors = ["us_ssn", "credit_card", "email"] }},
  {{ use = "record" }},
]

[pipelines.retry]
stages = [
  {{ use = "audit" }},
  {{ use = "approve", approvers = ["dba"], timeout = "60s", mode = "retry", require = [ {{ verb = "delete_*" }} ] }},
  {{ use = "mask", detectors = ["us_ssn"] }},
]

[[listeners]]
name = "tools"
protocol = "mcp"
listen = "127.0.0.1:{port}"
identity = "dev"
pipeline = "tools"
allow_groups = ["agents", "admins"]
objects_from = {{ delete_customer = ["customer_id"], lookup_customer = ["customer_id"] }}
tool_kinds = {{ ask_model = "read" }}
progress_interval = "200ms"
max_result_size = "512KiB"
max_message_size = "64KiB"
{extra}

[listeners.upstream]
{upstream}

[[listeners]]
name = "tools-retry"
protocol = "mcp"
listen = "127.0.0.1:{retry_port}"
identity = "dev"
pipeline = "retry"

[listeners.upstream]
{upstream}
"""


@dataclass
class Crm:
    url: str
    port: int
    report_file: Path
    proc: subprocess.Popen[bytes] | None = None


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    return tmp_path / "report-description.txt"


@pytest.fixture
def crm_http(report_file: Path) -> Iterator[Crm]:
    port = free_port()
    env = {**os.environ, "CRM_MCP_TOKEN": UPSTREAM_TOKEN, "CRM_REPORT_FILE": str(report_file)}
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            try:
                return httpx2.get(f"http://127.0.0.1:{port}/mcp", timeout=1).status_code > 0
            except httpx2.HTTPError:
                return False

        wait_for(up, timeout=30)
        yield Crm(f"http://127.0.0.1:{port}/mcp", port, report_file, proc)
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Gateway:
    path: Path
    port: int
    retry_port: int
    env: dict[str, str]
    proc: GatewayProcess
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def retry_url(self) -> str:
        return f"http://127.0.0.1:{self.retry_port}/mcp"

    def gw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GW, *args], capture_output=True, text=True, env=self.env, timeout=60)

    def token(self, sub: str = "agent-7", group: str = "agents", ttl: str = "1h") -> str:
        key = f"{sub}/{group}/{ttl}"
        if key not in self.tokens:
            out = self.gw("token", "issue", "-c", str(self.path), "--identity", "dev", "--sub", sub, "--group",
                          group, "--ttl", ttl)
            assert out.returncode == 0, out.stderr
            self.tokens[key] = out.stdout.strip()
        return self.tokens[key]

    def json(self, *args: str) -> Any:
        out = self.gw(*args, "-c", str(self.path), "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def start_gateway(tmp_path: Path, upstream: str, extra: str = "") -> Gateway:
    port, retry_port = free_port(), free_port()
    path = tmp_path / "gw.toml"
    path.write_text(PIPELINE.format(port=port, retry_port=retry_port, upstream=upstream, extra=extra))
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "CRM_MCP_TOKEN": UPSTREAM_TOKEN,
           "CRM_TOKEN": UPSTREAM_TOKEN}
    proc = GatewayProcess(path, env=env).start()
    return Gateway(path, port, retry_port, env, proc)


def http_upstream(crm: Crm) -> str:
    return f'url = "{crm.url}"\nheaders = {{ Authorization = "Bearer ${{CRM_MCP_TOKEN}}" }}'


def stdio_upstream(report_file: Path) -> str:
    cmd = json.dumps([sys.executable, str(SERVER), "--stdio"])
    return (f"command = {cmd}\n"
            f'env = {{ CRM_TOKEN = "${{CRM_TOKEN}}", CRM_REPORT_FILE = "{report_file}" }}')


@pytest.fixture(params=["http", "stdio"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path, report_file: Path) -> Iterator[Gateway]:
    """`gw serve` in front of the CRM server, over Streamable HTTP and over stdio."""
    if request.param == "http":
        crm = request.getfixturevalue("crm_http")
        gw = start_gateway(tmp_path, http_upstream(crm))
    else:
        gw = start_gateway(tmp_path, stdio_upstream(report_file))
    try:
        yield gw
    finally:
        gw.proc.stop()


@pytest.fixture
def http_gateway(tmp_path: Path, crm_http: Crm) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path, http_upstream(crm_http))
    try:
        yield gw
    finally:
        gw.proc.stop()


def run_client(url: str, token: str | None, fn: Callable[[Any], Awaitable[Any]], **client_kw: Any) -> Any:
    """``fn(client)`` with the official SDK's client connected to ``url`` (asyncio backend)."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
            async with Client(streamable_http_client(url, http_client=http), **client_kw) as client:
                return await fn(client)

    return anyio.run(main, backend="asyncio")


class Background:
    """Runs ``run_client`` in a thread; ``result()`` returns what it returned or raises what it raised."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self.value = target()
        except BaseException as e:  # noqa: BLE001 -- handed to the test
            self.error = e

    def result(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the MCP client did not finish"
        if self.error is not None:
            raise self.error
        return self.value
