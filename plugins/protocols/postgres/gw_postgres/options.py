"""The listener table of ``protocol = "postgres"`` (every key is documented in docs/plugins/postgres.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from gw.protocol import ListenerOptions
from gw.types import ByteSize, Duration, Port, StrictModel, size_range
from pydantic import Field, model_validator

from .codec import DEFAULT_MAX_MESSAGE_SIZE, PG_MAX_MESSAGE

#: A message size (gw's size convention: ``"16MiB"`` = 2^24 bytes, ``"16MB"`` = 16 x 10^6), 1KiB to 1GiB
#: (PostgreSQL's own limit).
Size = Annotated[ByteSize, size_range(1024, PG_MAX_MESSAGE)]


_Strict = StrictModel


class RoleMapping(_Strict):
    """``{ groups = [...], user = ..., password_env = ... }``: identities in one of ``groups`` log in to the
    upstream database as ``user``."""

    groups: list[str] = Field(min_length=1)
    user: str = Field(min_length=1)
    password_env: str | None = None


class UpstreamOptions(_Strict):
    host: str
    port: Port = 5432
    database: str = Field(min_length=1)
    #: The upstream role gw logs in as when ``roles`` is empty.
    user: str | None = None
    #: Environment variable holding that role's password (trust authentication needs none).
    password_env: str | None = None
    #: Least-privilege mapping of groups to upstream roles: the first entry whose groups intersect the
    #: identity's wins; no match refuses the client (SQLSTATE 28000).
    roles: list[RoleMapping] = Field(default_factory=list)
    #: Like libpq's sslmode: disable, prefer (TLS when the server offers it), require, verify-ca, verify-full.
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    #: CA bundle (PEM) to verify the upstream's certificate with (verify-ca / verify-full); system CAs if
    #: unset.
    sslrootcert: str | None = None
    #: Limit on connecting and logging in to the upstream database.
    connect_timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _who(self) -> UpstreamOptions:
        if self.user is None and not self.roles:
            raise ValueError("set upstream.user (the role gw logs in as) or upstream.roles")
        if self.password_env is not None and self.user is None:
            raise ValueError("upstream.password_env needs upstream.user")
        return self


class TLSOptions(_Strict):
    #: PEM certificate chain and private key gw presents to clients.
    cert: str
    key: str


class PostgresListenerOptions(ListenerOptions):
    upstream: UpstreamOptions
    #: Client-facing TLS (answers SSLRequest with S; also accepts PostgreSQL 17 direct TLS).
    tls: TLSOptions | None = None
    #: Refuse clients that did not negotiate TLS (so tokens never cross the network in the clear).
    require_tls: bool = False
    #: Largest message a client may send (a statement, a COPY chunk, a Bind with its parameters).
    max_message_size: Size = DEFAULT_MAX_MESSAGE_SIZE
    #: Largest statement gw classifies; a longer one is refused (0A000) naming this option.  Statements above
    #: 64 KiB are analysed in a worker thread, so one agent's huge statement never stalls other sessions.
    max_analysis_size: Size = 1024 * 1024
    #: The deployment's own functions and what they do (``{ "myschema.purge" = "write" }``): calls to them are
    #: classified with that kind instead of ``unknown``.  Keys are ``schema.name`` or a bare name.
    functions: dict[str, Literal["read", "write", "ddl", "admin", "unknown"]] = Field(default_factory=dict)
    #: Once a client message has started to arrive, the rest must arrive within this time.
    message_timeout: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _tls(self) -> PostgresListenerOptions:
        if self.require_tls and self.tls is None:
            raise ValueError("require_tls needs a tls = { cert = ..., key = ... } table")
        return self
