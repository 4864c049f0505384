"""Value types every options model uses: durations, byte sizes, addresses, ports, and the strict base model.

One convention for each, the same in core and every plugin (documented in docs/pipeline.md):

* durations: ``"250ms"``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"30d"`` or a number of seconds;
* byte sizes: a whole number of bytes, or a number with a unit -- decimal ``kB``/``KB``, ``MB``, ``GB``
  (``"1MB"`` = 10^6 bytes) or binary ``KiB``, ``MiB``, ``GiB`` (``"1MiB"`` = 2^20 bytes).  Unit letters are
  case-insensitive; a bare ``k``/``m``/``g`` is refused, since it could mean either;
* ports: an integer 1-65535 (a string such as ``"5432"`` is an error, not silently converted).

This module sits at the bottom of core with :mod:`gw.errors` and :mod:`gw.model`: it imports neither.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


class StrictModel(BaseModel):
    """Base of every options model (core's and plugins'): an unknown key is an error, so a misspelt key never
    goes unnoticed."""

    model_config = ConfigDict(extra="forbid")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``did you mean 'audit'?`` for a misspelt name (``"audti"``), or "" when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def parse_duration(value: Any) -> timedelta:
    """``"10m"``, ``"30s"``, ``"1h"``, ``"30d"``, ``"1h30m"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", value)
        if parts and re.fullmatch(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+", value):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"expected a duration such as \"30s\", \"10m\", \"1h\" or \"30d\", got {value!r}")


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration`: ``timedelta(days=90)`` -> ``"90d"``, 5400 s -> ``"1h30m"``."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, seconds = divmod(seconds, size)
        if n:
            out += f"{int(n)}{unit}"
    if seconds or not out:
        out += f"{seconds:g}s"
    return out


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2,
               "gib": 1024**3}


def parse_size(value: Any) -> int:
    """``65536``, ``"64KiB"``, ``"8MiB"`` (binary), ``"10MB"`` (decimal: 10^7 bytes) -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower()
        if unit in _SIZE_UNITS:
            return int(m.group(1)) * _SIZE_UNITS[unit]
        if unit in ("k", "m", "g"):
            n = m.group(1)
            raise ValueError(f"size unit {m.group(2)!r} is ambiguous: write \"{n}{unit.upper()}B\" "
                             f"(decimal, {n} x 10^{3 * ('kmg'.index(unit) + 1)} bytes) or "
                             f"\"{n}{unit.upper()}iB\" (binary, {n} x 2^{10 * ('kmg'.index(unit) + 1)} bytes)")
    raise ValueError(f"expected a size such as 65536, \"64KiB\", \"8MiB\" or \"10MB\", got {value!r}")


def format_size(n: int) -> str:
    """The shortest exact spelling of ``n`` bytes: 1048576 -> ``"1MiB"``, 10**6 -> ``"1MB"``, 1000 -> ``"1kB"``."""
    for unit, size in (("GiB", 1024**3), ("GB", 1000**3), ("MiB", 1024**2), ("MB", 1000**2), ("KiB", 1024),
                       ("kB", 1000)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


#: A byte size in the one convention above (no bounds beyond "not negative").
ByteSize = Annotated[int, BeforeValidator(parse_size)]


def size_range(low: int | None = None, high: int | None = None) -> AfterValidator:
    """Bounds for a :data:`ByteSize` field, with messages in size units:
    ``Annotated[ByteSize, size_range(1024, 2**30)]``."""
    def check(n: int) -> int:
        if low is not None and n < low:
            raise ValueError(f"must be at least {format_size(low)}, got {format_size(n)}")
        if high is not None and n > high:
            raise ValueError(f"must be at most {format_size(high)}, got {format_size(n)}")
        return n
    return AfterValidator(check)


def _port(value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 -- pydantic reports ValueError as a validation error
            f"expected a port number written without quotes, such as port = 5432, got {value!r}")
    return value


#: A TCP port, 1-65535, written as an integer (``port = "5432"`` is refused).
Port = Annotated[int, BeforeValidator(_port), Field(ge=1, le=65535)]


def parse_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:15432"`` / ``"[::1]:15432"`` / ``":15432"`` -> (host, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not m:
        raise ValueError(f"expected HOST:PORT such as \"127.0.0.1:15432\", got {value!r}")
    host = m.group(1) or m.group(3) or "0.0.0.0"
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def _address(value: str) -> str:
    parse_address(value)
    return value


#: ``HOST:PORT`` (checked, kept as written).
Address = Annotated[str, AfterValidator(_address)]
