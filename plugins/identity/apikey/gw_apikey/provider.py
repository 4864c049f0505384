"""The apikey identity provider: service identities (CI jobs, scripts) authenticated by a key gw issued.

Order of checks for one presented key (each refusal is an :class:`~gw.errors.AuthenticationError` whose
message names the key by its public id, never its secret, and whose ``reason`` is a short code for the audit
trail):

1. shape: the provider's prefix, the id/secret layout and the checksum (``malformed``) -- no store read;
2. the record, by id, in this provider's namespace (``unknown_key``; ``keys_unavailable`` when the store
   cannot be read; ``key_record_invalid`` when the record is damaged);
3. revocation (``revoked``), then the secret against the verifier in constant time (``bad_secret``,
   ``outdated_key`` when the pepper setting changed since the key was made), then the expiry (``expired``);
4. ``deny_subjects`` / ``deny_groups`` (``denied_subject``, ``denied_group``).

There is no cache: the record is read on every authentication (one indexed read, once per connection), so
revoking a key refuses the next connection at once, on every gateway sharing the store.  Sessions already
open are re-checked every ``revocation_check`` and ended when their key was revoked or deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import trio
from gw.errors import AuthenticationError, ConfigError, GwError, StoreError
from gw.identity import Credential, IdentityProvider
from gw.model import Identity
from gw.store import VersionConflict

from . import keys
from .keystore import DocumentKeyStore, FileKeyStore, KeyStore
from .options import MIN_PEPPER_BYTES, ApiKeyOptions
from .records import ApiKey, DamagedRecord

log = logging.getLogger("gw.apikey")

#: Claim of the identity that names the key, so live sessions can be matched to revocations.
KEY_ID_CLAIM = "key_id"
#: Longest subject or group name a key may carry.
MAX_NAME = 200
_REVOKE_ATTEMPTS = 5


class KeyManagementError(GwError):
    """``gw keys`` could not do what was asked; the message says what to do instead."""


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refuse(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, reason=reason)


def _check_name(value: str, what: str) -> str:
    if not value or value != value.strip():
        raise KeyManagementError(f"{what} {value!r} is empty or has surrounding spaces")
    if len(value) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise KeyManagementError(f"{what} {value[:40]!r} is longer than {MAX_NAME} characters or contains "
                                 "control characters")
    return value


class ApiKeyProvider(IdentityProvider):
    """API keys issued by ``gw keys create``: high-entropy, stored only as verifiers, each with a subject,
    groups and an expiry."""

    name: ClassVar[str] = "apikey"
    Options: ClassVar[type[ApiKeyOptions]] = ApiKeyOptions
    options: ApiKeyOptions

    def __init__(self, instance_name: str, options: ApiKeyOptions, services: Any) -> None:
        super().__init__(instance_name, options, services)
        self.namespace = options.namespace or instance_name
        if options.store == "storage" and services.store is None:
            raise self._config_error("store", "this provider keeps its keys in gw's storage backend, but the file "
                                              "has no [storage] table; add one ([storage] use = \"sqlite\") or "
                                              "set file = \"apikeys.json\" to keep the keys in a file")
        self._keystore: KeyStore | None = None
        self._pepper: bytes | None = None
        self._watch = trio.CancelScope()
        self._watching = False
        self._last_used_sent: dict[str, float] = {}

    def _config_error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=str(self.services.config.path), path=f"identity.{self.instance_name}.{key}")

    @property
    def keystore(self) -> KeyStore:
        """Where this provider's records are.  Built on first use, not in ``__init__``: on a reload core
        builds a new provider and then hands it the running gateway's (open) store through ``services``."""
        if self._keystore is None:
            if self.options.store == "file":
                name = self.options.file
                path = self.services.resolve_path(name) if name else Path(self.services.data_dir) / "apikeys.json"
                self._keystore = FileKeyStore(path, self.namespace)
            else:
                self._keystore = DocumentKeyStore(
                    self.services.require_store(f"identity provider {self.instance_name!r}"), self.namespace)
        return self._keystore

    def pepper(self) -> bytes | None:
        """The pepper from ``pepper_env`` (None without one), read once.  A configured but unset or short
        pepper is a :class:`ConfigError` naming the variable: gw never falls back to hashing without it."""
        var = self.options.pepper_env
        if var is None:
            return None
        if self._pepper is None:
            value = os.environ.get(var, "").encode()
            example = f"export {var}=$(openssl rand -hex 32)"
            if not value:
                raise self._config_error("pepper_env", f"environment variable {var} is not set; it holds the "
                                                       f"pepper of this provider's API keys ({example})")
            if len(value) < MIN_PEPPER_BYTES:
                raise self._config_error("pepper_env", f"the pepper in {var} is {len(value)} bytes; use at least "
                                                       f"{MIN_PEPPER_BYTES} ({example})")
            self._pepper = value
        return self._pepper

    async def open(self) -> None:
        """Read the pepper now, so a missing one stops ``gw serve`` with a precise message, and start the
        re-check of open sessions (a background task of the gateway, cancelled when it closes)."""
        self.pepper()
        interval = self.options.revocation_check.total_seconds()
        if interval > 0 and not self._watching:
            self._watching = True
            self.services.spawn(self._watch_sessions, interval,
                                name=f"gw-apikey revocation check ({self.instance_name})")

    async def close(self) -> None:
        self._watch.cancel()

    # -- authentication -----------------------------------------------------------------------------------
    @staticmethod
    def _presented(credential: Credential) -> str | None:
        """The key text of a token credential (``Bearer`` stripped, as HTTP sends it), or None."""
        if credential.kind != "token":
            return None
        secret = credential.secret
        if isinstance(secret, bytes):
            try:
                secret = secret.decode("ascii")
            except UnicodeDecodeError:
                return None
        text = secret.strip()
        if text[:7].lower() == "bearer ":
            text = text[7:].strip()
        return text

    def accepts(self, credential: Credential) -> bool:
        """Only tokens that start with this provider's prefix, so a listener with ``identity = ["okta",
        "ci-keys"]`` hands JWTs to okta and keys here."""
        text = self._presented(credential)
        return text is not None and text.startswith(self.options.prefix)

    async def authenticate(self, credential: Credential) -> Identity:
        text = self._presented(credential)
        if text is None or not text.startswith(self.options.prefix):
            raise _refuse(f"identity provider {self.instance_name!r} accepts API keys starting with "
                          f"{self.options.prefix!r}; present one", "malformed")
        try:
            presented = keys.parse(text, self.options.prefix)
        except keys.MalformedKey as e:
            raise _refuse(f"the API key is damaged: {e}; send the key exactly as `gw keys create` printed it",
                          "malformed") from None
        key = await self._record(presented.key_id)
        if key.revoked:
            assert key.revoked_at is not None
            raise _refuse(f"API key {key.id} (subject {key.subject!r}) was revoked at {utc(key.revoked_at)}; "
                          "ask the gateway operator for a new key", "revoked")
        self._verify(presented, key)
        now = time.time()
        if now >= key.expires:
            raise _refuse(f"API key {key.id} (subject {key.subject!r}) expired at {utc(key.expires)}; ask the "
                          "gateway operator for a new key (gw keys create)", "expired")
        identity = Identity(key.subject, key.groups, claims={KEY_ID_CLAIM: key.id}, provider=self.instance_name,
                            expires_at=float(key.expires))
        self.admit(identity)
        await self._note_use(key, now)
        return identity

    async def _record(self, key_id: str) -> ApiKey:
        try:
            key = await self.keystore.get(key_id)
        except DamagedRecord as e:
            log.error("identity provider %s: the record of API key %s in %s is damaged: %s", self.instance_name,
                      key_id, self.keystore.describe(), e)
            raise _refuse(f"the record of API key {key_id} cannot be read by gw; ask the gateway operator to "
                          "revoke it and issue a new key", "key_record_invalid") from None
        except (StoreError, OSError) as e:
            log.error("identity provider %s cannot read API keys from %s: %s", self.instance_name,
                      self.keystore.describe(), e)
            raise _refuse("gw cannot read its API keys right now; retry in a minute, or ask the gateway operator "
                          "if it persists", "keys_unavailable") from None
        if key is None:
            raise _refuse(f"API key {key_id} is not known to identity provider {self.instance_name!r}; it was "
                          "deleted or issued for another gateway -- ask the gateway operator for a key",
                          "unknown_key")
        return key

    def _verify(self, presented: keys.KeyText, key: ApiKey) -> None:
        try:
            pepper = self.pepper()
        except ConfigError as e:
            log.error("identity provider %s cannot verify API keys: %s", self.instance_name, e)
            raise _refuse(f"identity provider {self.instance_name!r} is not set up on this gateway; ask the "
                          "gateway operator", "provider_unavailable") from None
        scheme = keys.scheme_of(key.verifier)
        if scheme == "hmac-sha256" and pepper is None:
            log.error("identity provider %s: API key %s was made with a pepper, but pepper_env is not set",
                      self.instance_name, key.id)
            raise _refuse(f"API key {key.id} cannot be checked: identity provider {self.instance_name!r} lacks "
                          "the pepper it was made with; ask the gateway operator", "provider_unavailable")
        if scheme == "sha256" and pepper is not None:
            raise _refuse(f"API key {key.id} was made before identity provider {self.instance_name!r} had a "
                          "pepper and is no longer accepted; ask the gateway operator for a new key",
                          "outdated_key")
        if not keys.matches(presented.secret, key.grant, key.verifier, pepper):
            raise _refuse(f"API key {key.id} does not verify: its secret part is wrong, or its record was "
                          "altered; send the key exactly as issued, or ask the gateway operator for a new one",
                          "bad_secret")

    async def _note_use(self, key: ApiKey, now: float) -> None:
        """Record ``last_used``, at most once per ``last_used_interval`` per key: the data path pays a write
        only that rarely.  Best effort: losing a race with ``gw keys revoke`` (a version conflict) or a store
        error only loses the timestamp."""
        interval = self.options.last_used_interval.total_seconds()
        if interval <= 0:
            return
        if key.last_used is not None and now - key.last_used < interval:
            return
        if now - self._last_used_sent.get(key.id, -math.inf) < interval:
            return
        self._last_used_sent[key.id] = now
        try:
            await self.keystore.replace(dataclasses.replace(key, last_used=now))
        except VersionConflict:
            pass
        except (StoreError, OSError) as e:
            log.warning("identity provider %s could not record the use of API key %s: %s", self.instance_name,
                        key.id, e)

    # -- live sessions ------------------------------------------------------------------------------------
    async def _watch_sessions(self, interval: float) -> None:
        with self._watch:
            while True:
                await trio.sleep(interval)
                try:  # a reload that replaces this provider closes it, which ends this loop
                    await self.end_revoked_sessions(self.services)
                except Exception:  # a system task must never raise: that would crash the gateway
                    log.exception("identity provider %s: re-checking open sessions failed", self.instance_name)

    async def end_revoked_sessions(self, services: Any) -> int:
        """End the open sessions whose key was revoked or deleted since they began; returns how many.

        When the store cannot be read the sessions are left alone (new connections still fail closed): a
        storage hiccup must not cut every CI job at once."""
        mine = [s for s in services.sessions()
                if s.session.identity.provider == self.instance_name and not s.ended]
        wanted = {s.session.identity.claims.get(KEY_ID_CLAIM) for s in mine}
        gone: dict[str, str] = {}
        for key_id in wanted:
            if not isinstance(key_id, str):
                continue
            try:
                key = await self.keystore.get(key_id)
            except DamagedRecord:
                key = None
            except (StoreError, OSError) as e:
                log.warning("identity provider %s cannot re-check open sessions (%s); they continue",
                            self.instance_name, e)
                return 0
            if key is None:
                gone[key_id] = "deleted"
            elif key.revoked:
                gone[key_id] = "revoked"
        ended = 0
        for s in mine:
            why = gone.get(s.session.identity.claims.get(KEY_ID_CLAIM))
            if why is not None:
                log.info("session %s of %s ends: API key %s was %s", s.session.id, s.session.identity.subject,
                         s.session.identity.claims[KEY_ID_CLAIM], why)
                s.terminate("revoked")
                ended += 1
        return ended

    # -- management (gw keys) -----------------------------------------------------------------------------
    async def create_key(self, subject: str, groups: list[str] | tuple[str, ...], ttl: timedelta | None = None,
                         *, description: str = "", created_by: str = "") -> tuple[str, ApiKey]:
        """Make and store a key; returns its text (to show once) and its record."""
        _check_name(subject, "subject")
        wanted = list(dict.fromkeys(_check_name(g, "group") for g in groups))
        if len(description) > 500 or any(ord(c) < 32 and c != "\t" for c in description):
            raise KeyManagementError("the description is longer than 500 characters or has control characters")
        lifetime = ttl if ttl is not None else self.options.default_ttl
        if lifetime.total_seconds() < 1:
            raise KeyManagementError("the lifetime (--ttl) must be at least one second, e.g. 30d")
        if lifetime > self.options.max_ttl:
            raise KeyManagementError(f"--ttl is longer than max_ttl of identity provider {self.instance_name!r} "
                                     f"({self.options.max_ttl.days}d); every key must end -- plan a rotation")
        if subject in self.options.deny_subjects:
            raise KeyManagementError(f"subject {subject!r} is in deny_subjects of identity provider "
                                     f"{self.instance_name!r}; its key would be refused")
        denied = [g for g in wanted if g in self.options.deny_groups]
        if denied:
            raise KeyManagementError(f"group {denied[0]!r} is in deny_groups of identity provider "
                                     f"{self.instance_name!r}; a key with it would be refused")
        pepper = self.pepper()
        now = time.time()
        text, parts = keys.generate(self.options.prefix)
        expires = math.ceil(now + lifetime.total_seconds())
        grant = keys.Grant(self.namespace, parts.key_id, subject, wanted, expires)
        record = ApiKey(id=parts.key_id, namespace=self.namespace, subject=subject, groups=tuple(wanted),
                        created=now, expires=expires, verifier=keys.verifier(parts.secret, grant, pepper),
                        description=description, created_by=created_by)
        try:
            stored = await self.keystore.add(record)
        except VersionConflict:  # 71 random bits collided: astronomically unlikely, and never overwritten
            raise KeyManagementError("a key with the same id already exists; run the command again") from None
        return text, stored

    async def list_keys(self) -> list[ApiKey]:
        """Every key of this provider, newest first."""
        return sorted(await self.keystore.all(), key=lambda k: k.created, reverse=True)

    def key_id(self, value: str) -> str:
        """The key id in what the operator typed (id, ``<prefix><id>``, or the whole key)."""
        found = keys.key_id_from(value, self.options.prefix)
        if found is None:
            raise KeyManagementError(f"{value[:24]!r} is not a key id (12 letters and digits, as `gw keys list` "
                                     "shows) nor a key of this provider")
        return found

    async def revoke_key(self, value: str, *, revoked_by: str = "") -> tuple[ApiKey, bool]:
        """Revoke a key for good: mark it and destroy its verifier.  Returns the record and whether this call
        revoked it (False: it already was)."""
        key_id = self.key_id(value)
        for _ in range(_REVOKE_ATTEMPTS):
            try:
                key = await self.keystore.get(key_id)
            except DamagedRecord:
                raise KeyManagementError(f"the record of API key {key_id} is damaged; it is refused anyway -- "
                                         f"remove it from {self.keystore.describe()}") from None
            if key is None:
                raise KeyManagementError(f"identity provider {self.instance_name!r} has no API key {key_id}; "
                                         "see the keys with: gw keys list")
            if key.revoked:
                return key, False
            revoked = dataclasses.replace(key, revoked_at=time.time(), revoked_by=revoked_by, verifier="")
            try:
                return await self.keystore.replace(revoked), True
            except VersionConflict:
                continue  # the gateway recorded a use meanwhile: read again
        raise KeyManagementError(f"API key {key_id} keeps changing while it is being revoked; run the command "
                                 "again")
