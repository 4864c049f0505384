"""Single sign-on into the console: the authorization code flow with PKCE against an OpenID provider.

No real IdP runs here, so a small OpenID provider written for this test stands in for one: discovery, a JWKS
with an RSA key, an authorization endpoint that logs the browser in at once and redirects back with a code, and
a token endpoint that checks the code, the client's secret and the PKCE verifier (S256) before signing an ID
token.  gw's jwt provider verifies that token through discovery and the JWKS exactly as it would a real IdP's."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gw.testing import GatewayProcess, free_port

CLIENT_ID = "gw-console"
CLIENT_SECRET = "s3cret-" + secrets.token_hex(4)


class Provider:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict[str, Any]] = {}
        self.user = {"sub": "dana", "groups": ["dba"]}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.token_requests: list[dict[str, str]] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, value: object, status: int = 200) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._json({"issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize",
                                "token_endpoint": f"{idp.url}/token", "jwks_uri": f"{idp.url}/jwks"})
                elif parts.path == "/jwks":
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(idp.key.public_key()))
                    self._json({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
                elif parts.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
                    assert q["code_challenge_method"] == "S256"
                    code = secrets.token_urlsafe(12)
                    idp.codes[code] = q
                    self.send_response(302)
                    self.send_header("location", f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")
                    self.send_header("content-length", "0")
                    self.end_headers()
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                idp.token_requests.append(form)
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("authorization") != f"Basic {basic}":
                    return self._json({"error": "invalid_client"}, 401)
                grant = idp.codes.pop(form.get("code", ""), None)
                if grant is None:
                    return self._json({"error": "invalid_grant"}, 400)
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
                if challenge != grant["code_challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
                    return self._json({"error": "invalid_grant", "error_description": "PKCE"}, 400)
                now = int(time.time())
                claims = {"iss": idp.url, "aud": CLIENT_ID, "iat": now, "exp": now + 600,
                          "nonce": grant["nonce"], **idp.user}
                token = jwt.encode(claims, idp.key, algorithm="RS256", headers={"kid": "k1"})
                return self._json({"id_token": token, "token_type": "Bearer", "access_token": "opaque"})

        return Handler

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


@pytest.fixture
def sso(tmp_path: Path) -> Iterator[tuple[Provider, GatewayProcess, str]]:
    with Provider() as idp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = tmp_path / "pipeline.toml"
        config.write_text(f"""\
[gateway]
data_dir = ".gw"

[identity.corp]
use = "jwt"
issuer = "{idp.url}"
audience = "{CLIENT_ID}"
algorithms = ["RS256"]

[[listeners]]
name = "console"
protocol = "console"
listen = "127.0.0.1:{port}"
identity = "corp"
allow_groups = ["dba", "auditors"]
oidc = {{ client_id = "{CLIENT_ID}", client_secret_env = "GW_TEST_CONSOLE_SECRET", redirect_url = "{base}/login/callback" }}
""")
        process = GatewayProcess(config, env={"GW_TEST_CONSOLE_SECRET": CLIENT_SECRET}).start()
        try:
            yield idp, process, base
        finally:
            process.stop()


def follow(client: httpx.Client, start: str, hops: int = 5) -> httpx.Response:
    """Follow redirects across the console and the IdP, as a browser does (cookies per host)."""
    reply = client.get(start)
    for _ in range(hops):
        if reply.status_code not in (302, 303):
            return reply
        location = reply.headers["location"]
        if location.startswith("/"):
            return reply
        reply = client.get(location)
    return reply


def test_single_sign_on_with_pkce_opens_a_console_session(sso: tuple[Provider, GatewayProcess, str]) -> None:
    idp, _, base = sso
    with httpx.Client(base_url=base, follow_redirects=False, timeout=20) as browser:
        login = browser.get("/login")
        assert 'href="/login/oidc"' in login.text
        start = browser.get("/login/oidc")
        assert start.status_code == 302 and start.headers["location"].startswith(f"{idp.url}/authorize?")
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [f"{base}/login/callback"]
        done = follow(browser, start.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == "/approvals", done.text
        me = browser.get("/api/me").json()
        assert me["subject"] == "dana" and me["groups"] == ["dba"]
    # The console sent the verifier whose S256 is the challenge, and authenticated as the confidential client.
    assert idp.token_requests and idp.token_requests[-1]["code_verifier"]


def test_a_callback_that_did_not_start_in_this_browser_is_refused(sso: tuple[Provider, GatewayProcess, str]
                                                                   ) -> None:
    _, _, base = sso
    with httpx.Client(base_url=base, follow_redirects=False, timeout=20) as victim, \
            httpx.Client(base_url=base, follow_redirects=False, timeout=20) as attacker:
        # The attacker starts a login and hands its callback URL (its code and state) to the victim.
        start = attacker.get("/login/oidc")
        authorize = httpx.get(start.headers["location"], follow_redirects=False)
        callback = authorize.headers["location"]
        refused = victim.get(callback)
        assert refused.status_code == 401 and "did not start in this browser" in refused.text
        assert victim.get("/api/me").status_code == 401
        # Replaying a code that was already exchanged fails too.
        ok = attacker.get(callback)
        assert ok.status_code == 303
        again = attacker.get(callback)
        assert again.status_code == 401


def test_an_identity_outside_allow_groups_cannot_log_in_by_sso(sso: tuple[Provider, GatewayProcess, str]) -> None:
    idp, _, base = sso
    idp.user = {"sub": "eve", "groups": ["agents"]}
    with httpx.Client(base_url=base, follow_redirects=False, timeout=20) as browser:
        start = browser.get("/login/oidc")
        done = follow(browser, start.headers["location"])
        assert done.status_code == 403 and "not in a group allowed" in done.text
        assert browser.get("/api/me").status_code == 401
