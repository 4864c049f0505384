"""examples/mcp.toml as written (only its two ports changed), in front of the CRM server, with the official
SDK's client: what an operator following docs/plugins/mcp.md gets."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from gw.testing import GatewayProcess, free_port
from mcp.shared.exceptions import MCPError
from mcp_harness import GW, UPSTREAM_TOKEN, Crm, run_client

ROOT = Path(__file__).resolve().parents[4]


def test_example_works_as_written(tmp_path: Path, crm_http: Crm) -> None:
    import subprocess

    port = free_port()
    text = (ROOT / "examples" / "mcp.toml").read_text()
    assert "127.0.0.1:18090" in text and "127.0.0.1:9000" in text
    path = tmp_path / "mcp.toml"
    path.write_text(text.replace("127.0.0.1:18090", f"127.0.0.1:{port}")
                    .replace("127.0.0.1:9000", f"127.0.0.1:{crm_http.port}"))
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "CRM_MCP_TOKEN": UPSTREAM_TOKEN}
    with GatewayProcess(path, env=env):
        out = subprocess.run([GW, "token", "issue", "-c", str(path), "--identity", "dev", "--sub", "agent-7",
                              "--group", "agents", "--ttl", "1h"], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip()

        async def scenario(client: Any) -> dict[str, Any]:
            found: dict[str, Any] = {"tools": [t.name for t in (await client.list_tools()).tools]}
            found["read"] = await client.call_tool("lookup_customer", {"customer_id": "2"})
            try:
                await client.call_tool("delete_customer", {"customer_id": "2"})
            except MCPError as e:
                found["denied"] = str(e)
            return found

        found = run_client(f"http://127.0.0.1:{port}/mcp", token, scenario)
    assert "lookup_customer" in found["tools"]
    assert "delete_customer" not in found["tools"] and "ask_model" not in found["tools"]  # unannotated: unknown
    record = json.loads(found["read"].content[0].text)
    assert record["ssn"] == "***" and record["email"] == "***" and record["name"] == "Bob Stone"
    assert "deleting is not for agents" in found["denied"]
