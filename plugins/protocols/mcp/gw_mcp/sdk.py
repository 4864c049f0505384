"""The one place gw imports the MCP SDK (its schema models and protocol versions).

Importing the SDK costs about 30 MB and a second of start-up, so nothing imports this module when the plugin is
loaded: an MCP listener imports it when it is built (:class:`gw_mcp.server.McpHandler`), and the functions that
use it import it where they run.  A gateway without an MCP listener never imports the SDK.
"""

from __future__ import annotations

from mcp.types import (
    CallToolRequestParams,
    GetPromptRequestParams,
    ReadResourceRequestParams,
    Tool,
    jsonrpc_message_adapter,
)
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

__all__ = ["HANDSHAKE_PROTOCOL_VERSIONS", "KNOWN_PROTOCOL_VERSIONS", "LATEST_HANDSHAKE_VERSION",
           "CallToolRequestParams", "GetPromptRequestParams", "ReadResourceRequestParams", "Tool",
           "jsonrpc_message_adapter"]
