"""The admin endpoint on ``[gateway] admin_listen``: ``/metrics``, ``/healthz`` and ``/readyz``.

A small HTTP/1.1 server (gw-httpserver, one request per connection) meant for Prometheus, load balancers and
orchestrators, on an address operators keep private (it is unauthenticated and reveals configured names and
counts, never credentials or data).

* ``/healthz`` -- 200 while the process runs its event loop (a liveness probe).
* ``/readyz`` -- 200 when every listener accepts connections and reaches its upstream, the store answers and
  every identity provider can verify credentials; otherwise 503 with one line per reason.  503 as soon as a
  graceful shutdown begins, so a load balancer stops sending agents before sessions drain.
* ``/metrics`` -- the Prometheus text format (or OpenMetrics when the scraper asks for it).
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Any

import trio
from gw.config import parse_address
from gw.server import _reuse_port_listeners as reuse_port_listeners
from gw_httpserver import Limits, Request, Response, serve_connection
from prometheus_client.exposition import choose_encoder

from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from gw.runtime import Runtime

log = logging.getLogger("gw.admin")

#: One request per connection, its head up to 16 KiB (the endpoints take no body), sent within 10 s.
LIMITS = Limits(max_head=16 * 1024, max_body=16 * 1024, read_timeout=10.0, keep_alive=False)
#: Time readiness checks have to finish.
CHECK_TIMEOUT = 5.0


async def readiness(runtime: Runtime) -> list[str]:
    """Why this gateway would refuse agents now (empty when ready)."""
    if runtime.shutting_down.is_set():
        return ["gw is shutting down"]
    problems: list[str] = []

    async def check(what: str, probe: Any) -> None:
        try:
            reason = await probe()
        except Exception as e:  # noqa: BLE001 -- a failing probe is a reason, not a crash of the endpoint
            reason = f"check failed ({type(e).__name__})"
        if reason:
            problems.append(f"{what}: {reason}")

    with trio.move_on_after(CHECK_TIMEOUT) as scope:
        async with trio.open_nursery() as nursery:
            for lr in runtime.listeners.values():
                if not lr.bound:
                    problems.append(f"listener {lr.name}: not accepting connections")
                    continue
                nursery.start_soon(check, f"listener {lr.name}", lr.handler.check_ready)
            if runtime.store is not None:
                nursery.start_soon(check, "store", runtime.store.check_ready)
            for name, provider in runtime.identity.items():
                nursery.start_soon(check, f"identity {name}", provider.check_ready)
    if scope.cancelled_caught:
        problems.append(f"readiness checks did not finish within {CHECK_TIMEOUT:g}s")
    return sorted(problems)


class AdminEndpoint:
    """Serves one runtime's admin address."""

    def __init__(self, runtime: Runtime, metrics: GatewayMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.bound: list[tuple[str, int]] = []

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listen = self.runtime.config.model.gateway.admin_listen
        assert listen is not None
        host, port = parse_address(listen)
        try:
            if self.runtime.services.worker is not None:  # every worker answers; any one reports them all
                socks = await reuse_port_listeners(host, port)
            else:
                socks = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as e:
            hint = " (is another gw or service already using it?)" if e.errno == errno.EADDRINUSE else ""
            raise OSError(e.errno, f"admin_listen cannot listen on {listen}: {e.strerror}{hint}") from None
        self.bound = [s.socket.getsockname()[:2] for s in socks]
        for h, p in self.bound:
            log.info("admin endpoint on http://%s:%d (/metrics, /healthz, /readyz)", h, p)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, socks)
            task_status.started()

    async def _connection(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._respond, limits=LIMITS, log=log)

    async def _respond(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed: use GET\n", headers=[("allow", "GET, HEAD")])
        if request.path == "/healthz":
            return Response.text("ok\n")
        if request.path == "/readyz":
            problems = await readiness(self.runtime)
            self.metrics.ready.set(0 if problems else 1)
            if self.runtime.store is not None and any(p.startswith("store:") for p in problems):
                self.metrics.store_errors.labels("readiness").inc()
            if not problems:
                return Response.text("ready\n")
            return Response.text("not ready\n" + "".join(f"- {p}\n" for p in problems), 503)
        if request.path == "/metrics":
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
            return Response(200, encoder(self.metrics.exposed), content_type)
        return Response.text("not found: the admin endpoint serves /metrics, /healthz and /readyz\n", 404)
