"""How the console serves HTTP: gw-httpserver's small HTTP/1.1 server, with the console's limits and the
security headers every page and API response carries."""

from __future__ import annotations

import logging

import trio
from gw_httpserver import App, Limits, Request, Response, serve_connection

__all__ = ["LIMITS", "SECURITY_HEADERS", "Request", "Response", "serve"]

log = logging.getLogger("gw.console")

#: Request bodies are a form or a JSON decision; a client has 30 s to send a request, and an idle keep-alive
#: connection lives as long.
LIMITS = Limits(max_head=16 * 1024, max_body=64 * 1024, read_timeout=30.0)

SECURITY_HEADERS = [
    ("content-security-policy",
     ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]


async def serve(stream: trio.abc.Stream, app: App, *, client: str, https: bool) -> None:
    """Serve the console's requests on one connection (already TLS-unwrapped) until it closes."""
    await serve_connection(stream, app, client=client, https=https, limits=LIMITS, headers=SECURITY_HEADERS,
                           log=log)
