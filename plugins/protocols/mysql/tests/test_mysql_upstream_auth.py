"""Upstream log-in: mysql_native_password and MariaDB's client_ed25519 (reached through an authentication
switch) against the real MariaDB; caching_sha2_password (fast path, full authentication over TLS and with the
server's RSA key) against a small handshake-only server, because MariaDB 10.11 has no such server plugin; role
mapping by groups."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from gw_mysql import auth
from gw_mysql.codec import NEED_DATA, Packet, PacketCodec, encode_packet
from gw_mysql.constants import Capability as C
from gw_mysql.errors import UpstreamError
from gw_mysql.messages import OK, Err, Handshake, HandshakeResponse
from gw_mysql.upstream import Login, UpstreamTarget, connect

PASSWORD = "s3cret pässword"


@pytest.fixture
def accounts(my: Any, mariadb: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Two accounts with unique names: one with mysql_native_password, one with ed25519
    (``INSTALL SONAME 'auth_ed25519'`` first: the plugin ships with MariaDB but is not loaded by default)."""
    suffix = secrets.token_hex(3)
    native, ed = f"gw_nat_{suffix}", f"gw_ed_{suffix}"
    try:
        my.direct("INSTALL SONAME 'auth_ed25519'", fetch=False)
    except Exception as e:  # noqa: BLE001 - already installed by an earlier run
        assert "already" in str(e).lower() or "exists" in str(e).lower(), e
    my.direct(f"CREATE USER '{native}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{PASSWORD}')",
              fetch=False)
    my.direct(f"CREATE USER '{ed}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{PASSWORD}')", fetch=False)
    for user in (native, ed):
        my.direct(f"GRANT SELECT ON test.* TO '{user}'@'%'", fetch=False)
    monkeypatch.setenv("GW_TEST_UP_PASSWORD", PASSWORD)
    yield {"native": native, "ed25519": ed}
    my.direct(f"DROP USER IF EXISTS '{native}'@'%', '{ed}'@'%'", fetch=False)


@pytest.mark.parametrize("method", ["native", "ed25519"])
async def test_real_mariadb_accounts(accounts: dict[str, str], method: str) -> None:
    target = UpstreamTarget("127.0.0.1", 3306, "test", sslmode="prefer")
    conn = await connect(target, Login(accounts[method], "GW_TEST_UP_PASSWORD"))
    try:
        result = await conn.query("SELECT CURRENT_USER()")
        assert result.rows[0][0].decode().startswith(accounts[method] + "@")
    finally:
        await conn.aclose()
    with pytest.raises(UpstreamError, match="refused gw's log-in"):
        await connect(target, Login(accounts[method], None))


async def test_role_mapping_by_groups(my_gateway: Any, my: Any, accounts: dict[str, str]) -> None:
    upstream = (f'user = "{accounts["native"]}"\npassword_env = "GW_TEST_UP_PASSWORD"\n'
                f'roles = [ {{ groups = ["dba"], user = "{accounts["ed25519"]}", password_env = "GW_TEST_UP_PASSWORD" }} ]')
    async with my_gateway(stages='{ use = "recorder" }', upstream=upstream) as gw:
        port = gw.port("my")

        def who(token: str) -> Any:
            conn = my.connect(port, token)
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                user = cur.fetchall()[0][0]
            conn.close()
            return user

        agent = await my.in_thread(who, gw.token("agent-7", ["agents"]))
        dba = await my.in_thread(who, gw.token("dana", ["dba"]))
    assert agent.startswith(accounts["native"] + "@") and dba.startswith(accounts["ed25519"] + "@")


class Sha2Server:
    """A handshake-only MySQL 8 stand-in: caching_sha2_password with a fast-auth cache, full authentication
    over TLS or RSA, then OK (and nothing else).  A fake, because no server with this plugin runs here."""

    def __init__(self, *, cached: bool, tls: Any = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.cached = cached
        self.tls = tls
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        self.paths: list[str] = []

    async def serve(self, stream: trio.SocketStream) -> None:
        codec = PacketCodec(peer="client")
        s: trio.abc.Stream = stream

        async def recv() -> Packet:
            while True:
                p = codec.next_packet()
                if p is not NEED_DATA:
                    assert isinstance(p, Packet)
                    return p
                codec.receive_data(await s.receive_some(65536))

        scramble = bytes(secrets.choice(range(33, 127)) for _ in range(20))
        caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
                   | C.DEPRECATE_EOF | C.CONNECT_WITH_DB | C.LONG_PASSWORD | (C.SSL if self.tls else 0))
        await s.send_all(encode_packet(Handshake("8.0.99-fake", 7, scramble, caps, 255, 2,
                                                 auth.CACHING_SHA2).encode(), 0))
        p = await recv()
        hello = HandshakeResponse.decode(p.payload)
        if hello.ssl_request:
            s = trio.SSLStream(stream, self.tls, server_side=True)
            await s.do_handshake()
            p = await recv()
            hello = HandshakeResponse.decode(p.payload)
        seq = p.next_seq
        pw = PASSWORD.encode()
        ok = encode_packet(OK().encode(caps), 0)
        if self.cached and hello.auth_response == auth.caching_sha2_password(pw, scramble):
            self.paths.append("fast")
            await s.send_all(encode_packet(b"\x01\x03", seq) + ok[:3] + bytes((seq + 1,)) + ok[4:])
            return
        await s.send_all(encode_packet(b"\x01\x04", seq))
        p = await recv()
        if isinstance(s, trio.SSLStream):
            good = p.payload == pw + b"\0"
            self.paths.append("tls")
        else:
            if p.payload == b"\x02":
                await s.send_all(encode_packet(b"\x01" + self.pem, p.next_seq))
                p = await recv()
                self.paths.append("rsa-requested")
            else:
                self.paths.append("rsa-configured")
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            plain = self.key.decrypt(p.payload, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                                             algorithm=hashes.SHA1(), label=None))
            good = bytes(c ^ scramble[i % 20] for i, c in enumerate(plain)) == pw + b"\0"
        reply = OK().encode(caps) if good else Err(1045, "28000", "Access denied").encode()
        await s.send_all(encode_packet(reply, p.next_seq))


async def _with_server(server: Sha2Server, target_kw: dict[str, Any], password: str | None,
                       monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GW_TEST_SHA2", password or "")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, server.serve, 0)
        port = listeners[0].socket.getsockname()[1]
        try:
            target = UpstreamTarget("127.0.0.1", port, "test", **target_kw)
            conn = await connect(target, Login("gw", "GW_TEST_SHA2"))
            await conn.aclose()
            return None
        except UpstreamError as e:
            return e
        finally:
            nursery.cancel_scope.cancel()


async def test_caching_sha2_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Sha2Server(cached=True)
    assert await _with_server(server, {"sslmode": "disable"}, PASSWORD, monkeypatch) is None
    assert server.paths == ["fast"]


async def test_caching_sha2_full_auth_over_tls(monkeypatch: pytest.MonkeyPatch, certs: dict[str, Path]) -> None:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certs["cert"]), str(certs["key"]))
    server = Sha2Server(cached=False, tls=ctx)
    kw = {"sslmode": "verify-full", "sslrootcert": str(certs["ca"])}
    assert await _with_server(server, kw, PASSWORD, monkeypatch) is None
    assert server.paths == ["tls"]


async def test_caching_sha2_full_auth_with_rsa(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = Sha2Server(cached=False)
    # the key fetched from the server (get_server_public_key = true)
    assert await _with_server(server, {"sslmode": "disable", "get_server_public_key": True}, PASSWORD,
                              monkeypatch) is None
    # the key configured (server_public_key = "...pem")
    pem = tmp_path / "server.pem"
    pem.write_bytes(server.pem)
    assert await _with_server(server, {"sslmode": "disable", "server_public_key": str(pem)}, PASSWORD,
                              monkeypatch) is None
    # neither: a clear error instead of sending the password unprotected
    err = await _with_server(server, {"sslmode": "disable"}, PASSWORD, monkeypatch)
    assert err is not None and "RSA public key" in str(err)
    # a wrong password is refused
    err = await _with_server(server, {"sslmode": "disable", "server_public_key": str(pem)}, "wrong", monkeypatch)
    assert err is not None and "refused gw's log-in" in str(err)
    assert server.paths == ["rsa-requested", "rsa-configured", "rsa-configured"]
