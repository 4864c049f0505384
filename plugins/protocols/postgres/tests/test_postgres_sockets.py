"""Sends that skip trio's send_all when the socket takes the bytes at once: whole messages, in order, never
raw bytes on a TLS stream, and trio's own errors when the stream is gone."""

from __future__ import annotations

import ssl

import trio
import trio.testing
from gw.protocol import write_now
from gw_postgres.session import ClientWriter


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    assert isinstance(server, trio.SocketStream)
    return client, server


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += await stream.receive_some(1 << 16)
    return bytes(out)


async def test_a_message_larger_than_the_socket_takes_stays_whole_and_in_order() -> None:
    """The first part goes at once, the rest through send_all, and a second writer's message waits for it."""
    client, server = await _tcp_pair()
    writer = ClientWriter(server)
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB: far more than the socket buffer
    small = b"second message"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.send, big)
        await trio.testing.wait_all_tasks_blocked()  # the big one is under way, waiting for room
        nursery.start_soon(writer.send, small)
        await trio.testing.wait_all_tasks_blocked()
        got = await _read_exactly(client, len(big) + len(small))
    assert got == big + small
    await client.aclose()
    await server.aclose()


async def test_small_messages_go_at_once() -> None:
    client, server = await _tcp_pair()
    assert write_now(server, b"hello") == 5
    assert await client.receive_some(100) == b"hello"
    await client.aclose()
    await server.aclose()


async def test_nothing_is_written_past_tls_or_on_a_closed_stream() -> None:
    client, server = await _tcp_pair()
    # A TLS stream over the same socket, or any other kind of stream, is left to its own send_all.
    assert write_now(trio.SSLStream(server, ssl.create_default_context()), b"x") == 0
    assert write_now(trio.testing.MemorySendStream(), b"x") == 0
    await server.aclose()
    assert write_now(server, b"x") == 0  # closed: send_all raises trio's ClosedResourceError as before
    writer = ClientWriter(server)
    try:
        await writer.send(b"x")
    except trio.ClosedResourceError:
        pass
    else:
        raise AssertionError("a send on a closed stream must fail")
    await client.aclose()


async def test_a_peer_that_left_gives_trios_error() -> None:
    client, server = await _tcp_pair()
    await client.aclose()
    writer = ClientWriter(server)
    try:
        for _ in range(100):  # the first writes may still be accepted by the kernel
            await writer.send(b"x" * 65536)
            await trio.sleep(0.01)
    except trio.BrokenResourceError:
        pass
    else:
        raise AssertionError("writing to a peer that closed must fail with BrokenResourceError")
    await server.aclose()
