"""The jwt identity provider: verifies a bearer token and turns its claims into a :class:`gw.model.Identity`.

Order of checks for one token (each refusal is an :class:`~gw.errors.AuthenticationError` whose message the
agent can act on and whose ``reason`` is a short code for the audit trail):

1. shape: a compact JWS of at most 32 KiB, a readable header, no ``crit`` extensions (``malformed``);
2. ``alg`` in the configured allow-list (``unsupported_algorithm``) -- before any key is touched, so ``none``
   and HS256-signed-with-the-public-key never reach a verifier;
3. the key: by ``kid`` from the configured source (``unknown_key``, ``keys_unavailable``), and only a key of
   the algorithm's own type (``key_type_mismatch``);
4. signature, then ``exp``/``nbf``/``iat`` with the leeway, ``iss``, ``aud`` and the required claims
   (``bad_signature``, ``expired``, ``not_yet_valid``, ``wrong_issuer``, ``wrong_audience``,
   ``missing_claim``), all by PyJWT with the algorithm pinned;
5. gw's own rules: subject and groups claims, ``require_claims``, ``deny_subjects``/``deny_groups``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import jwt
from gw.errors import AuthenticationError, ConfigError
from gw.identity import Credential, IdentityProvider
from gw.model import Identity

from .jwks import KeyFetchError, RemoteKeySet
from .keys import VerificationKey, public_key_from_pem
from .options import HMAC_MIN_SECRET, JwtOptions

log = logging.getLogger("gw.jwt")

#: Larger credentials are refused before parsing (Entra tokens with many groups stay well below this).
MAX_TOKEN_BYTES = 32 * 1024
#: Claims every accepted token carries, besides the subject claim.
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")
#: A token without ``kid`` is tried against at most this many keys of the right type.
MAX_KEYS_TRIED = 8


def utc(ts: Any) -> str:
    """A Unix time as the ISO-8601 UTC text used in messages (anything else quoted as it came)."""
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        try:
            return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            pass
    return shown(ts)


def shown(value: Any, limit: int = 80) -> str:
    """A token-supplied value quoted for a message, cut so a hostile token cannot flood logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``realm_access.roles``), or None when any step is missing."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def set_claim_at(claims: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path``, creating the nested objects on the way."""
    *parents, last = path.split(".")
    target = claims
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _refuse(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, reason=reason)


class JwtProvider(IdentityProvider):
    """JWT bearer tokens: an HS256 development secret, static public keys, a JWKS URL or OIDC discovery."""

    name: ClassVar[str] = "jwt"
    Options: ClassVar[type[JwtOptions]] = JwtOptions
    options: JwtOptions

    def __init__(self, instance_name: str, options: JwtOptions, services: Any) -> None:
        super().__init__(instance_name, options, services)
        self._algorithms = options.allowed_algorithms
        self._leeway = options.leeway.total_seconds()
        self._audiences = options.audiences
        self._secret: bytes | None = None
        self._static: list[VerificationKey] | None = None
        self.remote: RemoteKeySet | None = None
        if options.key_source in ("jwks", "discovery"):
            self.remote = RemoteKeySet(
                issuer=options.issuer, jwks_url=options.jwks_url,
                lifespan=options.jwks_cache.total_seconds(),
                min_interval=options.jwks_refresh_min_interval.total_seconds(),
                max_stale=options.jwks_max_stale.total_seconds(),
                timeout=options.fetch_timeout.total_seconds())

    # -- key material -------------------------------------------------------------------------------------
    def _config_error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=str(self.services.config.path),
                           path=f"identity.{self.instance_name}.{key}")

    @property
    def can_issue_tokens(self) -> bool:
        """Only a provider with its own secret can mint tokens it accepts (``gw token issue``)."""
        return self.options.key_source == "secret"

    def secret(self) -> bytes:
        """The HMAC secret from ``secret_env``, read once.  Raises :class:`ConfigError` naming the variable
        when it is unset or too short, so ``gw serve`` and ``gw token issue`` say exactly what to export."""
        if self._secret is not None:
            return self._secret
        var = self.options.secret_env
        assert var is not None
        value = os.environ.get(var, "")
        need = max(HMAC_MIN_SECRET[a] for a in self._algorithms)
        example = f"export {var}=$(openssl rand -hex {need})"
        if not value:
            raise self._config_error("secret_env", f"environment variable {var} is not set; it holds the "
                                                   f"HMAC secret of this provider ({example})")
        data = value.encode()
        if len(data) < need:
            raise self._config_error("secret_env", f"the secret in {var} is {len(data)} bytes; "
                                                   f"{'/'.join(self._algorithms)} needs at least {need} "
                                                   f"({example})")
        self._secret = data
        return data

    def _static_keys(self) -> list[VerificationKey]:
        """Inline PEM keys and key files (relative to the pipeline file), loaded once, at :meth:`open`."""
        if self._static is not None:
            return self._static
        keys: list[VerificationKey] = []
        inline = self.options.public_keys
        for kid, pem in (inline.items() if isinstance(inline, dict) else ((None, p) for p in inline)):
            key = public_key_from_pem(pem.encode(), f"public key {kid or ''}")
            keys.append(VerificationKey(key, kid=kid))
        files = self.options.public_key_files
        for kid, name in (files.items() if isinstance(files, dict) else ((None, f) for f in files)):
            path = self.services.resolve_path(name)
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise self._config_error("public_key_files", f"cannot read key file {str(path)!r}: "
                                                             f"{e.strerror}") from None
            try:
                key = public_key_from_pem(data, f"key file {str(path)!r}")
            except ValueError as e:
                raise self._config_error("public_key_files", str(e)) from None
            keys.append(VerificationKey(key, kid=kid))
        self._static = keys
        return keys

    async def open(self) -> None:
        """Read the secret or key files now, so a missing one stops ``gw serve`` with a precise message
        (``gw check`` does not call this: it validates a file on a machine that may lack the secrets).
        JWKS are fetched on first use, so CLI commands that open the runtime never wait for the IdP."""
        if self.options.key_source == "secret":
            self.secret()
        elif self.options.key_source == "static":
            self._static_keys()

    async def check_ready(self) -> str | None:
        """``/readyz``: the provider has keys to verify tokens with (a JWKS fetched, or fetchable now)."""
        try:
            keys = await self._candidate_keys(None)
        except AuthenticationError as e:
            return str(e)
        return None if keys else "no signing keys"

    async def _candidate_keys(self, kid: str | None) -> Sequence[VerificationKey]:
        source = self.options.key_source
        try:
            if source == "secret":
                return [VerificationKey(self.secret())]
            if source == "static":
                keys = self._static_keys()
                named = [k for k in keys if k.kid is not None]
                # Static keys named by kid are looked up by kid; unnamed ones are all candidates.
                return [k for k in keys if k.kid == kid] if named and kid is not None else keys
        except ConfigError as e:
            log.error("identity provider %s cannot verify tokens: %s", self.instance_name, e)
            raise _refuse(f"identity provider {self.instance_name!r} is not set up on this gateway; ask the "
                          "gateway operator", "provider_unavailable") from None
        assert self.remote is not None
        try:
            return await self.remote.keys(kid)
        except KeyFetchError as e:
            raise _refuse(f"gw cannot get the signing keys of identity provider {self.instance_name!r} "
                          f"({e}); retry in a minute, or ask the gateway operator if it persists",
                          "keys_unavailable") from None

    # -- verification -------------------------------------------------------------------------------------
    def accepts(self, credential: Credential) -> bool:
        """Token credentials shaped like a JWT, so a listener with several providers (``["okta",
        "ci-keys"]``) hands API keys to the provider that understands them."""
        if credential.kind != "token":
            return False
        try:
            return self._token_text(credential).count(".") == 2
        except AuthenticationError:
            return False

    @staticmethod
    def _token_text(credential: Credential) -> str:
        secret = credential.secret
        if isinstance(secret, bytes):
            try:
                secret = secret.decode("ascii")
            except UnicodeDecodeError:
                raise _refuse("the credential is not a JWT (it contains non-ASCII bytes); send the token "
                              "exactly as issued", "malformed") from None
        text = secret.strip()
        if text[:7].lower() == "bearer ":
            text = text[7:].strip()
        return text

    async def authenticate(self, credential: Credential) -> Identity:
        token = self._token_text(credential)
        if len(token) > MAX_TOKEN_BYTES:
            raise _refuse(f"the token is {len(token)} bytes, more than the {MAX_TOKEN_BYTES} gw accepts; "
                          "request a token with fewer claims", "malformed")
        if token.count(".") != 2:
            raise _refuse("the credential is not a JWT (three base64url parts separated by dots); send the "
                          "token exactly as your identity provider or `gw token issue` printed it",
                          "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise _refuse(f"the token header cannot be read ({e}); send the token exactly as issued",
                          "malformed") from None
        if "crit" in header:
            raise _refuse("the token uses critical header extensions (crit), which gw does not support; "
                          "request a plain signed JWT", "malformed")
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise _refuse(f"token algorithm {shown(alg)} is not accepted by identity provider "
                          f"{self.instance_name!r} (accepted: {', '.join(self._algorithms)}); request a "
                          "token signed with one of those", "unsupported_algorithm")
        kid = header.get("kid")
        claims = await self._verified_claims(token, alg, kid)
        return self._identity(claims)

    async def _verified_claims(self, token: str, alg: str, kid: str | None) -> dict[str, Any]:
        candidates = await self._candidate_keys(kid)
        if not candidates:
            raise _refuse(f"token key id {shown(kid)} is not among the keys of identity provider "
                          f"{self.instance_name!r}; the key may have been rotated out -- request a new token",
                          "unknown_key")
        fitting = [k for k in candidates if k.fits(alg)]
        if not fitting:
            named = candidates[0]
            bound = f" for {named.alg}" if named.alg else ""
            raise _refuse(f"token key id {shown(kid)} names {named.kind}{bound}, which cannot verify an "
                          f"{alg} token; the token is forged or misissued -- request a new one",
                          "key_type_mismatch")
        for key in fitting[:MAX_KEYS_TRIED]:
            try:
                return jwt.decode(
                    token, key.key, algorithms=[alg], audience=self._audiences, issuer=self.options.issuer,
                    leeway=self._leeway, options={"require": list(REQUIRED_CLAIMS), "verify_sub": True})
            except jwt.InvalidSignatureError:
                continue
            except (TypeError, ValueError):
                # A key PyJWT cannot use with this algorithm; VerificationKey.fits should have excluded it,
                # so treat it as not verifying rather than letting it escape as a crash.
                log.warning("identity provider %s: key %s unusable for %s", self.instance_name, key.kid, alg)
                continue
            except jwt.PyJWTError as e:
                raise self._claim_refusal(e, token) from None
        raise _refuse(f"token signature does not verify with the keys of identity provider "
                      f"{self.instance_name!r}; the token was altered or signed by someone else -- request a "
                      "new token", "bad_signature")

    def _claim_refusal(self, error: jwt.PyJWTError, token: str) -> AuthenticationError:
        """Explain a refusal PyJWT raised after the signature verified, so reading the payload is safe."""
        try:
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        opts = self.options
        if isinstance(error, jwt.ExpiredSignatureError):
            return _refuse(f"token expired at {utc(claims.get('exp'))} (allowed clock leeway "
                           f"{self._leeway:.0f}s); request a new token", "expired")
        if isinstance(error, jwt.ImmatureSignatureError):
            nbf = claims.get("nbf")
            if isinstance(nbf, (int, float)) and nbf > time.time() + self._leeway:
                return _refuse(f"token is not valid before {utc(nbf)} (nbf); wait, or check the clocks of "
                               "gw and the issuer", "not_yet_valid")
            return _refuse(f"token was issued in the future (iat {utc(claims.get('iat'))}); the clocks of gw "
                           "and the issuer disagree -- check their time synchronisation", "not_yet_valid")
        if isinstance(error, jwt.InvalidIssuerError):
            return _refuse(f"token issuer {shown(claims.get('iss'))} is not {opts.issuer!r}; request a token "
                           f"from {opts.issuer}", "wrong_issuer")
        if isinstance(error, jwt.InvalidAudienceError):
            want = " or ".join(repr(a) for a in self._audiences)
            return _refuse(f"token audience {shown(claims.get('aud'))} is not {want}; request a token for "
                           f"audience {self._audiences[0]!r}", "wrong_audience")
        if isinstance(error, jwt.MissingRequiredClaimError):
            return _refuse(f"token has no {error.claim!r} claim; gw requires {', '.join(REQUIRED_CLAIMS)} -- "
                           "request a token from an issuer that sets them", "missing_claim")
        return _refuse(f"token claims are invalid ({error}); request a new token", "malformed")

    def _identity(self, claims: dict[str, Any]) -> Identity:
        opts = self.options
        subject = claim_at(claims, opts.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _refuse(f"token has no usable {opts.subject_claim!r} claim (the subject claim of identity "
                          f"provider {self.instance_name!r}); request a token that carries it",
                          "missing_claim")
        groups = self._groups(claims)
        for path, allowed in opts.require_claims.items():
            self._require_claim(claims, path, allowed)
        identity = Identity(subject, groups, claims=claims, provider=self.instance_name,
                            expires_at=float(claims["exp"]))
        self.admit(identity)
        return identity

    def _groups(self, claims: dict[str, Any]) -> tuple[str, ...]:
        """Groups from ``groups_claim``: a list of strings, or one string (GitHub's ``repository_owner``).
        Anything else is refused rather than guessed at, since deny_groups must never be dodged."""
        path = self.options.groups_claim
        if not path:
            return ()
        value = claim_at(claims, path)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(g, str) for g in value):
            return tuple(value)
        raise _refuse(f"token claim {path!r} is not a list of group names; ask the gateway operator to point "
                      "groups_claim at the right claim", "malformed")

    def _require_claim(self, claims: dict[str, Any], path: str, allowed: Any) -> None:
        accepted = allowed if isinstance(allowed, list) else [allowed]
        value = claim_at(claims, path)
        present = value if isinstance(value, list) else [value]
        # Compare types too: JSON true must not satisfy a configured 1, nor "1" a configured 1.
        if not any(type(v) is type(a) and v == a for v in present for a in accepted):
            raise _refuse(f"token claim {path!r} is {shown(value)}, which identity provider "
                          f"{self.instance_name!r} does not accept; request a token from an allowed "
                          f"{path.split('.')[-1]}", "claim_mismatch")

    # -- issuing ------------------------------------------------------------------------------------------
    def issue_token(self, subject: str, groups: list[str], ttl_seconds: float,
                    extra_claims: dict[str, Any] | None = None) -> str:
        """A token this provider accepts, signed with its secret (development and tests).  Claims in
        ``extra_claims`` are added last and may override the standard ones (tests mint expired tokens)."""
        if not self.can_issue_tokens:
            raise NotImplementedError(
                f"identity provider {self.instance_name!r} verifies tokens of {self.options.issuer}; it "
                "cannot issue them (only a jwt provider with secret_env can) -- get a token from that issuer")
        if not subject:
            raise ValueError("a token needs a non-empty subject")
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.options.issuer, "aud": self._audiences[0], "sub": subject,
                                  "iat": now, "exp": now + math.ceil(ttl_seconds), "jti": uuid.uuid4().hex}
        if self.options.subject_claim != "sub":
            set_claim_at(claims, self.options.subject_claim, subject)
        if self.options.groups_claim:
            set_claim_at(claims, self.options.groups_claim, list(groups))
        claims.update(extra_claims or {})
        return jwt.encode(claims, self.secret(), algorithm=self._algorithms[0], headers={"typ": "JWT"})


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``token`` without any verification (``gw token decode``)."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
