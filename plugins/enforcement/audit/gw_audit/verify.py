"""``gw audit verify``: walk each chain in store order and name the first record that breaks it.

For each record the verifier checks its content against its ``hash`` and its link (``prev`` and ``n``) to the
last good record.  When a record fails, the *next* record tells what happened to it:

* the next record links straight to the last good one -> the failing record was **inserted**;
* otherwise its content does not match its hash -> it was **altered**;
* its position jumps ahead -> the records in between were **deleted**;
* it claims the same position as the record before it, linked to the same predecessor -> one of the two was
  inserted, and the record after them tells which one the chain continues from;
* its position repeats an earlier one -> a record was inserted (or two gateways write one chain).

A chain whose first stored record is not position 1 lost its oldest part, normally to retention pruning;
verification starts there and the report says where.  Deleting the newest records cannot be seen from the
records alone: compare the head with a position/hash you noted earlier (``--anchor``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gw.store import Store

from .chain import GENESIS, record_hash
from .records import STREAM


@dataclass(frozen=True, slots=True)
class Anchor:
    """A position and (a prefix of) its hash noted earlier, e.g. from a previous ``verify`` run."""

    position: int
    hash_prefix: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        pos, sep, digest = text.partition(":")
        digest = digest.strip().lower()
        if not sep or not pos.strip().isdigit() or len(digest) < 12 or any(
                c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"expected POSITION:HASH with at least 12 hex digits of the hash (as printed by "
                             f"gw audit verify), got {text!r}")
        return cls(int(pos), digest)


@dataclass(slots=True)
class ChainReport:
    chain: str
    verified: int = 0
    first_id: int | None = None
    first_position: int | None = None
    first_time: float | None = None
    last_id: int | None = None
    last_position: int | None = None
    head: str | None = None
    problem: str | None = None
    problem_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def complete(self) -> bool:
        """True when the stored chain starts at position 1 (nothing pruned)."""
        return self.first_position == 1

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "ok": self.ok, "verified": self.verified, "complete": self.complete,
                "first_id": self.first_id, "first_position": self.first_position,
                "first_time": self.first_time, "last_id": self.last_id, "last_position": self.last_position,
                "head": self.head, "problem": self.problem, "problem_id": self.problem_id}


@dataclass(frozen=True, slots=True)
class _Link:
    id: int
    position: int
    hash: str
    name: str


def _when(record: Mapping[str, Any]) -> str:
    t = record.get("time")
    if isinstance(t, (int, float)):
        return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "no time"


def _name(seq: int, record: Mapping[str, Any]) -> str:
    n = record.get("n")
    where = f"position {n}, " if isinstance(n, int) else ""
    return f"record {seq} ({where}{_when(record)})"


class ChainVerifier:
    """Checks one chain's records fed in store order; the first problem found is final."""

    def __init__(self, chain: str, anchor: Anchor | None = None) -> None:
        self.report = ChainReport(chain)
        self.anchor = anchor
        self._anchor_seen = False
        self._good: _Link | None = None
        self._prior: _Link | None = None  # the good record before ``_good``
        self._suspect: tuple[int, Mapping[str, Any], bool] | None = None

    def feed(self, seq: int, record: Mapping[str, Any]) -> None:
        if self.report.problem is not None:
            return
        if self._suspect is not None:
            self._judge(next_record=(seq, record))
            return
        n, prev, digest = record.get("n"), record.get("prev"), record.get("hash")
        content_ok = isinstance(digest, str) and _safe_hash(record) == digest
        if not (isinstance(n, int) and isinstance(prev, str) and content_ok):
            self._suspect = (seq, record, content_ok)
            return
        assert isinstance(n, int) and isinstance(digest, str)
        good = self._good
        if good is None:
            if n == 1 and prev != GENESIS:
                self._suspect = (seq, record, content_ok)
                return
            self.report.first_id, self.report.first_position, self.report.first_time = seq, n, _time(record)
        elif prev != good.hash or n != good.position + 1:
            self._suspect = (seq, record, content_ok)
            return
        self._accept(_Link(seq, n, digest, _name(seq, record)))

    def _accept(self, link: _Link) -> None:
        self._prior, self._good = self._good, link
        self.report.verified += 1
        self.report.last_id, self.report.last_position, self.report.head = link.id, link.position, link.hash
        if self.anchor is not None and link.position == self.anchor.position:
            self._anchor_seen = True
            if not link.hash.startswith(self.anchor.hash_prefix):
                self._fail(link.id, f"record {link.id} at the anchored position {link.position} has hash "
                           f"{link.hash[:16]}…, not the anchored {self.anchor.hash_prefix[:16]}…: the chain "
                           "was rewritten from there (or the anchor is from another chain)")

    def _fail(self, seq: int, message: str) -> None:
        if self.report.problem is None:
            self.report.problem, self.report.problem_id = message, seq

    def _judge(self, next_record: tuple[int, Mapping[str, Any]] | None) -> None:
        """Name what happened to the suspect record, using the record after it when there is one."""
        assert self._suspect is not None
        seq, record, content_ok = self._suspect
        self._suspect = None
        good = self._good
        expect_prev, expect_n = (good.hash, good.position + 1) if good else (GENESIS, 1)
        name = _name(seq, record)
        if next_record is not None:
            nseq, nrec = next_record
            if (nrec.get("prev") == expect_prev and nrec.get("n") == expect_n
                    and _safe_hash(nrec) == nrec.get("hash") and (good is not None or expect_n == 1)):
                after = f"record {good.id}" if good else "the start of the chain"
                self._fail(seq, f"{name} was inserted: it is not part of the chain (record {nseq} links "
                           f"directly to {after})")
                return
        n = record.get("n")
        if content_ok and good is not None and n == good.position and record.get("prev") == (
                self._prior.hash if self._prior else GENESIS if good.position == 1 else None):
            self._judge_twins(seq, record, next_record)
            return
        if not content_ok:
            self._fail(seq, f"{name} was altered: its content does not match its hash")
        elif not isinstance(n, int) or not isinstance(record.get("prev"), str):
            self._fail(seq, f"{name} has no chain position or link (inserted or altered)")
        elif good is None:
            self._fail(seq, f"{name} claims position 1 but does not start the chain (inserted or altered)")
        elif n > good.position + 1:
            missing = (f"position {good.position + 1}" if n == good.position + 2
                       else f"positions {good.position + 1}-{n - 1}")
            self._fail(seq, f"chain {missing} deleted: missing between record {good.id} (position "
                       f"{good.position}) and {name}")
        elif n <= good.position:
            self._fail(seq, f"{name} repeats chain position {n}: a record was inserted, or two gateways write "
                       f"chain {self.report.chain!r} (give each its own [gateway] name)")
        else:
            self._fail(seq, f"{name} does not link to record {good.id} (position {good.position}): one of them "
                       "was altered and its hash recomputed, or replaced")

    def _judge_twins(self, seq: int, record: Mapping[str, Any],
                     next_record: tuple[int, Mapping[str, Any]] | None) -> None:
        """Two records claim one position with the same predecessor: the chain goes on from one of them."""
        good = self._good
        assert good is not None
        name = _name(seq, record)
        if next_record is not None:
            nseq, nrec = next_record
            follows = nrec.get("n") == good.position + 1 and _safe_hash(nrec) == nrec.get("hash")
            if follows and nrec.get("prev") == record.get("hash"):
                self.report.verified -= 1
                prior = self._prior
                self.report.last_id, self.report.last_position, self.report.head = (
                    (prior.id, prior.position, prior.hash) if prior else (None, None, None))
                self._fail(good.id, f"{good.name} was inserted: it is not part of the chain ({name} holds the "
                           f"same position and record {nseq} links to that one)")
                return
            if follows and nrec.get("prev") == good.hash:
                self._fail(seq, f"{name} was inserted: it repeats position {good.position} of record {good.id}, "
                           f"and record {nseq} links to that one")
                return
        self._fail(seq, f"{name} and record {good.id} both claim position {good.position}: one was inserted, "
                   f"or two gateways write chain {self.report.chain!r} (give each its own [gateway] name)")

    def finish(self) -> ChainReport:
        if self._suspect is not None:
            self._judge(next_record=None)
        r = self.report
        if r.problem is None and self.anchor is not None and not self._anchor_seen:
            pos = self.anchor.position
            if r.last_position is not None and pos > r.last_position:
                self._fail(r.last_id or 0, f"the chain ends at position {r.last_position}, before the anchored "
                           f"position {pos}: its newest records were deleted")
            else:
                self._fail(r.first_id or 0, f"the anchored position {pos} is not in the stored chain (it "
                           f"starts at position {r.first_position}): it was pruned or deleted")
        return r


def _safe_hash(record: Mapping[str, Any]) -> str | None:
    try:
        return record_hash(record)
    except (TypeError, ValueError):
        return None


def _time(record: Mapping[str, Any]) -> float | None:
    t = record.get("time")
    return float(t) if isinstance(t, (int, float)) else None


async def verify_store(store: Store, *, chain: str | None = None, anchor: Anchor | None = None,
                       page: int = 1000, progress: Callable[[int, int], None] | None = None) -> list[ChainReport]:
    """Verify every chain in ``store`` (or only ``chain``), reading the audit stream in pages.  ``progress``
    is called after each page with the records read so far and the stream's newest position."""
    verifiers: dict[str, ChainVerifier] = {}
    after: int | None = None
    where = {"chain": chain} if chain else None
    newest = await store.last(STREAM) if progress is not None else None
    read = 0
    while True:
        entries = await store.scan(STREAM, where=where, after=after, limit=page)
        for entry in entries:
            name = chain or entry.data.get("chain")
            key = name if isinstance(name, str) else "(records without a chain)"
            verifier = verifiers.get(key)
            if verifier is None:
                verifier = verifiers[key] = ChainVerifier(key, anchor)
            verifier.feed(entry.seq, entry.data)
        read += len(entries)
        if progress is not None:
            progress(read, newest.seq if newest is not None else 0)
        if len(entries) < page:
            break
        after = entries[-1].seq
    return [v.finish() for _, v in sorted(verifiers.items())]
