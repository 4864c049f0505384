"""Masking inside JSON documents: values under matching keys / paths, and detectors on every string.

Used for HTTP JSON bodies, NDJSON lines and ``json``/``jsonb`` result columns.  A document is parsed, masked
in place and serialised again only when something changed, so an untouched document passes byte for byte.

Type rules inside JSON: a string under a matching key gets the rule's strategy (``null`` gives JSON null);
numbers and booleans under a matching key become null (a client expecting a number would choke on ``"***"``);
objects and lists under a matching key are masked entirely.  Detectors run on every string value, on object
keys (maps keyed by e-mail address exist) and on integers of nine digits or more (card numbers stored as
numbers); an integer with a finding becomes null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .masking import MaskCounts, TextMasker
from .patterns import JsonPath, PathItem
from .strategies import Strategy


class DocumentError(ValueError):
    """The document is not JSON, or not one gw can re-serialise faithfully."""


@dataclass(frozen=True, slots=True)
class PathRule:
    path: JsonPath
    strategy: Strategy


class PathRules:
    """The compiled JSON rules of a stage, indexed by their last key so most keys cost one dict lookup."""

    def __init__(self, rules: Sequence[PathRule]) -> None:
        self.rules = tuple(rules)
        self.by_last_key: dict[str, list[PathRule]] = {}
        self.other: list[PathRule] = []
        for rule in rules:
            literal = rule.path.last_literal
            if literal is not None:
                self.by_last_key.setdefault(literal, []).append(rule)
            else:
                self.other.append(rule)
        self.check_indices = any(r.path.ends_with_index for r in rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, path: list[PathItem]) -> PathRule | None:
        last = path[-1]
        candidates = self.other
        if isinstance(last, str):
            keyed = self.by_last_key.get(last.lower())
            if keyed:
                candidates = keyed + self.other
        for rule in candidates:
            if rule.path.matches(path):
                return rule
        return None


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise DocumentError(f"number {text[:20]}... is out of range for re-serialisation")
    return value


def parse(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_float=_finite_float)
    except DocumentError:
        raise
    except (ValueError, RecursionError) as e:
        # json's messages name a position, never the content, so they are safe to show and log.
        raise DocumentError(f"not valid JSON ({e})") from None


def serialise(document: Any) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes: keep them escaped
        return json.dumps(document, separators=(",", ":")).encode("ascii")


class JsonMasker:
    """Masks one command's JSON documents with a stage's path rules and detectors."""

    __slots__ = ("_counts", "_rules", "_text")

    def __init__(self, rules: PathRules, text: TextMasker | None, counts: MaskCounts) -> None:
        self._rules = rules
        self._text = text
        self._counts = counts

    def mask_bytes(self, data: bytes) -> bytes:
        """A masked serialisation of the document in ``data`` (the same object when nothing changed).
        Raises :class:`DocumentError` when it is not JSON."""
        document = parse(data)
        holder = [document]
        try:
            changed = self._mask_child(holder, 0, [], document)
        except RecursionError:
            raise DocumentError("the document is nested too deeply to mask") from None
        return serialise(holder[0]) if changed else data

    # -- traversal: containers are changed in place; each step returns whether anything changed -------------
    def _mask_child(self, parent: list[Any] | dict[str, Any], slot: Any, path: list[PathItem],
                    value: Any) -> bool:
        """Mask ``value`` (which is ``parent[slot]``, reached by ``path``)."""
        if path and self._rules and (isinstance(path[-1], str) or self._rules.check_indices):
            rule = self._rules.match(path)
            if rule is not None:
                parent[slot] = self._mask_all(value, rule.strategy)
                return True
        if isinstance(value, dict):
            return self._mask_object(value, path)
        if isinstance(value, list):
            changed = False
            for i, item in enumerate(value):
                path.append(i)
                changed |= self._mask_child(value, i, path, item)
                path.pop()
            return changed
        if self._text is None:
            return False
        if isinstance(value, str):
            masked = self._text.mask(value)
            if masked is not None:
                parent[slot] = masked
                return True
        elif (isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 100_000_000
              and self._text.mask(str(value)) is not None):
            parent[slot] = None  # a card number stored as a JSON number
            return True
        return False

    def _mask_object(self, obj: dict[str, Any], path: list[PathItem]) -> bool:
        changed = False
        renames: dict[str, str] = {}
        for key, item in obj.items():
            path.append(key)
            changed |= self._mask_child(obj, key, path, item)
            path.pop()
            if self._text is not None:
                masked = self._text.mask(key)
                if masked is not None:
                    renames[key] = masked
        if renames:
            _rename_keys(obj, renames)
        return changed or bool(renames)

    def _mask_all(self, value: Any, strategy: Strategy) -> Any:
        """Everything under a matching key: strings by the strategy, other scalars null."""
        if isinstance(value, dict):
            return {k: self._mask_all(v, strategy) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask_all(v, strategy) for v in value]
        if value is None:
            return None
        self._counts.columns += 1
        if isinstance(value, str) and not strategy.nulls_values:
            return strategy.mask(value)
        return None


def _rename_keys(obj: dict[str, Any], renames: dict[str, str]) -> None:
    """Replace keys that held detected values, keeping the order; masked keys that collide get a ``#2``,
    ``#3`` suffix so no entry is lost."""
    items = list(obj.items())
    obj.clear()
    for key, item in items:
        base = renames.get(key, key)
        key, n = base, 2
        while key in obj:
            key = f"{base}#{n}"
            n += 1
        obj[key] = item
