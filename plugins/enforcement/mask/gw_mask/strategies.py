"""How a sensitive value is replaced: ``redact``, ``partial``, ``hash`` or ``null``.

A strategy turns one sensitive text (a whole column value or a detected span inside a text) into its masked
text.  ``null`` has no text form: whole column values become SQL NULL, detected spans inside a longer text are
redacted (a NULL cannot stand in the middle of a sentence).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

StrategyName = Literal["redact", "partial", "hash", "null"]

REDACTED = "***"
_REDACTED_BYTES = REDACTED.encode()
_ALNUM = re.compile(r"[^\W_]")
#: ``partial`` shows the last 4 letters/digits only when at least as many stay hidden (so a 6-digit PIN is
#: never half shown).
_PARTIAL_KEEP = 4


def to_text(value: bytes) -> str:
    """Decode a wire value losslessly: invalid UTF-8 survives the round trip through :func:`to_bytes`."""
    return value.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Strategy:
    """Base: ``mask`` for text, ``mask_bytes`` for a whole wire value (``None`` = SQL NULL)."""

    name: str = ""
    #: Whole column values become NULL rather than a masked text.
    nulls_values: bool = False
    #: What :meth:`mask_bytes` returns for every value, when that does not depend on the value.
    constant: bytes | None = None

    def mask(self, text: str) -> str:
        raise NotImplementedError

    def mask_bytes(self, value: bytes) -> bytes | None:
        return to_bytes(self.mask(to_text(value)))


class Redact(Strategy):
    """Replace the whole value with ``***`` (its length is not revealed)."""

    name = "redact"
    constant: bytes | None = _REDACTED_BYTES

    def mask(self, text: str) -> str:
        return REDACTED

    def mask_bytes(self, value: bytes) -> bytes | None:
        return _REDACTED_BYTES


class Partial(Strategy):
    """Keep the last four letters/digits, star the others, keep separators: ``***-**-6789``,
    ``**** **** **** 1111``.  Values with fewer than eight letters/digits are starred completely."""

    name = "partial"

    def mask(self, text: str) -> str:
        positions = [m.start() for m in _ALNUM.finditer(text)]
        if len(positions) < 2 * _PARTIAL_KEEP:
            return _ALNUM.sub("*", text)
        cut = positions[-_PARTIAL_KEEP]
        return _ALNUM.sub("*", text[:cut]) + text[cut:]


class Hash(Strategy):
    """A keyed HMAC-SHA256 token ``h:`` + 16 hex digits (64 bits).  The same value gives the same token under
    the same key, so agents can still join and group on masked columns; without the key the token cannot be
    reversed by trying candidate values."""

    name = "hash"

    def __init__(self, key: bytes) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, value: bytes) -> str:
        h = self._base.copy()
        h.update(value)
        return "h:" + h.hexdigest()[:16]

    def mask(self, text: str) -> str:
        return self.token(to_bytes(text))

    def mask_bytes(self, value: bytes) -> bytes | None:
        return self.token(value).encode()


class Null(Redact):
    """Whole values become NULL; spans inside a longer text are redacted."""

    name = "null"
    nulls_values = True
    constant = None

    def mask_bytes(self, value: bytes) -> bytes | None:
        return None


def make_strategy(name: str, hash_key: bytes | None) -> Strategy:
    """The strategy called ``name``; ``hash`` needs ``hash_key`` (checked by the stage's options)."""
    if name == "hash":
        if hash_key is None:
            raise ValueError("the hash strategy needs a key: set hash_key_env")
        return Hash(hash_key)
    return {"redact": Redact, "partial": Partial, "null": Null}[name]()
