"""Where a result's columns come from: ColumnDefinition -> :class:`gw.model.Column` with ``sources``.

Two sources of truth are combined.  The wire: MySQL sends each column's origin (``schema``, ``org_table``,
``org_name``) whenever the column is a plain reference to a table column, whatever alias the query gave it.
And SQL lineage from gw_sqlanalysis for expressions (``upper(ssn)``, ``concat(ssn, '')``), whose origin the
server leaves empty.  Only built when a stage wants rows, so the pass-through path never pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from gw.model import Column

from .constants import BINARY_COLLATION, ColumnFlag, FieldType
from .messages import ColumnDefinition

_BLOBS: dict[int, str] = {FieldType.TINY_BLOB: "tiny", FieldType.BLOB: "", FieldType.MEDIUM_BLOB: "medium",
          FieldType.LONG_BLOB: "long"}
_NAMES: dict[int, str] = {
    FieldType.DECIMAL: "decimal", FieldType.NEWDECIMAL: "decimal", FieldType.TINY: "tinyint",
    FieldType.SHORT: "smallint", FieldType.LONG: "int", FieldType.INT24: "mediumint",
    FieldType.LONGLONG: "bigint", FieldType.FLOAT: "float", FieldType.DOUBLE: "double", FieldType.NULL: "null",
    FieldType.TIMESTAMP: "timestamp", FieldType.TIMESTAMP2: "timestamp", FieldType.DATE: "date",
    FieldType.NEWDATE: "date", FieldType.TIME: "time", FieldType.TIME2: "time", FieldType.DATETIME: "datetime",
    FieldType.DATETIME2: "datetime", FieldType.YEAR: "year", FieldType.BIT: "bit", FieldType.JSON: "json",
    FieldType.GEOMETRY: "geometry", FieldType.VECTOR: "vector",
}
#: Types whose values are strings in both protocols (the binary protocol sends them length-encoded, with the
#: same bytes as the text protocol).
STRING_TYPES = frozenset({FieldType.VARCHAR, FieldType.VAR_STRING, FieldType.STRING, FieldType.TINY_BLOB,
                          FieldType.BLOB, FieldType.MEDIUM_BLOB, FieldType.LONG_BLOB, FieldType.JSON,
                          FieldType.ENUM, FieldType.SET, FieldType.DECIMAL, FieldType.NEWDECIMAL})


def type_name(d: ColumnDefinition) -> str:
    """The SQL type name of a column, as the mask stage understands it (``varchar``, ``longtext``, ``blob``,
    ``int`` ...): text types and binary-string types are told apart by the binary collation."""
    t = d.type
    binary = d.collation == BINARY_COLLATION
    if t in _BLOBS:
        return _BLOBS[t] + ("blob" if binary else "text")
    if t in (FieldType.VARCHAR, FieldType.VAR_STRING):
        return "varbinary" if binary else "varchar"
    if t == FieldType.STRING:
        if d.flags & ColumnFlag.ENUM:
            return "enum"
        if d.flags & ColumnFlag.SET:
            return "set"
        return "binary" if binary else "char"
    if t in (FieldType.ENUM, FieldType.SET):
        return "enum" if t == FieldType.ENUM else "set"
    return _NAMES.get(t, f"type:{t}")


def origin(d: ColumnDefinition) -> tuple[str | None, str | None]:
    """(``schema.table``, column) the server names as the column's origin, or (None, None)."""
    if d.org_table and d.org_name:
        table = f"{d.schema}.{d.org_table}" if d.schema else d.org_table
        return table, d.org_name
    return None, None


def build_columns(definitions: Sequence[ColumnDefinition], lineage: Sequence[tuple[str, ...]] | None, *,
                  binary_rows: bool = False) -> list[Column]:
    """Columns of a result with every source gw knows.  ``binary_rows``: the rows use the binary protocol, so
    values of non-string types are binary encodings (:attr:`gw.model.Column.binary`)."""
    if lineage is not None and len(lineage) != len(definitions):
        lineage = None
    columns = []
    for i, d in enumerate(definitions):
        table, column = origin(d)
        sources: list[str] = []
        if table is not None and column is not None:
            sources.append(f"{table}.{column}")
        if lineage is not None:
            sources.extend(s for s in lineage[i] if s not in sources)
        columns.append(Column(name=d.name, table=table, column=column, type_name=type_name(d),
                              binary=binary_rows and d.type not in STRING_TYPES, sources=tuple(sources)))
    return columns
