"""Listener options every HTTP-based protocol shares: :class:`ProxyListenerOptions` and its
``[listeners.upstream]`` table, :class:`UpstreamOptions`.

A protocol plugin subclasses them and adds its own keys (the Kubernetes plugin adds ``impersonate`` to the
upstream table, ``allow_portforward`` to the listener); the keys here keep their meaning and defaults, so the
documentation of one protocol applies to the other.

Validation here is pure (no environment, no files): ``gw check`` must be able to validate a pipeline file on a
machine that does not hold the upstream secrets.  ``${VAR}`` references and ``password_env`` are resolved when
the listener starts (:mod:`gw_httpproxy.upstream`), and a missing variable is a start-up error that names it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from gw.protocol import ListenerOptions
from gw.types import ByteSize, Duration, StrictModel
from pydantic import Field, field_validator, model_validator

#: ``${NAME}`` in an upstream header value; nothing else is special (a lone ``$`` is literal).
ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field-name


def env_references(value: str) -> list[str]:
    """The variable names a header value refers to with ``${NAME}``."""
    return ENV_REFERENCE.findall(value)


_Strict = StrictModel


class BasicAuth(_Strict):
    """HTTP basic credentials gw sends upstream; the password comes from gw's environment, never the file."""

    user: str
    password_env: str

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_NAME.fullmatch(v):
            raise ValueError("expected an environment variable name such as \"BILLING_API_PASSWORD\", "
                             f"got {v!r}")
        return v


class ClientTLS(_Strict):
    """A certificate and key gw presents to its own clients (HTTPS on the listener)."""

    cert: str
    key: str


class UpstreamOptions(_Strict):
    """Where requests go and the credential gw adds to them."""

    #: ``http://host[:port][/base/path]`` or ``https://...``; the base path is prefixed to every request path.
    url: str
    #: Headers added to every upstream request (replacing any the agent sent); ``${VAR}`` expands from gw's
    #: environment at start-up.
    headers: dict[str, str] = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    #: PEM bundle of CAs trusted for an ``https`` upstream (default: the system store).
    ca_file: str | None = None
    #: Verify the upstream certificate and host name.  Turning it off is for lab setups only.
    verify: bool = True
    #: Client certificate (and key) gw presents to an ``https`` upstream (Kubernetes API servers use them).
    client_cert: str | None = None
    client_key: str | None = None
    #: Time to open the TCP connection and finish the TLS handshake.
    connect_timeout: Duration = timedelta(seconds=10)
    #: Longest wait for the response head, and between two pieces of a response body.
    read_timeout: Duration = timedelta(seconds=300)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        if not parts.hostname:
            raise ValueError(f"the URL names no host: {v!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("do not put credentials in the URL; use upstream.headers or upstream.basic_auth")
        if parts.query or parts.fragment:
            raise ValueError("the upstream URL cannot carry a query or fragment; requests bring their own")
        try:
            _ = parts.port  # urlsplit checks the port only when asked
        except ValueError as e:
            raise ValueError(f"bad port in {v!r}: {e}") from None
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"the value of header {name!r} contains a line break")
            for ref in env_references(value):
                if not _ENV_NAME.fullmatch(ref):
                    raise ValueError(f"header {name!r}: ${{{ref}}} is not a valid environment variable "
                                     "reference (expected ${NAME} with letters, digits and _)")
            if name.lower() in _MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is managed by gw and cannot be set in upstream.headers")
        return v

    @model_validator(mode="after")
    def _client_cert(self) -> UpstreamOptions:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self


#: Headers gw itself derives for the upstream request; configuring them would break framing or routing.
_MANAGED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
                              "trailer", "keep-alive", "expect"})


class ProxyListenerOptions(ListenerOptions):
    """A listener that proxies HTTP/1.1 clients to one upstream (``protocol = "http"``, ``"kubernetes"``)."""

    upstream: UpstreamOptions
    #: Serve HTTPS to clients with this certificate and key.
    tls: ClientTLS | None = None
    #: Header carrying the agent's identity token.  With ``Authorization`` the value must be ``Bearer TOKEN``;
    #: with another header the whole value is the token (a ``Bearer `` prefix is accepted).
    token_header: str = "Authorization"
    #: More request/response headers whose values are redacted in what stages record (API keys ...).
    secret_headers: list[str] = Field(default_factory=list)
    #: Largest request head (request line + headers) and upstream response head; larger -> 431 / 502.
    max_header_bytes: ByteSize = 64 * 1024
    #: Largest request body; larger -> 413.
    max_request_body: ByteSize = 100 * 1024 * 1024
    #: A filtered (masked/recorded) response whose upstream Content-Length is at most this is held whole and
    #: sent with its new Content-Length, so a masking failure is always a clean 502.  Longer or chunked ones
    #: stream chunked from the filter's first output; a failure after that cuts the connection (the client
    #: gets a truncated response, never unmasked bytes).
    max_response_buffer: ByteSize = 1024 * 1024
    #: Close a keep-alive connection after this long without a new request.
    idle_timeout: Duration = timedelta(seconds=60)
    #: A request head must arrive completely within this time of its first byte (slowloris) -> 408.
    header_timeout: Duration = timedelta(seconds=10)
    #: Longest pause while a client sends a request body -> 408.
    body_timeout: Duration = timedelta(seconds=30)
    #: Longest time a client may take to accept response bytes before gw gives up on it.
    send_timeout: Duration = timedelta(seconds=60)
    #: Allow ``%2F`` / ``%5C`` / ``\\`` in request paths.  Off by default: upstreams that decode them would
    #: route to a path policy never saw.
    allow_encoded_slash: bool = False
    #: Accept ``;`` path parameters (``/a;v=1/b``).  Off by default: servers such as Tomcat drop them (and act
    #: on ``/api/..;/admin`` as ``/admin``) while policy would see another path.  ``..;`` is refused anyway.
    allow_path_params: bool = False
    #: ``X-HTTP-Method-Override`` and its kin (and a ``_method`` query parameter): ``"refuse"`` them (400), or
    #: ``"honour"`` them, classifying the request as the method they name.
    method_override: Literal["refuse", "honour"] = "refuse"
    #: Largest WebSocket message gw reassembles when a stage filters or observes WebSocket traffic; a larger
    #: one closes the WebSocket (1009).
    max_websocket_message: ByteSize = 16 * 1024 * 1024

    @field_validator("token_header")
    @classmethod
    def _token_header(cls, v: str) -> str:
        if not _TOKEN.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid header name")
        if v.lower() in _MANAGED_HEADERS:
            raise ValueError(f"{v!r} cannot carry the identity token")
        return v

    @field_validator("secret_headers")
    @classmethod
    def _secret_headers(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return v

    @field_validator("max_websocket_message")
    @classmethod
    def _message_floor(cls, v: int) -> int:
        if v < 1024:
            raise ValueError("max_websocket_message below 1KiB would close ordinary WebSockets")
        return v

    @field_validator("max_header_bytes")
    @classmethod
    def _header_floor(cls, v: int) -> int:
        if v < 1024:
            raise ValueError("max_header_bytes below 1KiB would refuse ordinary requests")
        return v
