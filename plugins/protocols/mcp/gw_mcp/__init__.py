"""gw's MCP protocol: ``protocol = "mcp"`` listeners put gw between agents and one MCP server.

Agents speak MCP over Streamable HTTP to gw with their own bearer token; gw holds the server's credential (an
HTTP header, or the environment of a stdio server it starts per session).  Every ``tools/call``,
``resources/read`` and ``prompts/get`` is a :class:`gw.model.Command` under the listener's pipeline (audit,
guard, approve, mask, record); tools policy denies outright are not advertised; tool definitions are pinned
against rug pulls.  See docs/plugins/mcp.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .options import McpListenerOptions
from .server import McpHandler

__all__ = ["McpHandler", "McpListenerOptions"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(McpHandler)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import mcp

    register(mcp)
