"""Bad input, each with a test: garbage, lying lengths, sequence-id games, packets after COM_QUIT, a stalled
half-packet, refused commands, a dead upstream, 16 MB packets both ways.  Each ends with a clear error to that
client, and a concurrent healthy session keeps working."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from gw_mysql.codec import Packet, encode_packet
from gw_mysql.constants import Capability as C
from gw_mysql.messages import decode_error, decode_text_row


@asynccontextmanager
async def healthy(my: Any, port: int, token: str) -> AsyncIterator[Any]:
    """A session that must stay usable through whatever the test does to others."""
    c = await my.Raw.connect(port)
    ok = await c.login(token)
    assert ok is not None and ok.first == 0x00, ok

    async def check() -> None:
        answer = await c.query("SELECT 41 + 1")
        rows = [p for p in answer[2:] if p.first not in (0xFE, 0xFF)]
        assert rows and decode_text_row(rows[0].payload, 1) == [b"42"], answer

    c.check = check
    try:
        yield c
        await check()
    finally:
        await c.aclose()


def error_of(p: Packet | None) -> tuple[int, str]:
    assert p is not None and p.first == 0xFF, p
    e = decode_error(p.payload)
    return e.number, e.message


async def test_garbage_and_probes(my_gateway: Any, my: Any) -> None:
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        async with healthy(my, port, token) as ok:
            s = await trio.open_tcp_stream("127.0.0.1", port)
            await s.aclose()
            for seed in range(4):
                c = await my.Raw.connect(port)
                await c.recv()
                await c.send(os.urandom(48 + seed) if seed else b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                p = await c.recv()
                assert p is None or p.first == 0xFF
                await c.aclose()
                await ok.check()
            # a wrong token, then the right one on another connection
            c = await my.Raw.connect(port)
            number, _ = error_of(await c.login("not-a-token"))
            assert number == 1045
            assert await c.recv() is None


async def test_lying_lengths_and_sequence_games(my_gateway: Any, my: Any) -> None:
    async with my_gateway(stages='{ use = "recorder" }', listener='max_packet_size = "64KiB"') as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        async with healthy(my, port, token) as ok:
            for data, expected in [
                (b"\xff\xff\xff\x00" + b"\x03", (1153, "max_packet_size of 65536")),
                (encode_packet(b"\x03SELECT 1", 5), (1156, "sequence id 0, got 5")),
                (encode_packet(b"", 0), (1047, "empty packet")),
                (encode_packet(b"\x03SELECT '" + b"x" * 70000 + b"'", 0), (1153, "max_packet_size")),
            ]:
                c = await my.Raw.connect(port)
                assert (await c.login(token)).first == 0x00
                await c.send(data)
                number, message = error_of(await c.recv())
                assert (number, expected[1] in message) == (expected[0], True), message
                assert await c.recv() is None
                await ok.check()


async def test_after_quit_and_stalls(my_gateway: Any, my: Any, table: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT)", fetch=False)
    async with my_gateway(stages='{ use = "recorder" }', listener='message_timeout = "0.3s"',
                          handshake="0.5s") as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        async with healthy(my, port, token) as ok:
            c = await my.Raw.connect(port)
            await c.login(token)
            await c.send(encode_packet(b"\x01", 0) + encode_packet(f"\x03INSERT INTO {table} VALUES (1)".encode(), 0))
            assert await c.recv() is None
            await ok.check()
            # half a packet, then silence
            c = await my.Raw.connect(port)
            await c.login(token)
            await c.send(encode_packet(b"\x03SELECT 1", 0)[:6])
            number, message = error_of(await c.recv(timeout=5))
            assert number == 1159 and "waited 0.3s for the rest of a packet" in message
            # a stalled handshake
            c = await my.Raw.connect(port)
            await c.recv()
            number, message = error_of(await c.recv(timeout=5))
            assert number == 1043 and "handshake" in message
            await ok.check()
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((0,),)


async def test_refused_commands_keep_the_session(my_gateway: Any, my: Any, table: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT)", fetch=False)
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])
        c = await my.Raw.connect(port)
        await c.login(token)
        for payload, number, words in [
            (b"\x11root\0\0", 1235, "COM_CHANGE_USER"),
            (b"\x12" + struct.pack("<IHI", 4, 0, 1) + b"bin.000001", 1235, "binlog"),
            (b"\x1e" + b"\0" * 20, 1235, "replication"),
            (b"\x03" + f"LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE {table}".encode(), 1235, "LOCAL INFILE"),
            (b"\x05newdb", 1235, "CREATE DATABASE"),
            (b"\x30", 1047, "unknown command"),
        ]:
            await c.send(encode_packet(payload, 0))
            got_number, message = error_of(await c.recv())
            assert got_number == number and words in message, message
            answer = await c.query("SELECT 1")
            assert answer[0].first == 0x01
        # compression is refused at the handshake
        d = await my.Raw.connect(port)
        number, message = error_of(await d.login(token, my.CAPS | C.COMPRESS))
        assert number == 1235 and "compressed" in message


async def test_dead_upstream(my_gateway: Any, my: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with my_gateway(stages='{ use = "recorder" }', upstream_port=dead) as gw:
        c = await my.Raw.connect(gw.port("my"))
        number, message = error_of(await c.login(gw.token("agent-7", ["agents"])))
        assert number == 2002 and "cannot reach the upstream server" in message


async def test_16mb_packets_both_ways(my_gateway: Any, my: Any) -> None:
    """A statement of exactly 16 MB - 1 bytes of payload (an empty fragment follows it) and rows that span two
    fragments are relayed intact."""
    async with my_gateway(stages='{ use = "recorder" }', listener='max_packet_size = "32MiB"') as gw:
        c = await my.Raw.connect(gw.port("my"))
        await c.login(gw.token("agent-7", ["agents"]))
        head = b"\x03SELECT LENGTH('"
        tail = b"') AS n"
        filler = b"y" * (0xFFFFFF - len(head) - len(tail))
        answer = await c.query(head[1:] + filler + tail)
        assert answer[0].first == 0x01, answer[0].payload[:100]
        assert decode_text_row(answer[2].payload, 1) == [str(len(filler)).encode()]
        for n in (16777211, 16777212):  # row payload = 4-byte length prefix + n: 0xFFFFFF and 0xFFFFFF + 1
            answer = await c.query(f"SELECT REPEAT('z', {n})")
            row = answer[2]
            assert row.fragments == 2 and decode_text_row(row.payload, 1) == [b"z" * n]
        answer = await c.query("SELECT 1")
        assert decode_text_row(answer[2].payload, 1) == [b"1"]


async def test_no_schema_is_never_negotiated(my_gateway: Any, my: Any, table: str) -> None:
    """With CLIENT_NO_SCHEMA the server ignores ``db.`` in ``db.table``: gw would classify one table while the
    server touched another.  gw neither offers it nor asks the upstream for it."""
    my.direct(f"CREATE TABLE {table} (id INT)", fetch=False)
    async with my_gateway(stages='{ use = "recorder" }') as gw:
        c = await my.Raw.connect(gw.port("my"))
        await c.login(gw.token("agent-7", ["agents"]), my.CAPS | C.NO_SCHEMA)
        answer = await c.query(f"DELETE FROM no_such_db_{table}.{table}")
        number, _ = error_of(answer[0])
        assert number in (1146, 1049)
