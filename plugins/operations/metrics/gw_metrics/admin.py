"""The admin endpoint on ``[gateway] admin_listen``: ``/metrics``, ``/healthz`` and ``/readyz``.

A small HTTP/1.1 server (h11 on trio, one request per connection) meant for Prometheus, load balancers and
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

import h11
import trio
from gw.config import parse_address
from gw.server import _reuse_port_listeners as reuse_port_listeners
from prometheus_client.exposition import choose_encoder

from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from gw.runtime import Runtime

log = logging.getLogger("gw.admin")

#: A request (line and headers) larger than this is refused; the endpoints take no body.
MAX_REQUEST = 16 * 1024
#: Time a client has to send its request, and readiness checks have to finish.
REQUEST_TIMEOUT = 10.0
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
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = await self._request(conn, stream)
            if request is None:
                return
            status, headers, body = await self._respond(request)
            headers += [("content-length", str(len(body))), ("connection", "close")]
            if request.method == b"HEAD":
                body = b""
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            if body:
                await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except h11.RemoteProtocolError as e:
            try:
                reply = h11.Response(status_code=e.error_status_hint, headers=[("connection", "close"),
                                                                            ("content-length", "0")])
                await stream.send_all(conn.send(reply) or b"")
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        except Exception:
            log.exception("admin endpoint: request failed")
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _request(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(4096)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None

    async def _respond(self, request: h11.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        text = [("content-type", "text/plain; charset=utf-8")]
        if request.method not in (b"GET", b"HEAD"):
            return 405, [*text, ("allow", "GET, HEAD")], b"method not allowed: use GET\n"
        path = request.target.split(b"?", 1)[0]
        if path == b"/healthz":
            return 200, text, b"ok\n"
        if path == b"/readyz":
            problems = await readiness(self.runtime)
            self.metrics.ready.set(0 if problems else 1)
            if self.runtime.store is not None and any(p.startswith("store:") for p in problems):
                self.metrics.store_errors.labels("readiness").inc()
            if not problems:
                return 200, text, b"ready\n"
            body = "not ready\n" + "".join(f"- {p}\n" for p in problems)
            return 503, text, body.encode()
        if path == b"/metrics":
            accept = ""
            for name, value in request.headers:
                if name == b"accept":
                    accept = value.decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            return 200, [("content-type", content_type)], encoder(self.metrics.exposed)
        return 404, text, b"not found: the admin endpoint serves /metrics, /healthz and /readyz\n"
