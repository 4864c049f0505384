"""Acceptance, end to end against the real PostgreSQL: ``DELETE FROM t`` (no WHERE) through gw's postgres
listener is held; ``gw approvals approve`` with a dba token lets it run; the requester and non-approvers are
refused; deny and timeout end with the documented SQLSTATEs; retry mode works.

Needs the real peers and plugins: PostgreSQL on 127.0.0.1:5432, and the postgres, jwt and sqlite plugins with
a SQL classifier that recognises ``DELETE FROM t`` as a write without WHERE.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from gw.testing import issue_token, require_service, running_gateway, write_pipeline
from gw_approve.cli import approve_request, deny_request
from gw_approve.ledger import ApprovalError

SECRET = "approve-e2e-secret-0123456789abcdefgh"
RULES = ('require = [ { kind = "write", flags = ["no_where"] }, { verb = ["grant", "revoke"] }, '
         '{ objects = ["public.payments*"], kind = "write" } ]')


def _require_plugins() -> None:
    for module, what in (("gw_postgres", "postgres protocol"), ("gw_jwt", "jwt identity"),
                         ("gw_sqlite", "sqlite storage"), ("psycopg", "psycopg client")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the {what} plugin/library ({module}) is not installed")
    from gw.model import Kind
    from gw_sqlanalysis import Classifier

    found = Classifier("postgres").classify("DELETE FROM t")
    if found.kind is not Kind.WRITE or "no_where" not in found.flags:
        pytest.skip(f"gw_sqlanalysis does not classify DELETE FROM t as a write without WHERE yet ({found})")


PIPELINE = """
[gateway]
data_dir = "{data}"
name = "gw-e2e"
drain_timeout = "2s"

[storage]
use = "sqlite"

[identity.tokens]
use = "jwt"
issuer = "https://gw.test"
audience = "gw"
secret_env = "GW_APPROVE_E2E_SECRET"

[pipelines.hold]
stages = [{{ use = "approve", approvers = ["dba"], timeout = "10m", mode = "hold", {rules} }}]

[pipelines.fast]
stages = [{{ use = "approve", approvers = ["dba"], timeout = "1s", poll_interval = "100ms", {rules} }}]

[pipelines.retry]
stages = [{{ use = "approve", approvers = ["dba"], timeout = "10m", mode = "retry", {rules} }}]
{listeners}
"""

LISTENER = """
[[listeners]]
name = "{name}"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "tokens"
pipeline = "{pipeline}"
allow_groups = ["agents"]
upstream = {{ host = "127.0.0.1", port = 5432, database = "test", user = "postgres", sslmode = "disable" }}
"""


@pytest.fixture
def table() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    _require_plugins()
    import psycopg

    name = f"gw_approve_e2e_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int)")
    yield name
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def fill(table: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} SELECT generate_series(1, 3)")


class Agent:
    """A psycopg client of gw (in a worker thread: psycopg's sync API blocks while a command is held)."""

    def __init__(self, port: int, token: str) -> None:
        import psycopg

        self.notices: list[str] = []
        self.conn = psycopg.connect(host="127.0.0.1", port=port, dbname="test", user="agent", password=token,
                                    sslmode="disable", connect_timeout=5, autocommit=True)
        self.conn.add_notice_handler(lambda diag: self.notices.append(diag.message_primary or ""))

    def execute(self, sql: str) -> Any:
        """The row count, or the psycopg error."""
        import psycopg

        try:
            return self.conn.execute(sql).rowcount
        except psycopg.Error as e:  # the test inspects the error the client saw
            return e

    async def run(self, sql: str) -> Any:
        return await trio.to_thread.run_sync(self.execute, sql, abandon_on_cancel=True)

    async def held(self, sql: str, nursery: trio.Nursery, result: list[Any]) -> str:
        """Start ``sql``, wait for the hold notice, return the request id (the result lands in ``result``)."""
        before = len(self.notices)

        async def go() -> None:
            result.append(await self.run(sql))

        nursery.start_soon(go)
        with trio.fail_after(10):
            while len(self.notices) == before:
                await trio.sleep(0.02)
        notice = self.notices[-1]
        assert notice.startswith("gw: approval required ("), notice
        return notice.split("Request ")[1].split()[0]

    def close(self) -> None:
        self.conn.close()


async def gw_approvals(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    exe = str(Path(sys.executable).with_name("gw"))
    done = await trio.run_process([exe, "approvals", *args], capture_stdout=True, capture_stderr=True,
                                  check=False, env={**os.environ, **env})
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_held_delete_runs_after_dba_approval_and_the_refusals(
        tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("GW_APPROVE_E2E_SECRET", SECRET)
    listeners = "".join(LISTENER.format(name=n, pipeline=p) for n, p in (
        ("orders", "hold"), ("orders-fast", "fast"), ("orders-retry", "retry")))
    path = write_pipeline(tmp_path, PIPELINE.format(data=tmp_path / "data", rules=RULES, listeners=listeners))
    env = {"GW_CONFIG": str(path), "GW_APPROVE_E2E_SECRET": SECRET}
    async with running_gateway(path) as gw:
        rt = gw.runtime
        token: Callable[..., str] = lambda sub, *groups: issue_token(rt, sub, list(groups))
        alice = await trio.to_thread.run_sync(Agent, gw.port("orders"), token("alice", "agents"))
        try:
            # Held, refused for the requester and a non-approver, approved by a dba through the real CLI.
            fill(table)
            result: list[Any] = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"DELETE FROM {table}", nursery, result)
                with pytest.raises(ApprovalError, match="alice made request"):
                    await approve_request(rt, rid, token=token("alice", "agents"))
                with pytest.raises(ApprovalError, match="you are in groups agents; approvers .* must be in dba"):
                    await approve_request(rt, rid, token=token("bob", "agents"))
                code, out, err = await gw_approvals({**env, "GW_TOKEN": token("dana", "dba")}, "approve", rid)
                assert (code, out.strip(), err) == (0, f"approved {rid}: the held command of alice runs now", "")
            assert result == [3]

            # Denied: the client gets 42501 with the approver's reason.
            fill(table)
            result = []
            async with trio.open_nursery() as nursery:
                rid = await alice.held(f"DELETE FROM {table}", nursery, result)
                await deny_request(rt, rid, token=token("dana", "dba"), reason="archive first")
            error = result[0]
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), error
            assert error.sqlstate == "42501" and "denied by dana: archive first" in str(error)
            assert await alice.run("SELECT 1") == 1, "the session survives a denial"
        finally:
            await trio.to_thread.run_sync(alice.close)

        # Timeout: 57014 (query_canceled).
        fast = await trio.to_thread.run_sync(Agent, gw.port("orders-fast"), token("alice", "agents"))
        error = await fast.run(f"DELETE FROM {table}")
        await trio.to_thread.run_sync(fast.close)
        assert isinstance(error, psycopg.errors.QueryCanceled) and error.sqlstate == "57014", error
        assert "nobody approved request" in str(error)

        # Retry mode: refused with the id, runs once after approval, refused again after that.
        retry = await trio.to_thread.run_sync(Agent, gw.port("orders-retry"), token("alice", "agents"))
        try:
            first = await retry.run(f"DELETE FROM {table}")
            assert isinstance(first, psycopg.errors.InsufficientPrivilege), first
            rid = str(first).split("Request ")[1].split()[0]
            await approve_request(rt, rid, token=token("dana", "dba"))
            assert await retry.run(f"DELETE FROM {table}") == 3
            third = await retry.run(f"DELETE FROM {table}")
            assert isinstance(third, psycopg.errors.InsufficientPrivilege) and rid not in str(third)
        finally:
            await trio.to_thread.run_sync(retry.close)
