"""What a mask rule names: result columns (``ssn``, ``*.card_number``, ``public.customers.email``) and places
in JSON documents (``ssn``, ``customers[*].email``, ``$.data.**.iban``).

Column patterns have one to three dot-separated parts, each a case-insensitive glob (``fnmatch``):

* ``ssn`` -- a column whose *source* column is ``ssn`` (any table), or whose output name is ``ssn``.  Matching
  the source is what makes ``select ssn as x`` and ``select upper(ssn)`` masked: the protocol fills
  :attr:`gw.model.Column.sources` from the wire and from SQL lineage.
* ``customers.email`` -- source column ``email`` of a table ``customers`` in any schema.
* ``public.customers.email`` -- fully qualified.

A source part ``*`` means "any" (``public.people.*``: every column of ``people``, from a whole-row reference or
a value gw could not trace; ``*.*.*``: anything) and matches every pattern part.  A column whose source the
protocol could not trace (no ``sources``, no ``table``/``column``) is matched on its
output name by the last part of every pattern, and a source whose schema or table is unknown matches any
schema or table part: unknown lineage must not let a value through (fail closed).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from gw.model import Column

_Source = tuple[str | None, str | None, str]


def _glob(part: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(part.lower()))


def split_source(qualified: str) -> _Source:
    """``"public.people.ssn"`` -> ``("public", "people", "ssn")``; missing leading parts are None."""
    parts = qualified.lower().rsplit(".", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, None, parts[0]


def column_sources(column: Column) -> list[_Source]:
    """Every source a column's value derives from: :attr:`~gw.model.Column.sources` plus ``table.column``."""
    out = [split_source(s) for s in column.sources if s]
    if column.column:
        if column.table:
            schema, table, _ = split_source(column.table + ".x")
            out.append((schema, table, column.column.lower()))
        else:
            out.append((None, None, column.column.lower()))
    return out


class ColumnPattern:
    """One entry of the ``columns`` option, compiled."""

    __slots__ = ("_parts", "text")

    def __init__(self, text: str) -> None:
        parts = text.strip().split(".")
        if not text.strip() or len(parts) > 3 or not all(p.strip() for p in parts):
            raise ValueError(f"column pattern {text!r} is not COLUMN, TABLE.COLUMN or SCHEMA.TABLE.COLUMN "
                             "(each part may use * and ? globs)")
        self.text = text
        self._parts = tuple(_glob(p.strip()) for p in parts)

    def matches(self, column: Column) -> bool:
        sources = column_sources(column)
        last = self._parts[-1]
        if (not sources or len(self._parts) == 1) and last.match(column.name.lower()):
            return True
        for schema, table, name in sources:
            # ``*`` in a source stands for "any": every column of a table (a whole-row reference, or a value
            # gw could not trace inside a statement reading it), any table or schema (``*.*.*``).
            if name != "*" and not last.match(name):
                continue
            if len(self._parts) == 1:
                return True
            # A part the protocol could not name (schema, table) counts as matching: fail closed.
            if table is not None and table != "*" and not self._parts[-2].match(table):
                continue
            if len(self._parts) == 2 or schema is None or schema == "*" or self._parts[0].match(schema):
                return True
        return False

    def as_json_path(self) -> JsonPath:
        """The same rule for JSON documents: the schema part means nothing there and leading ``*`` table
        parts match any parent, so ``*.card_number`` is the key ``card_number`` at any depth and
        ``public.customers.email`` is ``customers.email`` (an ``email`` key under ``customers``)."""
        parts = [p.strip() for p in self.text.strip().split(".")]
        if len(parts) == 3:
            parts = parts[1:]
        while len(parts) > 1 and parts[0] == "*":
            parts = parts[1:]
        return JsonPath(".".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# JSON paths
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    glob: re.Pattern[str]
    literal: str | None  # the lowercased key when the glob has no wildcard


@dataclass(frozen=True, slots=True)
class _Index:
    index: int | None  # None = [*]


class _AnyDepth:
    """``**``: any number of keys and indices."""


ANY_DEPTH = _AnyDepth()
_Step = _Key | _Index | _AnyDepth
#: A value's place in a document: keys and list indices from the root.
PathItem = str | int

_TOKEN = re.compile(r"\[(\*|\d+)\]|([^.\[\]]+)|(\.)")


class JsonPath:
    """A place in JSON documents.

    ``customers[*].email``: steps separated by ``.``; a step is a key glob (case-insensitive), ``[*]`` or
    ``[N]`` select list elements, ``**`` spans any depth.  Lists are transparent to key steps, so
    ``customers.email`` also reaches ``{"customers": [{"email": ...}]}``.  A path matches wherever it ends at
    the value, at any depth (``ssn`` is every ``ssn`` key); start it with ``$.`` to anchor it at the root.
    """

    __slots__ = ("anchored", "steps", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        body = text.strip()
        self.anchored = body == "$" or body.startswith(("$.", "$["))
        if self.anchored:
            body = body[1:].lstrip(".")
        steps: list[_Step] = []
        pos = 0
        expect_step = True
        while pos < len(body):
            m = _TOKEN.match(body, pos)
            if m is None:
                raise ValueError(f"JSON path {text!r}: unexpected {body[pos]!r} at position {pos}; write "
                                 "paths like customers[*].email, $.data.ssn or **.iban")
            index, key, dot = m.groups()
            if dot:
                if expect_step:
                    raise ValueError(f"JSON path {text!r}: empty step at position {pos}")
                expect_step = True
            elif index is not None:
                steps.append(_Index(None if index == "*" else int(index)))
                expect_step = False
            else:
                if not expect_step:
                    raise ValueError(f"JSON path {text!r}: missing '.' before {key!r}")
                key = key.strip()
                if key == "**":
                    steps.append(ANY_DEPTH)
                else:
                    lowered = key.lower()
                    literal = None if any(c in lowered for c in "*?[") else lowered
                    steps.append(_Key(_glob(key), literal))
                expect_step = False
            pos = m.end()
        if not steps or expect_step:
            raise ValueError(f"JSON path {text!r} names no key or index")
        if not self.anchored:
            steps.insert(0, ANY_DEPTH)
        self.steps = tuple(steps)

    @property
    def last_literal(self) -> str | None:
        """The lowercased last key when it is a plain name: lets masking skip most keys with a dict lookup."""
        last = self.steps[-1]
        return last.literal if isinstance(last, _Key) else None

    @property
    def ends_with_index(self) -> bool:
        return isinstance(self.steps[-1], _Index)

    def matches(self, path: list[PathItem]) -> bool:
        return _match(self.steps, 0, path, 0)


def _match(steps: tuple[_Step, ...], i: int, path: list[PathItem], j: int) -> bool:
    while i < len(steps):
        step = steps[i]
        if isinstance(step, _AnyDepth):
            return any(_match(steps, i + 1, path, k) for k in range(j, len(path) + 1))
        if j == len(path):
            return False
        item = path[j]
        if isinstance(step, _Index):
            if not isinstance(item, int) or (step.index is not None and step.index != item):
                return False
        elif isinstance(item, int):
            j += 1  # lists are transparent to key steps
            continue
        elif not step.glob.match(item.lower()):
            return False
        i += 1
        j += 1
    return j == len(path)
