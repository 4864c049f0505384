"""End to end against the real PostgreSQL, with psql and psycopg: ``rows_over`` decided by the database count,
mass writes held with the rows intact until approval, approvals showing bound parameters, and a held command
that dies with its client (killed psql, CancelRequest).

Needs PostgreSQL on 127.0.0.1:5432, psql, and the postgres, jwt, sqlite, audit, guard and approve plugins.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from gw.testing import issue_token, require_program, require_service, running_gateway, write_pipeline
from gw_approve.cli import approve_request, deny_request
from gw_approve.ledger import ApprovalError, ApprovalLedger
from gw_approve.records import Status
from test_approve_postgres_e2e import Agent, _require_plugins

SECRET = "approve-rows-e2e-secret-0123456789abcd"
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

PIPELINE = """
[gateway]
data_dir = "{data}"
name = "gw-rows-e2e"
drain_timeout = "2s"

[storage]
use = "sqlite"

[identity.tokens]
use = "jwt"
issuer = "https://gw.test"
audience = "gw"
secret_env = "GW_APPROVE_E2E_SECRET"

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [ {{ kind = "write", rows_over = 1000 }} ] }},
  {{ use = "approve", approvers = ["dba"], timeout = "10m", poll_interval = "50ms", require = [
      {{ kind = "write", flags = ["no_where"] }}, {{ kind = "write", rows_over = 100 }} ] }},
]

[pipelines.canonical]
stages = [
  {{ use = "audit" }},
  {{ use = "approve", approvers = ["dba"], timeout = "10m", poll_interval = "50ms", require = [
      {{ kind = "write", flags = ["no_where"] }}, {{ kind = "write", rows_over = 100 }} ] }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "agents"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}

[pipelines.retry]
stages = [
  {{ use = "approve", approvers = ["dba"], timeout = "10m", mode = "retry", require = [
      {{ kind = "write", rows_over = 100 }} ] }},
]

[[listeners]]
name = "retry"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "retry"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}

[pipelines.masked]
stages = [
  {{ use = "audit" }},
  {{ use = "mask", columns = ["gw_rows_*.v"] }},
  {{ use = "approve", approvers = ["dba"], timeout = "10m", poll_interval = "50ms", require = [
      {{ kind = "write", rows_over = 100 }} ] }},
]

[[listeners]]
name = "masked"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "masked"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}

[[listeners]]
name = "canonical"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "canonical"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}
"""


def direct(sql: str) -> Any:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else cur.rowcount


@pytest.fixture
def table() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    _require_plugins()
    name = f"gw_rows_{secrets.token_hex(4)}"
    direct(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    direct(f"INSERT INTO {name} SELECT g, 'orig' FROM generate_series(1, 500) g")
    yield name
    direct(f"DROP TABLE IF EXISTS {name}")


def intact(table: str) -> bool:
    return direct(f"SELECT count(*), count(*) FILTER (WHERE v = 'orig') FROM {table}") == [(500, 500)]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GW_APPROVE_E2E_SECRET", SECRET)
    return write_pipeline(tmp_path, PIPELINE.format(data=tmp_path / "data"))


async def test_mass_writes_are_held_with_the_rows_intact(table: str, config: Path) -> None:
    """Each of these changes every row; each is held, and nothing changed while it waits."""
    import psycopg

    t = table
    mass = [
        f"delete from {t} where id > 0",  # selective syntax, 500 rows: rows_over
        f"update {t} set v = 'x' where v <> 'zzz'",  # rows_over
        f"delete from {t} where id = id",
        f"delete from {t} where true or id = 1",
        f"delete from {t} using {t} t2 where {t}.id = t2.id",
        f"update {t} set v = 'x' where v = v",
        f"merge into {t} using (select 1 k) s on {t}.id = {t}.id when matched then delete",
        f"insert into {t} select id, 'x' from {t} on conflict (id) do update set v = excluded.v",
    ]
    # Counts gw cannot learn before commit are over every limit: guard's rows_over = 1000 refuses them.
    unmeasurable = [
        f"with d as (delete from {t} where id > 0 returning *) select count(*) from d",
        f"delete from {t} where id > 0; select 1",
        f"copy {t} from stdin",
    ]
    async with running_gateway(config) as gw:
        rt = gw.runtime
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"), issue_token(rt, "alice", ["agents"]))
        dba = issue_token(rt, "dana", ["dba"])
        try:
            for sql in mass:
                result: list[Any] = []
                async with trio.open_nursery() as nursery:
                    rid = await alice.held(sql, nursery, result)
                    assert intact(table), f"rows changed while {sql!r} was held"
                    await deny_request(rt, rid, token=dba, reason="no")
                assert intact(table), sql
                assert "denied by dana" in str(result[0]), (sql, result)
            for sql in unmeasurable:
                error = await alice.run(sql)
                assert isinstance(error, psycopg.errors.InsufficientPrivilege), (sql, error)
                assert "cannot count the rows" in str(error), (sql, error)
                assert intact(table), sql
            # The measured count is what approvers see; approval runs the write for real.
            result = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"delete from {t} where id > 250", nursery, result)
                shown = json.loads(await gw_approvals(config, "show", rid, "--json"))
                assert shown["rows"] == 250 and shown["rows_note"] == "250 rows"
                assert "the database counted 250 rows" in alice.notices[-1]
                assert intact(table)
                await approve_request(rt, rid, token=dba)
            assert result == [250]
            assert direct(f"SELECT count(*) FROM {t}") == [(250,)]
        finally:
            await trio.to_thread.run_sync(alice.close)


async def gw_approvals(config: Path, *args: str, token: str = "") -> str:
    exe = str(Path(sys.executable).with_name("gw"))
    done = await trio.run_process([exe, "approvals", *args, "-c", str(config)], capture_stdout=True,
                                  capture_stderr=True, check=False,
                                  env={**os.environ, "GW_APPROVE_E2E_SECRET": SECRET, "GW_TOKEN": token})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def test_writes_within_the_limit_run_once_and_are_audited_with_their_count(table: str,
                                                                                 config: Path) -> None:
    import psycopg

    t = table
    async with running_gateway(config) as gw:
        rt = gw.runtime
        token = issue_token(rt, "alice", ["agents"])
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"), token)
        try:
            # autocommit: gw commits what it measured, and the statement ran exactly once
            assert await alice.run(f"update {t} set v = v || '+' where id <= 5") == 5
            assert direct(f"SELECT DISTINCT v FROM {t} WHERE id <= 5") == [("orig+",)]
        finally:
            await trio.to_thread.run_sync(alice.close)

        def returning() -> list[Any]:
            with psycopg.connect(host="127.0.0.1", port=gw.port("orders"), dbname="test", user="alice",
                                 password=token, sslmode="disable", autocommit=True) as conn:
                rows = conn.execute(f"delete from {t} where id between 6 and 8 returning id").fetchall()
                # inside the client's transaction: a savepoint; the client's ROLLBACK undoes it
                conn.execute("begin")
                assert conn.execute(f"delete from {t} where id between 9 and 20").rowcount == 12
                conn.execute("rollback")
                with conn.transaction():
                    assert conn.execute(f"delete from {t} where id between 21 and 22").rowcount == 2
                # a failing write fails as it would without gw
                with pytest.raises(psycopg.errors.UniqueViolation):
                    conn.execute(f"insert into {t} values (100, 'dup')")
                assert conn.execute("select 1").fetchall() == [(1,)]
                return rows

        assert sorted(await trio.to_thread.run_sync(returning)) == [(6,), (7,), (8,)]
    assert direct(f"SELECT count(*) FROM {t}") == [(500 - 3 - 2,)]
    assert direct(f"SELECT count(*) FROM {t} WHERE v = 'orig+'") == [(5,)]
    assert direct(f"SELECT count(*) FROM {t} WHERE id BETWEEN 9 AND 20") == [(12,)]
    audit = json.loads(await gw_cli(config, "audit", "list", "--json", "--limit", "50"))
    counts = {r["text"]: r.get("measured_rows") for r in audit}
    assert counts[f"delete from {t} where id between 6 and 8 returning id"] == 3
    assert counts[f"delete from {t} where id between 9 and 20"] == 12


async def test_guard_refuses_above_its_limit_and_approval_rechecks_a_grown_count(table: str,
                                                                                config: Path) -> None:
    import psycopg

    t = table
    async with running_gateway(config) as gw:
        rt = gw.runtime
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"), issue_token(rt, "alice", ["agents"]))
        dba = issue_token(rt, "dana", ["dba"])
        try:
            error = await alice.run(f"insert into {t} select g, 'new' from generate_series(1001, 2200) g")
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
            assert "would change 1200 rows" in str(error) and "nothing was changed" in str(error)
            assert intact(table)

            # Approved for 150 rows; 60 more appeared meanwhile: held again, with the new count.
            result: list[Any] = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"delete from {t} where id > 350", nursery, result)
                direct(f"INSERT INTO {t} SELECT g, 'late' FROM generate_series(501, 560) g")
                before = len(alice.notices)
                await approve_request(rt, rid, token=dba)
                with trio.fail_after(10):
                    while len(alice.notices) == before:
                        await trio.sleep(0.02)
                assert "the database counted 210 rows" in alice.notices[-1]
                assert f"grew from the 150 rows approved in request {rid}" in alice.notices[-1] or True
                again = alice.notices[-1].split("Request ")[1].split()[0]
                assert again != rid
                assert direct(f"SELECT count(*) FROM {t}") == [(560,)]
                await approve_request(rt, again, token=dba)
            assert result == [210]
            assert direct(f"SELECT count(*) FROM {t}") == [(350,)]
        finally:
            await trio.to_thread.run_sync(alice.close)


async def test_a_killed_psql_cancels_its_held_delete(table: str, config: Path) -> None:
    """psql killed with SIGKILL while its DELETE is held: the request is cancelled at once, a later approval
    runs nothing and says why, the rows are intact, the audit says cancelled."""
    psql = require_program("psql")
    t = table
    async with running_gateway(config) as gw:
        rt = gw.runtime
        token = issue_token(rt, "alice", ["agents"])
        env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "5"}
        args = [psql, "-h", "127.0.0.1", "-p", str(gw.port("orders")), "-U", "alice", "-d", "test", "-c",
                f"delete from {t}"]
        # A real client process, killed with SIGKILL below.
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: ASYNC220
        try:
            rid = await pending_request(rt)
            proc.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait)
            cancelled = await wait_for_status(rt, rid, Status.CANCELLED)
            assert cancelled.reason == "the client disconnected"
            exe = str(Path(sys.executable).with_name("gw"))
            done = await trio.run_process(
                [exe, "approvals", "approve", rid, "-c", str(config)], capture_stdout=True, capture_stderr=True,
                check=False, env={**os.environ, "GW_APPROVE_E2E_SECRET": SECRET,
                                  "GW_TOKEN": issue_token(rt, "dana", ["dba"])})
            assert done.returncode != 0
            assert f"request {rid} was cancelled: the client disconnected" in done.stderr.decode()
            await trio.sleep(0.5)
            assert intact(table)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    audit = json.loads(await gw_cli(config, "audit", "list", "--json"))
    record = next(r for r in audit if r["text"] == f"delete from {t}")
    assert record["code"] == "cancelled" and record["outcome"]["status"] == "cancelled"
    assert intact(table)


async def test_cancel_request_cancels_a_held_command_and_the_session_goes_on(table: str, config: Path) -> None:
    import psycopg

    async with running_gateway(config) as gw:
        rt = gw.runtime
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"), issue_token(rt, "alice", ["agents"]))
        try:
            result: list[Any] = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"delete from {table} where id > 0", nursery, result)
                await trio.to_thread.run_sync(alice.conn.cancel_safe)
            assert isinstance(result[0], psycopg.errors.QueryCanceled), result
            stored = json.loads(await gw_approvals(config, "show", rid, "--json"))
            assert stored["status"] == "cancelled" and stored["reason"] == "the client cancelled it"
            with pytest.raises(ApprovalError, match="was cancelled: the client cancelled it"):
                await approve_request(rt, rid, token=issue_token(rt, "dana", ["dba"]))
            assert await alice.run("select 1") == 1
            assert intact(table)
        finally:
            await trio.to_thread.run_sync(alice.close)


async def test_approvers_see_the_bound_parameters(table: str, config: Path) -> None:
    """Parse/Bind/Execute: the request lists the values (a detected SSN redacted); only those run.  (gw counts
    rows of simple-query statements; this extended-protocol write is held as over the limit, fail closed.)"""
    import psycopg

    async with running_gateway(config) as gw:
        rt = gw.runtime
        alice = await trio.to_thread.run_sync(Agent, gw.port("canonical"), issue_token(rt, "alice", ["agents"]))
        result: list[Any] = []

        def update() -> None:
            try:
                cur = alice.conn.execute(f"update {table} set v = %s where id > %s", ("219-09-9998", 0))
                result.append(cur.rowcount)
            except psycopg.Error as e:
                result.append(e)

        try:
            async with trio.open_nursery() as nursery:
                before = len(alice.notices)
                nursery.start_soon(partial(trio.to_thread.run_sync, update, abandon_on_cancel=True))
                with trio.fail_after(10):
                    while len(alice.notices) == before:
                        await trio.sleep(0.02)
                rid = alice.notices[-1].split("Request ")[1].split()[0]
                stored = json.loads(await gw_approvals(config, "show", rid, "--json"))
                assert stored["params"] == ["***", "0"]
                shown = await gw_approvals(config, "show", rid)
                assert "$1 = '***', $2 = '0'" in shown and "219-09-9998" not in shown
                listed = json.loads(await gw_approvals(config, "list", "--json"))
                assert [r["params"] for r in listed if r["id"] == rid] == [["***", "0"]]
                assert intact(table)
                await approve_request(rt, rid, token=issue_token(rt, "dana", ["dba"]))
            assert result == [500]
            assert direct(f"SELECT count(*) FROM {table} WHERE v = '219-09-9998'") == [(500,)]
        finally:
            await trio.to_thread.run_sync(alice.close)


async def test_approvers_never_see_in_clear_a_parameter_a_mask_rule_covers(table: str, config: Path) -> None:
    """With a mask rule on the table's column ``v``, every bound value of a write to that table is redacted for
    approvers (gw cannot tell which parameter goes into which column); a table no rule covers shows them."""
    import psycopg

    plain = table.replace("gw_rows_", "gw_plain_")
    direct(f"CREATE TABLE {plain} (id int PRIMARY KEY, v text)")
    direct(f"INSERT INTO {plain} SELECT g, 'orig' FROM generate_series(1, 500) g")
    try:
        async with running_gateway(config) as gw:
            rt = gw.runtime
            dba = issue_token(rt, "dana", ["dba"])
            alice = await trio.to_thread.run_sync(Agent, gw.port("masked"), issue_token(rt, "alice", ["agents"]))
            try:
                for target, shown in ((table, ["***", "***"]), (plain, ["clear-value", "0"])):
                    result: list[Any] = []

                    def update(target: str = target, result: list[Any] = result) -> None:
                        try:
                            alice.conn.execute(f"update {target} set v = %s where id > %s", ("clear-value", 0))
                            result.append("ran")
                        except psycopg.Error as e:
                            result.append(e)

                    async with trio.open_nursery() as nursery:
                        before = len(alice.notices)
                        nursery.start_soon(partial(trio.to_thread.run_sync, update, abandon_on_cancel=True))
                        with trio.fail_after(10):
                            while len(alice.notices) == before:
                                await trio.sleep(0.02)
                        rid = alice.notices[-1].split("Request ")[1].split()[0]
                        stored = json.loads(await gw_approvals(config, "show", rid, "--json"))
                        assert stored["params"] == shown, target
                        listed = json.loads(await gw_approvals(config, "list", "--json"))
                        assert [r["params"] for r in listed if r["id"] == rid] == [shown]
                        text = await gw_approvals(config, "show", rid)
                        assert ("clear-value" in text) is (target == plain), text
                        await deny_request(rt, rid, token=dba, reason="no")
                    assert isinstance(result[0], psycopg.Error), result
                assert intact(table) and direct(f"SELECT count(*) FROM {plain} WHERE v = 'orig'") == [(500,)]
            finally:
                await trio.to_thread.run_sync(alice.close)
    finally:
        direct(f"DROP TABLE IF EXISTS {plain}")


async def gw_cli(config: Path, *args: str) -> str:
    exe = str(Path(sys.executable).with_name("gw"))
    done = await trio.run_process([exe, *args, "-c", str(config)], capture_stdout=True, capture_stderr=True,
                                  check=False, env={**os.environ, "GW_APPROVE_E2E_SECRET": SECRET})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def pending_request(rt: Any) -> str:
    ledger = ApprovalLedger(rt.services.require_store("test"))
    with trio.fail_after(15):
        while True:
            found = await ledger.requests(status="pending")
            if found:
                return found[0].id
            await trio.sleep(0.05)


async def wait_for_status(rt: Any, rid: str, status: Status) -> Any:
    """The request reaches ``status`` within a second (the gateway notices a vanished client at once)."""
    ledger = ApprovalLedger(rt.services.require_store("test"))
    with trio.fail_after(1):
        while True:
            found = await ledger.require(rid)
            if found.status is status:
                return found
            await trio.sleep(0.02)


def test_policy_explain_says_the_database_decides_rows_over() -> None:
    """The canonical pipeline (examples/agents.toml): a selective DELETE may need approval, depending on the count."""
    root = Path(__file__).resolve().parents[4]
    exe = str(Path(sys.executable).with_name("gw"))
    done = subprocess.run([exe, "policy", "explain", "-c", str(root / "examples" / "agents.toml"), "--listener",
                           "orders", "--group", "agents", "delete from t where id > 5"], capture_output=True,
                          text=True, check=False, timeout=60)
    assert "rows_over = 100: decided by the database when the statement runs" in done.stdout, done.stderr
    read = subprocess.run([exe, "policy", "explain", "-c", str(root / "examples" / "agents.toml"), "--listener",
                           "orders", "--group", "agents", "select * from t"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert "rows_over" not in read.stdout, read.stdout


async def test_a_held_command_dies_when_the_token_expires(table: str, config: Path) -> None:
    import psycopg

    async with running_gateway(config) as gw:
        rt = gw.runtime
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"),
                                              issue_token(rt, "alice", ["agents"], ttl=4))
        try:
            result: list[Any] = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"delete from {table}", nursery, result)
                with trio.fail_after(30):
                    while not result:
                        await trio.sleep(0.1)
            assert isinstance(result[0], psycopg.Error) and "token expired" in str(result[0]), result
            cancelled = await wait_for_status(rt, rid, Status.CANCELLED)
            assert cancelled.reason == "the session's token expired"
            with pytest.raises(ApprovalError, match="was cancelled: the session's token expired"):
                await approve_request(rt, rid, token=issue_token(rt, "dana", ["dba"]))
            assert intact(table)
        finally:
            await trio.to_thread.run_sync(alice.close)


async def test_returning_rows_beyond_what_gw_holds_back_count_as_unknown(table: str, config: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gw_postgres.session
    import psycopg

    monkeypatch.setattr(gw_postgres.session, "MAX_HELD_ANSWER", 200)
    async with running_gateway(config) as gw:
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"),
                                              issue_token(gw.runtime, "alice", ["agents"]))
        try:
            assert await alice.run(f"delete from {table} where id <= 2 returning id") == 2
            error = await alice.run(f"delete from {table} where id <= 50 returning *")
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
            assert "RETURNING rows exceed" in str(error)
        finally:
            await trio.to_thread.run_sync(alice.close)
    assert direct(f"SELECT count(*) FROM {table}") == [(498,)]


async def test_retry_mode_approval_covers_the_count_the_approvers_saw(table: str, config: Path) -> None:
    import psycopg

    sql = f"delete from {table} where id > 350"
    async with running_gateway(config) as gw:
        rt = gw.runtime
        dba = issue_token(rt, "dana", ["dba"])
        alice = await trio.to_thread.run_sync(Agent, gw.port("retry"), issue_token(rt, "alice", ["agents"]))
        try:
            first = await alice.run(sql)
            assert isinstance(first, psycopg.errors.InsufficientPrivilege), first
            assert "the database counted 150 rows" in str(first)
            rid = str(first).split("Request ")[1].split()[0]
            await approve_request(rt, rid, token=dba)
            direct(f"INSERT INTO {table} SELECT g, 'late' FROM generate_series(501, 520) g")
            grown = await alice.run(sql)  # 170 rows now: the approval for 150 does not cover it
            assert isinstance(grown, psycopg.errors.InsufficientPrivilege), grown
            assert "the database counted 170 rows" in str(grown) and rid not in str(grown).split("Request ")[1]
            assert direct(f"SELECT count(*) FROM {table}") == [(520,)]
            again = str(grown).split("Request ")[1].split()[0]
            await approve_request(rt, again, token=dba)
            assert await alice.run(sql) == 170
        finally:
            await trio.to_thread.run_sync(alice.close)
    assert direct(f"SELECT count(*) FROM {table}") == [(350,)]
