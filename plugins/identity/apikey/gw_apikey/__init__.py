"""gw-apikey: the ``apikey`` identity provider (service identities for CI jobs and scripts, without an IdP)
and the ``gw keys`` command group.  See docs/plugins/apikey.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .options import ApiKeyOptions
from .provider import ApiKeyProvider, KeyManagementError

__all__ = ["ApiKeyOptions", "ApiKeyProvider", "KeyManagementError"]


@hookimpl
def gw_register_identity_providers(register: Callable[[type[Any]], None]) -> None:
    register(ApiKeyProvider)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import keys_group

    register(keys_group)
