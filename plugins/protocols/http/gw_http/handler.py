"""The ``http`` protocol handler: an HTTP/1.1 reverse proxy in front of one upstream.

The handler is the listener-level part: at start-up it expands the upstream credential from the environment
and loads TLS material; per accepted connection it finishes the TLS handshake (``tls`` option) and hands the
stream to a :class:`~gw_http.connection.ClientConnection`, which runs every request through the pipeline.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import TYPE_CHECKING, cast

import trio
from gw.errors import ConfigError
from gw.model import Command, Session
from gw.protocol import ProtocolHandler

from .classify import command_kind, command_text, parse_command_text
from .connection import ClientConnection
from .headers import ForwardingRules
from .options import HttpListenerOptions
from .upstream import (
    UpstreamTarget,
    build_target,
    describe_url,
    forwarding_rules,
    resolve_credentials,
    upstream_ssl_context,
)

if TYPE_CHECKING:
    from gw.runtime import ListenerRuntime

log = logging.getLogger("gw.http")


class HttpHandler(ProtocolHandler):
    """Listener for ``protocol = "http"``."""

    name = "http"
    Options = HttpListenerOptions

    def __init__(self, listener: ListenerRuntime) -> None:
        super().__init__(listener)
        self.target: UpstreamTarget | None = None
        self.rules: ForwardingRules | None = None
        self.server_tls: ssl.SSLContext | None = None

    @property
    def http_options(self) -> HttpListenerOptions:
        return cast(HttpListenerOptions, self.listener.options)

    async def open(self) -> None:
        """Expand the upstream credential from the environment and load TLS material; errors name the missing
        variable or the unreadable file."""
        opts = self.http_options
        services = self.listener.services
        file = str(services.config.path)
        injected, secrets = resolve_credentials(opts, os.environ, file)
        upstream_tls = None
        if opts.upstream.url.startswith("https:"):
            upstream_tls = upstream_ssl_context(opts, services.resolve_path, file)
        elif opts.upstream.ca_file or opts.upstream.client_cert:
            log.warning("listener %s: upstream TLS options are ignored for the http:// upstream %s",
                        opts.name, describe_url(opts.upstream.url))
        if not opts.upstream.verify:
            log.warning("listener %s: upstream certificate verification is OFF (upstream.verify = false)",
                        opts.name)
        self.target = build_target(opts, upstream_tls)
        self.rules = forwarding_rules(opts, self.target, injected, secrets)
        if opts.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(services.resolve_path(opts.tls.cert)),
                                    str(services.resolve_path(opts.tls.key)))
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"listener {opts.name!r}: cannot load tls.cert / tls.key: {e}",
                                  file=file) from None
            ctx.set_alpn_protocols(["http/1.1"])
            self.server_tls = ctx

    def describe_upstream(self) -> str:
        return describe_url(self.http_options.upstream.url)

    def classify(self, text: str, *, session: Session) -> Command:
        """``gw policy explain "DELETE /api/v1/customers/42"``: the command this request would be."""
        method, target = parse_command_text(text)
        flags = frozenset({"path_normalized"}) if target.normalized else frozenset()
        return Command(session, 0, command_text(method, target), "http", command_kind(method), method,
                       (target.path,), flags)

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        client: trio.abc.Stream = stream
        if self.server_tls is not None:
            tls = trio.SSLStream(stream, self.server_tls, server_side=True, https_compatible=True)
            try:
                with trio.fail_after(self.listener.handshake_timeout):
                    await tls.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as e:
                log.debug("listener %s: TLS handshake with %s failed: %s", self.listener.name,
                          client_address, e)
                return
            client = tls
        await ClientConnection(self, client, client_address, "https" if self.server_tls else "http").serve()
