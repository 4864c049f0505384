"""The ``[[listeners]]`` table of an ``http`` listener: the shared proxy's keys (gw_httpproxy.options), nothing
more.  Documented key by key in docs/plugins/http.md."""

from __future__ import annotations

from gw_httpproxy.options import ProxyListenerOptions


class HttpListenerOptions(ProxyListenerOptions):
    """An ``http`` listener: HTTP/1.1 clients in, one upstream out."""
