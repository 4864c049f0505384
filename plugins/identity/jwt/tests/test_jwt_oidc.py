"""OIDC: keys discovered from a real identity provider served over HTTP on loopback by the test (TestIdP),
with keys generated per test.  Covers discovery, JWKS caching, rotation, the unknown-kid throttle, the last
good key set while the IdP is down, and the key-type rules."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio
from gw.errors import AuthenticationError
from gw_jwt import JwtProvider
from jwt_testkit import SigningKey, TestIdP, hand_made_token, token
from trio.testing import MockClock


async def refusal(provider: JwtProvider, text: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await provider.authenticate(token(text))
    return info.value


@pytest.fixture
def oidc(idp: TestIdP, make_provider: Callable[..., JwtProvider]) -> Callable[..., JwtProvider]:
    """A provider that discovers ``idp`` from its issuer alone."""

    def make(**options: Any) -> JwtProvider:
        return make_provider(issuer=idp.issuer, **options)

    return make


async def test_rs256_and_es256_tokens_from_a_discovered_jwks(idp: TestIdP,
                                                             oidc: Callable[..., JwtProvider]) -> None:
    rsa_key, ec_key = SigningKey.rsa(), SigningKey.ec()
    idp.keys = [rsa_key, ec_key]
    provider = oidc()
    await provider.open()
    assert idp.jwks_fetches == 0  # keys are fetched on first use, not when a CLI command opens the runtime
    for key in (rsa_key, ec_key):
        identity = await provider.authenticate(token(key.sign(idp.claims(groups=["agents", "dba"]))))
        assert identity.subject == "agent-7"
        assert identity.groups == ("agents", "dba")
        assert identity.claims["iss"] == idp.issuer
    assert (idp.discovery_fetches, idp.jwks_fetches) == (1, 1)


async def test_explicit_jwks_url_skips_discovery(idp: TestIdP,
                                                 make_provider: Callable[..., JwtProvider]) -> None:
    key = SigningKey.ed25519()
    idp.keys = [key]
    provider = make_provider(issuer="https://issuer.example.com", jwks_url=idp.jwks_url, algorithms=["EdDSA"])
    assert (await provider.authenticate(token(key.sign(idp.claims(iss="https://issuer.example.com"))))).subject
    assert (idp.discovery_fetches, idp.jwks_fetches) == (0, 1)


async def test_key_rotation_without_restart(idp: TestIdP, oidc: Callable[..., JwtProvider],
                                            mock_clock: MockClock) -> None:
    old, new = SigningKey.rsa(), SigningKey.rsa()
    idp.keys = [old]
    provider = oidc()
    old_token = old.sign(idp.claims())
    assert (await provider.authenticate(token(old_token))).subject == "agent-7"
    idp.keys = [new]  # the IdP publishes a new kid and removes the old one
    mock_clock.jump(31)  # past the default 30s refresh throttle, well within the 10m cache
    assert (await provider.authenticate(token(new.sign(idp.claims())))).subject == "agent-7"
    assert idp.jwks_fetches == 2
    err = await refusal(provider, old_token)
    assert err.reason == "unknown_key"
    assert "rotated" in str(err)


async def test_cache_lifespan_drops_removed_keys(idp: TestIdP, oidc: Callable[..., JwtProvider],
                                                 mock_clock: MockClock) -> None:
    old, new = SigningKey.ec(), SigningKey.ec()
    idp.keys = [old, new]
    provider = oidc()
    old_token = old.sign(idp.claims())
    await provider.authenticate(token(old_token))
    mock_clock.jump(9 * 60)
    await provider.authenticate(token(old_token))
    assert idp.jwks_fetches == 1  # cached for the default 10m
    idp.keys = [new]
    mock_clock.jump(61)
    assert (await refusal(provider, old_token)).reason == "unknown_key"
    assert idp.jwks_fetches == 2


async def test_unknown_kid_flood_costs_at_most_one_fetch_per_window(idp: TestIdP,
                                                                    oidc: Callable[..., JwtProvider],
                                                                    mock_clock: MockClock) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    idp.delay = 0.05  # a realistic IdP round trip, so the flood arrives while the fetch is in flight
    provider = oidc()  # default throttle: one refresh per 30s
    await provider.authenticate(token(key.sign(idp.claims())))
    assert idp.jwks_fetches == 1
    forger = SigningKey.rsa()
    forged = [forger.sign(idp.claims(), kid=uuid.uuid4().hex) for _ in range(40)]
    results: list[str] = []

    async def attempt(text: str) -> None:
        results.append((await refusal(provider, text)).reason)

    async def flood() -> None:
        async with trio.open_nursery() as nursery:
            for text in forged:
                nursery.start_soon(attempt, text)

    await flood()  # within the window of the first fetch: no fetch at all
    assert idp.jwks_fetches == 1
    mock_clock.jump(31)
    await flood()  # window elapsed: the concurrent flood shares exactly one fetch
    assert idp.jwks_fetches == 2
    mock_clock.jump(29)
    await flood()
    assert idp.jwks_fetches == 2
    assert set(results) == {"unknown_key"} and len(results) == 120
    # the genuine key still works throughout
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"


async def test_concurrent_first_requests_share_one_discovery_and_fetch(
        idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.ec()
    idp.keys = [key]
    idp.delay = 0.05
    provider = oidc()
    subjects: list[str] = []

    async def login(i: int) -> None:
        subjects.append((await provider.authenticate(token(key.sign(idp.claims(sub=f"agent-{i}"))))).subject)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(login, i)
    assert len(subjects) == 20
    assert (idp.discovery_fetches, idp.jwks_fetches) == (1, 1)


async def test_fetch_does_not_block_the_trio_loop(idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.ec()
    idp.keys = [key]
    idp.delay = 0.15
    provider = oidc()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await provider.authenticate(token(key.sign(idp.claims())))
        nursery.cancel_scope.cancel()
    assert ticks >= 10  # two delayed requests (discovery + JWKS) while the loop kept running


async def test_idp_unreachable_after_a_good_fetch_keeps_the_last_good_keys(
        idp: TestIdP, oidc: Callable[..., JwtProvider], mock_clock: MockClock) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    provider = oidc()
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject
    idp.status = 503
    mock_clock.jump(11 * 60)  # the cache expired: the next request tries to refresh
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"
    assert idp.jwks_fetches == 2
    assert provider.remote is not None and "503" in (provider.remote.describe()["last_error"] or "")
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"
    assert idp.jwks_fetches == 2  # failed refreshes are throttled as well
    idp.stop()  # now nobody listens at all
    mock_clock.jump(31)
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"
    assert "unreachable" in (provider.remote.describe()["last_error"] or "")


async def test_last_good_keys_expire_after_max_stale(idp: TestIdP, oidc: Callable[..., JwtProvider],
                                                     mock_clock: MockClock) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    provider = oidc(jwks_max_stale="1h")
    await provider.authenticate(token(key.sign(idp.claims())))
    idp.status = 500
    mock_clock.jump(50 * 60)
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"
    mock_clock.jump(25 * 60)  # 75m since the last good fetch: past 10m cache + 1h stale
    err = await refusal(provider, key.sign(idp.claims()))
    assert err.reason == "keys_unavailable"
    assert "no refresh succeeded" in str(err) and "500" in str(err)


async def test_unreachable_idp_without_keys_refuses_and_throttles(idp: TestIdP,
                                                                  oidc: Callable[..., JwtProvider]) -> None:
    idp.status = 503
    provider = oidc()
    key = SigningKey.rsa()
    for _ in range(5):
        err = await refusal(provider, key.sign(idp.claims()))
        assert err.reason == "keys_unavailable"
        assert "retry in a minute" in str(err) and "503" in str(err)
    assert idp.discovery_fetches == 1  # failures are throttled too


async def test_kid_of_another_key_type_in_the_jwks(idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    ec_key = SigningKey.ec(kid="shared")
    attacker = SigningKey.rsa(kid="shared")
    idp.keys = [ec_key]
    provider = oidc()
    err = await refusal(provider, attacker.sign(idp.claims()))
    assert err.reason == "key_type_mismatch"
    assert "cannot verify an RS256 token" in str(err)


async def test_jwk_alg_binds_the_key(idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.rsa(kid="r1")
    idp.extra_jwks = [key.jwk(alg="RS256")]
    provider = oidc(algorithms=["RS256", "PS256"])
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject
    err = await refusal(provider, key.sign(idp.claims(), alg="PS256"))
    assert err.reason == "key_type_mismatch" and "for RS256" in str(err)


async def test_hs256_with_the_published_rsa_key_as_secret(idp: TestIdP,
                                                          oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.rsa(kid="r1")
    idp.keys = [key]
    # An 'oct' JWK published by mistake must never become a verification key either.
    idp.extra_jwks = [{"kty": "oct", "kid": "r1", "k": "c2VjcmV0"}]
    provider = oidc()
    for secret in (key.public_pem().encode(), b"secret"):
        forged = hand_made_token({"alg": "HS256", "kid": "r1"}, idp.claims(), hmac_key=secret)
        assert (await refusal(provider, forged)).reason == "unsupported_algorithm"


async def test_alg_none_and_tampering_against_the_jwks(idp: TestIdP,
                                                       oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    provider = oidc()
    err = await refusal(provider, hand_made_token({"alg": "none", "kid": key.kid}, idp.claims()))
    assert err.reason == "unsupported_algorithm"
    head, _, sig = key.sign(idp.claims()).split(".")
    body = key.sign(idp.claims(sub="admin")).split(".")[1]
    assert (await refusal(provider, f"{head}.{body}.{sig}")).reason == "bad_signature"


@pytest.mark.parametrize("case", ["expired", "not_yet_valid", "wrong_issuer", "wrong_audience",
                                  "missing_sub"])
async def test_claim_refusals_with_a_discovered_key(idp: TestIdP, oidc: Callable[..., JwtProvider],
                                                   case: str) -> None:
    key = SigningKey.ec()
    idp.keys = [key]
    provider = oidc()
    now = int(time.time())
    claims = {
        "expired": idp.claims(iat=now - 600, exp=now - 31 - 5),
        "not_yet_valid": idp.claims(nbf=now + 600),
        "wrong_issuer": idp.claims(iss="https://evil.example.com"),
        "wrong_audience": idp.claims(audience="someone-else"),
        "missing_sub": idp.claims(drop=("sub",)),
    }[case]
    err = await refusal(provider, key.sign(claims))
    assert err.reason == ("missing_claim" if case == "missing_sub" else case)


async def test_discovery_document_for_another_issuer_is_not_trusted(
        idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    idp.discovery_overrides = {"issuer": "https://evil.example.com"}
    err = await refusal(oidc(), key.sign(idp.claims()))
    assert err.reason == "keys_unavailable"
    assert "describes issuer 'https://evil.example.com'" in str(err)
    assert idp.jwks_fetches == 0


async def test_discovered_jwks_uri_must_be_https(idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    idp.discovery_overrides = {"jwks_uri": "http://keys.example.com/jwks"}
    err = await refusal(oidc(), SigningKey.rsa().sign(idp.claims()))
    assert err.reason == "keys_unavailable" and "plain http" in str(err)


async def test_redirect_to_plain_http_elsewhere_is_not_followed(
        idp: TestIdP, make_provider: Callable[..., JwtProvider]) -> None:
    idp.redirects = {"/moved": "http://192.0.2.1/jwks"}  # TEST-NET-1: never contacted
    provider = make_provider(issuer=idp.issuer, jwks_url=idp.base + "/moved")
    err = await refusal(provider, SigningKey.rsa().sign(idp.claims()))
    assert err.reason == "keys_unavailable" and "insecure location" in str(err)


async def test_redirect_within_loopback_is_followed(idp: TestIdP,
                                                    make_provider: Callable[..., JwtProvider]) -> None:
    key = SigningKey.ec()
    idp.keys = [key]
    idp.redirects = {"/moved": idp.jwks_url}
    provider = make_provider(issuer=idp.issuer, jwks_url=idp.base + "/moved")
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"


async def test_jwks_without_usable_keys_never_replaces_good_ones(
        idp: TestIdP, oidc: Callable[..., JwtProvider], mock_clock: MockClock) -> None:
    key = SigningKey.rsa()
    idp.keys = [key]
    provider = oidc()
    await provider.authenticate(token(key.sign(idp.claims())))
    idp.keys = []
    idp.extra_jwks = [{"kty": "RSA", "kid": "broken", "n": "AQAB"}, {"kty": "oct", "k": "AA"}]
    mock_clock.jump(11 * 60)
    assert (await provider.authenticate(token(key.sign(idp.claims())))).subject == "agent-7"
    assert provider.remote is not None
    assert "no usable signing key" in (provider.remote.describe()["last_error"] or "")


async def test_token_without_kid_is_tried_against_keys_of_its_type(
        idp: TestIdP, oidc: Callable[..., JwtProvider]) -> None:
    one, two = SigningKey.rsa(), SigningKey.rsa()
    idp.keys = [one, two, SigningKey.ec()]
    provider = oidc()
    assert (await provider.authenticate(token(two.sign(idp.claims(), kid=False)))).subject == "agent-7"
