"""The client side of SCRAM-SHA-256 (RFC 5802 / RFC 7677), as PostgreSQL uses it, plus MD5 password hashing.

gw logs in to the upstream database with the password it holds; the password never leaves this module except
as a SCRAM proof or an MD5 hash, and nothing here logs or repr()s it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

from .errors import UpstreamError

MECHANISM = "SCRAM-SHA-256"
#: An upstream asking for more iterations than this is treated as hostile (it would pin a CPU core).
MAX_ITERATIONS = 10_000_000


def md5_password(user: str, password: str, salt: bytes) -> str:
    """PostgreSQL's MD5 answer: ``"md5" + md5(md5(password + user) + salt)``, in hex."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def saslprep(password: str) -> bytes:
    """SASLprep (RFC 4013) as PostgreSQL applies it: when the password is not valid under it, PostgreSQL uses
    the raw bytes, so do we."""
    if password.isascii():
        return password.encode()
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password
                     if not stringprep.in_table_b1(c))
    norm = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    if any(check(c) for c in norm for check in prohibited):
        return password.encode()
    return norm.encode()


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError:
        raise UpstreamError("the upstream database sent a malformed SCRAM message") from None
    out: dict[str, str] = {}
    for part in text.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


class ScramClient:
    """One SCRAM-SHA-256 exchange: :meth:`client_first`, :meth:`client_final`, :meth:`verify_server_final`."""

    __slots__ = ("_client_first_bare", "_nonce", "_password", "_server_signature")

    def __init__(self, password: str, *, nonce: str | None = None) -> None:
        self._password = saslprep(password)
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        # PostgreSQL ignores the SCRAM user name (it uses the start-up user), so it is left empty.
        self._client_first_bare = f"n=,r={self._nonce}"
        self._server_signature = b""

    def __repr__(self) -> str:
        return "ScramClient(<hidden>)"

    def client_first(self) -> bytes:
        return b"n,," + self._client_first_bare.encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = _attributes(server_first)
        nonce, salt_b64, iters = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise UpstreamError("the upstream database's SCRAM nonce does not extend gw's (possible "
                                "man-in-the-middle); gw did not log in")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
            iterations = int(iters)
        except ValueError:
            raise UpstreamError("the upstream database sent a malformed SCRAM challenge") from None
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise UpstreamError(f"the upstream database asked for {iterations} SCRAM iterations; refused")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first.decode('ascii')},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise UpstreamError(f"the upstream database rejected gw's SCRAM proof ({attrs['e']})",
                                sqlstate="08004")
        try:
            verifier = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError:
            verifier = b""
        if not self._server_signature or not hmac.compare_digest(verifier, self._server_signature):
            raise UpstreamError("the upstream database could not prove it knows gw's password (SCRAM server "
                                "signature mismatch); gw did not continue", sqlstate="08004")
