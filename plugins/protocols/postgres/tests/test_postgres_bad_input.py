"""Bad input, each with a test: probes, garbage, lying lengths, stalls, vanishing clients, a dead upstream.
Each ends with a clear error to that client, and a concurrent healthy session keeps working."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio
from gw_postgres.messages import (
    Bind,
    DataRow,
    ErrorResponse,
    Execute,
    FunctionCall,
    Parse,
    Query,
    ReadyForQuery,
    StartupMessage,
    Sync,
)


@asynccontextmanager
async def healthy(pg: Any, port: int) -> AsyncIterator[Any]:
    """A session that must stay usable through whatever the test does to others."""
    c = await pg.RawClient.connect(port)
    assert isinstance((await c.login())[-1], ReadyForQuery)

    async def check() -> None:
        await c.send(Query("select 41 + 1"))
        msgs = await c.until(ReadyForQuery)
        rows = [m for m in msgs if isinstance(m, DataRow)]
        assert rows and rows[0].values == (b"42",), msgs

    c.check = check
    try:
        yield c
        await check()
    finally:
        await c.aclose()


async def test_port_scan_probes(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        port = gw.port("pg")
        async with healthy(pg, port) as ok:
            # connect and close
            s = await trio.open_tcp_stream("127.0.0.1", port)
            await s.aclose()
            await ok.check()
            # random bytes: a FATAL 08P01 (or a close), never a crash
            for seed in range(5):
                c = await pg.RawClient.connect(port)
                await c.send(bytes([0, 0, 0, 40]) + os.urandom(36) if seed == 0 else os.urandom(64 + seed))
                msgs = await c.until(ErrorResponse)
                assert not msgs or msgs[-1].code in ("08P01", "0A000"), msgs
                assert await c.recv() is None
                await ok.check()
            # an oversized length in the start-up packet
            c = await pg.RawClient.connect(port)
            await c.send(struct.pack("!i", 1 << 30))
            (err,) = await c.until(ErrorResponse)
            assert err.code == "08P01" and "invalid start-up packet length 1073741824" in err.message
            await ok.check()
            # HTTP instead of PostgreSQL
            c = await pg.RawClient.connect(port)
            await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            (err,) = await c.until(ErrorResponse)
            assert err.severity == "FATAL"


async def test_lying_lengths_after_login(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    listener = 'max_message_size = "64KiB"'
    async with pg_gateway(listener=listener) as gw:
        port = gw.port("pg")
        async with healthy(pg, port) as ok:
            for header, expected in [
                (b"Q" + struct.pack("!i", 1 << 30), ("54000", "exceeds this listener's max_message_size")),
                (b"Q" + struct.pack("!i", -5), ("08P01", "message length -5 is invalid")),
                (b"Q" + struct.pack("!i", 2), ("08P01", "message length 2 is invalid")),
                (b"Z" + struct.pack("!i", 4), ("08P01", "unknown message type 'Z' from the client")),
                (b"Q\x00\x00\x00\x05x", ("08P01", "a string is not NUL-terminated")),
            ]:
                c = await pg.RawClient.connect(port)
                assert isinstance((await c.login())[-1], ReadyForQuery)
                await c.send(header)
                msgs = await c.until(ErrorResponse)
                assert (msgs[-1].code, msgs[-1].severity) == (expected[0], "FATAL"), msgs
                assert expected[1] in msgs[-1].message
                assert await c.recv() is None
                await ok.check()
            # a large statement under the limit is fine; over it, the error says what to do
            c = await pg.RawClient.connect(port)
            await c.login()
            await c.send(Query("select '" + "x" * 60000 + "' is not null"))
            assert isinstance((await c.until(ReadyForQuery))[-1], ReadyForQuery)
            await c.send(Query("select '" + "x" * 70000 + "'"))
            (err,) = await c.until(ErrorResponse)
            assert err.code == "54000" and "65536 bytes" in err.message
            assert "max_message_size" in err.get("H")


async def test_half_a_message_then_stall_times_out(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway(listener='message_timeout = "0.3s"', handshake="0.5s") as gw:
        port = gw.port("pg")
        async with healthy(pg, port):
            c = await pg.RawClient.connect(port)
            await c.login()
            await c.send(Query("select 1").encode()[:7])
            (err,) = await c.until(ErrorResponse, timeout=3)
            assert err.code == "08P01" and "waited 0.3s for the rest of a message" in err.message
            # stalling inside the start-up packet hits the handshake timeout
            c = await pg.RawClient.connect(port)
            await c.send(StartupMessage({"user": "alice"}).encode()[:6])
            (err,) = await c.until(ErrorResponse, timeout=3)
            assert "waited 0.5s for the start-up and authentication" in err.message


async def test_upstream_down_is_a_clear_fatal(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway(upstream_port=pg.closed_port()) as gw:
        code, _, err = await pg.psql(pg.dsn(gw.port("pg")), "-c", "select 1")
    assert code == 2
    assert "FATAL:  gw cannot reach the upstream database 127.0.0.1:" in err
    assert "try again later or tell the gateway operator" in err
    assert ("refused", "upstream_unavailable") in events


async def test_upstream_dies_mid_session(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway() as gw:
        port = gw.port("pg")
        async with healthy(pg, port):
            c = await pg.RawClient.connect(port)
            await c.login()
            await c.send(Query("select pg_terminate_backend(pg_backend_pid())"))
            msgs = await c.until(ErrorResponse)
            assert msgs[-1].severity == "FATAL" and msgs[-1].code == "57P01"  # relayed from PostgreSQL
            assert await c.recv() is None
    assert ("ended", "upstream_closed") in events


async def test_client_vanishing_mid_query(pg_gateway: Any, pg: Any, events: list[Any]) -> None:
    async with pg_gateway() as gw:
        port = gw.port("pg")
        async with healthy(pg, port):
            c = await pg.RawClient.connect(port)
            await c.login(token="alice")
            await c.send(Query("select pg_sleep(30) /* gw-vanish-test */"))
            await trio.sleep(0.3)
            await c.aclose()
            with trio.fail_after(5):
                while ("ended", "client_disconnected_mid_query") not in events:
                    await trio.sleep(0.05)
    assert ("completed", ("select pg_sleep(30) /* gw-vanish-test */", "cancelled", None, None, None)) in events

    def still_running() -> int:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test") as conn:
            return conn.execute("select count(*) from pg_stat_activity where query like '%gw-vanish-test%' "
                                "and pid <> pg_backend_pid()").fetchone()[0]  # type: ignore[index]

    with trio.fail_after(5):
        while await pg.in_thread(still_running):
            await trio.sleep(0.1)


async def test_function_call_is_refused_and_session_survives(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        await c.login()
        await c.send(FunctionCall(1299, (), (), 0))  # now()
        msgs = await c.until(ReadyForQuery)
        assert [type(m).__name__ for m in msgs] == ["ErrorResponse", "ReadyForQuery"]
        assert msgs[0].code == "0A000" and "fast-path function calls" in msgs[0].message
        await c.send(Query("select 1"))
        assert isinstance((await c.until(ReadyForQuery))[-1], ReadyForQuery)


async def test_extended_protocol_bad_input(pg_gateway: Any, pg: Any) -> None:
    async with pg_gateway() as gw:
        port = gw.port("pg")
        async with healthy(pg, port):
            c = await pg.RawClient.connect(port)
            await c.login()
            # Bind to an unknown statement: PostgreSQL's own error, the batch skips to Sync
            await c.send(Bind("", "nope"), Execute(""), Sync())
            msgs = await c.until(ReadyForQuery)
            assert [type(m).__name__ for m in msgs] == ["ErrorResponse", "ReadyForQuery"]
            assert msgs[0].code == "26000"
            # Execute without Bind
            await c.send(Execute("no_such_portal"), Sync())
            msgs = await c.until(ReadyForQuery)
            assert msgs[0].code == "34000", msgs
            # the session still works, extended and simple
            await c.send(Parse("", "select $1::int + 1"), Bind("", "", (), (b"41",)), Execute(""), Sync())
            msgs = await c.until(ReadyForQuery)
            assert [m.values for m in msgs if isinstance(m, DataRow)] == [(b"42",)]


def _psycopg_denied_then_ok(dsn: str) -> list[Any]:
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for q in ("select %s::text as forbidden", "select %s::int"):
            try:
                out.append(conn.execute(q, (1,)).fetchall())
            except psycopg.Error as e:
                out.append(e.sqlstate)
    return out


async def test_denied_execute_skips_to_sync_and_session_stays_usable(pg_gateway: Any, pg: Any,
                                                                     events: list[Any]) -> None:
    async with pg_gateway() as gw:
        out = await pg.in_thread(_psycopg_denied_then_ok, pg.dsn(gw.port("pg")))
        assert out == ["42501", [(1,)]]
        # pipelined: batch 1 ok, batch 2 refused in the middle, batch 3 ok
        c = await pg.RawClient.connect(gw.port("pg"))
        await c.login()
        await c.send(Parse("", "select 1"), Bind("", ""), Execute(""), Sync(),
                     Parse("", "select 'forbidden'"), Bind("", ""), Execute(""), Parse("s2", "select 2"),
                     Sync(),
                     Parse("", "select 3"), Bind("", ""), Execute(""), Sync())
        names = []
        for _ in range(3):
            names.append([type(m).__name__ for m in await c.until(ReadyForQuery)])
        assert names == [["ParseComplete", "BindComplete", "DataRow", "CommandComplete", "ReadyForQuery"],
                         ["ParseComplete", "BindComplete", "ErrorResponse", "ReadyForQuery"],
                         ["ParseComplete", "BindComplete", "DataRow", "CommandComplete", "ReadyForQuery"]]
        # s2 was skipped (after the refusal), so it does not exist
        await c.send(Bind("", "s2"), Execute(""), Sync())
        msgs = await c.until(ReadyForQuery)
        assert msgs[0].code == "26000"
