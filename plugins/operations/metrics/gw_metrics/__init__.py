"""gw-metrics: the admin endpoint on ``[gateway] admin_listen`` -- Prometheus ``/metrics``, ``/healthz`` and
``/readyz`` (docs/operations.md lists every metric).

Loading the plugin imports nothing of ``prometheus_client``: the endpoint and the metrics (:mod:`.admin`,
:mod:`.metrics`) are imported when a gateway with ``admin_listen`` starts, or when a name below is first used."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gw import hookimpl

if TYPE_CHECKING:
    from gw.runtime import Runtime

    from .admin import AdminEndpoint, readiness
    from .metrics import GatewayMetrics

#: The names this package exports from its submodules, imported on first use (they import prometheus_client).
_LAZY = {"AdminEndpoint": ".admin", "readiness": ".admin", "GatewayMetrics": ".metrics"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)

__all__ = ["AdminEndpoint", "GatewayMetrics", "endpoint_of", "readiness"]

_PREFIX = "gw-metrics-runtime-"


def _name(runtime: Runtime) -> str:
    return f"{_PREFIX}{id(runtime)}"


def endpoint_of(runtime: Runtime) -> AdminEndpoint | None:
    """The admin endpoint serving ``runtime`` (while it serves), for tests and embedding."""
    from .admin import AdminEndpoint

    endpoint = runtime.pm.get_plugin(_name(runtime) + "-endpoint")
    return endpoint if isinstance(endpoint, AdminEndpoint) else None


@hookimpl
def gw_admin_server(runtime: Runtime) -> Callable[..., Awaitable[None]]:
    from .admin import AdminEndpoint
    from .metrics import GatewayMetrics

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
