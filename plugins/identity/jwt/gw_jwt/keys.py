"""Verification keys and the rule that binds each one to the algorithms it may verify.

PyJWT picks the algorithm from the token header; gw decides which key that algorithm may be used with.  A key
verifies only tokens of its own family (RSA: RS*/PS*, EC: ES* on the matching curve, OKP: EdDSA, a secret:
HS*), and only the algorithm a JWK declares in ``alg`` when it declares one.  That is what defeats algorithm
confusion and a ``kid`` that points at a key of another type (RFC 8725 §2.1, §3.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

#: RSA keys below this size are refused: they are factorable by well-funded attackers (NIST SP 800-131A).
MIN_RSA_BITS = 2048

_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One key gw may verify signatures with: a public key, or the HMAC secret of a dev provider."""

    key: PublicKey | bytes
    #: The ``kid`` it is published under (None for a secret or an unnamed static key).
    kid: str | None = None
    #: The only algorithm this key may verify, when its JWK says so (RFC 7517 §4.4).
    alg: str | None = None

    @property
    def kind(self) -> str:
        """What the key is, in words for error messages."""
        if isinstance(self.key, bytes):
            return "an HMAC secret"
        if isinstance(self.key, rsa.RSAPublicKey):
            return "an RSA key"
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"an EC key on curve {self.key.curve.name}"
        return "an EdDSA key"

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a token signed with ``alg``."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg.startswith("HS"):
            return isinstance(self.key, bytes)
        if alg.startswith(("RS", "PS")):
            return isinstance(self.key, rsa.RSAPublicKey)
        if alg in _EC_CURVES:
            return isinstance(self.key, ec.EllipticCurvePublicKey) and self.key.curve.name == _EC_CURVES[alg]
        if alg == "EdDSA":
            return isinstance(self.key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
        return False


def _check_public_key(key: object, where: str) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{where} is a {key.key_size}-bit RSA key; gw needs at least {MIN_RSA_BITS} "
                             "bits")
        return key
    if isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key
    raise ValueError(f"{where} is a {type(key).__name__}, not an RSA, EC or EdDSA public key")


def public_key_from_pem(data: bytes, where: str) -> PublicKey:
    """Load a PEM public key or X.509 certificate; ``ValueError`` names ``where`` and what to do."""
    if b"PRIVATE KEY-----" in data:
        try:
            load_pem_private_key(data, password=None)
            problem = "is a private key"
        except (ValueError, TypeError):
            problem = "looks like a private key"
        raise ValueError(f"{where} {problem}; configure only the public key (gw never needs the private one "
                         "to verify tokens), e.g. openssl pkey -in key.pem -pubout")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"{where} is not a PEM public key or certificate (expected text starting with "
                         "-----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)") from None
    return _check_public_key(key, where)


_JWK_LOADERS: dict[str, Any] = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}


def key_from_jwk(jwk: dict[str, Any]) -> VerificationKey:
    """Turn one JWK of a key set into a :class:`VerificationKey`; ``ValueError`` says why it is unusable.

    Symmetric (``oct``) keys are refused: a JWKS is public, so a secret published there is no secret.
    Keys marked for encryption (``use: enc``) are refused too.
    """
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"use is {jwk.get('use')!r}, not \"sig\"")
    loader = _JWK_LOADERS.get(kty) if isinstance(kty, str) else None
    if loader is None:
        raise ValueError(f"key type {kty!r} cannot verify signatures here (RSA, EC and OKP can)")
    try:
        key = loader.from_jwk(json.dumps(jwk))
    except (InvalidKeyError, ValueError, TypeError, KeyError) as e:  # what PyJWT raises for broken JWKs
        raise ValueError(f"not a valid {kty} key: {e}") from None
    public = key.public_key() if hasattr(key, "private_bytes") else key  # never keep private parts around
    return VerificationKey(_check_public_key(public, f"key {kid!r}"), kid=kid, alg=alg)
