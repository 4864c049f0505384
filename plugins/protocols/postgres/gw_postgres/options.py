"""The listener table of ``protocol = "postgres"`` (every key is documented in docs/plugins/postgres.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from gw.config import Duration
from gw.protocol import ListenerOptions
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .codec import DEFAULT_MAX_MESSAGE_SIZE, PG_MAX_MESSAGE

_SIZE = re.compile(r"^\s*(\d+)\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_FACTORS = {None: 1, "B": 1, "kB": 1024, "KB": 1024, "KiB": 1024, "MB": 1024**2, "MiB": 1024**2,
            "GB": 1024**3, "GiB": 1024**3}


def parse_size(value: Any) -> int:
    """``"16MB"`` (PostgreSQL's 1024-based units: kB, MB, GB), ``"512kB"`` or a number of bytes."""
    if isinstance(value, bool):  # pydantic reports ValueError as a validation error, TypeError would escape
        raise ValueError(  # noqa: TRY004
            "expected a size such as \"16MB\" or a number of bytes")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        n = int(m.group(1)) * _FACTORS[m.group(2)]
    else:
        raise ValueError(f"expected a size such as \"16MB\", \"512kB\" or a number of bytes, got {value!r}")
    if not 1024 <= n <= PG_MAX_MESSAGE:
        raise ValueError(f"a message size must be between 1kB and 1GB (PostgreSQL's own limit), got {n} "
                         "bytes")
    return n


Size = Annotated[int, BeforeValidator(parse_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleMapping(_Strict):
    """``{ groups = [...], user = ..., password_env = ... }``: identities in one of ``groups`` log in to the
    upstream database as ``user``."""

    groups: list[str] = Field(min_length=1)
    user: str = Field(min_length=1)
    password_env: str | None = None


class UpstreamOptions(_Strict):
    host: str
    port: int = Field(5432, ge=1, le=65535)
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
    #: Once a client message has started to arrive, the rest must arrive within this time.
    message_timeout: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _tls(self) -> PostgresListenerOptions:
        if self.require_tls and self.tls is None:
            raise ValueError("require_tls needs a tls = { cert = ..., key = ... } table")
        return self
