"""Masking tabular results one row at a time, keeping every value valid for its column type.

Everything that depends only on the columns is decided once per result (:class:`ResultPlan`, cached per
column set by the stage); the per-row work is a loop over the few columns that need it.

Type safety: a client decodes each value by its column type, so a masked value must still decode.

========================================  =======================================  ==========================
column                                    matched by a column rule                 detector finding
========================================  =======================================  ==========================
text types, text format                   masked text (``***``, ``h:...``)          value rewritten in place
``json`` / ``jsonb``, text format         a JSON string (``"***"``)                JSON-aware masking
arrays, ``xml``, records, text format     NULL                                     NULL
any text-bearing type, binary format      NULL                                     NULL
numbers, dates, ``bytea``, ``uuid`` ...    NULL                                     not scanned
========================================  =======================================  ==========================

``"***"`` in an ``int4`` column would make psycopg, JDBC or asyncpg raise while decoding the row, so non-text
types (and binary encodings, whose layout gw does not rewrite) become NULL, which every client decodes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gw.model import Column

from .jsonmask import DocumentError, JsonMasker
from .masking import MaskCounts, TextMasker
from .strategies import Strategy, to_text

Value = bytes | None

#: Type names (lowercased, without length modifiers) whose text-format values are plain text.  PostgreSQL
#: ``typname`` values, their SQL spellings, and MySQL/MariaDB names.  An empty type name means the protocol
#: has no types (everything is text).
PLAIN_TEXT_TYPES = frozenset({
    "", "text", "varchar", "character varying", "bpchar", "char", "character", "name", "citext", "unknown",
    "string", "var_string", "tinytext", "mediumtext", "longtext", "nvarchar", "nchar", "ntext", "clob",
})
JSON_TYPES = frozenset({"json", "jsonb"})
#: Types that carry text inside a structure gw does not rewrite in place.
STRUCTURED_TEXT_TYPES = frozenset({"xml", "hstore", "record", "tsvector", "ltree"})


class ValueKind(enum.Enum):
    PLAIN = "plain"  # rewritable text
    JSON = "json"  # a JSON document in text format
    OPAQUE = "opaque"  # carries text, cannot be rewritten: NULL when a detector finds something
    OTHER = "other"  # numbers, dates, bytea ...: not scanned; NULL when a column rule matches


def normalise_type(type_name: str) -> str:
    """``"character varying(20)"`` -> ``"character varying"``; ``"TEXT"`` -> ``"text"``."""
    name = type_name.strip().lower()
    cut = name.find("(")
    if cut >= 0:
        name = name[:cut].strip()
    return name


def value_kind(column: Column, extra_text_types: frozenset[str] = frozenset()) -> ValueKind:
    name = normalise_type(column.type_name)
    is_array = name.startswith("_") or name.endswith("[]")
    text_bearing = (name in PLAIN_TEXT_TYPES or name in extra_text_types or name in JSON_TYPES
                    or name in STRUCTURED_TEXT_TYPES or is_array)
    if not text_bearing:
        return ValueKind.OTHER
    if column.binary or is_array or name in STRUCTURED_TEXT_TYPES:
        return ValueKind.OPAQUE
    if name in JSON_TYPES:
        return ValueKind.JSON
    return ValueKind.PLAIN


# ---------------------------------------------------------------------------------------------------------------
# Per-result plan
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnAction:
    """A column rule applies: every non-NULL value is replaced."""

    index: int
    kind: ValueKind
    strategy: Strategy


@dataclass(frozen=True, slots=True)
class ResultPlan:
    """What to do with each column of one result shape; ``bind`` makes the row filter for one command."""

    masked: tuple[ColumnAction, ...]
    scanned: tuple[tuple[int, ValueKind], ...]

    def bind(self, text: TextMasker | None, json_masker: JsonMasker | None, counts: MaskCounts) -> MaskingRows:
        fixed = tuple((a.index, _column_replacer(a.kind, a.strategy)) for a in self.masked)
        scans: list[tuple[int, Callable[[bytes], Value]]] = []
        for index, kind in self.scanned:
            if kind is ValueKind.JSON and json_masker is not None:
                scans.append((index, _json_scanner(json_masker, text)))
            elif text is None:
                continue
            elif kind is ValueKind.PLAIN:
                scans.append((index, text.mask_bytes))
            else:
                scans.append((index, text.null_if_found))
        return MaskingRows(fixed, tuple(scans), counts)


def _column_replacer(kind: ValueKind, strategy: Strategy) -> Callable[[bytes], Value]:
    if strategy.nulls_values or kind in (ValueKind.OPAQUE, ValueKind.OTHER):
        return _to_null
    if kind is ValueKind.JSON:
        def as_json_string(value: bytes) -> Value:
            return json.dumps(strategy.mask(to_text(value)), ensure_ascii=False).encode("utf-8",
                                                                                       "surrogateescape")
        return as_json_string
    return strategy.mask_bytes


def _to_null(value: bytes) -> Value:
    return None


def _json_scanner(masker: JsonMasker, text: TextMasker | None) -> Callable[[bytes], Value]:
    def scan(value: bytes) -> Value:
        try:
            return masker.mask_bytes(value)
        except DocumentError:
            # Not a document we can rewrite (should not happen for json/jsonb): treat it as opaque.
            return text.null_if_found(value) if text is not None else value
    return scan


def plan_result(columns: Sequence[Column], column_rules: Sequence[tuple[object, Strategy]],
                scan_text: bool, scan_json: bool, extra_text_types: frozenset[str]) -> ResultPlan | None:
    """Decide per column: masked by the first matching column rule, scanned, or left alone.  None when no
    column needs anything, so the protocol can forward the result untouched.

    ``column_rules`` pairs a pattern (anything with ``matches(column)``) with its strategy.
    """
    masked: list[ColumnAction] = []
    scanned: list[tuple[int, ValueKind]] = []
    for index, column in enumerate(columns):
        kind = value_kind(column, extra_text_types)
        for pattern, strategy in column_rules:
            if pattern.matches(column):  # type: ignore[attr-defined]
                masked.append(ColumnAction(index, kind, strategy))
                break
        else:
            if kind is ValueKind.JSON and (scan_json or scan_text) or kind is not ValueKind.OTHER and scan_text:
                scanned.append((index, kind))
    if not masked and not scanned:
        return None
    return ResultPlan(tuple(masked), tuple(scanned))


# ---------------------------------------------------------------------------------------------------------------
# The row filter
# ---------------------------------------------------------------------------------------------------------------


class MaskingRows:
    """The :class:`gw.stage.RowFilter` of one result: rewrites a row, copying it only when a value changes."""

    __slots__ = ("_counts", "_fixed", "_scans")

    def __init__(self, fixed: tuple[tuple[int, Callable[[bytes], Value]], ...],
                 scans: tuple[tuple[int, Callable[[bytes], Value]], ...], counts: MaskCounts) -> None:
        self._fixed = fixed
        self._scans = scans
        self._counts = counts

    def row(self, values: list[Value]) -> list[Value]:
        out = None
        masked = 0
        for index, replace in self._fixed:
            value = values[index]
            if value is not None:
                if out is None:
                    out = values.copy()
                out[index] = replace(value)
                masked += 1
        for index, scan in self._scans:
            value = values[index]
            if value is not None:
                new = scan(value)
                if new is not value:
                    if out is None:
                        out = values.copy()
                    out[index] = new
        if masked:
            self._counts.columns += masked
        return values if out is None else out
