"""Answers to the upstream server's authentication methods, computed from the password gw holds.

* ``mysql_native_password``: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
* ``caching_sha2_password``: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble) for the fast path; the full
  authentication sends the password over TLS, or RSA-OAEP-encrypted (XORed with the scramble) with the
  server's public key.
* ``client_ed25519`` (MariaDB): an Ed25519 signature of the scramble whose secret scalar derives from
  SHA512(password) -- RFC 8032 signing with the password in place of the 32-byte seed, which is why a
  general-purpose Ed25519 library (that insists on a 32-byte seed) cannot be used and the curve arithmetic
  is done here.
* ``mysql_clear_password``: the password itself (gw only sends it over TLS or to a loopback upstream).
"""

from __future__ import annotations

import hashlib

NATIVE = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"
ED25519 = "client_ed25519"
CLEAR = "mysql_clear_password"
SUPPORTED = (NATIVE, CACHING_SHA2, ED25519, CLEAR)

#: caching_sha2_password's AuthMoreData codes.
FAST_AUTH_SUCCESS = 3
PERFORM_FULL_AUTH = 4
REQUEST_PUBLIC_KEY = b"\x02"


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def native_password(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    return _xor(stage1, hashlib.sha1(scramble[:20] + stage2).digest())


def caching_sha2_password(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    m1 = hashlib.sha256(password).digest()
    m2 = hashlib.sha256(m1).digest()
    return _xor(m1, hashlib.sha256(m2 + scramble[:20]).digest())


def rsa_encrypted_password(password: bytes, scramble: bytes, public_key_pem: bytes) -> bytes:
    """The password (NUL-terminated, XORed with the scramble repeated) encrypted with RSA-OAEP (SHA-1), as
    caching_sha2_password and sha256_password expect without TLS."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the server's public key is not an RSA key")  # noqa: TRY004 - callers catch ValueError
    plain = password + b"\0"
    salt = scramble[:20] or b"\0"
    mixed = bytes(c ^ salt[i % len(salt)] for i, c in enumerate(plain))
    return key.encrypt(mixed, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))


# ---------------------------------------------------------------------------------------------------------------
# Ed25519 (RFC 8032 arithmetic on edwards25519, extended coordinates)
# ---------------------------------------------------------------------------------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int, int, int]


def _recover_x(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _SQRT_M1 % _P
    if x & 1 != sign:
        x = _P - x
    return x


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _recover_x(_BY, 0)
_BASE: Point = (_BX, _BY, 1, _BX * _BY % _P)
_IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _scalar_base(k: int) -> Point:
    result, addend = _IDENTITY, _BASE
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _encode_point(p: Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def ed25519_sign(secret: bytes, message: bytes) -> bytes:
    """An Ed25519 signature of ``message`` whose key derives from SHA512(``secret``), ``secret`` of any
    length (RFC 8032 when it is a 32-byte seed; MariaDB's client_ed25519 passes the password)."""
    az = hashlib.sha512(secret).digest()
    a = int.from_bytes(az[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    public = _encode_point(_scalar_base(a))
    r = int.from_bytes(hashlib.sha512(az[32:] + message).digest(), "little") % _L
    big_r = _encode_point(_scalar_base(r))
    h = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    s = (r + h * a) % _L
    return big_r + s.to_bytes(32, "little")


def ed25519_public_key(secret: bytes) -> bytes:
    """The public key matching :func:`ed25519_sign` (what MariaDB's ``PASSWORD()`` stores, base64-encoded)."""
    az = hashlib.sha512(secret).digest()
    a = int.from_bytes(az[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return _encode_point(_scalar_base(a))


def first_response(plugin: str, password: bytes, scramble: bytes) -> bytes | None:
    """The answer to send for ``plugin`` (None: gw does not speak it).  Cleartext is never sent here; the
    caller decides whether the channel allows it."""
    if plugin == NATIVE:
        return native_password(password, scramble)
    if plugin == CACHING_SHA2:
        return caching_sha2_password(password, scramble)
    if plugin == ED25519:
        return ed25519_sign(password, scramble[:32])
    if plugin == CLEAR:
        return password + b"\0"
    return None
