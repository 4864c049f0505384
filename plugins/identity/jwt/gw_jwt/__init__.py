"""gw-jwt: the ``jwt`` identity provider (HS256 dev secret, static PEM keys, JWKS, OIDC discovery) and the
``gw token`` command group.  See docs/plugins/jwt.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .options import JwtOptions
from .provider import JwtProvider

__all__ = ["JwtOptions", "JwtProvider"]


@hookimpl
def gw_register_identity_providers(register: Callable[[type[Any]], None]) -> None:
    register(JwtProvider)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import token_group

    register(token_group)
