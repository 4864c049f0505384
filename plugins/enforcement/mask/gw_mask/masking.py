"""Detector-driven masking of text, and the per-command counts of what was masked.

:class:`TextMasker` is the one place that runs detectors and splices masked text in; rows, byte streams and
JSON documents all use it, so a value is masked the same way wherever it appears.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from gw.detect import Detector

from .detectors import QUICK_CHECKS, QuickCheck
from .strategies import Strategy, to_bytes, to_text


@dataclass(slots=True)
class MaskCounts:
    """What one command's results had masked: values masked by column / JSON path rules, and values found
    per detector.  Reported as ``outcome.notes["masked"]`` (see :meth:`as_note`)."""

    columns: int = 0
    detected: dict[str, int] = field(default_factory=dict)

    def add_detected(self, detector: str, n: int = 1) -> None:
        self.detected[detector] = self.detected.get(detector, 0) + n

    def as_note(self) -> dict[str, Any]:
        return {"columns": self.columns, "detected": dict(self.detected)}


@dataclass(frozen=True, slots=True)
class DetectorRule:
    """A detector and the strategy for what it finds."""

    detector: Detector
    strategy: Strategy


_Rule = tuple[int, Callable[[str], Iterable[tuple[int, int]]], str, Strategy]


class Detection:
    """A stage's detectors, prepared once.  Most text holds nothing sensitive, so detectors that declare a
    ``prefilter`` (a regular expression that matches wherever they could find something) are grouped by it:
    each distinct prefilter runs once per value, and with the built-ins (which share one) a value like
    ``"Customer 17"`` costs a single C-level search instead of a Python call per detector.  Detectors without
    a prefilter always run."""

    def __init__(self, rules: Sequence[DetectorRule]) -> None:
        groups: dict[re.Pattern[str] | None, list[_Rule]] = {}
        for order, rule in enumerate(rules):
            prefilter = getattr(rule.detector, "prefilter", None)
            if not (isinstance(prefilter, re.Pattern) and isinstance(prefilter.pattern, str)):
                prefilter = None
            groups.setdefault(prefilter, []).append((order, rule.detector.find, rule.detector.name,
                                                     rule.strategy))
        #: (prefilter search or None, the detectors behind it)
        self.groups = tuple((p.search if p is not None else None, tuple(g)) for p, g in groups.items())
        quick = [QUICK_CHECKS.get(p) if p is not None else None for p in groups]
        #: The prefilters' quick checks when every detector has one (see
        #: :data:`~gw_mask.detectors.QUICK_CHECKS`), else None: :meth:`may_find` and :meth:`candidates` can
        #: then judge many values at once.
        self._quick: tuple[QuickCheck, ...] | None = (
            tuple(q for q in quick if q is not None) if quick and None not in quick else None)

    def __bool__(self) -> bool:
        return bool(self.groups)

    @property
    def joinable(self) -> bool:
        return self._quick is not None

    def may_find(self, values: Sequence[bytes]) -> bool:
        """Whether a detector may find something in any of ``values`` (UTF-8 text): False only when it is
        certain that none can, judged in one pass over the values joined; True when unsure."""
        if self._quick is None:
            return True
        data = b"\0".join(values)
        for check in self._quick:
            if check.may_match(data):
                return True
        return False

    def candidates(self, values: Sequence[bytes | None]) -> list[int]:
        """The indices of the values (None: NULL, skipped) in which a detector may find something, sorted: all
        of them without quick checks; else those the checks point out over all the values joined, in one
        pass when none may (the usual case)."""
        if self._quick is None:
            return [i for i, v in enumerate(values) if v is not None]
        data = b"\0".join(filter(None, values))  # NULLs and empty values hold nothing
        if not any(check.may_match(data) for check in self._quick):
            return []
        data = b"\0".join([v or b"" for v in values])  # again, one value per index
        ends = list(accumulate(len(v) + 1 if v else 1 for v in values))  # past each value's separator
        found = {bisect_right(ends, at) for check in self._quick for at in check.hits(data)}
        return sorted(found)


class TextMasker:
    """Runs a stage's detectors over a text and replaces what they find, counting per detector."""

    __slots__ = ("_counts", "_detection")

    @property
    def detection(self) -> Detection:
        return self._detection

    def __init__(self, detection: Detection, counts: MaskCounts) -> None:
        self._detection = detection
        self._counts = counts

    def spans(self, text: str) -> list[tuple[int, int, str, Strategy]]:
        """Non-overlapping ``(start, end, detector, strategy)`` spans, sorted.  Overlapping findings (a phone
        number inside a card number) merge into one span, credited to the detector whose finding starts
        first (configuration order breaks ties)."""
        found: list[tuple[int, int, int, str, Strategy]] | None = None
        for gate, rules in self._detection.groups:
            if gate is not None and gate(text) is None:
                continue
            for order, find, name, strategy in rules:
                hits = find(text)
                if not hits:
                    continue
                if found is None:
                    found = []
                n = len(text)
                for start, end in hits:
                    start, end = max(0, int(start)), min(n, int(end))
                    if end > start:
                        found.append((start, order, end, name, strategy))
        if not found:
            return []
        found.sort()
        merged: list[tuple[int, int, str, Strategy]] = []
        for start, _, end, name, strategy in found:
            if merged and start < merged[-1][1]:
                s, e, nm, st = merged[-1]
                merged[-1] = (s, max(e, end), nm, st)
            else:
                merged.append((start, end, name, strategy))
        return merged

    def mask(self, text: str) -> str | None:
        """``text`` with every detected value masked, or None when nothing was found."""
        spans = self.spans(text)
        if not spans:
            return None
        out = []
        pos = 0
        counts = self._counts
        for start, end, name, strategy in spans:
            out.append(text[pos:start])
            out.append(strategy.mask(text[start:end]))
            counts.add_detected(name)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def mask_bytes(self, value: bytes) -> bytes:
        """A UTF-8 wire value with detected values masked; the very same object when nothing was found."""
        masked = self.mask(to_text(value))
        return value if masked is None else to_bytes(masked)

    def null_if_found(self, value: bytes) -> bytes | None:
        """For values that cannot be rewritten in place (binary encodings, arrays ...): NULL when any detector
        finds something in them, else the very same object."""
        spans = self.spans(to_text(value))
        if not spans:
            return value
        for _, _, name, _ in spans:
            self._counts.add_detected(name)
        return None
