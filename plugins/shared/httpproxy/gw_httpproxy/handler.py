"""The listener side of an HTTP-based protocol: :class:`ProxyHandler`, a :class:`gw.protocol.ProtocolHandler`
that a protocol plugin subclasses with its name, options model and dialect::

    class KubernetesHandler(ProxyHandler):
        name = "kubernetes"
        Options = KubernetesListenerOptions      # a ProxyListenerOptions subclass
        dialect = KubernetesDialect()

At start-up the handler expands the upstream credential from the environment and loads TLS material
(:meth:`ProxyHandler.build_setup`, errors name the missing variable or the unreadable file).  Options are
read through the listener whenever they are used: when the listener's options change (a reload), the next
request gets a setup built from the new ones, so upstream, credential and header rules follow the
configuration without restarting connections.  Per accepted connection the handler finishes the TLS
handshake and hands the stream to a :class:`~gw_httpproxy.proxy.ProxyConnection`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast
from urllib.parse import urlsplit

import trio
from gw.errors import ConfigError
from gw.protocol import ListenerOptions, ProtocolHandler

from .dialect import ProxyDialect
from .headers import ForwardingRules
from .options import ProxyListenerOptions
from .proxy import ProxyConnection
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


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ProxySetup:
    """Everything derived from one version of a listener's options."""

    options: ProxyListenerOptions
    target: UpstreamTarget
    rules: ForwardingRules
    server_tls: ssl.SSLContext | None


class ProxyHandler(ProtocolHandler):
    """Base of the ``http`` (and ``kubernetes``) listeners."""

    Options: ClassVar[type[ProxyListenerOptions]] = ProxyListenerOptions
    dialect: ClassVar[ProxyDialect] = ProxyDialect()

    def __init__(self, listener: ListenerRuntime) -> None:
        super().__init__(listener)
        self._setup: ProxySetup | None = None

    @property
    def proxy_options(self) -> ProxyListenerOptions:
        return cast(ProxyListenerOptions, self.listener.options)

    def build_setup(self, opts: ProxyListenerOptions) -> ProxySetup:
        """Resolve ``opts`` against the environment and the file system; raises :class:`ConfigError`."""
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
        target = build_target(opts, upstream_tls)
        rules = forwarding_rules(opts, target, injected, secrets, self.dialect.managed_headers)
        server_tls = None
        if opts.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(services.resolve_path(opts.tls.cert)),
                                    str(services.resolve_path(opts.tls.key)))
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"listener {opts.name!r}: cannot load tls.cert / tls.key: {e}",
                                  file=file) from None
            ctx.set_alpn_protocols(["http/1.1"])
            server_tls = ctx
        return ProxySetup(opts, target, rules, server_tls)

    async def open(self) -> None:
        self._setup = self.build_setup(self.proxy_options)

    async def reconfigure(self, previous: ListenerOptions) -> None:
        """A reload: resolve the new upstream, credentials and forwarding rules now, so options that cannot
        be resolved (a variable missing from the environment) are refused and the running ones kept."""
        self._setup = self.build_setup(self.proxy_options)

    def setup(self) -> ProxySetup:
        """The setup for the listener's current options (rebuilt once after they changed).  Raises
        :class:`ConfigError` when the new options cannot be resolved (a variable missing from the
        environment): the proxy refuses requests with 503 until that is fixed."""
        current = self._setup
        opts = self.proxy_options
        if current is None or current.options is not opts:
            current = self._setup = self.build_setup(opts)
            log.info("listener %s: upstream settings loaded (%s)", opts.name, current.target.describe())
        return current

    def describe_upstream(self) -> str:
        return describe_url(self.proxy_options.upstream.url)

    def warnings(self) -> list[str]:
        """``gw check``: valid but risky settings -- tokens in clear on the network, an upstream credential
        sent in clear, certificate verification off."""
        opts = self.proxy_options
        out = []
        host, _ = opts.address
        if opts.tls is None and not _loopback(host):
            out.append(f"listener {opts.name!r} accepts identity tokens over plain HTTP on {opts.listen} (not "
                       "loopback): anyone on the network can read them; add tls = { cert, key }")
        upstream = urlsplit(opts.upstream.url)
        if upstream.scheme == "http" and (opts.upstream.headers or opts.upstream.basic_auth) \
                and not _loopback(upstream.hostname or ""):
            out.append(f"listener {opts.name!r} sends its upstream credential to {describe_url(opts.upstream.url)} "
                       "over plain HTTP; use an https:// upstream")
        if not opts.upstream.verify:
            out.append(f"listener {opts.name!r}: upstream.verify = false, so any server can pose as the "
                       "upstream and receive its credential; use ca_file instead")
        return out

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        try:
            setup = self.setup()
        except ConfigError as e:
            log.error("listener %s: %s", self.listener.name, e)
            return
        client: trio.abc.Stream = stream
        if setup.server_tls is not None:
            tls = trio.SSLStream(stream, setup.server_tls, server_side=True, https_compatible=True)
            try:
                with trio.fail_after(self.listener.handshake_timeout):
                    await tls.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as e:
                log.debug("listener %s: TLS handshake with %s failed: %s", self.listener.name,
                          client_address, e)
                return
            client = tls
        await ProxyConnection(self, client, client_address, "https" if setup.server_tls else "http").serve()
