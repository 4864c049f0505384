"""Fixtures for the mysql plugin's tests: a gateway in front of the real MariaDB at 127.0.0.1:3306.

Identity comes from the real jwt provider (dev tokens signed with a per-test secret); the stages are the
real audit / guard / approve / mask plugins, plus ``recorder``, a test double that only observes the calls a
stage receives.  Tables, users and databases the tests create have unique names and are dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from gw import hookimpl
from gw.model import Command, Outcome, Verdict
from gw.stage import Stage
from gw.testing import RunningGateway, require_service, running_gateway, write_pipeline
from gw_mysql.codec import CLOSED, NEED_DATA, Packet, PacketCodec, encode_packet
from gw_mysql.constants import Capability as C
from gw_mysql.messages import Handshake, HandshakeResponse

MY_HOST, MY_PORT = "127.0.0.1", 3306
EVENTS: list[tuple[str, Any]] = []


class Recorder(Stage):
    """Records what a stage sees (a test double that decides nothing)."""

    name = "recorder"

    async def decided(self, command: Command, verdict: Verdict) -> None:
        EVENTS.append(("decided", (command.text, command.kind.value, command.verb, verdict.decision.value,
                                   command.params, dict(command.attributes))))

    async def completed(self, command: Command, outcome: Outcome) -> None:
        EVENTS.append(("completed", (command.text, outcome.status, outcome.rows, outcome.error_code,
                                     outcome.error_message)))

    async def session_started(self, session: Any) -> None:
        EVENTS.append(("started", (session.identity.subject, session.claimed_user, dict(session.attributes))))

    async def session_ended(self, session: Any, reason: str) -> None:
        EVENTS.append(("ended", reason))

    async def session_refused(self, **kw: Any) -> None:
        EVENTS.append(("refused", kw["reason"]))


class InlinePlugin:
    @hookimpl
    def gw_register_stages(self, register: Callable[[type[Any]], None]) -> None:
        register(Recorder)


BASE = """
[gateway]
handshake_timeout = "{handshake}"
data_dir = "{data}"

[storage]
use = "sqlite"
path = "{data}/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-test"
audience = "gw"
secret_env = "GW_MYSQL_TEST_SECRET"

[pipelines.p]
stages = [{stages}]

[[listeners]]
name = "my"
protocol = "mysql"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "p"
allow_groups = ["agents", "dba"]
{listener}

[listeners.upstream]
host = "127.0.0.1"
port = {upstream_port}
database = "test"
{upstream}
"""

DEFAULT_STAGES = ('{ use = "recorder" }, { use = "guard", deny = [ { kind = "ddl", except_groups = ["dba"] }, '
                  '{ text = "forbidden" } ] }')


@pytest.fixture
def events() -> list[tuple[str, Any]]:
    EVENTS.clear()
    return EVENTS


@pytest.fixture
def mariadb() -> None:
    require_service(MY_HOST, MY_PORT, "MariaDB")


def direct(sql: str | bytes, *, database: str = "test", fetch: bool = True, **kw: Any) -> Any:
    """Run SQL as root directly against MariaDB (setup, checks)."""
    import pymysql

    conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user="root", database=database, autocommit=True, **kw)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if fetch else None
    finally:
        conn.close()


@pytest.fixture
def table(mariadb: None) -> Iterator[str]:
    """A unique table name in database ``test``, dropped after the test (with a ``_2`` companion)."""
    name = f"gw_t_{secrets.token_hex(4)}"
    yield name
    direct(f"DROP TABLE IF EXISTS {name}, {name}_2", fetch=False)


@pytest.fixture
def my_gateway(tmp_path: Path, gw_plugin_manager: Any, gw_register: Any, mariadb: None,
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``async with my_gateway(stages=..., listener=..., upstream=...) as gw:`` serves a mysql listener named
    ``my`` in front of the local MariaDB; ``gw.token(sub, groups)`` issues tokens it accepts."""
    gw_register(InlinePlugin(), "mysql-inline")
    monkeypatch.setenv("GW_MYSQL_TEST_SECRET", secrets.token_urlsafe(32))

    @asynccontextmanager
    async def start(*, stages: str = DEFAULT_STAGES, listener: str = "", upstream: str = 'user = "root"',
                    upstream_port: int = MY_PORT, handshake: str = "5s") -> AsyncIterator[RunningGateway]:
        text = BASE.format(stages=stages, listener=listener, upstream=upstream, upstream_port=upstream_port,
                           handshake=handshake, data=tmp_path / "data")
        path = write_pipeline(tmp_path, text)
        async with running_gateway(path, pm=gw_plugin_manager) as gw:
            yield gw

    return start


def connect(port: int, token: str, *, user: str = "agent-7", database: str | None = "test", **kw: Any) -> Any:
    """A PyMySQL connection through gw (the token is the password; PyMySQL switches to cleartext)."""
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=token, database=database,
                           connect_timeout=10, read_timeout=30, **kw)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


async def mariadb_cli(port: int, token: str, sql: str | bytes, *args: str, user: str = "agent-7",
                      stdin: bytes | None = None) -> tuple[int, str, str]:
    """The mariadb command-line client through gw (batch mode); returns (exit code, stdout, stderr)."""
    cmd = ["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", user, f"-p{token}",
           "--skip-ssl", "-D", "test", "--batch", *args]
    if stdin is None:
        cmd += ["-e", sql if isinstance(sql, str) else sql.decode("latin-1")]
    r = await trio.run_process(cmd, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


CAPS = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
           | C.DEPRECATE_EOF | C.CONNECT_WITH_DB | C.MULTI_RESULTS | C.LONG_PASSWORD | C.TRANSACTIONS)


class Raw:
    """A hand-driven MySQL client on gw's own codec, for input real drivers cannot produce."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.codec = PacketCodec(max_packet_size=1 << 30, peer="server")

    @classmethod
    async def connect(cls, port: int) -> Raw:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self, timeout: float = 10) -> Packet | None:
        with trio.fail_after(timeout):
            while True:
                p = self.codec.next_packet()
                if p is CLOSED:
                    return None
                if p is not NEED_DATA:
                    assert isinstance(p, Packet)
                    return p
                try:
                    data = await self.stream.receive_some(1 << 20)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self.codec.receive_data(data)

    async def login(self, token: str, caps: int = CAPS) -> Packet | None:
        greeting = await self.recv()
        assert greeting is not None
        Handshake.decode(greeting.payload)
        answer = HandshakeResponse(caps, 1 << 24, 45, "agent-7", token.encode() + b"\0", "test",
                                   "mysql_clear_password")
        await self.send(encode_packet(answer.encode(), 1))
        return await self.recv()

    async def query(self, sql: bytes | str) -> list[Packet]:
        body = sql.encode() if isinstance(sql, str) else sql
        await self.send(encode_packet(b"\x03" + body, 0))
        return await self.answer()

    async def answer(self) -> list[Packet]:
        out: list[Packet] = []
        while True:
            p = await self.recv()
            if p is None:
                return out
            out.append(p)
            if p.first == 0xFF or (p.first in (0x00, 0xFE) and len(out) == 1) or \
                    (p.first == 0xFE and len(p.payload) < 0xFFFFFF and len(out) > 1):
                return out

    async def aclose(self) -> None:
        await self.stream.aclose()


class Helpers:
    """Test helpers, reached through the ``my`` fixture (conftest modules cannot be imported under
    ``--import-mode=importlib``)."""

    direct = staticmethod(direct)
    connect = staticmethod(connect)
    in_thread = staticmethod(in_thread)
    cli = staticmethod(mariadb_cli)
    Raw = Raw
    CAPS = CAPS


@pytest.fixture
def my() -> type[Helpers]:
    return Helpers


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost (made with cryptography)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw mysql test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    return make_certificates(tmp_path / "certs")
