"""Who is using the console: server-side sessions, CSRF tokens, login rate limits and the OIDC login.

A session lives only in the gateway's memory (the cookie holds a random id, nothing else), ends with the
token or IdP session that opened it, at ``session_max``, after ``session_idle`` without a request, or at logout.
Every form carries the session's CSRF token; the login form, used before there is a session, carries one bound
to a pre-login cookie.  A restart of the gateway logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio
from gw.model import Identity

COOKIE = "gw_console"
PRE_COOKIE = "gw_console_login"


@dataclass
class ConsoleSession:
    id: str
    identity: Identity
    csrf: str
    created: float
    expires: float
    last_seen: float
    client: str
    #: How the person logged in: "token" or "oidc".
    method: str
    #: Messages for the next page shown (what the last action did).
    flash: list[tuple[str, str]] = field(default_factory=list)

    def alive(self, now: float, idle: float) -> bool:
        return now < self.expires and now - self.last_seen < idle


@dataclass
class SessionTable:
    idle: float
    longest: float
    sessions: dict[str, ConsoleSession] = field(default_factory=dict)

    def open(self, identity: Identity, *, client: str, method: str) -> ConsoleSession:
        now = time.time()
        expires = now + self.longest
        if identity.expires_at is not None:
            expires = min(expires, identity.expires_at)
        self._prune(now)
        s = ConsoleSession(secrets.token_urlsafe(32), identity, secrets.token_urlsafe(24), now, expires, now,
                           client, method)
        self.sessions[s.id] = s
        return s

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid:
            return None
        s = self.sessions.get(sid)
        if s is None:
            return None
        now = time.time()
        if not s.alive(now, self.idle):
            del self.sessions[sid]
            return None
        s.last_seen = now
        return s

    def close(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)

    def _prune(self, now: float) -> None:
        for sid in [k for k, s in self.sessions.items() if not s.alive(now, self.idle)]:
            del self.sessions[sid]


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class LoginCsrf:
    """CSRF tokens for the login form: an HMAC of a random pre-login cookie under a per-process key."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def new_cookie(self) -> str:
        return secrets.token_urlsafe(24)

    def token(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie) and same(self.token(cookie or ""), token or "")


def _host(client: str) -> str:
    """``"127.0.0.1:52211"`` -> ``"127.0.0.1"``: a client is limited by address, whatever port it comes from."""
    host, sep, port = client.rpartition(":")
    return host if sep and port.isdigit() else client


class LoginLimiter:
    """At most ``attempts`` failed logins per client address in ``window`` seconds."""

    def __init__(self, attempts: int = 10, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        seen = self._failures.get(_host(client))
        if not seen:
            return 0.0
        while seen and now - seen[0] > self.window:
            seen.popleft()
        if len(seen) < self.attempts:
            return 0.0
        return self.window - (now - seen[0])

    def failed(self, client: str) -> None:
        self._failures.setdefault(_host(client), deque()).append(time.monotonic())
        if len(self._failures) > 10_000:  # a flood of addresses must not grow this without bound
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        self._failures.pop(_host(client), None)


# ---------------------------------------------------------------------------------------------------------------
# OpenID Connect: authorization code flow with PKCE (RFC 7636)
# ---------------------------------------------------------------------------------------------------------------


class OidcError(Exception):
    """The IdP refused or answered something unusable; the message is for the person logging in."""


@dataclass
class _Pending:
    verifier: str
    nonce: str
    started: float
    next_path: str


def _fetch_json(request: urllib.request.Request | str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        value = json.loads(reply.read(1024 * 1024))
    if not isinstance(value, dict):
        raise OidcError("the identity provider answered something other than a JSON object")
    return value


class OidcClient:
    """One relying party: this console, registered at the IdP as ``client_id`` with ``redirect_url``."""

    #: How long a person may take at the IdP's login page.
    LOGIN_WINDOW = 600.0

    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None, redirect_url: str,
                 scopes: list[str], timeout: float = 10.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_url = redirect_url
        self.scopes = scopes
        self.timeout = timeout
        self._config: dict[str, Any] | None = None
        self._pending: dict[str, _Pending] = {}

    async def _discover(self) -> dict[str, Any]:
        if self._config is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                doc = await trio.to_thread.run_sync(_fetch_json, url, self.timeout)
            except (OSError, ValueError) as e:
                raise OidcError(f"cannot read the identity provider's configuration at {url}: {e}") from None
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise OidcError(f"{url} describes issuer {doc.get('issuer')!r}, not {self.issuer!r}")
            for key in ("authorization_endpoint", "token_endpoint"):
                if not isinstance(doc.get(key), str):
                    raise OidcError(f"{url} has no {key}")
            self._config = doc
        return self._config

    async def start(self, next_path: str = "/") -> tuple[str, str]:
        """Begin a login: returns (the IdP URL to send the browser to, the state to keep in a cookie)."""
        doc = await self._discover()
        now = time.time()
        for k in [k for k, p in self._pending.items() if now - p.started > self.LOGIN_WINDOW]:
            del self._pending[k]
        if len(self._pending) > 10_000:
            self._pending.pop(next(iter(self._pending)))
        state, verifier, nonce = (secrets.token_urlsafe(24), secrets.token_urlsafe(48),
                                  secrets.token_urlsafe(16))
        self._pending[state] = _Pending(verifier, nonce, now, next_path)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_url,
            "scope": " ".join(self.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
        endpoint = doc["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", state

    async def finish(self, *, code: str, state: str, cookie_state: str | None) -> tuple[str, str]:
        """Exchange the code for tokens; returns (the ID token, the path to go to).  The state must match the
        one this browser started with (in its cookie) and be used once."""
        if not cookie_state or not same(state, cookie_state):
            raise OidcError("this login did not start in this browser (state mismatch); start again")
        pending = self._pending.pop(state, None)
        if pending is None or time.time() - pending.started > self.LOGIN_WINDOW:
            raise OidcError("this login took too long or was already used; start again")
        doc = await self._discover()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_url,
                "client_id": self.client_id, "code_verifier": pending.verifier}
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        if self.client_secret:
            basic = f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self.client_secret)}"
            headers["authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        request = urllib.request.Request(doc["token_endpoint"], data=urllib.parse.urlencode(form).encode(),
                                         headers=headers, method="POST")
        try:
            tokens = await trio.to_thread.run_sync(_fetch_json, request, self.timeout)
        except (OSError, ValueError) as e:
            raise OidcError(f"the identity provider refused the login code: {e}") from None
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the identity provider returned no ID token")
        if _claim(id_token, "nonce") != pending.nonce:
            raise OidcError("the ID token does not carry this login's nonce; start again")
        return id_token, pending.next_path


def _claim(token: str, name: str) -> Any:
    """A claim of a JWT's payload, unverified (the identity provider verifies the token itself)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return data.get(name) if isinstance(data, dict) else None
