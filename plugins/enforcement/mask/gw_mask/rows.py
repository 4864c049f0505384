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
from typing import TypeVar

from gw.model import Column

from .jsonmask import DocumentError, JsonMasker
from .masking import Detection, MaskCounts, TextMasker
from .strategies import Strategy, to_text

Value = bytes | None
T = TypeVar("T")

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
    #: A whole-row value: per field, the strategy of the rule that masks it (None: the field is kept,
    #: detectors still apply).  None for ordinary columns.
    fields: tuple[Strategy | None, ...] | None = None
    binary: bool = False


@dataclass(frozen=True, slots=True)
class ResultPlan:
    """What to do with each column of one result shape; ``bind`` makes the row filter for one command."""

    masked: tuple[ColumnAction, ...]
    scanned: tuple[tuple[int, ValueKind], ...]

    def bind(self, text: TextMasker | None, json_masker: JsonMasker | None, counts: MaskCounts) -> MaskingRows:
        fixed: list[tuple[int, Callable[[bytes], Value]]] = []
        # For a batch of rows (MaskingColumns): what every value of a column becomes when that does not depend
        # on the value, and the other masked columns.
        constant: dict[int, Value] = {}
        replaced: list[tuple[int, Callable[[bytes], Value]]] = []
        for a in self.masked:
            replace, same = ((_composite_replacer(a, text), None) if a.fields is not None
                             else _column_replacer(a.kind, a.strategy))
            fixed.append((a.index, replace))
            if same is None:
                replaced.append((a.index, replace))
            else:
                constant[a.index] = same[0]
        scans: list[tuple[int, Callable[[bytes], Value]]] = []
        # Detector-only scans of one row are judged together first when the detectors allow it (most rows
        # hold nothing a detector could find): one search over the row's values instead of one per value.
        gated: list[tuple[int, Callable[[bytes], Value]]] = []
        detected = gated if text is not None and text.detection.joinable else scans
        for index, kind in self.scanned:
            if kind is ValueKind.JSON and json_masker is not None:
                scans.append((index, _json_scanner(json_masker, text)))
            elif text is None:
                continue
            elif kind is ValueKind.PLAIN:
                detected.append((index, text.mask_bytes))
            else:
                detected.append((index, text.null_if_found))
        may_find = text.detection.may_find if text is not None else None
        detection = text.detection if text is not None and gated else None
        columns = MaskingColumns(constant, tuple(replaced), tuple(scans), tuple(gated), detection, counts)
        return MaskingRows(tuple(fixed), tuple(scans), counts, tuple(gated), may_find, columns)


def _column_replacer(kind: ValueKind,
                     strategy: Strategy) -> tuple[Callable[[bytes], Value], tuple[Value] | None]:
    """How a masked column's values are replaced, and ``(what every value becomes,)`` when that does not
    depend on the value (a protocol may then put it in a batch of rows itself), else None."""
    if strategy.nulls_values or kind in (ValueKind.OPAQUE, ValueKind.OTHER):
        return _to_null, (None,)
    if kind is ValueKind.JSON:
        def as_json_string(value: bytes) -> Value:
            return json.dumps(strategy.mask(to_text(value)), ensure_ascii=False).encode("utf-8",
                                                                                       "surrogateescape")
        return as_json_string, None
    return strategy.mask_bytes, (strategy.constant,) if strategy.constant is not None else None


def _to_null(value: bytes) -> Value:
    return None


def _composite_replacer(action: ColumnAction, text: TextMasker | None) -> Callable[[bytes], Value]:
    """A whole-row value masked field by field (text or binary record format); NULL whenever the value is not
    a record of exactly the expected fields."""
    fields = action.fields
    assert fields is not None

    def text_record(value: bytes) -> Value:
        parsed = parse_record(value)
        if parsed is None or len(parsed) != len(fields):
            return None
        out: list[bytes | None] = []
        for field, strategy in zip(parsed, fields):
            if field is None:
                out.append(None)
            elif strategy is not None:
                out.append(None if strategy.nulls_values else strategy.mask_bytes(field))
            else:
                out.append(text.mask_bytes(field) if text is not None else field)
        return encode_record(out)

    def binary_record(value: bytes) -> Value:
        parsed = parse_binary_record(value)
        if parsed is None or len(parsed) != len(fields):
            return None
        out: list[tuple[int, bytes | None]] = []
        for (oid, field), strategy in zip(parsed, fields):
            if field is not None and (strategy is not None or (text is not None and oid in _TEXT_OIDS
                                                               and text.null_if_found(field) is None)):
                field = None
            out.append((oid, field))
        return encode_binary_record(out)

    return binary_record if action.binary else text_record


#: text, varchar, bpchar, name, json, jsonb, xml, unknown: binary fields whose bytes are text.
_TEXT_OIDS = frozenset({25, 1043, 1042, 19, 114, 3802, 142, 705})


def parse_record(value: bytes) -> list[bytes | None] | None:
    """PostgreSQL's text form of a composite value, ``(1,ann,"a b",)`` -> its fields (None: NULL); None when
    ``value`` is not one."""
    if len(value) < 2 or value[:1] != b"(" or value[-1:] != b")":
        return None
    fields: list[bytes | None] = []
    i, n = 1, len(value) - 1
    while True:
        if i > n:
            return None
        if value[i:i + 1] in (b",", b")") and i <= n:
            fields.append(None)  # an empty unquoted field is NULL
        else:
            out = bytearray()
            quoted = False
            while i < n:
                c = value[i:i + 1]
                if c == b'"':
                    if quoted and value[i + 1:i + 2] == b'"':
                        out += b'"'
                        i += 2
                        continue
                    quoted = not quoted
                    i += 1
                    continue
                if c == b"\\":
                    if i + 1 >= len(value):
                        return None
                    out += value[i + 1:i + 2]
                    i += 2
                    continue
                if not quoted and c in (b",", b")"):
                    break
                out += c
                i += 1
            if quoted:
                return None
            fields.append(bytes(out))
        if i == n:
            return fields
        if value[i:i + 1] != b",":
            return None
        i += 1
        if i == n:  # a trailing comma: the last field is NULL
            fields.append(None)
            return fields


def encode_record(fields: list[bytes | None]) -> bytes:
    parts = []
    for f in fields:
        if f is None:
            parts.append(b"")
        elif f == b"" or any(ch in f for ch in b'(),"\\ \t\n\r'):
            parts.append(b'"' + f.replace(b"\\", b"\\\\").replace(b'"', b'""') + b'"')
        else:
            parts.append(f)
    return b"(" + b",".join(parts) + b")"


def parse_binary_record(value: bytes) -> list[tuple[int, bytes | None]] | None:
    """The binary form of a composite value: a field count, then per field its type OID, length and bytes."""
    if len(value) < 4:
        return None
    count = int.from_bytes(value[:4], "big", signed=True)
    if count < 0:
        return None
    pos = 4
    out: list[tuple[int, bytes | None]] = []
    for _ in range(count):
        if pos + 8 > len(value):
            return None
        oid = int.from_bytes(value[pos:pos + 4], "big")
        length = int.from_bytes(value[pos + 4:pos + 8], "big", signed=True)
        pos += 8
        if length < 0:
            out.append((oid, None))
            continue
        if pos + length > len(value):
            return None
        out.append((oid, value[pos:pos + length]))
        pos += length
    return out if pos == len(value) else None


def encode_binary_record(fields: list[tuple[int, bytes | None]]) -> bytes:
    out = bytearray(len(fields).to_bytes(4, "big"))
    for oid, field in fields:
        out += oid.to_bytes(4, "big")
        if field is None:
            out += (-1).to_bytes(4, "big", signed=True)
        else:
            out += len(field).to_bytes(4, "big") + field
    return bytes(out)


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
        rule = first_rule(column, column_rules)
        if rule is not None:
            fields = _field_strategies(column, column_rules) if column.fields is not None else None
            masked.append(ColumnAction(index, kind, rule[1], fields, column.binary))
        elif scans(kind, scan_text, scan_json):
            scanned.append((index, kind))
    if not masked and not scanned:
        return None
    return ResultPlan(tuple(masked), tuple(scanned))


def first_rule(column: Column, column_rules: Sequence[tuple[object, T]]) -> tuple[object, T] | None:
    """The first column rule whose pattern matches ``column`` (it decides how the column is masked)."""
    return next(((p, s) for p, s in column_rules if p.matches(column)), None)  # type: ignore[attr-defined]


def scans(kind: ValueKind, scan_text: bool, scan_json: bool) -> bool:
    """Whether values of a column no rule masks are looked at: text by detectors, JSON by paths too."""
    return kind is ValueKind.JSON and (scan_json or scan_text) or kind is not ValueKind.OTHER and scan_text


def _field_strategies(column: Column, column_rules: Sequence[tuple[object, Strategy]]
                      ) -> tuple[Strategy | None, ...]:
    out: list[Strategy | None] = []
    for sources in column.fields or ():
        probe = Column(name="\x00", sources=sources)
        out.append(next((st for p, st in column_rules if p.matches(probe)), None))  # type: ignore[attr-defined]
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# The row filter
# ---------------------------------------------------------------------------------------------------------------


class MaskingRows:
    """The :class:`gw.stage.RowFilter` of one result: rewrites a row, copying it only when a value changes;
    ``columnwise`` gives the same work as :class:`MaskingColumns`, for a batch of rows at a time."""

    __slots__ = ("_counts", "_fixed", "_gated", "_may_find", "_scans", "columns")

    def __init__(self, fixed: tuple[tuple[int, Callable[[bytes], Value]], ...],
                 scans: tuple[tuple[int, Callable[[bytes], Value]], ...], counts: MaskCounts,
                 gated: tuple[tuple[int, Callable[[bytes], Value]], ...] = (),
                 may_find: Callable[[Sequence[bytes]], bool] | None = None,
                 columns: MaskingColumns | None = None) -> None:
        self._fixed = fixed
        self._scans = scans
        self._counts = counts
        #: Scans that run only when ``may_find`` says a detector may find something in their values.
        self._gated = gated if may_find is not None else ()
        self._may_find = may_find
        if may_find is None:
            self._scans = scans + gated
        self.columns = columns

    def columnwise(self) -> MaskingColumns | None:
        return self.columns

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
        scans = self._scans
        gated = self._gated
        if gated:
            may_find = self._may_find
            assert may_find is not None
            if may_find([v for i, _ in gated if (v := values[i]) is not None]):
                scans = gated + scans
        for index, scan in scans:
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


class MaskingColumns:
    """:class:`MaskingRows`' work as :class:`gw.stage.ColumnEdits`: column rules with a constant outcome
    (``***``, NULL) are left to the protocol; the other masked columns and the scanned ones are edited a batch
    of rows at a time, and the detectors look only at the values a quick check over the whole batch points out
    (see :meth:`gw_mask.masking.Detection.candidates`)."""

    __slots__ = ("_counts", "_detection", "_gated", "_replaced", "_scans", "constant", "edited")

    def __init__(self, constant: dict[int, Value], replaced: tuple[tuple[int, Callable[[bytes], Value]], ...],
                 scans: tuple[tuple[int, Callable[[bytes], Value]], ...],
                 gated: tuple[tuple[int, Callable[[bytes], Value]], ...], detection: Detection | None,
                 counts: MaskCounts) -> None:
        self.constant = constant
        self.edited = tuple(index for index, _ in replaced + scans + gated)
        # Each function with its column's slot in a row of ``edit``'s values.
        slots = iter(range(len(self.edited)))
        self._replaced = tuple((next(slots), f) for _, f in replaced)
        self._scans = tuple((next(slots), f) for _, f in scans)
        #: Detector scans that run on the candidates of ``detection`` only (None: on every value).
        self._gated = tuple((next(slots), f) for _, f in gated)
        if detection is None:
            self._scans += self._gated
            self._gated = ()
        self._detection = detection
        self._counts = counts

    def edit(self, values: list[Value], replaced: int) -> dict[int, Value]:
        width = len(self.edited)
        size = len(values)
        changes: dict[int, Value] = {}
        masked = replaced
        for slot, replace in self._replaced:
            for at in range(slot, size, width):
                value = values[at]
                if value is not None:
                    changes[at] = replace(value)
                    masked += 1
        for slot, scan in self._scans:
            for at in range(slot, size, width):
                value = values[at]
                if value is not None and (new := scan(value)) is not value:
                    changes[at] = new
        if self._gated:
            assert self._detection is not None
            candidates = self._detection.candidates
            if len(self._gated) == width:  # every edited value is scanned this way: judge them together
                scans = [scan for _, scan in self._gated]
                for at in candidates(values):
                    value = values[at]
                    if value is not None and (new := scans[at % width](value)) is not value:
                        changes[at] = new
            else:
                for slot, scan in self._gated:
                    for row in candidates(values[slot::width]):
                        at = slot + row * width
                        value = values[at]
                        if value is not None and (new := scan(value)) is not value:
                            changes[at] = new
        if masked:
            self._counts.columns += masked
        return changes
