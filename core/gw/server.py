"""The trio server: one accept loop per listener, connection handlers in their own nursery.

Shutdown (SIGTERM / SIGINT, or :meth:`Gateway.shutdown`): stop accepting, ask every session to end when idle
(``SessionRuntime.terminate("shutdown")``), wait up to ``gateway.drain_timeout`` for them, then cancel what is
left.  Each connection's errors are contained and logged: one bad client never takes the gateway down.
"""

from __future__ import annotations

import errno
import logging
import signal
from typing import Any

import trio

from .errors import ConfigError, PluginError
from .model import SessionEnd
from .runtime import ListenerRuntime, Runtime

log = logging.getLogger("gw.server")


def _peer(stream: trio.SocketStream) -> str:
    try:
        addr = stream.socket.getpeername()
    except OSError:
        return "?"
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


async def _reuse_port_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Like ``trio.open_tcp_listeners``, with SO_REUSEPORT so several processes accept on one address."""
    found = await trio.socket.getaddrinfo(host or None, port, type=trio.socket.SOCK_STREAM,
                                          flags=trio.socket.AI_PASSIVE)
    listeners: list[trio.SocketListener] = []
    for family, kind, proto, _, address in found:
        sock = trio.socket.socket(family, kind, proto)
        try:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
            if family == trio.socket.AF_INET6:
                sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
            await sock.bind(address)
            sock.listen(128)
        except OSError:
            sock.close()
            for done in listeners:
                done.socket.close()
            raise
        listeners.append(trio.SocketListener(sock))
    return listeners


class Gateway:
    """Serves every listener of a :class:`~gw.runtime.Runtime` until shut down."""

    def __init__(self, runtime: Runtime, *, reuse_port: bool = False) -> None:
        self.runtime = runtime
        #: Bind listeners with SO_REUSEPORT (a worker of ``gw serve --workers``: the kernel spreads connections).
        self.reuse_port = reuse_port
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()
        self._accept_scope = trio.CancelScope()
        self._stop = trio.Event()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (safe to call more than once)."""
        self._stop.set()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED, handle_signals: bool = False) -> None:
        rt = self.runtime
        await rt.open(serving=True)
        try:
            listeners: list[tuple[ListenerRuntime, list[trio.SocketListener]]] = []
            for lr in rt.listeners.values():
                host, port = lr.options.address
                try:
                    socks = (await _reuse_port_listeners(host, port) if self.reuse_port
                             else await trio.open_tcp_listeners(port, host=host or None))
                except OSError as e:
                    hint = " (is another gw or service already using it?)" if e.errno == errno.EADDRINUSE else ""
                    raise OSError(e.errno, f"listener {lr.name!r} cannot listen on {lr.options.listen}: "
                                           f"{e.strerror}{hint}") from None
                lr.bound = [s.socket.getsockname()[:2] for s in socks]
                listeners.append((lr, socks))
            admin = None
            if rt.config.model.gateway.admin_listen:
                admin = rt.pm.hook.gw_admin_server(runtime=rt)
                if admin is None:
                    raise ConfigError("admin_listen is set but no installed plugin serves an admin endpoint; "
                                      "install gw-metrics (pip install gw-metrics) or remove the key",
                                      file=str(rt.config.path), path="gateway.admin_listen")
            rt.pm.hook.gw_startup(runtime=rt)
            for lr, _ in listeners:
                for host, port in lr.bound:
                    log.info("listener %s (%s) on %s:%d -> %s, pipeline %s", lr.name, lr.options.protocol,
                             host, port, lr.handler.describe_upstream() or "-", lr.options.pipeline)
            async with trio.open_nursery() as conn_nursery:
                if admin is not None:  # serves until the end of the drain (/readyz says "shutting down")
                    await conn_nursery.start(admin)
                async with trio.open_nursery() as nursery:
                    if handle_signals:
                        nursery.start_soon(self._signals)
                    with self._accept_scope:
                        for lr, socks in listeners:
                            nursery.start_soon(self._accept, lr, socks, conn_nursery)
                        task_status.started(self)
                        await self._stop.wait()
                    nursery.cancel_scope.cancel()
                await self._drain(conn_nursery)
            rt.pm.hook.gw_shutdown(runtime=rt)
        finally:
            await rt.close()

    async def _accept(self, lr: ListenerRuntime, socks: list[trio.SocketListener],
                      conn_nursery: trio.Nursery) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            await self._connection(lr, stream)

        await trio.serve_listeners(handler, socks, handler_nursery=conn_nursery)

    async def _connection(self, lr: ListenerRuntime, stream: trio.SocketStream) -> None:
        self.active += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        peer = _peer(stream)
        try:
            await lr.handler.handle(stream, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as e:
            log.debug("listener %s: client %s went away: %s", lr.name, peer, e)
        except Exception:
            log.exception("listener %s: connection from %s failed", lr.name, peer)
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except Exception:
                    pass
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def _drain(self, conn_nursery: trio.Nursery) -> None:
        self.runtime.shutting_down.set()
        sessions = list(self.runtime.sessions())
        if self.active:
            log.info("shutting down: waiting up to %.0fs for %d connection(s)",
                     self.runtime.config.model.gateway.drain_timeout.total_seconds(), self.active)
        for s in sessions:
            s.terminate(SessionEnd.SHUTDOWN)
        with trio.move_on_after(self.runtime.config.model.gateway.drain_timeout.total_seconds()):
            await self._idle.wait()
        if self.active:
            log.warning("shutting down: cancelling %d connection(s) still open after the drain timeout",
                        self.active)
        conn_nursery.cancel_scope.cancel()

    async def reload(self) -> bool:
        """Re-read the pipeline file (SIGHUP).  An invalid file is logged and the running one kept."""
        hook = self.runtime.pm.hook.gw_reloaded
        try:
            changes = await self.runtime.reload()
        except (ConfigError, PluginError) as e:
            log.error("reload refused, the running configuration is kept: %s", e)
            hook(runtime=self.runtime, changes=[], error=str(e))
            return False
        except Exception as e:
            log.exception("reload failed; the running configuration is kept")
            hook(runtime=self.runtime, changes=[], error=f"{type(e).__name__}: {e}")
            return False
        log.info("reloaded %s: %s", self.runtime.config.path, "; ".join(changes) or "no changes")
        hook(runtime=self.runtime, changes=changes, error=None)
        return True

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for sig in signals:
                if sig == signal.SIGHUP:
                    await self.reload()
                    continue
                if self._stop.is_set():
                    log.warning("second %s: stopping now", signal.Signals(sig).name)
                    raise KeyboardInterrupt
                log.info("%s: shutting down gracefully", signal.Signals(sig).name)
                self.shutdown()
