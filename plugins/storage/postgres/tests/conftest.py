"""Fixtures of the PostgreSQL store's tests: the real PostgreSQL on 127.0.0.1:5432 (``$GW_TEST_STORE_DSN``
overrides it), a schema of its own per test, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from gw.runtime import Runtime
from gw.testing import require_service, write_pipeline
from gw_store_postgres import PostgresStore

DSN = os.environ.get("GW_TEST_STORE_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def admin(sql: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name (created by the store itself), dropped with everything in it after the test."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    name = f"gw_test_{secrets.token_hex(5)}"
    yield name
    admin(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def make_pg_store(tmp_path: Path, pg_schema: str) -> Callable[..., PostgresStore]:
    """``make_pg_store('pool_size = 2')``: an unopened store built from a pipeline file, as gw serve builds it."""
    def make(extra: str = "", name: str = "pipeline.toml") -> PostgresStore:
        text = f'[storage]\nuse = "postgres"\ndsn = "{DSN}"\nschema = "{pg_schema}"\n{extra}\n'
        rt = Runtime.build(write_pipeline(tmp_path, text, name))
        assert isinstance(rt.store, PostgresStore)
        return rt.store

    return make
