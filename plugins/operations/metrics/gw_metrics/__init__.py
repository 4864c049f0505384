"""gw-metrics: the admin endpoint on ``[gateway] admin_listen`` -- Prometheus ``/metrics``, ``/healthz`` and
``/readyz`` (docs/operations.md lists every metric)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gw import hookimpl

from .admin import AdminEndpoint, readiness
from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from gw.runtime import Runtime

__all__ = ["AdminEndpoint", "GatewayMetrics", "endpoint_of", "readiness"]

_PREFIX = "gw-metrics-runtime-"


def _name(runtime: Runtime) -> str:
    return f"{_PREFIX}{id(runtime)}"


def endpoint_of(runtime: Runtime) -> AdminEndpoint | None:
    """The admin endpoint serving ``runtime`` (while it serves), for tests and embedding."""
    endpoint = runtime.pm.get_plugin(_name(runtime) + "-endpoint")
    return endpoint if isinstance(endpoint, AdminEndpoint) else None


@hookimpl
def gw_admin_server(runtime: Runtime) -> Callable[..., Awaitable[None]]:
    metrics = GatewayMetrics(runtime)
    endpoint = AdminEndpoint(runtime, metrics)
    # Registered on this runtime's plugin manager only: core's observer hooks reach this gateway's metrics.
    runtime.pm.register(metrics, name=_name(runtime))
    runtime.pm.register(endpoint, name=_name(runtime) + "-endpoint")
    return endpoint.serve


@hookimpl
def gw_shutdown(runtime: Runtime) -> None:
    for suffix in ("", "-endpoint"):
        plugin = runtime.pm.get_plugin(_name(runtime) + suffix)
        if plugin is not None:
            runtime.pm.unregister(plugin)
