"""The apikey provider over both key stores (gw's SQLite storage backend and a key file): the key lifecycle,
every refusal with its reason code, what an attacker with write access to the store can and cannot do, and
that the key's clear text is stored nowhere."""

from __future__ import annotations

import dataclasses
import json
import time
import types
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import gw_apikey.provider as provider_module
import pytest
from gw.errors import AccessDenied, AuthenticationError, ConfigError
from gw.identity import Credential
from gw.runtime import Runtime
from gw.store import VersionConflict
from gw.testing import write_pipeline
from gw_apikey import ApiKeyProvider, KeyManagementError, keys
from gw_apikey.keystore import COLLECTION

DAY = timedelta(days=1)


def token(text: str | bytes) -> Credential:
    return Credential("token", text)


async def refusal(provider: ApiKeyProvider, text: str | bytes) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        await provider.authenticate(token(text))
    return info.value


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the provider's wall clock forward (expiry is wall-clock time; nothing else is affected)."""
    real = time.time
    monkeypatch.setattr(provider_module, "time", types.SimpleNamespace(time=lambda: real() + seconds))


async def test_create_use_revoke_refused(pipeline: Callable[..., Path], opened: Any) -> None:
    path = pipeline()
    async with opened(path) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl", "etl", "readers"], 30 * DAY,
                                                 description="nightly ETL", created_by="ops")
        assert record.groups == ("etl", "readers")
        identity = await provider.authenticate(token(text))
        assert (identity.subject, identity.groups, identity.provider) == ("ci-nightly", ("etl", "readers"),
                                                                          "ci-keys")
        assert identity.expires_at == record.expires and identity.claims == {"key_id": record.id}
        assert abs(record.expires - (time.time() + 30 * 86400)) < 5
        # as HTTP and the PostgreSQL password carry it
        assert (await provider.authenticate(token(f"Bearer {text}\n".encode()))).subject == "ci-nightly"

        revoked, changed = await provider.revoke_key(record.id, revoked_by="ops")
        assert changed and revoked.revoked and revoked.verifier == "" and revoked.revoked_by == "ops"
        error = await refusal(provider, text)
        assert error.reason == "revoked"
        assert record.id in str(error) and "ci-nightly" in str(error) and text not in str(error)
        assert (await provider.revoke_key(text)) == (revoked, False)  # idempotent; the whole key is accepted
    async with opened(path) as (_, provider):  # a restarted gateway, or another replica, sees it too
        assert (await refusal(provider, text)).reason == "revoked"
        [listed] = await provider.list_keys()
        assert listed.status(time.time()) == "revoked"


async def test_expired_key_is_refused(pipeline: Callable[..., Path], opened: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async with opened(pipeline()) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"], timedelta(hours=1))
        await provider.authenticate(token(text))
        shift_clock(monkeypatch, 3601)
        error = await refusal(provider, text)
        assert error.reason == "expired" and record.id in str(error) and "gw keys create" in str(error)


async def test_wrong_secret_unknown_id_and_damaged_keys_are_refused(pipeline: Callable[..., Path],
                                                                    opened: Any) -> None:
    async with opened(pipeline()) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"])
        head = f"gwk_{record.id}_{'A' * keys.SECRET_LENGTH}"
        forged = await refusal(provider, head + keys.checksum(head))  # right id, wrong secret
        assert forged.reason == "bad_secret" and record.id in str(forged)
        unknown_text, unknown = keys.generate("gwk_")
        error = await refusal(provider, unknown_text)
        assert error.reason == "unknown_key" and unknown.key_id in str(error)
        for damaged in (text[:-1], text + "0", text[:30] + ("B" if text[30] != "B" else "C") + text[31:]):
            error = await refusal(provider, damaged)
            assert error.reason == "malformed" and "gw keys create" in str(error)
        assert (await refusal(provider, "gwk_" + "\u00e9" * 50)).reason == "malformed"
        assert (await provider.authenticate(token(text))).subject == "ci-nightly"  # still fine after all that


async def test_only_credentials_with_the_prefix_are_accepted(pipeline: Callable[..., Path], opened: Any) -> None:
    async with opened(pipeline('prefix = "ci_"')) as (_, provider):
        text, _ = await provider.create_key("ci-nightly", [])
        assert text.startswith("ci_") and provider.accepts(token(text))
        jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
        for other in (jwt_like, "gwk_" + text[3:], "", "CI_" + text[3:], b"\xff\xfe"):
            assert not provider.accepts(token(other)), other
        assert not provider.accepts(Credential("publickey", text))
        error = await refusal(provider, "gwk_" + text[3:])
        assert error.reason == "malformed" and "'ci_'" in str(error)


async def test_key_clear_text_is_stored_nowhere(pipeline: Callable[..., Path], opened: Any,
                                                stored_bytes: Callable[[], dict[str, bytes]],
                                                backend: str) -> None:
    """Grep every byte gw wrote -- the SQLite database with its -wal and -shm files, or the key file -- for
    the key and for its secret part, after the key was created and used (which records last_used)."""
    path = pipeline()
    async with opened(path) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"], description="nightly")
        await provider.authenticate(token(text))
        assert (await provider.keystore.get(record.id)).last_used is not None  # type: ignore[union-attr]
        secret = keys.parse(text, "gwk_").secret
        files = stored_bytes()
        if backend == "storage":
            assert any(name.endswith("gw.db-wal") for name in files), sorted(files)
        for name, data in files.items():
            assert text.encode() not in data and secret.encode() not in data, name
        # the search does find what is stored: the public id and the description
        assert any(record.id.encode() in data for data in files.values())
        assert any(b"nightly" in data for data in files.values())
    for name, data in stored_bytes().items():  # after the WAL was checkpointed into the database
        assert text.encode() not in data and secret.encode() not in data, name


async def test_editing_the_store_cannot_widen_or_revive_a_key(pipeline: Callable[..., Path],
                                                              opened: Any) -> None:
    """Someone who can write the store sees no secret, and a changed grant no longer verifies."""
    async with opened(pipeline()) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"], 30 * DAY)
        for change in ({"groups": ("etl", "dba")}, {"subject": "root"}, {"expires": record.expires + 86400}):
            current = await provider.keystore.get(record.id)
            assert current is not None
            await provider.keystore.replace(dataclasses.replace(current, **change))
            assert (await refusal(provider, text)).reason == "bad_secret", change
        current = await provider.keystore.get(record.id)
        assert current is not None
        await provider.keystore.replace(dataclasses.replace(current, groups=record.groups, subject=record.subject,
                                                            expires=record.expires))
        assert (await provider.authenticate(token(text))).groups == ("etl",)
        revoked, _ = await provider.revoke_key(record.id)
        await provider.keystore.replace(dataclasses.replace(revoked, revoked_at=None))  # "un-revoke"
        assert (await refusal(provider, text)).reason == "bad_secret"


async def test_a_late_last_used_write_never_undoes_a_revocation(pipeline: Callable[..., Path],
                                                                opened: Any) -> None:
    async with opened(pipeline()) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"])
        stale = await provider.keystore.get(record.id)  # what an authentication read just before the revoke
        assert stale is not None
        await provider.revoke_key(record.id)
        with pytest.raises(VersionConflict):
            await provider.keystore.replace(dataclasses.replace(stale, last_used=time.time()))
        assert (await refusal(provider, text)).reason == "revoked"


async def test_last_used_is_written_at_most_once_per_interval(pipeline: Callable[..., Path],
                                                              opened: Any) -> None:
    async with opened(pipeline()) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"])
        for _ in range(5):
            await provider.authenticate(token(text))
        after = await provider.keystore.get(record.id)
        assert after is not None and after.last_used is not None
        assert after.version == record.version + 1  # one write for five connections
    async with opened(pipeline('last_used_interval = "0s"')) as (_, provider):
        text, record = await provider.create_key("ci-weekly", [])
        await provider.authenticate(token(text))
        unchanged = await provider.keystore.get(record.id)
        assert unchanged is not None and unchanged.last_used is None and unchanged.version == record.version


async def test_deny_lists_refuse_keys_and_their_creation(pipeline: Callable[..., Path], opened: Any) -> None:
    async with opened(pipeline()) as (_, provider):
        mallory, _ = await provider.create_key("mallory", ["etl"])
        banned, _ = await provider.create_key("ci-nightly", ["etl", "banned"])
    async with opened(pipeline('deny_subjects = ["mallory"]\ndeny_groups = ["banned"]')) as (_, provider):
        error = await refusal(provider, mallory)
        assert isinstance(error, AccessDenied) and error.reason == "denied_subject"
        assert (await refusal(provider, banned)).reason == "denied_group"
        with pytest.raises(KeyManagementError, match="deny_subjects"):
            await provider.create_key("mallory", [])
        with pytest.raises(KeyManagementError, match="deny_groups"):
            await provider.create_key("someone", ["banned"])


async def test_pepper(pipeline: Callable[..., Path], opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with opened(pipeline()) as (_, provider):
        plain, _ = await provider.create_key("old-job", [])
    monkeypatch.setenv("GW_APIKEY_PEPPER", "p" * 32)
    peppered_path = pipeline('pepper_env = "GW_APIKEY_PEPPER"')
    async with opened(peppered_path) as (_, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"])
        assert record.verifier.startswith("hmac-sha256:")
        assert (await provider.authenticate(token(text))).subject == "ci-nightly"
        assert (await refusal(provider, plain)).reason == "outdated_key"
    monkeypatch.setenv("GW_APIKEY_PEPPER", "q" * 32)
    async with opened(peppered_path) as (_, provider):
        assert (await refusal(provider, text)).reason == "bad_secret"
    monkeypatch.setenv("GW_APIKEY_PEPPER", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        async with opened(peppered_path):
            pass
    monkeypatch.delenv("GW_APIKEY_PEPPER")
    with pytest.raises(ConfigError, match=r"identity\.ci-keys\.pepper_env: environment variable GW_APIKEY_PEPPER"):
        async with opened(peppered_path):
            pass
    async with opened(pipeline()) as (_, provider):  # pepper_env removed from the file
        assert (await refusal(provider, text)).reason == "provider_unavailable"


async def test_providers_sharing_a_store_keep_their_own_keys(pipeline: Callable[..., Path], opened: Any,
                                                             backend: str) -> None:
    where = 'file = "keys/apikeys.json"' if backend == "file" else ""
    path = pipeline(extra=f'\n[identity.other-keys]\nuse = "apikey"\n{where}\n')
    async with opened(path) as (rt, provider):
        text, _ = await provider.create_key("ci-nightly", ["etl"])
        other = rt.identity["other-keys"]
        assert isinstance(other, ApiKeyProvider)
        assert (await refusal(other, text)).reason == "unknown_key"
        assert await other.list_keys() == []
        assert [k.subject for k in await provider.list_keys()] == ["ci-nightly"]


async def test_damaged_record_is_refused_and_left_out(pipeline: Callable[..., Path], opened: Any,
                                                      backend: str, tmp_path: Path) -> None:
    async with opened(pipeline()) as (rt, provider):
        text, record = await provider.create_key("ci-nightly", ["etl"])
        await provider.create_key("ci-weekly", ["etl"])
        broken = {**record.to_data(), "groups": "etl"}
        if backend == "storage":
            await rt.store.put(COLLECTION, record.id, broken)
        else:
            file = tmp_path / "keys" / "apikeys.json"
            doc = json.loads(file.read_text())
            doc["keys"][record.id] = {**broken, "version": 9}
            file.write_text(json.dumps(doc))
        assert (await refusal(provider, text)).reason == "key_record_invalid"
        assert [k.subject for k in await provider.list_keys()] == ["ci-weekly"]
        with pytest.raises(KeyManagementError, match="damaged"):
            await provider.revoke_key(record.id)


async def test_management_refuses_bad_input(pipeline: Callable[..., Path], opened: Any) -> None:
    async with opened(pipeline('max_ttl = "90d"\ndefault_ttl = "7d"')) as (_, provider):
        _, record = await provider.create_key("ci-nightly", [])
        assert abs(record.expires - record.created - 7 * 86400) <= 1
        for subject, groups, ttl, match in [
            ("ci", [], timedelta(days=91), "max_ttl"),
            ("ci", [], timedelta(0), "at least one second"),
            ("", [], None, "empty"),
            (" ci", [], None, "spaces"),
            ("ci\nx", [], None, "control"),
            ("ci", [""], None, "empty"),
        ]:
            with pytest.raises(KeyManagementError, match=match):
                await provider.create_key(subject, groups, ttl)
        for typed in ("", "nope", "gwk_short"):
            with pytest.raises(KeyManagementError, match="not a key id"):
                await provider.revoke_key(typed)
        with pytest.raises(KeyManagementError, match="gw keys list"):
            await provider.revoke_key("A" * 12)


async def test_unreadable_key_file_fails_closed(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, '[identity.ci-keys]\nuse = "apikey"\nstore = "file"\n')
    rt = Runtime.build(path)
    async with rt.opened(identity=True):
        provider = rt.identity["ci-keys"]
        assert isinstance(provider, ApiKeyProvider)
        text, _ = await provider.create_key("ci-nightly", ["etl"])
        file = tmp_path / ".gw" / "apikeys.json"  # the default: <data_dir>/apikeys.json, private
        assert file.stat().st_mode & 0o077 == 0
        file.write_text("{ not json")
        error = await refusal(provider, text)
        assert error.reason == "keys_unavailable" and "retry" in str(error)
        file.write_text(json.dumps({"format": "something-else", "keys": {}}))
        assert (await refusal(provider, text)).reason == "keys_unavailable"
        file.unlink()
        assert (await refusal(provider, text)).reason == "unknown_key"


@pytest.mark.parametrize(("body", "where", "message"), [
    ('use = "apikey"', "identity.ci-keys.store", "[storage]"),
    ('use = "apikey"\nstore = "storage"\nfile = "k.json"', "identity.ci-keys", "file is only read with"),
    ('use = "apikey"\nfile = "k.json"\nprefix = "gw.k"', "identity.ci-keys.prefix", "2-16 characters"),
    ('use = "apikey"\nfile = "k.json"\ndefault_ttl = "400d"', "identity.ci-keys", "longer than max_ttl"),
    ('use = "apikey"\nfile = "k.json"\nttl = "30d"', "identity.ci-keys.ttl", "unknown key"),
    ('use = "apikey"\nfile = "k.json"\nmax_ttl = "0s"', "identity.ci-keys.max_ttl", "at least one second"),
])
def test_configuration_errors_name_the_key(tmp_path: Path, body: str, where: str, message: str) -> None:
    path = write_pipeline(tmp_path, f"[identity.ci-keys]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        Runtime.build(path)
    assert f"{where}:" in str(info.value) and message in str(info.value)
