"""Configuration of [identity.*] jwt tables: unsafe settings never start, errors name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from gw.errors import ConfigError
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_jwt import JwtProvider
from jwt_testkit import SECRET, SigningKey, identity_file

QUICKSTART = """
[gateway]
data_dir = ".gw"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"      # HS256 secret for locally issued dev tokens
groups_claim = "groups"
"""


def build_error(tmp_path: Path, **options: Any) -> ConfigError:
    options.setdefault("audience", "gw")
    with pytest.raises(ConfigError) as info:
        Runtime.build(identity_file(tmp_path, **options))
    return info.value


def test_quickstart_table_builds_with_hs256_default(tmp_path: Path) -> None:
    rt = Runtime.build(write_pipeline(tmp_path, QUICKSTART))
    provider = rt.identity["dev"]
    assert isinstance(provider, JwtProvider)
    assert provider.options.allowed_algorithms == ("HS256",)
    assert provider.can_issue_tokens


def test_default_algorithms_without_secret_are_rs256_and_es256(tmp_path: Path) -> None:
    rt = Runtime.build(identity_file(tmp_path, issuer="https://idp.example.com/realms/x", audience="gw"))
    provider = rt.identity["idp"]
    assert isinstance(provider, JwtProvider)
    assert provider.options.allowed_algorithms == ("RS256", "ES256")
    assert provider.options.key_source == "discovery"
    assert not provider.can_issue_tokens


@pytest.mark.parametrize("algorithms, path, words", [
    (["none"], "identity.idp.algorithms", "never allowed"),
    (["RS256", "NONE"], "identity.idp.algorithms", "never allowed"),
    (["HS256", "RS256"], "identity.idp.algorithms", "cannot be mixed"),
    (["XS256"], "identity.idp.algorithms", "unknown algorithm"),
    ([], "identity.idp.algorithms", "cannot be empty"),
])
def test_algorithm_allow_list_errors(tmp_path: Path, algorithms: list[str], path: str, words: str) -> None:
    err = build_error(tmp_path, issuer="https://idp.example.com", algorithms=algorithms)
    assert err.path == path
    assert words in err.detail


def test_hmac_only_with_secret_env(tmp_path: Path) -> None:
    err = build_error(tmp_path, issuer="https://idp.example.com", algorithms=["HS256"])
    assert err.path == "identity.idp" and "needs secret_env" in err.detail


def test_secret_env_with_asymmetric_algorithms_is_refused(tmp_path: Path) -> None:
    err = build_error(tmp_path, issuer="gw-dev", secret_env="X", algorithms=["RS256"])
    assert "need public keys" in err.detail


def test_one_key_source_only(tmp_path: Path) -> None:
    err = build_error(tmp_path, issuer="gw-dev", secret_env="X", jwks_url="https://idp.example.com/jwks")
    assert "secret_env and jwks_url" in err.detail


@pytest.mark.parametrize("url", ["http://idp.example.com/jwks", "http://10.0.0.5/jwks", "ftp://x/jwks",
                                 "jwks"])
def test_jwks_url_must_be_https_unless_loopback(tmp_path: Path, url: str) -> None:
    err = build_error(tmp_path, issuer="https://idp.example.com", jwks_url=url)
    assert err.path == "identity.idp.jwks_url"
    assert "https" in err.detail


@pytest.mark.parametrize("url", ["https://idp.example.com/jwks", "http://127.0.0.1:8080/jwks",
                                 "http://127.3.4.5/jwks", "http://localhost:9/jwks", "http://[::1]:9/jwks"])
def test_https_or_loopback_jwks_url_is_accepted(tmp_path: Path, url: str) -> None:
    Runtime.build(identity_file(tmp_path, issuer="https://idp.example.com", jwks_url=url, audience="gw"))


def test_discovery_needs_an_https_issuer(tmp_path: Path) -> None:
    err = build_error(tmp_path, issuer="http://idp.example.com/realms/x")
    assert err.path == "identity.idp" and "issuer" in err.detail and "https" in err.detail
    err = build_error(tmp_path, issuer="gw-dev")
    assert "OIDC discovery" in err.detail


@pytest.mark.parametrize("key, value, words", [
    ("leeway", "10m", "above the 5m limit"),
    ("leeway", "soon", "expected a duration"),
    ("jwks_cache", "0s", "longer than zero"),
    ("subject_claim", "a..b", "dotted path"),
    ("groups_claim", ".roles", "dotted path"),
    ("audience", [], "cannot be empty"),
    ("audience", "", "cannot be empty"),
    ("issuer", " ", "cannot be empty"),
    ("algorithm", ["RS256"], "unknown key"),
])
def test_bad_values_name_their_key(tmp_path: Path, key: str, value: Any, words: str) -> None:
    options: dict[str, Any] = {"issuer": "https://idp.example.com", key: value}
    err = build_error(tmp_path, **options)
    assert err.path == f"identity.idp.{key}"
    assert words in err.detail


def test_audience_is_required(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, '[identity.x]\nuse = "jwt"\nissuer = "https://idp.example.com"\n')
    with pytest.raises(ConfigError) as info:
        Runtime.build(path)
    assert info.value.path == "identity.x.audience"


def test_private_key_in_public_keys_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key = SigningKey.ec()
    pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    err = build_error(tmp_path, issuer="https://idp.example.com", public_keys=[pem])
    assert err.path == "identity.idp.public_keys"
    assert "is a private key" in err.detail
    assert pem.splitlines()[1] not in str(err)


def test_short_rsa_keys_and_garbage_pem_are_refused(tmp_path: Path) -> None:
    err = build_error(tmp_path, issuer="https://idp.example.com",
                      public_keys=[SigningKey.rsa(bits=1024).public_pem()])
    assert "1024-bit RSA key" in err.detail
    err = build_error(tmp_path, issuer="https://idp.example.com", public_keys={"k1": "not a key"})
    assert "not a PEM public key" in err.detail and "'k1'" in err.detail


async def test_missing_secret_fails_at_open_naming_the_variable(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_DEV_SECRET", raising=False)
    rt = Runtime.build(write_pipeline(tmp_path, QUICKSTART))  # gw check's view: valid without the secret
    with pytest.raises(ConfigError) as info:
        await rt.identity["dev"].open()
    assert info.value.path == "identity.dev.secret_env"
    assert "GW_DEV_SECRET is not set" in str(info.value)


async def test_short_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_DEV_SECRET", "x" * 31)
    rt = Runtime.build(write_pipeline(tmp_path, QUICKSTART))
    with pytest.raises(ConfigError, match="31 bytes; HS256 needs at least 32"):
        await rt.identity["dev"].open()
    monkeypatch.setenv("GW_DEV_SECRET", SECRET)
    rt = Runtime.build(write_pipeline(tmp_path, QUICKSTART))
    await rt.identity["dev"].open()


async def test_key_files_are_read_at_open_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    key = SigningKey.rsa()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "idp.pem").write_text(key.public_pem())
    rt = Runtime.build(identity_file(tmp_path, issuer="https://idp.example.com", audience="gw",
                                     public_key_files=["keys/idp.pem"]))
    await rt.identity["idp"].open()
    rt = Runtime.build(identity_file(tmp_path, issuer="https://idp.example.com", audience="gw",
                                     public_key_files={"k1": "keys/missing.pem"}))
    with pytest.raises(ConfigError) as info:
        await rt.identity["idp"].open()
    assert info.value.path == "identity.idp.public_key_files"
    assert "missing.pem" in str(info.value)
