"""The listener table of ``protocol = "mysql"`` (every key is documented in docs/plugins/mysql.md)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Literal

from gw.protocol import ListenerOptions
from gw.types import ByteSize, Duration, Port, StrictModel, size_range
from pydantic import Field, model_validator

from .codec import DEFAULT_MAX_PACKET, MYSQL_MAX_PACKET

#: A packet size (gw's size convention: ``"64MiB"`` = 2^26 bytes, ``"64MB"`` = 64 x 10^6), 1KiB to 1GiB
#: (MySQL's own limit).
Size = Annotated[ByteSize, size_range(1024, MYSQL_MAX_PACKET)]


_Strict = StrictModel


class RoleMapping(_Strict):
    """``{ groups = [...], user = ..., password_env = ... }``: identities in one of ``groups`` log in to the
    upstream server as ``user``."""

    groups: list[str] = Field(min_length=1)
    user: str = Field(min_length=1)
    password_env: str | None = None


class UpstreamOptions(_Strict):
    host: str
    port: Port = 3306
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
