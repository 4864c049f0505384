"""The ``http`` protocol handler: the shared proxy (gw_httpproxy) with the HTTP dialect."""

from __future__ import annotations

from typing import ClassVar

from gw.model import Command, Session
from gw_httpproxy import ProxyHandler

from .classify import HttpDialect, command_kind, command_text, parse_command_text
from .options import HttpListenerOptions


class HttpHandler(ProxyHandler):
    """Listener for ``protocol = "http"``."""

    name = "http"
    Options: ClassVar[type[HttpListenerOptions]] = HttpListenerOptions
    dialect = HttpDialect()

    @property
    def http_options(self) -> HttpListenerOptions:
        return self.proxy_options  # type: ignore[return-value]

    def classify(self, text: str, *, session: Session) -> Command:
        """``gw policy explain "DELETE /api/v1/customers/42"``: the command this request would be."""
        method, target = parse_command_text(text)
        flags = frozenset({"path_normalized"}) if target.normalized else frozenset()
        return Command(session, 0, command_text(method, target), "http", command_kind(method), method,
                       (target.path,), flags)
