"""The commands gw relays, driven packet by packet with gw's own codec (so each can be checked with and without
CLIENT_DEPRECATE_EOF): COM_QUERY with several result sets, COM_INIT_DB, COM_PING, COM_FIELD_LIST,
COM_STATISTICS, the prepared-statement commands (long data, reset, close); a client that vanishes while its
query runs; a token that expires while a session is open."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import trio
from gw_mysql.codec import encode_packet
from gw_mysql.constants import Capability as C
from gw_mysql.messages import ColumnDefinition, PrepareOK, decode_error, decode_text_row
from gw_mysql.results import Ev, ResponseReader


async def _answer(c: Any, com: int, caps: int) -> list[tuple[Ev, bytes]]:
    """The whole answer to command ``com``, read with gw's own response reader."""
    reader = ResponseReader(com, caps)
    out: list[tuple[Ev, bytes]] = []
    while not reader.done:
        p = await c.recv()
        assert p is not None
        out.append((reader.feed(p.payload), p.payload))
    return out


def _text_rows(answer: list[tuple[Ev, bytes]]) -> list[list[bytes | None]]:
    return [decode_text_row(payload, 1) for ev, payload in answer if ev is Ev.ROW]


@pytest.mark.parametrize("deprecate_eof", [True, False])
async def test_commands(my_gateway: Any, my: Any, table: str, events: list[Any], deprecate_eof: bool) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20) DEFAULT 'x')", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'ann')", fetch=False)
    caps = my.CAPS | C.MULTI_STATEMENTS if deprecate_eof else (my.CAPS & ~C.DEPRECATE_EOF) | C.MULTI_STATEMENTS
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        c = await my.Raw.connect(gw.port("my"))
        assert (await c.login(gw.token("agent-7", ["agents"]), caps)).first == 0x00
        # several result sets in one COM_QUERY
        await c.send(encode_packet(f"\x03SELECT 1; SELECT name FROM {table}; UPDATE {table} SET name = 'b' "
                                   f"WHERE id = 9".encode(), 0))
        answer = await _answer(c, 0x03, caps)
        assert _text_rows(answer) == [[b"1"], [b"ann"]]
        assert [ev for ev, _ in answer].count(Ev.RESULT_DONE) == 2 and answer[-1][0] is Ev.OK
        # COM_PING, COM_INIT_DB (to an unknown database: the server's error), COM_STATISTICS
        for payload, first in ((b"\x0e", 0x00), (b"\x02test", 0x00), (b"\x02no_such_db_gw", 0xFF)):
            await c.send(encode_packet(payload, 0))
            assert (await c.recv()).first == first
        await c.send(encode_packet(b"\x09", 0))
        assert b"Uptime" in (await c.recv()).payload
        # COM_FIELD_LIST: column definitions (with defaults), then a terminator
        await c.send(encode_packet(b"\x04" + table.encode() + b"\0", 0))
        fields = await _answer(c, 0x04, caps)
        assert [ColumnDefinition.decode(p).name for ev, p in fields if ev is Ev.COLUMN] == ["id", "name"]
        # prepared: long data for the parameter, execute, reset, close; then the id is gone
        await c.send(encode_packet(b"\x16SELECT CONCAT(?, '!') AS s", 0))
        prepared = await _answer(c, 0x16, caps)
        prep = PrepareOK.decode(prepared[0][1])
        sid = struct.pack("<I", prep.statement_id)
        await c.send(encode_packet(b"\x18" + sid + b"\0\0" + b"long ", 0))
        await c.send(encode_packet(b"\x18" + sid + b"\0\0" + b"data", 0))
        # execute: no cursor, one iteration, the parameter's null bit clear, types bound: VAR_STRING
        await c.send(encode_packet(b"\x17" + sid + b"\0" + b"\x01\0\0\0" + b"\0" + b"\x01" + b"\xfd\0", 0))
        executed = await _answer(c, 0x17, caps)
        assert [p for ev, p in executed if ev is Ev.ROW] == [b"\0\0\x0along data!"], executed
        decided = [e[1] for e in events if e[0] == "decided" and "CONCAT" in e[1][0]]
        assert decided and decided[-1][4] == ("long data",)
        await c.send(encode_packet(b"\x1a" + sid, 0))
        assert (await c.recv()).first == 0x00
        await c.send(encode_packet(b"\x19" + sid, 0))  # close: no answer
        await c.send(encode_packet(b"\x17" + sid + b"\0\x01\0\0\0", 0))
        err = decode_error((await c.recv()).payload)
        assert err.number == 1243


async def test_client_vanishing_mid_query_kills_it(my_gateway: Any, my: Any, events: list[Any]) -> None:
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        c = await my.Raw.connect(gw.port("my"))
        await c.login(gw.token("agent-7", ["agents"]))
        await c.send(encode_packet(b"\x03SELECT SLEEP(30), 'gw-vanish-probe'", 0))
        await trio.sleep(0.5)
        await c.aclose()

        def running() -> Any:
            return my.direct("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                             "'%gw-vanish-probe%' AND INFO NOT LIKE '%PROCESSLIST%'")

        with trio.fail_after(10):
            while (await my.in_thread(running)) != ((0,),):
                await trio.sleep(0.2)
        with trio.fail_after(10):
            while not any(e[0] == "ended" for e in events):
                await trio.sleep(0.1)
    completed = [e[1] for e in events if e[0] == "completed"]
    assert completed and completed[-1][1] == "cancelled"
    assert ("ended", "client_disconnected_mid_query") in events


async def test_token_expiry_closes_the_session(my_gateway: Any, my: Any) -> None:
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        c = await my.Raw.connect(gw.port("my"))
        await c.login(gw.token("agent-7", ["agents"], ttl=1.5))
        await trio.sleep(2.5)
        p = await c.recv(timeout=5)
        err = decode_error(p.payload)
        assert err.number == 1927 and "token expired" in err.message
        assert await c.recv() is None


async def test_a_held_command_dies_with_its_client(my_gateway: Any, my: Any, table: str, events: list[Any]) -> None:
    my.direct(f"CREATE TABLE {table} (id INT)", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1), (2)", fetch=False)
    stages = ('{ use = "recorder" }, { use = "approve", approvers = ["dba"], timeout = "10m", mode = "hold", '
              'require = [ { kind = "write", flags = ["no_where"] } ] }')
    async with my_gateway(stages=stages) as gw:
        c = await my.Raw.connect(gw.port("my"))
        await c.login(gw.token("agent-7", ["agents"]))
        await c.send(encode_packet(f"\x03DELETE FROM {table}".encode(), 0))
        await trio.sleep(0.5)
        await c.aclose()
        with trio.fail_after(5):
            while ("ended", "client_disconnected") not in events:
                await trio.sleep(0.1)
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((2,),)
    # The DELETE was never allowed: its only decision is the cancellation (recorded as a refusal).
    decided = [e[1] for e in events if e[0] == "decided" and e[1][0].startswith("DELETE")]
    assert [d[3] for d in decided] == ["deny"], decided
