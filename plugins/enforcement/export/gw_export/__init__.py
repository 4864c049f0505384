"""gw-export: ``{ use = "export", to = ... }`` streams the audit trail to syslog (TCP/UDP, RFC 5424), an HTTPS
collector (Splunk HEC, Elastic, Datadog ...) or a file, at least once, from a durable queue in the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gw import hookimpl

from .exporter import POSITIONS, STREAM, running
from .options import ExportOptions
from .stage import ExportStage

if TYPE_CHECKING:
    from gw.runtime import Runtime

__all__ = ["ExportOptions", "ExportStage"]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(ExportStage)


def _stages(runtime: Runtime) -> list[ExportStage]:
    return [s for p in runtime.pipelines.values() for s in p.stages if isinstance(s, ExportStage)]


@hookimpl
def gw_collect_metrics(runtime: Runtime, add: Callable[..., None]) -> None:
    if runtime.store is None:
        return
    exporters = running(runtime.store)
    for stage in _stages(runtime):
        exporter = exporters.get(stage.key)
        if exporter is None:
            continue
        labels = {"sink": stage.label, "pipeline": stage.pipeline}
        add("gw_export_backlog", exporter.backlog, labels=labels,
            help="Audit records not yet delivered to the sink (store ids after its delivery position)")
        add("gw_export_delivered_total", exporter.delivered, labels=labels, kind="counter",
            help="Events handed to the sink (sent again after a failure: counted again)")
        add("gw_export_errors_total", exporter.errors, labels=labels, kind="counter",
            help="Failed deliveries (each is retried)")
        add("gw_export_sink_up", 1 if exporter.up else 0, labels=labels,
            help="1 while the sink takes events, 0 after a failed delivery until one succeeds")


@hookimpl
def gw_storage_info(runtime: Runtime) -> Awaitable[dict[str, Any]] | None:
    stages = _stages(runtime)
    if runtime.store is None or not stages:
        return None
    store = runtime.store

    async def info() -> dict[str, Any]:
        last = await store.last(STREAM)
        newest = last.seq if last else 0
        out: dict[str, Any] = {}
        for stage in stages:
            doc = await store.get(POSITIONS, stage.key)
            after = doc.data.get("after") if doc is not None else None
            if not isinstance(after, int):
                out[f"export {stage.label}"] = "not started yet (gw serve starts it)"
                continue
            behind = max(0, newest - after)
            out[f"export {stage.label}"] = (f"delivered up to audit id {after}; {behind} record(s) behind "
                                            f"(newest id {newest})")
        return out

    return info()
