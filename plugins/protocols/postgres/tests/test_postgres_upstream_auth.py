"""gw logs in to the upstream with the credentials it holds: cleartext, MD5, SCRAM-SHA-256, over plain TCP
and TLS (sslmode require / verify-full), against a private PostgreSQL cluster configured for each method."""

from __future__ import annotations

import os
from typing import Any

import pytest
from gw_postgres.errors import UpstreamError
from gw_postgres.upstream import Login, UpstreamTarget, connect


def target(cluster: Any, **kw: Any) -> UpstreamTarget:
    return UpstreamTarget("127.0.0.1", cluster.port, "test", **{"sslmode": "disable", "connect_timeout": 5, **kw})


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch, private_cluster: Any) -> str:
    monkeypatch.setenv("GW_TEST_UPSTREAM_PW", private_cluster.PASSWORD)
    return "GW_TEST_UPSTREAM_PW"


@pytest.mark.parametrize("role", ["gw_clear", "gw_md5", "gw_scram"])
async def test_password_methods(private_cluster: Any, password_env: str, role: str) -> None:
    conn = await connect(target(private_cluster), Login(role, password_env))
    try:
        assert await conn.simple_query("select current_user") == [[role.encode()]]
        assert conn.backend_key is not None and conn.status == "I"
        assert conn.parameters["server_encoding"] == "UTF8"
    finally:
        await conn.aclose()


@pytest.mark.parametrize("role", ["gw_clear", "gw_md5", "gw_scram"])
async def test_wrong_or_missing_password_is_reported_without_secrets(private_cluster: Any, role: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_UPSTREAM_PW", "wrong")
    with pytest.raises(UpstreamError) as err:
        await connect(target(private_cluster), Login(role, "GW_TEST_UPSTREAM_PW"))
    assert err.value.sqlstate == "08004" and "refused gw's log-in (28P01)" in str(err.value)
    assert "wrong" not in str(err.value)
    monkeypatch.delenv("GW_TEST_UPSTREAM_PW")
    with pytest.raises(UpstreamError, match="requires a password that gw does not have"):
        await connect(target(private_cluster), Login(role, "GW_TEST_UPSTREAM_PW"))


async def test_upstream_tls_modes(private_cluster: Any, password_env: str) -> None:
    login = Login("gw_tls", password_env)
    for mode in ("prefer", "require"):
        conn = await connect(target(private_cluster, sslmode=mode), login)
        assert conn.tls
        assert await conn.simple_query("select ssl from pg_stat_ssl where pid = pg_backend_pid()") == [[b"t"]]
        await conn.aclose()
    ca = str(private_cluster.certs["ca"])
    conn = await connect(target(private_cluster, sslmode="verify-full", sslrootcert=ca), login)
    assert conn.tls
    await conn.aclose()
    # verify-full against a certificate from an unknown CA fails, naming the options to check
    with pytest.raises(UpstreamError, match="TLS handshake with the upstream database .* failed"):
        await connect(target(private_cluster, sslmode="verify-full"), login)
    # gw_tls may not connect in the clear (pg_hba hostssl)
    with pytest.raises(UpstreamError, match="refused gw's log-in"):
        await connect(target(private_cluster, sslmode="disable"), login)


async def test_require_tls_against_a_server_without_it(pg: Any, postgres: None) -> None:
    with pytest.raises(UpstreamError, match="does not offer TLS but upstream.sslmode is 'require'"):
        await connect(UpstreamTarget("127.0.0.1", 5432, "test", sslmode="require"), Login("postgres"))


async def test_scram_through_the_gateway(pg_gateway: Any, pg: Any, private_cluster: Any,
                                         password_env: str) -> None:
    upstream = f'user = "gw_scram"\npassword_env = "{password_env}"\nsslmode = "require"'
    async with pg_gateway(upstream=upstream, upstream_port=private_cluster.port) as gw:
        code, out, err = await pg.psql(pg.dsn(gw.port("pg")), "-Atc", "select current_user, 1 + 1")
    assert (code, out.strip()) == (0, "gw_scram|2"), err
    assert private_cluster.PASSWORD not in out + err
    assert os.environ[password_env] == private_cluster.PASSWORD
