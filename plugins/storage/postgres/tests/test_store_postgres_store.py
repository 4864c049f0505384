"""gw-store-postgres beyond the contract: options, migrations with several gateways starting at once, an outage
of the database (fail closed, then resume by itself), and no credential in what it shows."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import trio
from gw.errors import ConfigError, StoreError
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_store_postgres import PostgresStore
from gw_store_postgres.schema import SCHEMA_VERSION

from .conftest import DSN, admin


def build(tmp_path: Path, storage: str) -> Runtime:
    return Runtime.build(write_pipeline(tmp_path, f'[storage]\nuse = "postgres"\n{storage}\n'))


def test_options_need_exactly_one_connection_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set exactly one of dsn and dsn_env"):
        build(tmp_path, "")
    with pytest.raises(ConfigError, match="set exactly one of dsn and dsn_env"):
        build(tmp_path, 'dsn = "host=x"\ndsn_env = "X"')
    with pytest.raises(ConfigError, match=r"storage.schema: .*lower-case letters"):
        build(tmp_path, 'dsn = "host=x"\nschema = "Bad-Name"')
    with pytest.raises(ConfigError, match=r"storage.pool_size"):
        build(tmp_path, 'dsn = "host=x"\npool_size = 0')
    rt = build(tmp_path, 'dsn = "host=x"\npool_size = 3\nconnect_timeout = "2s"\nstatement_timeout = "30s"')
    assert isinstance(rt.store, PostgresStore) and rt.store.options.pool_size == 3


async def test_missing_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_NO_SUCH_DSN", raising=False)
    store = build(tmp_path, 'dsn_env = "GW_TEST_NO_SUCH_DSN"').store
    assert store is not None
    with pytest.raises(StoreError, match=r"\$GW_TEST_NO_SUCH_DSN, which is not set"):
        await store.open()


async def test_gateways_starting_at_once_migrate_once(make_pg_store: Callable[..., PostgresStore],
                                                      pg_schema: str) -> None:
    stores = [make_pg_store() for _ in range(6)]
    async with trio.open_nursery() as nursery:
        for s in stores:
            nursery.start_soon(s.open)
    try:
        info = await stores[0].describe()
        assert info["schema_version"] == SCHEMA_VERSION
        seqs = await stores[1].append("audit", [{"a": 1}])
        assert [e.seq for e in await stores[5].scan("audit")] == seqs
    finally:
        for s in stores:
            await s.close()
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(f"SELECT version FROM {pg_schema}.gw_schema").fetchall()
    assert rows == [(SCHEMA_VERSION,)]


async def test_foreign_or_newer_schemas_are_refused(make_pg_store: Callable[..., PostgresStore],
                                                    pg_schema: str) -> None:
    admin(f"CREATE SCHEMA {pg_schema}; CREATE TABLE {pg_schema}.invoices (id int)")
    with pytest.raises(StoreError, match="already holds tables of another program \\(invoices\\)"):
        await make_pg_store().open()
    admin(f"DROP TABLE {pg_schema}.invoices")
    store = make_pg_store()
    await store.open()
    await store.close()
    admin(f"UPDATE {pg_schema}.gw_schema SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="written by a newer gw-store-postgres"):
        await make_pg_store().open()


async def test_describe_and_errors_never_show_the_password(tmp_path: Path, pg_schema: str) -> None:
    secret = "s3cr3t-" + secrets.token_hex(4)
    rt = build(tmp_path, f'dsn = "{DSN} password={secret}"\nschema = "{pg_schema}"')
    store = rt.store
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        info = await store.describe()
        assert secret not in repr(info)
        assert info["database"] == f"postgres@127.0.0.1:5432/test schema {pg_schema}"
    finally:
        await store.close()
    bad = build(tmp_path, f'dsn = "host=127.0.0.1 port=1 user=x password={secret} dbname=test"\n'
                          'connect_timeout = "1s"').store
    assert bad is not None
    with pytest.raises(StoreError) as err:
        await bad.open()
    assert secret not in str(err.value)
    assert "is unreachable while preparing the schema" in str(err.value)


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of the test's own, so connections to it can be refused without touching anything else."""
    name = f"gw_test_db_{secrets.token_hex(4)}"
    admin(f"CREATE DATABASE {name}")
    yield name
    admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_outage_fails_closed_then_resumes_by_itself(tmp_path: Path, own_database: str) -> None:
    dsn = DSN.replace("dbname=test", f"dbname={own_database}")
    store = build(tmp_path, f'dsn = "{dsn}"\nconnect_timeout = "2s"').store
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        await store.append("audit", [{"before": True}])
        assert await store.check_ready() is None
        admin(f"ALTER DATABASE {own_database} ALLOW_CONNECTIONS false")
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{own_database}'")
        for _ in range(3):  # the pooled connection is gone, and no new one is accepted
            with pytest.raises(StoreError, match=r"is unreachable while appending to stream 'audit'.*refused "
                                                 "until it is back"):
                await store.append("audit", [{"during": True}])
        with pytest.raises(StoreError, match="is unreachable"):
            await store.get("approvals", "x")
        reason = await store.check_ready()
        assert reason is not None and "is unreachable while checking readiness" in reason
        admin(f"ALTER DATABASE {own_database} ALLOW_CONNECTIONS true")
        await store.append("audit", [{"after": True}])
        assert [dict(e.data) for e in await store.scan("audit")] == [{"before": True}, {"after": True}]
    finally:
        await store.close()


def test_storage_info_and_prune_commands(tmp_path: Path, pg_schema: str) -> None:
    import json
    import os
    import subprocess
    import sys

    secret = "pw-" + secrets.token_hex(4)
    path = write_pipeline(tmp_path, f'[storage]\nuse = "postgres"\ndsn_env = "GW_TEST_DSN"\nschema = "{pg_schema}"\n'
                                    'retention = "1h"\n')
    env = {**os.environ, "GW_TEST_DSN": f"{DSN} password={secret}"}
    gw = str(Path(sys.executable).with_name("gw"))

    async def fill() -> None:
        store = Runtime.build(path).store
        assert store is not None
        os.environ["GW_TEST_DSN"] = env["GW_TEST_DSN"]
        try:
            await store.open()
            await store.append("audit", [{"i": 1}, {"i": 2}])
            await store.close()
        finally:
            del os.environ["GW_TEST_DSN"]

    trio.run(fill)
    admin(f"UPDATE {pg_schema}.entries SET ts = ts - 7200 WHERE data = '{{\"i\":1}}'")
    info = subprocess.run([gw, "storage", "info", "-c", str(path), "--json"], capture_output=True, text=True,
                          env=env, check=False, timeout=60)
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert shown["backend"] == "postgres" and secret not in info.stdout
    assert [s["stream"] for s in shown["streams"]] == ["audit"]
    pruned = subprocess.run([gw, "storage", "prune", "-c", str(path), "--json"], capture_output=True, text=True,
                            env=env, check=False, timeout=60)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["streams"] == [{"stream": "audit", "deleted": 1}]


async def test_a_record_edited_into_something_else_is_named(make_pg_store: Callable[..., PostgresStore],
                                                            pg_schema: str) -> None:
    store = make_pg_store()
    await store.open()
    try:
        [seq] = await store.append("audit", [{"a": 1}])
        admin(f"UPDATE {pg_schema}.entries SET data = '[1, 2]' WHERE seq = {int(seq)}")
        with pytest.raises(StoreError) as raised:
            await store.scan("audit")
        assert str(raised.value) == (f"record {seq} of stream 'audit' is not a JSON object in the database (it "
                                     "was edited or is damaged); restore it from a backup")
    finally:
        await store.close()
