"""gw-audit: the audit stage (``{ use = "audit" }``) and ``gw audit list|sessions|verify``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .stage import AuditOptions, AuditStage

__all__ = ["AuditOptions", "AuditStage"]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(AuditStage)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import audit

    register(audit)


@hookimpl
def gw_register_offers(register: Callable[[type[Any]], None]) -> None:
    from .offer import AuditOffer

    register(AuditOffer)
