"""The listener table of ``protocol = "mysql"`` (every key is documented in docs/plugins/mysql.md)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from gw.config import Duration
from gw.protocol import ListenerOptions
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .codec import DEFAULT_MAX_PACKET, MYSQL_MAX_PACKET

_SIZE = re.compile(r"^\s*(\d+)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB)?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """``"64MiB"``, ``"16M"`` (MySQL's 1024-based units, as in ``max_allowed_packet``) or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"64MiB\" or a number of bytes")  # noqa: TRY004
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = (m.group(2) or "B").upper()[0]
        n = int(m.group(1)) * {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]
    else:
        raise ValueError(f"expected a size such as \"64MiB\", \"16M\" or a number of bytes, got {value!r}")
    if not 1024 <= n <= MYSQL_MAX_PACKET:
        raise ValueError(f"a packet size must be between 1KiB and 1GiB (MySQL's own limit), got {n} bytes")
    return n


Size = Annotated[int, BeforeValidator(parse_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleMapping(_Strict):
    """``{ groups = [...], user = ..., password_env = ... }``: identities in one of ``groups`` log in to the
    upstream server as ``user``."""

    groups: list[str] = Field(min_length=1)
    user: str = Field(min_length=1)
    password_env: str | None = None


class UpstreamOptions(_Strict):
    host: str
    port: int = Field(3306, ge=1, le=65535)
    #: The default database of every session (a client may name another in its handshake).
    database: str | None = None
    user: str | None = None
    password_env: str | None = None
    roles: list[RoleMapping] = Field(default_factory=list)
    #: TLS to the upstream, with libpq's words: disable, prefer, require, verify-ca, verify-full.
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None
    #: PEM file with the server's RSA public key, for caching_sha2_password without TLS.
    server_public_key: str | None = None
    #: Ask the server for its RSA public key when it is needed and not configured (trusts the network).
    get_server_public_key: bool = False
    connect_timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _who(self) -> UpstreamOptions:
        if self.user is None and not self.roles:
            raise ValueError("set upstream.user (the account gw logs in as) or upstream.roles")
        if self.password_env is not None and self.user is None:
            raise ValueError("upstream.password_env needs upstream.user")
        return self


class TLSOptions(_Strict):
    cert: str
    key: str


class MySQLListenerOptions(ListenerOptions):
    upstream: UpstreamOptions
    #: Client-facing TLS (offered in the greeting as CLIENT_SSL).
    tls: TLSOptions | None = None
    #: Refuse clients that did not switch to TLS, so tokens never cross the network in the clear.
    require_tls: bool = False
    #: Largest packet (a statement, a prepared statement's parameters) a client may send.
    max_packet_size: Size = DEFAULT_MAX_PACKET
    #: Once a client packet has started to arrive, the rest must arrive within this time.
    message_timeout: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _tls(self) -> MySQLListenerOptions:
        if self.require_tls and self.tls is None:
            raise ValueError("require_tls needs a tls = { cert = ..., key = ... } table")
        return self


def is_loopback(host: str) -> bool:
    """Whether a listen host only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
