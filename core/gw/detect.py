"""The detector contract used by masking: find sensitive values in free text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Detector(Protocol):
    """Finds sensitive values (``us_ssn``, ``credit_card`` ...) in text.

    ``find`` returns ``(start, end)`` character spans; it must validate what it finds (Luhn, mod 97 ...) so
    that look-alikes are not masked, and be fast: it runs on every text value of every result it applies to.
    """

    name: str

    def find(self, text: str) -> Iterable[tuple[int, int]]: ...
