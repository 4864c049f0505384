"""The API key text: how a key is generated, recognised, checked for damage, and turned into its verifier.

A key reads ``<prefix><id>_<secret><check>``, e.g. ``gwk_4fT9qLm2Xa7B_...``:

* ``id`` -- 12 base62 characters (~71 bits), the public half: it is what the store is looked up by, what
  ``gw keys list`` shows and what error messages name.  Not a secret.
* ``secret`` -- 32 base62 characters from :mod:`secrets` (~190 bits).  It never leaves the process that
  created the key except on that command's stdout; the store keeps only a verifier (below).
* ``check`` -- 6 base62 characters of CRC-32 over everything before it, so a truncated or mistyped key is
  told apart from an unknown one without a store read, and secret scanners can recognise leaked keys.

Only letters and digits after the prefix: the key survives shells, URLs, connection strings and
``PGPASSWORD`` unquoted.

The verifier is SHA-256 (HMAC-SHA256 when the operator sets a pepper) over the secret *and* the key's
grant -- namespace, id, subject, groups, expiry.  Since computing it needs the secret, someone who can edit the
store can neither read a key out of it nor widen an existing key's groups or expiry: the changed record no
longer verifies.  A high-entropy secret needs no slow password hash; one SHA-256 per connection is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 12
SECRET_LENGTH = 32
CHECK_LENGTH = 6
#: Anything longer than a key can be is refused before it is parsed.
MAX_KEY_LENGTH = 128
#: Versioned domain label of the verifier's input, so a future format can never collide with this one.
VERIFIER_LABEL = "gw-apikey/1"

_ID = re.compile(rf"[0-9A-Za-z]{{{ID_LENGTH}}}")
_BODY = re.compile(rf"([0-9A-Za-z]{{{ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})([0-9A-Za-z]{{{CHECK_LENGTH}}})")


class MalformedKey(ValueError):
    """The text has the provider's prefix but is not a whole, undamaged key."""


@dataclass(frozen=True, slots=True)
class KeyText:
    """A parsed key.  ``repr`` hides the secret so a stray log line cannot leak it."""

    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"KeyText(key_id={self.key_id!r}, secret=<hidden>)"


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def checksum(text: str) -> str:
    """CRC-32 of ``text`` as 6 base62 digits (62**6 > 2**32)."""
    value = zlib.crc32(text.encode("ascii"))
    digits = []
    for _ in range(CHECK_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def generate(prefix: str) -> tuple[str, KeyText]:
    """A new key: its full text (shown once) and its parts."""
    parts = KeyText(random_base62(ID_LENGTH), random_base62(SECRET_LENGTH))
    head = f"{prefix}{parts.key_id}_{parts.secret}"
    return head + checksum(head), parts


def parse(text: str, prefix: str) -> KeyText:
    """Split a presented key into id and secret; :class:`MalformedKey` when it is damaged.

    Messages never quote the text: it may be a real key with one character wrong."""
    if len(text) > MAX_KEY_LENGTH:
        raise MalformedKey(f"it is {len(text)} characters long; an API key has "
                           f"{len(prefix) + ID_LENGTH + 1 + SECRET_LENGTH + CHECK_LENGTH}")
    if not text.startswith(prefix):
        raise MalformedKey(f"it does not start with {prefix!r}")
    m = _BODY.fullmatch(text[len(prefix):])
    if m is None:
        raise MalformedKey("it is not <prefix><12-character id>_<38 characters> (letters and digits only); it "
                           "looks truncated or has extra characters")
    key_id, secret, check = m.groups()
    if not hmac.compare_digest(checksum(text[: -CHECK_LENGTH]), check):
        raise MalformedKey("its checksum does not match, so a character was changed or lost on the way")
    return KeyText(key_id, secret)


def is_key_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def key_id_from(value: str, prefix: str) -> str | None:
    """The key id in what an operator typed: the id, ``<prefix><id>``, or a whole key (so the holder of a leaked
    key can revoke it by pasting it).  None when it is none of those."""
    text = value.strip()
    if is_key_id(text):
        return text
    if text.startswith(prefix):
        rest = text[len(prefix):]
        if is_key_id(rest):
            return rest
        try:
            return parse(text, prefix).key_id
        except MalformedKey:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Grant:
    """What a key grants, as bound into its verifier."""

    namespace: str
    key_id: str
    subject: str
    groups: Sequence[str]
    expires: int


def verifier(secret: str, grant: Grant, pepper: bytes | None) -> str:
    """``sha256:<hex>`` or, with a pepper, ``hmac-sha256:<hex>`` over the secret and the grant."""
    message = json.dumps([VERIFIER_LABEL, grant.namespace, grant.key_id, grant.subject, list(grant.groups),
                          grant.expires, secret], separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if pepper is None:
        return "sha256:" + hashlib.sha256(message).hexdigest()
    return "hmac-sha256:" + hmac.new(pepper, message, hashlib.sha256).hexdigest()


def scheme_of(stored: str) -> str:
    """``sha256`` / ``hmac-sha256`` (empty for a destroyed or unknown verifier)."""
    scheme, sep, _ = stored.partition(":")
    return scheme if sep else ""


def matches(secret: str, grant: Grant, stored: str, pepper: bytes | None) -> bool:
    """Constant-time comparison of the verifier computed from ``secret`` with the stored one."""
    if not stored:
        return False
    return hmac.compare_digest(verifier(secret, grant, pepper).encode("ascii"), stored.encode("ascii", "replace"))
