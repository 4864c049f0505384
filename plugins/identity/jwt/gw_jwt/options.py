"""The ``[identity.NAME]`` table of a jwt provider, validated so that an unsafe configuration never starts.

The rules come from RFC 8725 (JWT best current practices) and the gateway's security stance: an explicit
algorithm allow-list, never ``none``, never HMAC and asymmetric algorithms in one provider (the classic
algorithm-confusion hole), key material only over https (loopback excepted, for local IdPs and tests), and a
small clock leeway.  Every problem is a ``ValueError`` raised inside pydantic, so core reports it with the
file name and key path (``identity.okta.algorithms``).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from gw.config import Duration
from gw.identity import ProviderOptions
from pydantic import Field, field_validator, model_validator

from .keys import public_key_from_pem

#: HMAC algorithms and the minimum secret length each needs (RFC 7518 §3.2: at least the hash size).
HMAC_MIN_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}
#: Asymmetric algorithms gw verifies.  ``none`` is deliberately absent and can never be configured.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ASYMMETRIC = ["RS256", "ES256"]
DEFAULT_HMAC = ["HS256"]
#: A leeway larger than this keeps expired tokens usable for too long; refuse it rather than trust it.
MAX_LEEWAY = timedelta(minutes=5)

KeySource = Literal["secret", "static", "jwks", "discovery"]


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1 -- the only hosts key material may come from over plain http."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(url: str, what: str) -> str:
    """Raise ``ValueError`` unless ``url`` is https, or http to a loopback address.

    Keys fetched over plain http from another host could be swapped by anyone on the path, which would let
    them mint tokens gw accepts.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host and is_loopback_host(host):
        return url
    if parts.scheme == "http" and host:
        raise ValueError(f"{what} {url!r} uses plain http; use https (http is allowed only for loopback "
                         "addresses: localhost, 127.0.0.0/8, ::1)")
    raise ValueError(f"{what} {url!r} is not an https URL (expected e.g. \"https://idp.example.com/...\")")


class JwtOptions(ProviderOptions):
    """Options of ``use = "jwt"``; docs/plugins/jwt.md describes each key with an example."""

    #: Expected ``iss`` claim; with no key source given, also where OIDC discovery starts.
    issuer: str
    #: Expected ``aud``: the token must name this audience (or one of these).
    audience: str | list[str]
    #: Name of an environment variable holding an HMAC secret (development tokens, ``gw token issue``).
    secret_env: str | None = None
    #: PEM public keys or X.509 certificates; a table maps key ids (``kid``) to PEM text.
    public_keys: list[str] | dict[str, str] = Field(default_factory=list)
    #: Files holding PEM public keys or certificates (relative to the pipeline file); a table maps kids.
    public_key_files: list[str] | dict[str, str] = Field(default_factory=list)
    #: JWKS endpoint; without it (and without other keys) ``issuer`` is discovered.
    jwks_url: str | None = None
    #: Accepted ``alg`` values (default RS256+ES256, or HS256 with ``secret_env``).
    algorithms: list[str] | None = None
    #: Allowed clock difference for ``exp``, ``nbf`` and ``iat``.
    leeway: Duration = timedelta(seconds=30)
    #: Claim that names the identity (dotted path), e.g. ``email`` or ``preferred_username``.
    subject_claim: str = "sub"
    #: Claim that lists the groups (dotted path), e.g. ``realm_access.roles``; empty: no groups.
    groups_claim: str = "groups"
    #: Claims that must have a given value (or one of several), e.g. ``{ repository_owner = "acme" }``.
    require_claims: dict[str, str | int | bool | list[str | int | bool]] = Field(default_factory=dict)
    #: How long a fetched JWKS is trusted before it is fetched again.
    jwks_cache: Duration = timedelta(minutes=10)
    #: Minimum time between two fetches triggered by unknown key ids or failures (flood protection).
    jwks_refresh_min_interval: Duration = timedelta(seconds=30)
    #: How long the last good JWKS stays usable while the IdP cannot be reached.
    jwks_max_stale: Duration = timedelta(hours=24)
    #: Limit on one discovery or JWKS request.
    fetch_timeout: Duration = timedelta(seconds=5)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("issuer cannot be empty; set it to the token's expected \"iss\" claim")
        return v

    @field_validator("audience")
    @classmethod
    def _audience(cls, v: str | list[str]) -> str | list[str]:
        values = [v] if isinstance(v, str) else v
        if not values or any(not a.strip() for a in values):
            raise ValueError("audience cannot be empty; set it to the token's expected \"aud\" claim, e.g. "
                             "\"gw\"")
        return v

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("secret_env names an environment variable, e.g. \"GW_DEV_SECRET\"")
        return v

    @field_validator("public_keys")
    @classmethod
    def _public_keys(cls, v: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        items = v.items() if isinstance(v, dict) else enumerate(v)
        for where, pem in items:
            public_key_from_pem(pem.encode(), f"public key {where!r}" if isinstance(where, str) else
                                f"public_keys[{where}]")
        return v

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, v: str | None) -> str | None:
        return None if v is None else check_key_url(v, "jwks_url")

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("algorithms cannot be empty; list what your IdP signs with, e.g. [\"RS256\"]")
        for alg in v:
            if alg.lower() == "none":
                raise ValueError("algorithm \"none\" accepts unsigned tokens and is never allowed")
            if alg not in HMAC_MIN_SECRET and alg not in ASYMMETRIC:
                known = ", ".join([*HMAC_MIN_SECRET, *ASYMMETRIC])
                raise ValueError(f"unknown algorithm {alg!r}; supported: {known}")
        hmac = [a for a in v if a in HMAC_MIN_SECRET]
        if hmac and len(hmac) != len(v):
            raise ValueError("HMAC (HS*) and asymmetric algorithms cannot be mixed in one provider: a public "
                             "key would become a usable HMAC secret (algorithm confusion); define two "
                             "[identity.*] tables instead")
        return v

    @field_validator("leeway")
    @classmethod
    def _leeway(cls, v: timedelta) -> timedelta:
        if v > MAX_LEEWAY:
            raise ValueError(f"leeway {v.total_seconds():.0f}s is above the 5m limit: it would keep expired "
                             "tokens usable; fix the clocks instead (NTP)")
        return v

    @field_validator("subject_claim")
    @classmethod
    def _subject_claim(cls, v: str) -> str:
        if not v.strip() or any(not part for part in v.split(".")):
            raise ValueError(f"subject_claim {v!r} is not a claim name or dotted path such as \"sub\" or "
                             "\"email\"")
        return v

    @field_validator("groups_claim")
    @classmethod
    def _groups_claim(cls, v: str) -> str:
        if v and any(not part for part in v.split(".")):
            raise ValueError(f"groups_claim {v!r} is not a claim name or dotted path such as \"groups\" or "
                             "\"realm_access.roles\"")
        return v

    @field_validator("jwks_cache", "jwks_refresh_min_interval", "fetch_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() <= 0:
            raise ValueError("must be longer than zero, e.g. \"30s\"")
        return v

    @model_validator(mode="after")
    def _key_source(self) -> JwtOptions:
        sources = [k for k, given in (("secret_env", self.secret_env is not None),
                                      ("public_keys/public_key_files",
                                       bool(self.public_keys or self.public_key_files)),
                                      ("jwks_url", self.jwks_url is not None)) if given]
        if len(sources) > 1:
            raise ValueError(f"give one key source, not {' and '.join(sources)}: secret_env (HMAC dev "
                             "tokens), public_keys/public_key_files (static PEM), jwks_url, or none of them "
                             "to discover the keys from issuer")
        if self.algorithms is None:
            self.algorithms = list(DEFAULT_HMAC if self.secret_env is not None else DEFAULT_ASYMMETRIC)
        hmac = [a for a in self.algorithms if a in HMAC_MIN_SECRET]
        if self.secret_env is not None and not hmac:
            raise ValueError(f"algorithms {self.algorithms} need public keys, but this provider has only "
                             "secret_env; use HS256 with secret_env, or configure keys instead")
        if hmac and self.secret_env is None:
            raise ValueError(f"algorithm {hmac[0]} needs secret_env (HMAC algorithms are for locally "
                             "issued development tokens); an IdP's tokens use RS256/ES256 with its keys")
        if self.key_source == "discovery":
            check_key_url(self.issuer, "issuer (used for OIDC discovery, since no secret_env, public_keys "
                                       "or jwks_url is given)")
        return self

    @property
    def key_source(self) -> KeySource:
        if self.secret_env is not None:
            return "secret"
        if self.public_keys or self.public_key_files:
            return "static"
        if self.jwks_url is not None:
            return "jwks"
        return "discovery"

    @property
    def audiences(self) -> list[str]:
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)

    @property
    def allowed_algorithms(self) -> tuple[str, ...]:
        assert self.algorithms is not None  # set by the model validator
        return tuple(self.algorithms)
