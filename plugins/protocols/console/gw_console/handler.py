"""The ``console`` listener: its options and the connection handler (TLS, then HTTP/1.1)."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from datetime import timedelta
from typing import Any, ClassVar

import trio
from gw.config import Duration
from gw.errors import ConfigError
from gw.protocol import ListenerOptions, ProtocolHandler
from pydantic import BaseModel, ConfigDict, Field

from . import web

log = logging.getLogger("gw.console")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsFiles(_Strict):
    #: PEM certificate chain and key; relative paths are relative to the pipeline file.
    cert: str
    key: str


class OidcOptions(_Strict):
    #: This console's client id at the IdP.
    client_id: str
    #: Environment variable holding the client secret (none for a public client; PKCE protects the code).
    client_secret_env: str | None = None
    #: Where the IdP sends the browser back: this console's ``/login/callback`` as people reach it.
    redirect_url: str
    #: The identity provider (a ``jwt`` provider with an ``issuer``) to log in with; default: the listener's
    #: first one that has an issuer.
    identity: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])


class ConsoleOptions(ListenerOptions):
    #: Groups whose members may end live sessions (and see every live session's details).
    operator_groups: list[str] = Field(default_factory=list)
    tls: TlsFiles | None = None
    #: OpenID Connect login (authorization code flow with PKCE); a token login is always offered too.
    oidc: OidcOptions | None = None
    #: A console session ends after this long without a request.
    session_idle: Duration = timedelta(minutes=30)
    #: Failed logins allowed per client address per minute before further attempts are refused (429).
    login_attempts: int = Field(default=10, ge=1)


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleHandler(ProtocolHandler):
    """Serves the web console; proxies nothing, so its listener takes no pipeline."""

    name: ClassVar[str] = "console"
    Options: ClassVar[type[ListenerOptions]] = ConsoleOptions
    needs_pipeline: ClassVar[bool] = False

    def __init__(self, listener: Any) -> None:
        super().__init__(listener)
        opts: ConsoleOptions = listener.options
        if opts.pipeline is not None:
            raise ConfigError("a console listener proxies nothing, so it takes no pipeline; remove the key",
                              path="pipeline")
        if opts.oidc is not None and opts.oidc.client_secret_env and opts.oidc.client_secret_env not in os.environ:
            log.warning("listener %s: environment variable %s (oidc.client_secret_env) is not set",
                        opts.name, opts.oidc.client_secret_env)
        self._tls: ssl.SSLContext | None = None
        self.app: Any = None

    @property
    def console_options(self) -> ConsoleOptions:
        opts = self.listener.options
        assert isinstance(opts, ConsoleOptions)
        return opts

    async def open(self) -> None:
        from .app import Console

        opts = self.console_options
        if opts.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(str(self.listener.services.resolve_path(opts.tls.cert)),
                                    str(self.listener.services.resolve_path(opts.tls.key)))
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"listener {opts.name!r}: cannot load tls.cert / tls.key: {e}",
                                  path=f"listeners.{opts.name}.tls") from None
            self._tls = ctx
        self.app = Console(self)

    def describe_upstream(self) -> str:
        return "web console"

    def warnings(self) -> list[str]:
        opts = self.console_options
        host, _ = opts.address
        out = []
        if opts.tls is None and not _loopback(host):
            out.append(f"listener {opts.name!r} serves the console without TLS on {host} (not loopback): "
                       "tokens and session cookies cross the network in clear; add tls = { cert, key }")
        if opts.allow_groups is None:
            out.append(f"listener {opts.name!r}: anyone with a valid token may log in to the console; set "
                       "allow_groups (for example [\"dba\", \"auditors\"])")
        return out

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        client: trio.abc.Stream = stream
        if self._tls is not None:
            tls = trio.SSLStream(stream, self._tls, server_side=True, https_compatible=True)
            try:
                with trio.fail_after(self.listener.handshake_timeout):
                    await tls.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                await stream.aclose()
                return
            client = tls
        await web.serve(client, self.app, client=client_address, https=self._tls is not None)
