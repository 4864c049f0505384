"""The tamper-evident hash chain and its writer.

Each record carries ``chain`` (its name), ``n`` (position, from 1), ``prev`` (the previous record's hash, or
:data:`GENESIS` for position 1) and ``hash``: SHA-256 over the canonical JSON encoding of the record without
``hash`` (keys sorted, no spaces, ASCII).  Changing, inserting or removing a record breaks a hash or a link,
which ``gw audit verify`` reports.

Ordering: all audit stages of one process that write the same chain share one :class:`AuditChain` (a reloaded
pipeline keeps writing the same chain).  Records are hashed and handed to the store in one ``append`` call per
batch, batches strictly one after another, so the store's order is the chain's order for any backend.  While a
batch is being made durable, new records queue up and become the next batch: many sessions writing at once
cost one durable write per batch, not one per record.  The chain head advances only after the store confirmed
the batch, so a failed write leaves no gap: its commands are refused (fail closed) and the next record links to
the last durable one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import trio
from gw.errors import StoreError
from gw.store import Claim, ClaimLost, Store

from .records import STREAM, Index, Record

#: ``prev`` of the first record of a chain.
GENESIS = "0" * 64


#: One encoder for every record (``json.dumps`` with options builds a new encoder per call: measurable per
#: command).  Keys sorted, no spaces, ASCII: the canonical form ``gw audit verify`` recomputes.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The byte string a record's hash covers (the record must already be plain JSON, see ``json_safe``)."""
    return _CANONICAL.encode(record).encode("ascii")


def sealed(record: Mapping[str, Any]) -> tuple[str, str]:
    """The hash of ``record`` (which has no ``hash`` field) and the JSON text of the record with its hash, from
    one encoding: the canonical bytes are hashed, then ``"hash"`` is added as their last member (JSON objects
    have no order; ``gw audit verify`` re-encodes canonically)."""
    body = _CANONICAL.encode(record)
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return digest, f'{body[:-1]},"hash":"{digest}"}}'


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding of ``record`` without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"} if "hash" in record else record
    return hashlib.sha256(canonical(body)).hexdigest()


#: Scheduler rounds a batch waits for more records while records keep arriving (each round costs microseconds;
#: a store transaction costs far more, and carries many records as cheaply as one).
GATHER_ROUNDS = 3

#: How long a queued (not awaited) record may wait for a write to carry it before the flusher writes it.
LINGER = 0.05

log = logging.getLogger("gw.audit")


class _Pending:
    __slots__ = ("done", "error", "index", "queued", "record", "seq")

    def __init__(self, record: Record, index: Index, queued: float | None = None) -> None:
        self.record = record
        self.index = index
        #: When an enqueued (not awaited) record was queued, on trio's clock (see :meth:`AuditChain._flusher`).
        self.queued: float | None = queued
        self.seq: int | None = None
        self.error: BaseException | None = None
        self.done = False


class AuditChain:
    """One named chain in one store: its head (position and hash) and the queue of records to append."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.position = 0
        self.head = GENESIS
        self.loaded = False
        self._load_lock = trio.Lock()
        self._queue: list[_Pending] = []
        self._writing = False
        #: Whether records arrived while the last batch was being written (see :meth:`_write_batch`).
        self._crowded = True
        self._written = trio.Event()
        self._wake = trio.Event()
        self._flusher_started = False
        #: Batches appended by this process (observability and tests).
        self.batches = 0
        #: This gateway's claim on the chain in the store (see :func:`open_chain`), and the stages using it.
        self.claim: Claim | None = None
        self.users = 0
        self._heartbeat: trio.CancelScope | None = None

    async def ensure_loaded(self) -> None:
        """Read the chain head from the store once, so a restarted gateway continues its chain."""
        async with self._load_lock:
            if self.loaded:
                return
            last = await self.store.scan(STREAM, where={"chain": self.name}, newest_first=True, limit=1)
            if last:
                data = last[0].data
                n, h = data.get("n"), data.get("hash")
                if not isinstance(n, int) or not isinstance(h, str) or len(h) != 64:
                    raise StoreError(
                        f"the newest audit record of chain {self.name!r} (id {last[0].seq}) has no valid chain "
                        "position/hash, so gw cannot continue the chain; run `gw audit verify` and restore the "
                        "audit store from a backup")
                self.position, self.head = n, h
            self.loaded = True

    async def write(self, record: Record, index: Index) -> int:
        """Chain ``record`` and return its store id once it is durable; raises if the store failed."""
        if not self.loaded:
            raise StoreError(f"audit chain {self.name!r} is not open yet")
        item = _Pending(record, index)
        self._queue.append(item)
        try:
            while not item.done:
                if self._writing:
                    await self._written.wait()
                    continue
                await self._write_batch()
        except trio.Cancelled:
            if item in self._queue:  # not handed to the store yet: drop it with the cancelled command
                self._queue.remove(item)
            raise
        if item.error is not None:
            raise item.error
        assert item.seq is not None
        return item.seq

    def enqueue(self, record: Record, index: Index) -> None:
        """Chain ``record`` without waiting: it is appended with the next durable write (the next command's
        record, normally) or by the background flusher within ``LINGER`` seconds, whichever comes first.

        For records whose loss in a crash is tolerable (command outcomes): it saves one commit per
        command on the data path.  If the background write fails, the error is logged and the records are
        dropped; the chain stays consistent (the head only moves on success)."""
        if not self.loaded:
            raise StoreError(f"audit chain {self.name!r} is not open yet")
        self._queue.append(_Pending(record, index, trio.current_time()))
        if not self._flusher_started:
            self._flusher_started = True
            self.store.services.spawn(self._flusher, name=f"gw-audit-flusher-{self.name}")
        self._wake.set()

    async def _flusher(self) -> None:
        """Write what waited ``LINGER`` seconds for a write to carry it.  While commands keep coming, their
        writes carry every queued record within far less, and the flusher never commits a batch of its own."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                queued = self._queue[0].queued  # None: an awaited write, which carries the rest
                waited = 0.0 if queued is None else trio.current_time() - queued
                if waited >= LINGER:
                    await self.flush()
                    break
                await trio.sleep(LINGER - waited)

    async def flush(self) -> None:
        """Write whatever is queued now (at shutdown, and from the background flusher)."""
        while self._queue:
            if self._writing:
                await self._written.wait()
                continue
            batch = list(self._queue)
            await self._write_batch()
            failed = [item for item in batch if item.error is not None]
            if failed:
                log.error("audit chain %s: %d record(s) could not be written: %s", self.name, len(failed),
                          failed[0].error)
                return

    async def _write_batch(self) -> None:
        self._writing = True
        # One scheduler round first: sessions whose commands arrived together (runnable now) add their records
        # to this batch instead of waiting for the next one -- fewer, larger store transactions.  Only while
        # several sessions are writing: a lone session's round would find nothing and cost a scheduler pass.
        queued = -1
        for _ in range(GATHER_ROUNDS if self._crowded else 0):
            if len(self._queue) == queued:
                break
            queued = len(self._queue)
            await trio.lowlevel.cancel_shielded_checkpoint()
        batch, self._queue = self._queue, []
        try:
            position, head = self.position, self.head
            try:
                records, texts = [], []
                for item in batch:
                    position += 1
                    rec = dict(item.record, chain=self.name, n=position, prev=head)
                    head, text = sealed(rec)  # encoded once: hashed, and stored as it is
                    rec["hash"] = head
                    records.append(rec)
                    texts.append(text)
                index = [dict(item.index, chain=self.name) for item in batch]
                if self.claim is not None:
                    self.claim.check()  # never write a chain another gateway may have taken over
                # Shielded: once handed to the store, the outcome must be known to keep the head right.
                with trio.CancelScope(shield=True):
                    seqs = await self.store.append(STREAM, records, index=index, encoded=texts)
            except Exception as e:  # noqa: BLE001 -- whatever failed, every waiter must learn it
                for item in batch:
                    item.error = e
            else:
                self.position, self.head = position, head
                self.batches += 1
                for item, seq in zip(batch, seqs):
                    item.seq = seq
        finally:
            for item in batch:
                item.done = True
            self._writing = False
            self._crowded = bool(self._queue)  # records arrived while this batch was being written
            finished, self._written = self._written, trio.Event()
            finished.set()


_chains: weakref.WeakKeyDictionary[Store, dict[str, AuditChain]] = weakref.WeakKeyDictionary()


async def open_chain(store: Store, name: str, *, lease: float | None = None, holder: str = "") -> AuditChain:
    """The process-wide chain ``name`` in ``store`` (created and loaded on first use).

    With ``lease`` (seconds), the first user claims the chain in the store (:class:`gw.store.Claim`) before
    reading its head, and keeps the claim alive with a heartbeat until the last user calls :func:`close_chain`:
    a second gateway that would write the same chain is refused (``ClaimRefused`` names the holder), and one
    that takes over a stale claim continues the chain where it ended."""
    chains = _chains.setdefault(store, {})
    chain = chains.get(name)
    if chain is None:
        chain = chains[name] = AuditChain(store, name)
    if lease is not None and chain.claim is None:
        claim = Claim(store, name, lease=lease, what="audit chain", holder=holder or name)
        await claim.acquire()
        if claim.took_over is not None:
            log.warning("audit chain %s: took over the claim of %r (pid %s on %s), whose heartbeat stopped; the "
                        "chain continues where it ended", name, claim.took_over.get("holder"),
                        claim.took_over.get("pid"), claim.took_over.get("host"))
        chain.claim = claim
        chain.loaded = False  # read the head again: it may have moved while the chain was not ours
        chain._heartbeat = trio.CancelScope()
        store.services.spawn(_heartbeat, chain, chain._heartbeat, name=f"gw-audit-claim-{name}")
    chain.users += 1
    try:
        await chain.ensure_loaded()
    except BaseException:
        await close_chain(chain)
        raise
    return chain


async def close_chain(chain: AuditChain) -> None:
    """One user less; the last one writes what is queued and releases the claim."""
    chain.users -= 1
    if chain.users > 0:
        return
    with trio.CancelScope(shield=True):
        await chain.flush()
        claim, chain.claim = chain.claim, None
        if chain._heartbeat is not None:
            chain._heartbeat.cancel()
            chain._heartbeat = None
        if claim is not None:
            chain.loaded = False
            try:
                await claim.release()
            except Exception as e:  # noqa: BLE001 -- the claim then expires after its lease
                log.warning("audit chain %s: releasing the claim failed (%s); it expires after %gs",
                            chain.name, e, claim.lease)


async def _heartbeat(chain: AuditChain, scope: trio.CancelScope) -> None:
    """Renew the chain's claim three times per lease; a failed renewal is retried (writes stop at the lease)."""
    with scope:
        while True:
            claim = chain.claim
            if claim is None:
                return
            await trio.sleep(claim.lease / 3)
            try:
                await claim.renew()
            except ClaimLost as e:
                log.error("%s", e)
                return
            except Exception as e:  # noqa: BLE001 -- the store is down: retry; check() stops writes meanwhile
                log.warning("audit chain %s: renewing the claim failed (%s); retrying", chain.name, e)
