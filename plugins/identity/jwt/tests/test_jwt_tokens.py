"""Token verification with local keys (HS256 dev secret, static PEM): every refusal has its reason code and a
message an agent can act on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw_jwt import JwtProvider
from jwt_testkit import SECRET, SigningKey, b64, claims_for, hand_made_token, token

ISSUER = "gw-dev"


@pytest.fixture
def dev(make_provider: Callable[..., JwtProvider], monkeypatch: pytest.MonkeyPatch) -> JwtProvider:
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    return make_provider(issuer=ISSUER, secret_env="GW_TEST_SECRET", deny_subjects=["mallory"],
                         deny_groups=["suspended"])


def signed(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


async def refusal(provider: JwtProvider, text: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await provider.authenticate(token(text))
    return info.value


async def test_issued_token_round_trips_to_an_identity(dev: JwtProvider) -> None:
    text = dev.issue_token("agent-7", ["agents", "readers"], 600, {"tier": 2})
    identity = await dev.authenticate(token(text))
    assert identity.subject == "agent-7"
    assert identity.groups == ("agents", "readers")
    assert identity.provider == "idp"
    assert identity.claims["tier"] == 2
    assert identity.expires_at == pytest.approx(time.time() + 600, abs=5)


async def test_bearer_prefix_and_bytes_are_accepted(dev: JwtProvider) -> None:
    text = dev.issue_token("agent-7", [], 60)
    assert (await dev.authenticate(token(f"Bearer {text}\n"))).subject == "agent-7"
    assert (await dev.authenticate(Credential("token", text.encode()))).subject == "agent-7"


async def test_expired_beyond_leeway_is_refused_within_leeway_accepted(dev: JwtProvider) -> None:
    now = int(time.time())
    err = await refusal(dev, signed(claims_for(ISSUER, iat=now - 400, exp=now - 60)))
    assert err.reason == "expired"
    assert "token expired at" in str(err) and "request a new token" in str(err)
    identity = await dev.authenticate(token(signed(claims_for(ISSUER, iat=now - 400, exp=now - 10))))
    assert identity.subject == "agent-7"


async def test_not_yet_valid(dev: JwtProvider) -> None:
    now = int(time.time())
    err = await refusal(dev, signed(claims_for(ISSUER, nbf=now + 120)))
    assert err.reason == "not_yet_valid" and "not valid before" in str(err)
    err = await refusal(dev, signed(claims_for(ISSUER, iat=now + 120)))
    assert err.reason == "not_yet_valid" and "issued in the future" in str(err)


async def test_wrong_issuer(dev: JwtProvider) -> None:
    err = await refusal(dev, signed(claims_for("someone-else")))
    assert err.reason == "wrong_issuer"
    assert str(err).startswith("token issuer 'someone-else' is not 'gw-dev'")


@pytest.mark.parametrize("audience", ["other", ["a", "b"]])
async def test_wrong_audience(dev: JwtProvider, audience: Any) -> None:
    err = await refusal(dev, signed(claims_for(ISSUER, audience=audience)))
    assert err.reason == "wrong_audience"
    assert "is not 'gw'" in str(err)


async def test_audience_list_containing_ours_is_accepted(dev: JwtProvider) -> None:
    assert (await dev.authenticate(token(signed(claims_for(ISSUER, audience=["x", "gw"]))))).subject


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
async def test_missing_required_claim(dev: JwtProvider, claim: str) -> None:
    err = await refusal(dev, signed(claims_for(ISSUER, drop=(claim,))))
    assert err.reason == "missing_claim"
    assert f"no '{claim}' claim" in str(err)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_alg_none_is_refused(dev: JwtProvider, alg: str) -> None:
    err = await refusal(dev, hand_made_token({"alg": alg, "typ": "JWT"}, claims_for(ISSUER)))
    assert err.reason == "unsupported_algorithm"
    assert "(accepted: HS256)" in str(err)


async def test_tampered_payload_is_refused(dev: JwtProvider) -> None:
    header, _, signature = dev.issue_token("agent-7", ["agents"], 60).split(".")
    forged = b64(json.dumps(claims_for(ISSUER, groups=["dba"])).encode())
    err = await refusal(dev, f"{header}.{forged}.{signature}")
    assert err.reason == "bad_signature"
    assert "altered" in str(err)


async def test_token_signed_with_another_secret_is_refused(dev: JwtProvider) -> None:
    err = await refusal(dev, signed(claims_for(ISSUER), secret="another-secret-of-sufficient-length!!"))
    assert err.reason == "bad_signature"


async def test_denied_subject_and_group(dev: JwtProvider) -> None:
    with pytest.raises(AccessDenied) as info:
        await dev.authenticate(token(dev.issue_token("mallory", ["agents"], 60)))
    assert info.value.reason == "denied_subject" and "mallory" in str(info.value)
    with pytest.raises(AccessDenied) as info:
        await dev.authenticate(token(dev.issue_token("agent-7", ["agents", "suspended"], 60)))
    assert info.value.reason == "denied_group" and "suspended" in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("", "not a JWT"),
    ("hunter2", "not a JWT"),
    ("a.b.c", "header cannot be read"),
    ("a.b.c.d.e", "not a JWT"),
    ("x" * 40_000, "more than"),
])
async def test_malformed_credentials(dev: JwtProvider, text: str, words: str) -> None:
    err = await refusal(dev, text)
    assert err.reason == "malformed"
    assert words in str(err)


async def test_non_ascii_bytes_and_odd_headers_are_malformed(dev: JwtProvider) -> None:
    with pytest.raises(AuthenticationError) as info:
        await dev.authenticate(Credential("token", b"\xff.\xfe.\xfd"))
    assert info.value.reason == "malformed"
    err = await refusal(dev, hand_made_token({"alg": "HS256", "kid": 7}, claims_for(ISSUER), SECRET.encode()))
    assert err.reason == "malformed"
    err = await refusal(dev, hand_made_token({"alg": "HS256", "crit": ["exp"], "exp": 1}, claims_for(ISSUER),
                                             SECRET.encode()))
    assert err.reason == "malformed" and "crit" in str(err)


def test_accepts_only_jwt_shaped_tokens(dev: JwtProvider) -> None:
    assert dev.accepts(token("a.b.c"))
    assert not dev.accepts(token("gwk_0123456789"))
    assert not dev.accepts(Credential("publickey", b"ssh-ed25519 AAAA"))


async def test_subject_claim_and_dotted_groups_claim(make_provider: Callable[..., JwtProvider],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    provider = make_provider(issuer=ISSUER, secret_env="GW_TEST_SECRET", subject_claim="email",
                             groups_claim="realm_access.roles")
    claims = claims_for(ISSUER, groups=None, email="ada@example.com",
                        realm_access={"roles": ["dba", "agents"]})
    identity = await provider.authenticate(token(signed(claims)))
    assert identity.subject == "ada@example.com"
    assert identity.groups == ("dba", "agents")
    err = await refusal(provider, signed(claims_for(ISSUER)))  # has sub, lacks email
    assert err.reason == "missing_claim" and "'email'" in str(err)
    # issue_token writes the configured claims, so dev tokens work with any mapping
    identity = await provider.authenticate(token(provider.issue_token("bob@example.com", ["x"], 60)))
    assert (identity.subject, identity.groups) == ("bob@example.com", ("x",))


@pytest.mark.parametrize("groups, expected", [(None, ()), ("acme", ("acme",)), ([], ())])
async def test_groups_claim_shapes(dev: JwtProvider, groups: Any, expected: tuple[str, ...]) -> None:
    claims = claims_for(ISSUER, groups=())
    claims["groups"] = groups
    assert (await dev.authenticate(token(signed(claims)))).groups == expected


@pytest.mark.parametrize("groups", [[1, 2], {"a": 1}, 5])
async def test_groups_claim_of_the_wrong_shape_is_refused(dev: JwtProvider, groups: Any) -> None:
    claims = claims_for(ISSUER)
    claims["groups"] = groups
    err = await refusal(dev, signed(claims))
    assert err.reason == "malformed" and "'groups'" in str(err)


async def test_require_claims(make_provider: Callable[..., JwtProvider],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    provider = make_provider(issuer=ISSUER, secret_env="GW_TEST_SECRET",
                             require_claims={"repository_owner": "acme", "ref_protected": True})
    good = claims_for(ISSUER, repository_owner="acme", ref_protected=True)
    assert (await provider.authenticate(token(signed(good)))).subject == "agent-7"
    for bad in ({"repository_owner": "evil"}, {"ref_protected": "true"}, {"ref_protected": None}):
        err = await refusal(provider, signed({**good, **bad}))
        assert err.reason == "claim_mismatch"


# -- static PEM keys ---------------------------------------------------------------------------------------


async def test_static_pem_keys_rs256_and_es256(make_provider: Callable[..., JwtProvider]) -> None:
    rsa_key, ec_key = SigningKey.rsa(), SigningKey.ec()
    provider = make_provider(issuer="https://idp.example.com",
                             public_keys=[rsa_key.public_pem(), ec_key.public_pem()])
    await provider.open()
    for key in (rsa_key, ec_key):
        text = key.sign(claims_for("https://idp.example.com"), kid=False)
        identity = await provider.authenticate(token(text))
        assert identity.subject == "agent-7"
    stranger = SigningKey.rsa()
    err = await refusal(provider, stranger.sign(claims_for("https://idp.example.com")))
    assert err.reason == "bad_signature"


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
        make_provider: Callable[..., JwtProvider]) -> None:
    """Algorithm confusion: a verifier that lets the token pick HMAC would use the public PEM as secret."""
    key = SigningKey.rsa()
    provider = make_provider(issuer="https://idp.example.com", public_keys=[key.public_pem()])
    forged = hand_made_token({"alg": "HS256", "typ": "JWT"}, claims_for("https://idp.example.com"),
                             hmac_key=key.public_pem().encode())
    err = await refusal(provider, forged)
    assert err.reason == "unsupported_algorithm"
    assert "(accepted: RS256, ES256)" in str(err)


async def test_static_key_ids_pick_the_key_and_refuse_other_types(
        make_provider: Callable[..., JwtProvider]) -> None:
    rsa_key, ec_key = SigningKey.rsa(kid="r1"), SigningKey.ec(kid="e1")
    provider = make_provider(issuer="https://idp.example.com",
                             public_keys={"r1": rsa_key.public_pem(), "e1": ec_key.public_pem()})
    claims = claims_for("https://idp.example.com")
    assert (await provider.authenticate(token(rsa_key.sign(claims)))).subject == "agent-7"
    err = await refusal(provider, rsa_key.sign(claims, kid="e1"))
    assert err.reason == "key_type_mismatch"
    assert "an EC key on curve secp256r1, which cannot verify an RS256 token" in str(err)
    err = await refusal(provider, rsa_key.sign(claims, kid="nope"))
    assert err.reason == "unknown_key"


async def test_es384_token_against_a_p256_key_is_a_type_mismatch(
        make_provider: Callable[..., JwtProvider]) -> None:
    p256, p384 = SigningKey.ec(kid="k"), SigningKey.ec(kid="k", alg="ES384")
    provider = make_provider(issuer="https://idp.example.com", algorithms=["ES256", "ES384"],
                             public_keys={"k": p256.public_pem()})
    err = await refusal(provider, p384.sign(claims_for("https://idp.example.com")))
    assert err.reason == "key_type_mismatch"


async def test_issue_token_only_for_secret_providers(make_provider: Callable[..., JwtProvider]) -> None:
    provider = make_provider(issuer="https://idp.example.com", public_keys=[SigningKey.ec().public_pem()])
    with pytest.raises(NotImplementedError, match="cannot issue them"):
        provider.issue_token("a", [], 60)


async def test_admit_rechecks_deny_lists(dev: JwtProvider) -> None:
    identity = await dev.authenticate(token(dev.issue_token("agent-7", ["agents"], 60)))
    dev.admit(identity)
    dev.options = dev.options.model_copy(update={"deny_subjects": ["agent-7"]})
    with pytest.raises(AccessDenied):
        dev.admit(identity)
