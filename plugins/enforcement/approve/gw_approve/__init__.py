"""gw-approve: human-in-the-loop approval of high-risk commands, and just-in-time grants.

Registers the ``approve`` stage and the ``gw approvals`` command group.  See docs/plugins/approve.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .stage import ApproveOptions, ApproveStage

__all__ = ["ApproveOptions", "ApproveStage"]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(ApproveStage)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import approvals

    register(approvals)


@hookimpl
def gw_register_offers(register: Callable[[type[Any]], None]) -> None:
    from .offer import ApprovalsOffer

    register(ApprovalsOffer)


@hookimpl
def gw_collect_metrics(runtime: Any, add: Callable[..., None]) -> None:
    held: dict[str, int] = {}
    for pipeline in runtime.pipelines.values():
        for stage in pipeline.stages:
            if isinstance(stage, ApproveStage):
                held[pipeline.name] = held.get(pipeline.name, 0) + stage.holding
    for name, n in held.items():
        add("gw_approvals_pending", n, labels={"pipeline": name},
            help="Commands held now waiting for an approver (hold mode), in this gateway process")
