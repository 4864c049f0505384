"""gw-httpproxy: the HTTP/1.1 reverse proxy shared by gw's HTTP-based protocol plugins.

A helper library, not a plugin (no ``gw`` entry point): the ``http`` plugin (gw-http) and the ``kubernetes``
plugin install it and build on it, as the SQL protocols build on gw-sqlanalysis.  A protocol plugin supplies
a :class:`~gw_httpproxy.handler.ProxyHandler` subclass (its name, its options model, its dialect) and gets:

* identity from a bearer token in a header, one gw session per agent connection, token expiry, revocation
  and ``session_max`` ending the connection (:mod:`gw_httpproxy.proxy`);
* a request target checked as the upstream will read it (:mod:`gw_httpproxy.targets`) and method/path
  overrides refused or honoured (:mod:`gw_httpproxy.overrides`);
* every request a command through the pipeline, approval holds that end when the agent leaves;
* one upstream over TCP or TLS (CA file, client certificate, verification switch), credential headers
  injected and the agent's never forwarded (:mod:`gw_httpproxy.upstream`, :mod:`gw_httpproxy.headers`);
* the credential scrubbed from every response in every charset gw decodes (:mod:`gw_httpproxy.scrub`);
* response headers, bodies (buffered or streamed chunk by chunk, so watches flow) and WebSocket messages
  through the pipeline's filters -- masking -- failing closed (:mod:`gw_httpproxy.filtering`);
* WebSocket relaying with frame parsing, and a raw tunnel for other upgrades (:mod:`gw_httpproxy.websocket`,
  :mod:`gw_httpproxy.tunnel`).

What differs between protocols lives in the dialect (:mod:`gw_httpproxy.dialect`): what a request means as
a command, how gw's own replies look, last edits to upstream headers, the response and WebSocket filters.

For the Kubernetes plugin, mapped onto the API:

=====================================  ========================================================================
identity: kubeconfig bearer token      ``token_header = "Authorization"`` (the default)
API server CA, client certificates     ``UpstreamOptions.ca_file`` / ``client_cert`` / ``client_key``
service-account token                  ``UpstreamOptions.headers = { Authorization = "Bearer ${TOKEN}" }``
impersonation                          ``ProxyDialect.upstream_headers`` adds ``Impersonate-User``/``-Group``
                                       from the session identity; ``managed_headers`` lists them so the agent
                                       cannot send its own
verbs, objects, ``metav1.Status``      ``ProxyDialect.command`` / ``reply`` / ``verdict_reply``
JSON masking, watches                  ``ProxyDialect.response_filter``; watch bodies are chunked and relayed
                                       as the filter releases each line
exec / attach over WebSocket           ``ProxyDialect.websocket`` returns a ``tunnel.MessageFilter`` that
                                       splits channel frames (``websocket.channel_split``)
=====================================  ========================================================================

The HTTP/1.1 parser sits behind :mod:`gw_httpproxy.codec` (h11 today), so a faster one can replace it
without touching the rest.
"""

from __future__ import annotations

from gw.types import ByteSize, parse_size

from .dialect import CommandSpec, ProxyDialect, Refusal, Reply, RequestView
from .handler import ProxyHandler, ProxySetup
from .options import ProxyListenerOptions, UpstreamOptions
from .targets import BadTarget, Target, normalize_target

__all__ = [
    "BadTarget",
    "ByteSize",
    "CommandSpec",
    "ProxyDialect",
    "ProxyHandler",
    "ProxyListenerOptions",
    "ProxySetup",
    "Refusal",
    "Reply",
    "RequestView",
    "Target",
    "UpstreamOptions",
    "normalize_target",
    "parse_size",
]
