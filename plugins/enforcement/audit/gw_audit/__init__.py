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


@hookimpl
def gw_collect_metrics(runtime: Any, add: Callable[..., None]) -> None:
    seen: set[int] = set()
    for pipeline in runtime.pipelines.values():
        for stage in pipeline.stages:
            chain = getattr(stage, "_chain", None) if isinstance(stage, AuditStage) else None
            if chain is None or id(chain) in seen:
                continue
            seen.add(id(chain))
            add("gw_audit_queue_depth", len(chain._queue), labels={"chain": chain.name},
                help="Audit records waiting to be written to the store")
