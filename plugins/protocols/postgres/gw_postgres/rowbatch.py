"""A row filter's :class:`gw.stage.ColumnEdits` applied to the DataRows of one received chunk at a time.

The rows of a large masked result are most of gw's work on it, so the per-row Python is kept to a walk over
each row's length fields:

1. walk every DataRow of the run once, noting where each value of a column the edits touch lies, counting
   the values a constant replaces and collecting the values the filter must see;
2. one ``edit`` call for the whole run (the filter judges all of its values together);
3. splice: each row that changes is copied between the untouched bytes around its changed values, with the
   constants encoded once per result.

A run holding a row whose number of values is not the result's falls back to the filter's ``row``
(:class:`RowShapeChanged`), so such a row is treated exactly as before.
"""

from __future__ import annotations

import struct

from gw.stage import ColumnEdits, ColumnwiseRowFilter, RowFilter

from .errors import RemoteProtocolError

_ROW_HEAD = struct.Struct("!xiH")  # a DataRow: type byte, length, number of values
_I32 = struct.Struct("!i")
_DATA_ROW_HEADER = struct.Struct("!Bi")
_NULL = b"\xff\xff\xff\xff"

# What a row's walk does per column.
_PASS, _CONSTANT, _EDITED = 0, 1, 2


class RowShapeChanged(Exception):
    """A DataRow of the run does not have the result's number of values."""


def row_batch(filt: RowFilter | None, width: int) -> RowBatch | None:
    """The batch form of ``filt`` for a result of ``width`` columns, when it has one."""
    if not isinstance(filt, ColumnwiseRowFilter):
        return None
    edits = filt.columnwise()
    if edits is None:
        return None
    return RowBatch(filt, edits, width)


class RowBatch:
    """One result's column edits, prepared for :meth:`apply`."""

    __slots__ = ("_acts", "_constant_slots", "_edit", "_slots", "filter")

    def __init__(self, filt: RowFilter, edits: ColumnEdits, width: int) -> None:
        #: The row filter this was made from (the session uses the batch only while it is the result's).
        self.filter = filt
        self._edit = edits.edit
        acts = [_PASS] * width
        for index in edits.constant:
            acts[index] = _CONSTANT
        for index in edits.edited:
            acts[index] = _EDITED
        self._acts = tuple(acts)
        # The walk notes, per row: its start and end, then per touched column (in column order) where the
        # value's length field starts and the length.  Per touched column: the offset of its note in a row's
        # notes, and its constant already encoded (None: edited, with its slot in ``edit``'s row of values).
        slots: list[tuple[int, bytes | None, int]] = []
        edited_slot = {index: slot for slot, index in enumerate(edits.edited)}
        for index, act in enumerate(acts):
            offset = 2 + 2 * len(slots)
            if act == _CONSTANT:
                value = edits.constant[index]
                slots.append((offset, _NULL if value is None else _I32.pack(len(value)) + value, -1))
            elif act == _EDITED:
                slots.append((offset, None, edited_slot[index]))
        self._slots = tuple(slots)
        self._constant_slots = tuple((offset, encoded) for offset, encoded, _ in slots if encoded is not None)

    def apply(self, buf: bytes, start: int, end: int) -> bytes | None:
        """The complete, framed DataRows of ``buf[start:end]`` with the edits applied, or None when no value
        changed.  Raises :class:`RemoteProtocolError` for a malformed row, :class:`RowShapeChanged` (before
        the filter saw anything) for a row with another number of values."""
        notes, values, replaced = self._walk(buf, start, end)
        changes = self._edit(values, replaced)
        if not replaced and not changes:
            return None
        return self._splice(buf, notes, changes)

    def _walk(self, buf: bytes, start: int, end: int) -> tuple[list[int], list[bytes | None], int]:
        acts = self._acts
        width = len(acts)
        row_head = _ROW_HEAD.unpack_from
        unpack = _I32.unpack_from
        notes: list[int] = []
        note = notes.append
        values: list[bytes | None] = []
        collect = values.append
        replaced = 0
        pos = start
        try:
            while pos < end:
                size, n = row_head(buf, pos)
                row_end = pos + 1 + size
                if size < 6:
                    raise RemoteProtocolError("malformed DataRow message: it ends too early")
                if n != width:
                    raise RowShapeChanged
                note(pos)
                note(row_end)
                p = pos + 7
                for act in acts:
                    (length,) = unpack(buf, p)
                    if act:
                        note(p)
                        note(length)
                        if act == _EDITED:
                            collect(buf[p + 4:p + 4 + length] if length >= 0 else None)
                        elif length >= 0:
                            replaced += 1
                    if length >= 0:
                        p += 4 + length
                    elif length == -1:
                        p += 4
                    else:
                        raise RemoteProtocolError("malformed DataRow message: a value's length is wrong")
                # Lengths read past the row's end (into the next row) always leave p beyond it.
                if p != row_end:
                    raise RemoteProtocolError("malformed DataRow message: " + (
                        "a value's length is wrong" if p > row_end else "unexpected trailing bytes"))
                pos = row_end
        except struct.error:  # a length field past the end of the run
            raise RemoteProtocolError("malformed DataRow message: a value's length is wrong") from None
        return notes, values, replaced

    def _splice(self, buf: bytes, notes: list[int], changes: dict[int, bytes | None]) -> bytes:
        parts: list[bytes] = []
        append = parts.append
        header = _DATA_ROW_HEADER.pack
        per_row = 2 + 2 * len(self._slots)
        if not changes:  # only constants: the usual case
            slots = self._constant_slots
            for r in range(0, len(notes), per_row):
                row_start, row_end = notes[r], notes[r + 1]
                at = len(parts)
                append(b"")  # the header, once the size is known
                prev = row_start + 5
                size = row_end - row_start - 1
                for offset, encoded in slots:
                    p = notes[r + offset]
                    length = notes[r + offset + 1]
                    if length < 0:
                        continue  # NULL stays NULL
                    append(buf[prev:p])
                    append(encoded)
                    prev = p + 4 + length
                    size += len(encoded) - 4 - length
                append(buf[prev:row_end])
                parts[at] = header(68, size)  # 68: "D"
            return b"".join(parts)
        slots_all = self._slots
        per_values = sum(1 for _, encoded, _ in slots_all if encoded is None)
        base = 0  # the row's first position in the filter's values
        for r in range(0, len(notes), per_row):
            row_start, row_end = notes[r], notes[r + 1]
            at = len(parts)
            append(b"")
            prev = row_start + 5
            size = row_end - row_start - 1
            for offset, encoded, slot in slots_all:
                p = notes[r + offset]
                length = notes[r + offset + 1]
                if encoded is None:
                    if base + slot not in changes:
                        continue
                    value = changes[base + slot]
                    encoded = _NULL if value is None else _I32.pack(len(value)) + value
                elif length < 0:
                    continue
                append(buf[prev:p])
                append(encoded)
                old = 4 + length if length >= 0 else 4
                prev = p + old
                size += len(encoded) - old
            append(buf[prev:row_end])
            parts[at] = header(68, size)
            base += per_values
        return b"".join(parts)
