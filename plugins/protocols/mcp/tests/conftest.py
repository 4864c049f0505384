"""Fixtures of the MCP tests (defined in mcp_harness.py, which the tests also import helpers from)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # --import-mode=importlib does not put test directories on sys.path
    sys.path.insert(0, str(HERE))

from mcp_harness import crm_http, gateway, http_gateway, report_file  # noqa: F401  (fixtures)
