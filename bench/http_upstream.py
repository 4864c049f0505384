"""The HTTP upstream of the HTTP benchmark: a trio + h11 server with keep-alive.

``GET /small`` answers a small JSON document; ``GET /large/N`` streams N bytes in 64 KiB pieces with a
Content-Length.  Usage: python bench/http_upstream.py PORT
"""

from __future__ import annotations

import sys

import h11
import trio

SMALL = (b'{"id": 42, "name": "Ann", "status": "active", "plan": "enterprise", "tags": ["a", "b", "c"], '
         b'"ok": true}')
PIECE = bytes(range(256)) * 256


async def respond(stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> None:
    target = request.target.decode()
    if target.startswith("/large/"):
        size = int(target.rsplit("/", 1)[1])
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[
            (b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())])))
        while size > 0:
            piece = PIECE if size >= len(PIECE) else PIECE[:size]
            await stream.send_all(conn.send(h11.Data(data=piece)))
            size -= len(piece)
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return
    head = conn.send(h11.Response(status_code=200, headers=[
        (b"content-type", b"application/json"), (b"content-length", str(len(SMALL)).encode())]))
    await stream.send_all(head + conn.send(h11.Data(data=SMALL)) + conn.send(h11.EndOfMessage()))


async def handle(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.SEND_BODY:
                    return
                continue
            if type(event) is h11.Request:
                request = event
            elif type(event) is h11.EndOfMessage:
                await respond(stream, conn, request)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif type(event) is h11.ConnectionClosed:
                return
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return


async def main(port: int) -> None:
    await trio.serve_tcp(handle, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
