"""An IdP's published keys: OIDC discovery, JWKS fetch, cache, throttled refresh, last-good fallback.

Fetches run in a worker thread (urllib) so the trio loop never blocks, and are shielded from the cancellation
of the request that triggered them, because every waiting request shares their result.  The rules:

* the key set is trusted for ``jwks_cache``; the first request after that fetches again;
* a token whose ``kid`` is unknown triggers one refresh, but never more than one per
  ``jwks_refresh_min_interval``, and concurrent requests wait for the fetch already in flight instead of
  starting their own -- a flood of forged kids costs the IdP at most one request per window;
* when a fetch fails, the last good key set stays in use for up to ``jwks_max_stale`` (the IdP may be
  briefly unreachable), and failed attempts are throttled the same way.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import trio

from .keys import VerificationKey, key_from_jwk
from .options import check_key_url

log = logging.getLogger("gw.jwt")

#: Discovery documents and key sets are small; a larger answer is a misconfiguration or an attack.
MAX_DOCUMENT_BYTES = 1 << 20


class KeyFetchError(Exception):
    """Discovery or the JWKS could not be fetched or used; ``str()`` says what and where."""


class _NoInsecureRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs that pass the same https-or-loopback rule as the configured one."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        try:
            check_key_url(newurl, "redirect target")
        except ValueError as e:
            raise KeyFetchError(f"{req.full_url} redirects to an insecure location: {e}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_NoInsecureRedirects)


def fetch_json(url: str, timeout: float) -> dict[str, Any]:
    """GET ``url`` and return its JSON object (blocking: run it in a worker thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "gw-jwt"})
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise KeyFetchError(f"{url} answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise KeyFetchError(f"{url} is unreachable: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise KeyFetchError(f"{url} failed: {e}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeyFetchError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise KeyFetchError(f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise KeyFetchError(f"{url} did not answer a JSON object")
    return document


def parse_key_set(document: dict[str, Any], url: str) -> list[VerificationKey]:
    """The usable keys of a JWKS document; unusable ones are skipped with a log line (IdPs publish
    encryption keys too).  No usable key at all is an error, so a broken answer never replaces good keys."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyFetchError(f"{url} is not a JWKS (no \"keys\" list)")
    keys: list[VerificationKey] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        try:
            keys.append(key_from_jwk(entry))
        except ValueError as e:
            log.info("JWKS %s: key %s skipped: %s", url, entry.get("kid", f"#{i}"), e)
    if not keys:
        raise KeyFetchError(f"{url} publishes no usable signing key")
    return keys


class RemoteKeySet:
    """The key set of one IdP, from ``jwks_url`` or discovered from ``issuer``."""

    def __init__(self, *, issuer: str, jwks_url: str | None, lifespan: float, min_interval: float,
                 max_stale: float, timeout: float) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._discover = jwks_url is None
        self.lifespan = lifespan
        self.min_interval = min_interval
        self.max_stale = max_stale
        self.timeout = timeout
        self._keys: list[VerificationKey] | None = None
        self._fetched_at = 0.0  # trio clock of the last good fetch
        self._fetched_wall = 0.0  # wall clock of the same, for messages
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._generation = 0
        self._lock = trio.Lock()
        #: Number of fetch attempts, for ``describe`` and tests.
        self.attempts = 0

    @property
    def where(self) -> str:
        return self.jwks_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    async def keys(self, kid: str | None) -> Sequence[VerificationKey]:
        """The keys a token with ``kid`` may be checked against (all keys when it has none).

        Returns an empty sequence when the kid is unknown even after a (throttled) refresh; raises
        :class:`KeyFetchError` when there is no usable key set at all.
        """
        now = trio.current_time()
        if self._keys is None or now - self._fetched_at >= self.lifespan:
            await self.refresh(min_gap=min(self.min_interval, self.lifespan))
        keys = self._usable_keys()
        found = [k for k in keys if k.kid == kid] if kid is not None else keys
        if kid is not None and not found:
            await self.refresh()
            found = [k for k in self._usable_keys() if k.kid == kid]
        return found

    def _usable_keys(self) -> list[VerificationKey]:
        if self._keys is None:
            raise KeyFetchError(self._last_error or f"the keys at {self.where} were never fetched")
        age = trio.current_time() - self._fetched_at
        if age > self.lifespan + self.max_stale:
            raise KeyFetchError(f"the last good keys from {self.where} are {age:.0f}s old and no refresh "
                                f"succeeded since ({self._last_error})")
        return self._keys

    async def refresh(self, min_gap: float | None = None) -> None:
        """Fetch the key set now unless a fetch finished while we waited, or one was attempted less than
        ``min_gap`` (default: the throttle window) ago.  Failures keep the previous keys and are logged;
        they never raise here."""
        gap = self.min_interval if min_gap is None else min_gap
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return  # a concurrent request fetched while this one waited: share its result
            now = trio.current_time()
            if self._last_attempt is not None and now - self._last_attempt < gap:
                return
            self._last_attempt = now
            self.attempts += 1
            try:
                # Shielded: the fetch serves every waiting request, not only the one that started it, and
                # is bounded by its own deadline.
                with trio.CancelScope(shield=True):
                    with trio.fail_after(self.timeout * 2 + 1):
                        keys = await self._fetch()
            except (KeyFetchError, trio.TooSlowError) as e:
                self._last_error = str(e) if isinstance(e, KeyFetchError) else f"{self.where} timed out"
                state = "keeping the last good keys" if self._keys is not None else "no keys yet"
                log.warning("JWKS refresh for %s failed (%s): %s", self.issuer, state, self._last_error)
            else:
                self._keys = keys
                self._fetched_at = trio.current_time()
                self._fetched_wall = time.time()
                self._last_error = None
                log.info("JWKS for %s: %d key(s) from %s (kids: %s)", self.issuer, len(keys), self.jwks_url,
                         ", ".join(k.kid or "-" for k in keys))
            finally:
                self._generation += 1

    async def _fetch(self) -> list[VerificationKey]:
        if self.jwks_url is None:
            self.jwks_url = await self._discover_jwks_url()
        url = self.jwks_url
        try:
            document = await trio.to_thread.run_sync(fetch_json, url, self.timeout, abandon_on_cancel=True)
            return parse_key_set(document, url)
        except KeyFetchError:
            if self._discover:
                self.jwks_url = None  # the IdP may have moved its keys: discover again next time
            raise

    async def _discover_jwks_url(self) -> str:
        """OpenID Connect Discovery 1.0 §4: the configuration lives under the issuer, and its ``issuer``
        must equal the configured one exactly (§4.3), else someone else's keys could be picked up."""
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        document = await trio.to_thread.run_sync(fetch_json, url, self.timeout, abandon_on_cancel=True)
        if document.get("issuer") != self.issuer:
            raise KeyFetchError(f"{url} describes issuer {document.get('issuer')!r}, not {self.issuer!r}; "
                                "set issuer to exactly the IdP's issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise KeyFetchError(f"{url} has no jwks_uri")
        try:
            return check_key_url(jwks_uri, f"jwks_uri of {url}")
        except ValueError as e:
            raise KeyFetchError(str(e)) from None

    def describe(self) -> dict[str, Any]:
        return {"jwks_url": self.jwks_url, "discovered": self._discover,
                "keys": [k.kid for k in self._keys or []], "fetched_at": self._fetched_wall or None,
                "last_error": self._last_error, "attempts": self.attempts}
