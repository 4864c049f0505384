"""Client-facing TLS: SSLRequest answered S with the configured certificate, verify-full against it,
``require_tls``, PostgreSQL 17 direct TLS (ALPN ``postgresql``), and plaintext smuggled after SSLRequest."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import psycopg
import trio
from gw_postgres.messages import ErrorResponse, SSLRequest


def _connect(dsn: str) -> tuple[bool, Any]:
    with psycopg.connect(dsn) as conn:
        return conn.pgconn.ssl_in_use, conn.execute("select 1 + 1").fetchone()


async def test_client_tls(pg_gateway: Any, pg: Any, certs: dict[str, Path], events: list[Any]) -> None:
    listener = f'tls = {{ cert = "{certs["cert"]}", key = "{certs["key"]}" }}'
    async with pg_gateway(listener=listener) as gw:
        port = gw.port("pg")
        assert await pg.in_thread(_connect, pg.dsn(port, sslmode="require")) == (True, (2,))
        assert await pg.in_thread(_connect, pg.dsn(port, sslmode="verify-full", sslrootcert=str(certs["ca"]))) \
            == (True, (2,))
        assert await pg.in_thread(_connect, pg.dsn(port, sslmode="disable")) == (False, (2,))
        if psycopg.pq.version() >= 170000:
            assert await pg.in_thread(_connect, pg.dsn(port, sslmode="require", sslnegotiation="direct")) == \
                (True, (2,))
        code, out, err = await pg.psql(pg.dsn(port, sslmode="verify-full", sslrootcert=str(certs["ca"])),
                                       "-Atc", "select 7")
        assert (code, out.strip()) == (0, "7"), err


async def test_require_tls_refuses_plaintext(pg_gateway: Any, pg: Any, certs: dict[str, Path],
                                             events: list[Any]) -> None:
    listener = f'tls = {{ cert = "{certs["cert"]}", key = "{certs["key"]}" }}\nrequire_tls = true'
    async with pg_gateway(listener=listener) as gw:
        port = gw.port("pg")
        code, _, err = await pg.psql(pg.dsn(port, sslmode="disable"), "-c", "select 1")
        assert code == 2 and "listener 'pg' requires TLS; connect with sslmode=require" in err
        assert await pg.in_thread(_connect, pg.dsn(port, sslmode="require")) == (True, (2,))
    assert ("refused", "tls_required") in events


async def test_plaintext_after_ssl_request_is_rejected(pg_gateway: Any, pg: Any, certs: dict[str, Path]) -> None:
    listener = f'tls = {{ cert = "{certs["cert"]}", key = "{certs["key"]}" }}'
    async with pg_gateway(listener=listener) as gw:
        c = await pg.RawClient.connect(gw.port("pg"))
        await c.send(SSLRequest().encode() + b"Q\x00\x00\x00\x0dselect 1\x00")
        data = await c.stream.receive_some(4096)
        c.codec.receive_data(data)
        err = c.codec.next_event()
        assert isinstance(err, ErrorResponse) and "unencrypted data after SSLRequest" in err.message


async def test_direct_tls_needs_alpn(pg_gateway: Any, pg: Any, certs: dict[str, Path]) -> None:
    listener = f'tls = {{ cert = "{certs["cert"]}", key = "{certs["key"]}" }}'
    async with pg_gateway(listener=listener) as gw:
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", gw.port("pg")), ctx,
                                server_hostname="127.0.0.1")
        with trio.fail_after(5):
            await stream.do_handshake()  # no ALPN offered
            data = await stream.receive_some(4096)
        assert b"ALPN protocol" in data and b"postgresql" in data
    async with pg_gateway() as gw:  # without tls configured, a ClientHello is refused in plain text
        raw = await trio.open_tcp_stream("127.0.0.1", gw.port("pg"))
        await raw.send_all(b"\x16\x03\x01\x00\x10" + b"\x00" * 16)
        with trio.fail_after(5):
            data = await raw.receive_some(4096)
        assert b"this listener does not offer TLS" in data
