"""Column rules where a stream names its fields: CSV header rows, HTTP response headers, labelled text.

Outside SQL a field's name is all gw knows of its lineage, and names are spelt freely: ``ssn``,
``X-Customer-Ssn``, ``Customer SSN``, ``customer_ssn``.  A name matches a column rule when the rule's last part
matches the whole name or any run of its words (split at anything but letters and digits, joined with ``_``):
``X-Customer-Ssn`` offers ``x_customer_ssn``, ``customer_ssn``, ``ssn`` ...; so ``columns = ["ssn"]`` masks the
``X-Customer-Ssn`` header and the ``Customer SSN`` CSV column, and ``*.card_number`` masks ``X-Card-Number``.
This errs towards masking (``ssn_last4`` is masked too): a name that merely contains a masked column's name is
more likely to hold its value than not.

* :class:`CsvStream` -- ``text/csv``: the header row decides which columns are masked; every other cell gets
  the detectors.  A row whose width differs from the header's (an unquoted delimiter shifted its cells) is
  masked whole, since gw cannot tell which cell is which.  ``header=absent`` cannot be masked by name and is
  refused when column rules exist.
* :class:`HeaderMasker` -- the ``response-headers`` channel: ``[["name", "value"], ...]``; values under
  matching names are masked, the others get the detectors.
* :class:`LabelMasker` -- in text (XML, YAML, forms, logs, JSON embedded in text), the value after a label
  naming a masked column: ``ssn: 234567890``, ``<ssn>234567890</ssn>``, ``ssn="…"``, ``"ssn": "…"``,
  ``ssn=…&``.  The value is a quoted string, digit groups (``234 56 7890``), or a run without spaces.  Labels
  and values on one line only; tables (HTML) are not understood.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Sequence
from functools import lru_cache

from gw.model import Column

from .masking import MaskCounts, TextMasker
from .patterns import ColumnPattern
from .strategies import Strategy

ColumnRules = Sequence[tuple[ColumnPattern, Strategy]]
_WORD_SPLIT = re.compile(r"[^0-9a-z]+")
_LINE_END = re.compile(r"\r\n|\n|\r")
#: Longest name considered (word runs grow quadratically).
_MAX_NAME = 200


@lru_cache(maxsize=4096)
def name_candidates(name: str) -> tuple[str, ...]:
    """The whole name (lower-case) and every run of its words joined with ``_``."""
    lowered = name.strip().lower()[:_MAX_NAME]
    words = [w for w in _WORD_SPLIT.split(lowered) if w]
    out = {lowered}
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            out.add("_".join(words[i:j]))
    return tuple(sorted(out))


def rule_for(name: str, rules: ColumnRules) -> Strategy | None:
    """The strategy of the first column rule matching ``name`` (see the module docstring), or None."""
    candidates = name_candidates(name)
    for pattern, strategy in rules:
        for candidate in candidates:
            if pattern.matches(Column(candidate)):
                return strategy
    return None


def _whole(strategy: Strategy, value: str) -> str:
    """A whole field value masked (``null`` empties it: a text format has no NULL)."""
    return "" if strategy.nulls_values else strategy.mask(value)


# -- headers ---------------------------------------------------------------------------------------------------


class HeaderMasker:
    """The ``response-headers`` filter: buffers the JSON list of pairs, masks it at :meth:`finish`."""

    def __init__(self, rules: ColumnRules, text: TextMasker | None, counts: MaskCounts) -> None:
        self._rules = rules
        self._text = text
        self._labels = LabelMasker(rules, counts) if rules else None
        self._counts = counts
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        return b""

    def finish(self) -> bytes:
        raw = bytes(self._buf)
        self._buf.clear()
        pairs = json.loads(raw)
        changed = False
        for pair in pairs:
            name, value = pair[0], pair[1]
            if not isinstance(value, str) or not value:
                continue
            strategy = rule_for(name, self._rules)
            if strategy is not None:
                pair[1] = _whole(strategy, value)
                self._counts.columns += 1
                changed = True
                continue
            if self._labels is not None and (labelled := self._labels.mask(value)) is not None:
                pair[1] = value = labelled  # Location: /customers?ssn=234567890
                changed = True
            if self._text is not None and (masked := self._text.mask(value)) is not None:
                pair[1] = masked
                changed = True
        return json.dumps(pairs, ensure_ascii=False).encode("utf-8") if changed else raw


# -- labelled text ---------------------------------------------------------------------------------------------


def _glob_regex(glob: str) -> str:
    out = []
    for ch in glob.lower():
        if ch == "*":
            out.append(r"[\w-]*")
        elif ch == "?":
            out.append(r"[\w-]")
        elif ch in "_- ":
            out.append(r"[_\- ]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


class LabelMasker:
    """Masks values that follow a label naming a masked column (see the module docstring)."""

    def __init__(self, rules: ColumnRules, counts: MaskCounts) -> None:
        self._rules = rules
        self._counts = counts
        keys = sorted({_glob_regex(p.text.strip().split(".")[-1]) for p, _ in rules}, key=len, reverse=True)
        word = r"[A-Za-z0-9]+"
        self._pattern = re.compile(
            rf"(?<![\w-])(?P<key>(?:{word}[_\- ])*(?:{'|'.join(keys)})(?:[_\- ]{word})*)(?![\w])"
            r"(?P<sep>\s*[\"']?\s*(?::|=>|=)\s*(?:\[\s*)?|\s*>)"
            r"(?P<value>\"(?:[^\"\\\r\n]|\\.){0,512}\"|'[^'\r\n]{0,512}'|\d{1,64}(?:[ .\-/]\d{1,64}){0,16}(?![\w])"
            r"|[^\s,;&<>}\]\"']{1,512})",
            re.IGNORECASE) if keys else None

    def mask(self, text: str) -> str | None:
        """``text`` with labelled values masked, or None when there were none."""
        if self._pattern is None:
            return None
        changed = False

        def replace(m: re.Match[str]) -> str:
            nonlocal changed
            strategy = rule_for(m.group("key"), self._rules)
            value = m.group("value")
            core = value.rstrip()
            quote = core[:1] if core[:1] in ("'", '"') and len(core) >= 2 and core[-1] == core[0] else ""
            inner = core[1:-1] if quote else core
            if strategy is None or not inner.strip():
                return m.group(0)
            changed = True
            self._counts.columns += 1
            masked = strategy.mask(inner)
            return m.group("key") + m.group("sep") + quote + masked + quote + value[len(core):]

        out = self._pattern.sub(replace, text)
        return out if changed else None


# -- CSV -------------------------------------------------------------------------------------------------------


class CsvStream:
    """``text/csv`` (or TSV): record by record; see the module docstring."""

    def __init__(self, rules: ColumnRules, text: TextMasker | None, counts: MaskCounts, *, charset: str,
                 delimiter: str | None, header: bool, max_record: int) -> None:
        self._rules = rules
        self._text = text
        self._counts = counts
        self._codec = charset
        self._decoder = codecs.getincrementaldecoder(charset)("surrogateescape")
        self._encoder = codecs.getincrementalencoder(charset)("surrogateescape")
        self._delimiter = delimiter
        self._header = header
        self._max_record = max_record
        self._pending = ""
        self._columns: list[Strategy | None] | None = None

    def _records(self, text: str, final: bool) -> tuple[list[str], str]:
        """Complete records (with their line ends: ``\\r\\n``, ``\\n`` or a lone ``\\r``) and the incomplete
        rest; a quoted field may span lines.  A ``\\r`` at the very end waits: a ``\\n`` may follow."""
        records: list[str] = []
        start = 0
        quotes = 0
        pos = 0
        for m in _LINE_END.finditer(text):
            end = m.end()
            if m.group() == "\r" and end == len(text) and not final:
                break
            quotes += text.count('"', pos, end)
            pos = end
            if quotes % 2 == 0:
                records.append(text[start:end])
                start = end
                quotes = 0
        rest = text[start:]
        if final and rest:
            records.append(rest)
            rest = ""
        return records, rest

    def _split(self, record: str) -> list[str]:
        body = record.rstrip("\r\n")
        return next(csv.reader([body], delimiter=self._delimiter or ",", strict=False), [])

    def _start(self, record: str) -> None:
        if self._delimiter is None:
            line = record.split("\n", 1)[0]
            counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
            best = max(counts, key=lambda d: counts[d])
            self._delimiter = best if counts[best] else ","
        names = self._split(record.lstrip("\ufeff"))
        self._columns = [rule_for(n, self._rules) for n in names]

    def _mask_record(self, record: str) -> str:
        assert self._columns is not None
        cells = self._split(record)
        if not cells:
            return record
        columns = self._columns
        out = list(cells)
        changed = False
        # A row that does not line up with the header (a preamble line taken for the header, an unquoted
        # delimiter in a value) cannot be masked by name: with column rules, it is masked whole.
        whole_row = bool(self._rules) and len(cells) != len(columns)
        for i, cell in enumerate(cells):
            strategy = columns[i] if i < len(columns) else None
            if whole_row and cell:
                strategy = strategy or _ROW_STRATEGY
            if strategy is not None and cell:
                out[i] = _whole(strategy, cell)
                self._counts.columns += 1
                changed = True
            elif self._text is not None and cell:
                masked = self._text.mask(cell)
                if masked is not None:
                    out[i] = masked
                    changed = True
        if not changed:
            return record
        ending = record[len(record.rstrip("\r\n")):]
        buf = io.StringIO()
        csv.writer(buf, delimiter=self._delimiter or ",", lineterminator=ending or "").writerow(out)
        return buf.getvalue()

    def _process(self, text: str, final: bool) -> bytes:
        records, self._pending = self._records(text, final)
        if len(self._pending) > self._max_record:
            from .streams import MaskUnavailable

            raise MaskUnavailable("gw could not mask this response: a CSV record is longer than the mask "
                                  f"stage's max_body ({self._max_record} characters); it was not passed on")
        out = []
        for record in records:
            if self._columns is None and self._header:
                if record.strip("\r\n\ufeff \t"):  # blank lines before the header row are not the header
                    self._start(record)
                out.append(record)
                continue
            if self._columns is None:
                self._columns = []
            out.append(self._mask_record(record))
        return self._encoder.encode("".join(out), final)

    def feed(self, data: bytes) -> bytes:
        return self._process(self._pending + self._decoder.decode(data), False)

    def finish(self) -> bytes:
        return self._process(self._pending + self._decoder.decode(b"", True), True)


class _RowRedact(Strategy):
    name = "redact"

    def mask(self, text: str) -> str:
        return "***"


_ROW_STRATEGY = _RowRedact()
