"""A row filter's :class:`gw.stage.ColumnEdits` applied to the DataRows of one received chunk at a time.

The rows of a large masked result are most of gw's work on it, so the per-row Python is kept to a walk over
each row's length fields:

1. walk every DataRow of the run once: check its lengths, collect the values the filter must see, and put
   the constants in (encoded once per result), between slices of the untouched bytes;
2. one ``edit`` call for the whole run (the filter judges all of its values together);
3. when that changed values (a detector found something), splice the run again with those as well.

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

    __slots__ = ("_columns", "_edit", "filter")

    def __init__(self, filt: RowFilter, edits: ColumnEdits, width: int) -> None:
        #: The row filter this was made from (the session uses the batch only while it is the result's).
        self.filter = filt
        self._edit = edits.edit
        columns: list[tuple[int, bytes]] = [(_PASS, b"")] * width
        for index, value in edits.constant.items():
            columns[index] = (_CONSTANT, _NULL if value is None else _I32.pack(len(value)) + value)
        for index in edits.edited:
            columns[index] = (_EDITED, b"")
        #: Per column: what the walk does, and the constant that replaces its values, encoded.
        self._columns = tuple(columns)

    def apply(self, buf: bytes, start: int, end: int) -> bytes | None:
        """The complete, framed DataRows of ``buf[start:end]`` with the edits applied, or None when no value
        changed.  Raises :class:`RemoteProtocolError` for a malformed row, :class:`RowShapeChanged` (before
        the filter saw anything) for a row with another number of values."""
        parts, values, replaced = self._walk(buf, start, end)
        changes = self._edit(values, replaced)
        if changes:
            return self._splice(buf, start, end, changes)
        return b"".join(parts) if replaced else None

    def _walk(self, buf: bytes, start: int, end: int) -> tuple[list[bytes], list[bytes | None], int]:
        """Check every row, collect the values of edited columns, and splice the constants in: the rows as
        they are when ``edit`` changes nothing (the usual case), and what ``edit`` needs."""
        columns = self._columns
        width = len(columns)
        row_head = _ROW_HEAD.unpack_from
        unpack = _I32.unpack_from
        header = _DATA_ROW_HEADER.pack
        parts: list[bytes] = []
        append = parts.append
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
                at = len(parts)
                append(b"")  # the header, once the size is known
                prev = pos + 5
                p = pos + 7
                for act, encoded in columns:
                    length = unpack(buf, p)[0]
                    if length < 0:
                        if length != -1:
                            raise RemoteProtocolError("malformed DataRow message: a value's length is wrong")
                        if act == _EDITED:
                            collect(None)
                        p += 4  # NULL stays NULL, whatever the column
                    elif act == _PASS:
                        p += 4 + length
                    elif act == _EDITED:
                        p += 4
                        collect(buf[p:p + length])
                        p += length
                    else:  # a constant replaces the value
                        replaced += 1
                        if prev != p:  # nothing between two constants
                            append(buf[prev:p])
                        append(encoded)
                        size += len(encoded) - 4 - length
                        prev = p = p + 4 + length
                # Lengths read past the row's end (into the next row) always leave p beyond it.
                if p != row_end:
                    raise RemoteProtocolError("malformed DataRow message: " + (
                        "a value's length is wrong" if p > row_end else "unexpected trailing bytes"))
                append(buf[prev:row_end])
                parts[at] = header(68, size)  # 68: "D"
                pos = row_end
        except struct.error:  # a length field past the end of the run
            raise RemoteProtocolError("malformed DataRow message: a value's length is wrong") from None
        return parts, values, replaced

    def _splice(self, buf: bytes, start: int, end: int, changes: dict[int, bytes | None]) -> bytes:
        """The rows (which :meth:`_walk` checked) with the constants and the filter's ``changes`` put in."""
        unpack = _I32.unpack_from
        parts: list[bytes] = []
        position = 0  # of the next edited value in the filter's values
        pos = start
        while pos < end:
            (size,) = unpack(buf, pos + 1)
            row_end = pos + 1 + size
            at = len(parts)
            parts.append(b"")
            prev = pos + 5
            p = pos + 7
            for act, constant in self._columns:
                (length,) = unpack(buf, p)
                old = 4 + length if length >= 0 else 4
                new: bytes | None = None
                if act == _EDITED:
                    if position in changes:
                        value = changes[position]
                        new = _NULL if value is None else _I32.pack(len(value)) + value
                    position += 1
                elif act and length >= 0:
                    new = constant
                if new is not None:
                    parts.append(buf[prev:p])
                    parts.append(new)
                    prev = p + old
                    size += len(new) - old
                p += old
            parts.append(buf[prev:row_end])
            parts[at] = _DATA_ROW_HEADER.pack(68, size)
            pos = row_end
        return b"".join(parts)
