"""``check_ready`` (what ``/readyz`` asks): a provider is ready when it has keys to verify tokens with -- from a
real JWKS endpoint served by the test."""

from __future__ import annotations

from collections.abc import Callable

import trio
from gw_jwt.provider import JwtProvider
from jwt_testkit import SigningKey, TestIdP


async def test_ready_follows_the_jwks(idp: TestIdP, make_provider: Callable[..., JwtProvider]) -> None:
    provider = make_provider(issuer=idp.issuer, jwks_url=idp.jwks_url, jwks_refresh_min_interval="0.1s")
    await provider.open()
    idp.status = 503
    reason = await provider.check_ready()
    assert reason is not None and "cannot get the signing keys" in reason
    idp.status = 200
    idp.keys = [SigningKey.rsa()]
    await trio.sleep(0.2)  # fetches are throttled by jwks_refresh_min_interval
    assert await provider.check_ready() is None
    idp.status = 503  # the last good keys stay usable (jwks_max_stale): still ready
    assert await provider.check_ready() is None


async def test_secret_provider_is_ready(make_provider: Callable[..., JwtProvider], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GW_READY_SECRET", "s" * 32)
    provider = make_provider(issuer="gw-dev", secret_env="GW_READY_SECRET")
    await provider.open()
    assert await provider.check_ready() is None  # the secret was read at open: it stays usable
