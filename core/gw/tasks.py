"""The runtime-owned nursery for plugins' background tasks (flushers, watchers, webhook senders).

A plugin starts a task with ``services.spawn(fn, *args, name=...)`` -- from ``open()`` or later, from any
task.  The tasks run in one nursery the runtime owns: they outlive the call that started them, a task that
raises is logged without ending the gateway (or the other tasks), and the runtime cancels whatever is still
running when it closes, after every plugin's ``close()`` (so ``close`` can still ask its task to finish its
work and wait for it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("gw.tasks")


class Background:
    """A nursery that outlives the tasks that use it.  Created per runtime; :meth:`close` ends it."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], str | None]] = []
        self._scope = trio.CancelScope()
        self._host_started = False
        self._done = trio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Start ``fn(*args)`` in the background.  Returns at once; must be called inside a trio run."""
        if self._closed:
            raise RuntimeError("the gateway's background tasks are closed; cannot start " + (name or repr(fn)))
        if self._nursery is not None:
            self._nursery.start_soon(self._guard, fn, args, name, name=name)
            return
        self._pending.append((fn, args, name))
        if not self._host_started:
            self._host_started = True
            # The one system task of gw: it hosts the nursery, so a plugin task started from a session's task
            # does not die with that session, and nothing holds the caller's cancel scope open.
            trio.lowlevel.spawn_system_task(self._host, name="gw background tasks")

    async def _host(self) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for fn, args, name in self._pending:
                        nursery.start_soon(self._guard, fn, args, name, name=name)
                    self._pending.clear()
                    await trio.sleep_forever()
        finally:
            self._nursery = None
            self._done.set()

    @staticmethod
    async def _guard(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str | None) -> None:
        try:
            await fn(*args)
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("background task %s failed", name or getattr(fn, "__qualname__", fn))

    async def close(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        self._closed = True
        self._pending.clear()
        if not self._host_started:
            return
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._done.wait()
