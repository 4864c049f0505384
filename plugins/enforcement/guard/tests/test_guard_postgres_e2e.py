"""Acceptance, end to end against the real PostgreSQL through gw's postgres listener:

* ``DROP TABLE`` by an agent is refused (SQLSTATE 42501) with the rule's message; by a ``dba`` member it
  passes guard and runs; ``TRUNCATE`` is refused for everyone; an unrecognised statement gets the custom
  message of the canonical pipeline.
* The bypass corpus: statements written to slip past a read-only policy (comments, case, CTE-wrapped DML,
  multi-statement strings, EXPLAIN ANALYZE, dollar quoting, unicode escapes ...) are all refused, and the
  canary table they aim at keeps its rows.

Needs PostgreSQL on 127.0.0.1:5432 and the postgres, jwt and sqlanalysis plugins plus psycopg.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from gw.testing import issue_token, require_service, running_gateway, write_pipeline

SECRET = "guard-e2e-secret-0123456789abcdefghij"
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
UNKNOWN_MESSAGE = "statement not recognised; rewrite it in plain SQL"
READ_ONLY_MESSAGE = "this listener is read-only: send a single plain SELECT"

PIPELINE = """
[gateway]
data_dir = "{data}"
drain_timeout = "2s"

[identity.tokens]
use = "jwt"
issuer = "https://gw.test"
audience = "gw"
secret_env = "GW_GUARD_E2E_SECRET"

[pipelines.agents]
stages = [
  {{ use = "guard", deny = [
      {{ kind = "ddl", except_groups = ["dba"] }},
      {{ verb = "truncate" }},
      {{ kind = "unknown", message = "{unknown}" }},
  ] }},
]

[pipelines.readonly]
stages = [
  {{ use = "guard", deny = [
      {{ kind = ["write", "ddl", "admin", "unknown"], message = "{read_only}" }},
      {{ flags = ["multi_statement"], message = "{read_only}" }},
  ] }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "agents"
allow_groups = ["agents", "dba"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}

[[listeners]]
name = "reports"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "readonly"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}
"""

BYPASS = [
    "DROP TABLE {t}",
    "/**/DROP TABLE {t}",
    "dRoP/* x */TaBlE {t}",
    "SELECT 1; DROP TABLE {t}",
    "SELECT 1 /* ; */ ; DELETE FROM {t}",
    "SELECT 'a;b'; DELETE FROM {t}",
    "WITH x AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (UPDATE {t} SET id = 0 RETURNING 1) SELECT 1",
    "EXPLAIN ANALYZE DELETE FROM {t}",
    "EXPLAIN (ANALYZE, COSTS off) DELETE FROM {t}",
    "SELECT $x$ a $x$; DROP TABLE {t}",
    "SELECT 'a\\'; DROP TABLE {t}; --'",
    "DELETE FROM {u}",
    "DO $$ BEGIN EXECUTE 'DROP TABLE {t}'; END $$",
    "PREPARE p AS DELETE FROM {t}",
    "SELECT * FROM {t} FOR UPDATE",
    "COPY {t} FROM PROGRAM 'true'",
    "SELECT set_config('search_path', 'evil', false)",
    "SET ROLE postgres",
    "BEGIN; DELETE FROM {t}; COMMIT",
    "SELECT * INTO {t}_copy FROM {t}",
]


def _require_plugins() -> None:
    for module in ("gw_postgres", "gw_jwt", "gw_sqlanalysis", "psycopg"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


@pytest.fixture
def table() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    _require_plugins()
    import psycopg

    name = f"gw_guard_e2e_{secrets.token_hex(4)}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int)")
        conn.execute(f"INSERT INTO {name} VALUES (1), (2), (3)")
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_copy")


def rows_in(table: str) -> int | None:
    """The canary's row count, or None when the table is gone (checked directly, not through gw)."""
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:  # type: ignore[index]
            return None
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


class Agent:
    """A psycopg client of gw, driven from a worker thread (psycopg's sync API blocks)."""

    def __init__(self, port: int, token: str) -> None:
        import psycopg

        self.conn = psycopg.connect(host="127.0.0.1", port=port, dbname="test", user="agent", password=token,
                                    sslmode="disable", connect_timeout=5, autocommit=True)

    def execute(self, sql: str) -> Any:
        import psycopg

        try:
            cur = self.conn.execute(sql)
            return cur.rowcount
        except psycopg.Error as e:  # the test inspects the error the client saw
            return e

    async def run(self, sql: str) -> Any:
        return await trio.to_thread.run_sync(self.execute, sql, abandon_on_cancel=True)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.conn.close)


def _pipeline(tmp_path: Path) -> Path:
    return write_pipeline(tmp_path, PIPELINE.format(data=tmp_path / "data", unknown=UNKNOWN_MESSAGE,
                                                    read_only=READ_ONLY_MESSAGE))


async def test_drop_table_denied_for_agents_passes_for_dba(tmp_path: Path, table: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("GW_GUARD_E2E_SECRET", SECRET)
    async with running_gateway(_pipeline(tmp_path)) as gw:
        port = gw.port("orders")
        agent = await trio.to_thread.run_sync(Agent, port, issue_token(gw.runtime, "alice", ["agents"]))
        dba = await trio.to_thread.run_sync(Agent, port, issue_token(gw.runtime, "dana", ["agents", "dba"]))
        try:
            error = await agent.run(f"DROP TABLE {table}")
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
            assert error.sqlstate == "42501"
            assert 'guard rule { kind = "ddl", except_groups = ["dba"] }' in str(error)
            assert rows_in(table) == 3

            error = await dba.run(f"TRUNCATE {table}")
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
            assert '{ verb = "truncate" }' in str(error) and rows_in(table) == 3

            error = await agent.run(f"DO $$ BEGIN EXECUTE 'DROP TABLE {table}'; END $$")
            assert isinstance(error, psycopg.errors.InsufficientPrivilege) and error.diag.message_primary == UNKNOWN_MESSAGE

            assert await agent.run(f"SELECT * FROM {table}") == 3, "the session survives refusals"
            assert not isinstance(await dba.run(f"DROP TABLE {table}"), Exception)
            assert rows_in(table) is None
        finally:
            await agent.close()
            await dba.close()


async def test_bypass_corpus_is_refused_end_to_end(tmp_path: Path, table: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("GW_GUARD_E2E_SECRET", SECRET)
    escaped = 'U&"' + "".join(f"\\{ord(ch):04x}" for ch in table) + '"'
    async with running_gateway(_pipeline(tmp_path)) as gw:
        agent = await trio.to_thread.run_sync(Agent, gw.port("reports"),
                                              issue_token(gw.runtime, "alice", ["agents"]))
        try:
            for template in BYPASS:
                sql = template.format(t=table, u=escaped)
                error = await agent.run(sql)
                assert isinstance(error, psycopg.errors.InsufficientPrivilege), (sql, error)
                assert error.diag.message_primary == READ_ONLY_MESSAGE, sql
                assert rows_in(table) == 3, f"{sql!r} reached the database"
            assert await agent.run(f"SELECT id FROM {table} WHERE id > 1") == 2
        finally:
            await agent.close()
