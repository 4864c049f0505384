"""Helpers for the jwt plugin's tests: a real OIDC identity provider over HTTP on loopback, per-test keys,
and providers built from real pipeline files through the installed plugin.  conftest.py exposes the
fixtures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from gw.identity import Credential
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_jwt import JwtProvider
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

SECRET = "0123456789abcdef0123456789abcdef-test-secret"


@dataclass
class SigningKey:
    """A key pair generated for one test, as an IdP holds it."""

    private: Any
    kid: str
    alg: str

    @classmethod
    def rsa(cls, kid: str | None = None, alg: str = "RS256", bits: int = 2048) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(private, kid or uuid.uuid4().hex, alg)

    @classmethod
    def ec(cls, kid: str | None = None, alg: str = "ES256") -> SigningKey:
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
        return cls(ec.generate_private_key(curve), kid or uuid.uuid4().hex, alg)

    @classmethod
    def ed25519(cls, kid: str | None = None) -> SigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate(), kid or uuid.uuid4().hex, "EdDSA")

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK an IdP publishes for this key."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", **extra}

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, claims: dict[str, Any], *, kid: str | None | bool = True, alg: str | None = None,
             **headers: Any) -> str:
        hdr = dict(headers)
        if kid is True:
            hdr["kid"] = self.kid
        elif isinstance(kid, str):
            hdr["kid"] = kid
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=hdr)


def claims_for(issuer: str, *, audience: Any = "gw", sub: str | None = "agent-7", groups: Any = ("agents",),
               ttl: float = 300, drop: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """Claims a well-behaved IdP puts in a token; ``drop`` removes some, ``extra`` adds or overrides."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + int(ttl),
                              "groups": list(groups) if groups is not None else None}
    claims.update(extra)
    return {k: v for k, v in claims.items() if k not in drop and v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None,
                    signature: bytes = b"") -> str:
    """A token built byte by byte, for what PyJWT refuses to produce (alg none, HMAC with a public key)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class TestIdP:
    """A real OIDC identity provider's key endpoints over HTTP on 127.0.0.1, run in a thread.

    Serves ``{issuer}/.well-known/openid-configuration`` and ``/jwks``, counts requests per path, and can be
    told to fail (``status``), to be slow (``delay``), to redirect, or to lie about its issuer.
    """

    __test__ = False

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.extra_jwks: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self.status = 200
        self.delay = 0.0
        self.redirects: dict[str, str] = {}
        self.discovery_overrides: dict[str, Any] = {}
        self._lock = threading.Lock()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with idp._lock:
                    idp.hits[path] += 1
                if idp.delay:
                    time.sleep(idp.delay)
                if path in idp.redirects:
                    self.send_response(302)
                    self.send_header("Location", idp.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = idp.document(path)
                if idp.status != 200 or body is None:
                    self.send_response(idp.status if idp.status != 200 else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/realms/test"
        self.jwks_path = "/realms/test/protocol/openid-connect/certs"
        self.discovery_path = "/realms/test/.well-known/openid-configuration"
        self._stopped = False
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def jwks_url(self) -> str:
        return self.base + self.jwks_path

    def document(self, path: str) -> dict[str, Any] | None:
        if path == self.discovery_path:
            return {"issuer": self.issuer, "jwks_uri": self.jwks_url, "id_token_signing_alg_values_supported":
                    ["RS256", "ES256"], **self.discovery_overrides}
        if path == self.jwks_path:
            return {"keys": [k.jwk() for k in self.keys] + self.extra_jwks}
        return None

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self.hits[self.jwks_path]

    @property
    def discovery_fetches(self) -> int:
        with self._lock:
            return self.hits[self.discovery_path]

    def claims(self, **kw: Any) -> dict[str, Any]:
        return claims_for(self.issuer, **kw)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[TestIdP]:
    server = TestIdP()
    yield server
    server.stop()


def toml_value(value: Any) -> str:
    """Enough TOML for an [identity.*] table: strings, numbers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def identity_file(directory: Path, name: str = "idp", **options: Any) -> Path:
    """A pipeline file with one ``[identity.NAME]`` jwt table."""
    lines = ["[gateway]", 'data_dir = ".gw"', "", f"[identity.{name}]", 'use = "jwt"']
    lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return write_pipeline(directory, "\n".join(lines) + "\n")


@pytest.fixture
def make_provider(tmp_path: Path) -> Callable[..., JwtProvider]:
    """Build a jwt provider from a real pipeline file through the installed plugin (not opened)."""

    def make(**options: Any) -> JwtProvider:
        options.setdefault("audience", "gw")
        provider = Runtime.build(identity_file(tmp_path, **options)).identity["idp"]
        assert isinstance(provider, JwtProvider)
        return provider

    return make


def token(text: str) -> Credential:
    return Credential("token", text)
