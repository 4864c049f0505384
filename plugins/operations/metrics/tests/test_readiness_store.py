"""``/readyz`` follows the store: a gateway in this process (gw.testing.running_gateway) on a store that the test
can make fail -- a test double of an unreachable database server, since the embedded SQLite store cannot be made
unreachable from outside -- probed with curl."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pluggy
import pytest
import trio
from gw import hookimpl
from gw.errors import StoreError
from gw.testing import require_program, require_service, running_gateway
from gw_metrics import endpoint_of
from gw_storagekit import MemoryStore


class FlakyStore(MemoryStore):
    """The in-memory store, whose reads fail while ``down`` (every instance: the test flips the class)."""

    name = "flaky"
    down = False

    async def scan(self, stream: str, **kw: Any) -> Any:
        if FlakyStore.down:
            raise StoreError("connection refused by the database server")
        return await super().scan(stream, **kw)


class FlakyStorePlugin:
    @hookimpl
    def gw_register_storage(self, register: Any) -> None:
        register(FlakyStore)


CONFIG = """
[gateway]
data_dir = ".gw"
admin_listen = "127.0.0.1:0"

[storage]
use = "flaky"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_TEST_READY_SECRET"

[pipelines.agents]
stages = [ { use = "audit" } ]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""


async def curl(url: str) -> tuple[int, str]:
    out = await trio.run_process(["curl", "-s", "-w", "\n%{http_code}", "--max-time", "15", url],
                                 capture_stdout=True, check=False)
    body, _, code = out.stdout.decode().rpartition("\n")
    return int(code), body


async def test_readyz_follows_the_store(tmp_path: Path, gw_plugin_manager: pluggy.PluginManager,
                                        gw_register: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("curl")
    monkeypatch.setenv("GW_TEST_READY_SECRET", secrets.token_urlsafe(32))
    gw_register(FlakyStorePlugin(), "flaky-store")
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    FlakyStore.down = False
    try:
        async with running_gateway(path, pm=gw_plugin_manager) as gw:
            endpoint = endpoint_of(gw.runtime)
            assert endpoint is not None
            host, port = endpoint.bound[0]
            url = f"http://{host}:{port}"
            assert await curl(f"{url}/readyz") == (200, "ready\n")
            FlakyStore.down = True
            code, body = await curl(f"{url}/readyz")
            assert code == 503
            assert "- store: the store does not answer (StoreError: connection refused by the database server)" in body
            assert (await curl(f"{url}/healthz"))[0] == 200
            _, metrics = await curl(f"{url}/metrics")
            assert 'gw_store_errors_total{where="readiness"} 1.0' in metrics
            assert "gw_ready 0.0" in metrics
            FlakyStore.down = False
            assert await curl(f"{url}/readyz") == (200, "ready\n")
    finally:
        FlakyStore.down = False
