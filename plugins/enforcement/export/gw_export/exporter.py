"""Delivery: one background task per sink reads the audit stream from the store and hands events to the sink.

The queue *is* the audit stream, which is durable before any command runs, plus a delivery position per sink
kept in the store (collection ``export``): the position moves only after the sink took a batch (and, for
syslog over TCP, the connection was still open ``settle`` seconds later).  Hence:

* a sink outage never blocks or refuses a command: the data path only appends to the audit stream, as it
  does without export; events wait in the store, the backlog grows (``gw_export_backlog``) and delivery
  resumes, in store order (so in order per session), when the sink is back;
* nothing is lost across restarts: a restarted gateway continues from the stored position;
* delivery is at least once: after a failure the batch is sent again, so a receiver can see an event twice
  (``gateway`` + ``id`` identify it).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio
from gw.store import Store

from .formats import event_of
from .sinks import Sink, SinkError

log = logging.getLogger("gw.export")

#: The audit stage's stream.
STREAM = "audit"
#: The collection holding each sink's delivery position.
POSITIONS = "export"
#: How often an idle exporter looks for new audit records (commands also wake it at once).
POLL = 0.25
BACKOFF_START = 0.5


class Exporter:
    """Delivers one gateway's audit events (of the listeners ``listeners()`` names) to one sink."""

    def __init__(self, store: Store, key: str, label: str, sink: Sink, *, gateway: str,
                 listeners: Callable[[], set[str]], batch: int, retry_max: float) -> None:
        self.store = store
        self.key = key
        self.label = label
        self.sink = sink
        self.gateway = gateway
        self.listeners = listeners
        self.batch = batch
        self.retry_max = retry_max
        #: Last audit id delivered and confirmed (stored), last id handed to the sink, newest id seen.
        self.committed = 0
        self.sent = 0
        self.head = 0
        self.delivered = 0
        self.errors = 0
        self.up = True
        self.last_error: str | None = None
        self._unconfirmed: deque[tuple[float, int]] = deque()
        self._wake = trio.Event()
        self._scope = trio.CancelScope()
        self._done = trio.Event()

    # -- lifetime ---------------------------------------------------------------------------------------------
    async def start(self, spawn: Callable[..., Any]) -> None:
        """Load (or create) the delivery position and start delivering in a task ``spawn`` starts (the
        runtime's background nursery)."""
        doc = await self.store.get(POSITIONS, self.key)
        last = await self.store.last(STREAM)
        self.head = last.seq if last else 0
        if doc is not None and isinstance(doc.data.get("after"), int):
            self.committed = doc.data["after"]
        else:
            # A new sink starts with what is written from now on (the trail so far is in the store).
            self.committed = self.head
            await self._save()
        self.sent = self.committed
        spawn(self._run, name=f"gw-export-{self.label}")

    async def stop(self, grace: float = 2.0) -> None:
        """Deliver what is pending for up to ``grace`` seconds, then stop; the position is stored."""
        if not self._done.is_set():
            with trio.move_on_after(grace) as scope:
                scope.shield = True
                while self.up and (self.sent < self.head or self._unconfirmed):
                    self.wake()
                    await trio.sleep(0.05)
            self._scope.cancel()
            with trio.move_on_after(5) as scope:
                scope.shield = True
                await self._done.wait()
        with trio.CancelScope(shield=True):
            await self.sink.close()

    def wake(self) -> None:
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Audit records after the delivery position (an upper bound: records of other gateways count)."""
        return max(0, self.head - self.committed)

    # -- the loop ---------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            with self._scope:
                await self._loop()
        finally:
            self._done.set()

    async def _loop(self) -> None:
        backoff = BACKOFF_START
        while True:
            try:
                await self._step()
            except SinkError as e:
                await self._failed(str(e))
            except trio.Cancelled:
                raise
            except Exception as e:
                log.exception("export %s: delivery failed", self.label)
                await self._failed(f"{type(e).__name__}: {e}")
            else:
                backoff = BACKOFF_START
                continue
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max)

    async def _failed(self, reason: str) -> None:
        self.errors += 1
        if self.up or reason != self.last_error:
            log.warning("export %s: %s; events wait in the store and are sent when it is back", self.label,
                        reason)
        self.up = False
        self.last_error = reason
        await self.sink.reset()
        self.sent = self.committed  # what was not confirmed goes again
        self._unconfirmed.clear()
        try:
            last = await self.store.last(STREAM)
            self.head = max(self.head, last.seq if last else 0)
        except Exception as e:  # noqa: BLE001 -- the backlog figure is best effort
            log.debug("export %s: cannot read the newest audit id: %s", self.label, e)

    async def _step(self) -> None:
        await self._confirm()
        entries = await self.store.scan(STREAM, after=self.sent, limit=self.batch)
        if not entries:
            with trio.move_on_after(POLL):
                await self._wake.wait()
            self._wake = trio.Event()
            return
        listeners = self.listeners()
        events = [event_of(e, self.gateway) for e in entries if self._ours(e.data, listeners)]
        if events:
            await self.sink.send(events)
        if not self.up:
            log.info("export %s: delivering again (from audit id %d)", self.label, self.sent + 1)
            self.up = True
        self.sent = entries[-1].seq
        self.head = max(self.head, self.sent)
        self.delivered += len(events)
        self._unconfirmed.append((time.monotonic(), self.sent))
        await self._confirm()

    def _ours(self, data: Mapping[str, Any], listeners: set[str]) -> bool:
        if data.get("gateway", self.gateway) != self.gateway:
            return False
        listener = data.get("listener")
        return listener is None or listener in listeners

    async def _confirm(self) -> None:
        if not self._unconfirmed:
            return
        if not self.sink.alive():
            raise SinkError("the receiver closed the connection; sending again what it may not have read")
        cutoff = time.monotonic() - self.sink.settle
        upto = None
        while self._unconfirmed and self._unconfirmed[0][0] <= cutoff:
            upto = self._unconfirmed.popleft()[1]
        if upto is not None:
            self.committed = upto
            await self._save()

    async def _save(self) -> None:
        with trio.CancelScope(shield=True):
            await self.store.put(POSITIONS, self.key, {"after": self.committed, "sink": self.label,
                                                       "gateway": self.gateway, "updated": time.time()})


_running: weakref.WeakKeyDictionary[Store, dict[str, Exporter]] = weakref.WeakKeyDictionary()


def running(store: Store) -> dict[str, Exporter]:
    """The exporters this process runs on ``store``, by key."""
    return _running.setdefault(store, {})
