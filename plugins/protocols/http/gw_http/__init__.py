"""gw's HTTP protocol: ``protocol = "http"`` listeners proxy agents' HTTP/1.1 requests to one upstream.

Each request is a :class:`gw.model.Command` (kind ``read`` for GET/HEAD/OPTIONS, ``write`` for
POST/PUT/PATCH/DELETE, ``unknown`` otherwise; verb = method; objects = [path]); the agent's identity token is
checked and stripped, the upstream credential injected, and responses pass through the pipeline's stream
filters (masking) before the agent sees them.  The proxy machinery is the shared gw-httpproxy library; this
plugin is its HTTP dialect.  See docs/plugins/http.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import HttpHandler
from .options import HttpListenerOptions

__all__ = ["HttpHandler", "HttpListenerOptions"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(HttpHandler)
