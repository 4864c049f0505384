"""Fixtures for the postgres plugin's tests: a gateway in front of the real PostgreSQL at 127.0.0.1:5432,
with inline plugins standing in for stages that live in other distributions.

The inline identity provider (``static``: the token is looked up in a table) and the inline stages are test
doubles for gw_jwt / guard / mask; they exercise exactly the calls those plugins receive.  Everything on the
wire is real: real clients (psql, psycopg, asyncpg, pgbench) and a real PostgreSQL.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Column, Command, Identity, Outcome, Verdict
from gw.stage import CommandContext, RowFilter, Stage, StageOptions
from gw.testing import RunningGateway, require_service, running_gateway, write_pipeline
from pydantic import Field

PG_HOST, PG_PORT = "127.0.0.1", 5432
EVENTS: list[tuple[str, Any]] = []


class StaticOptions(ProviderOptions):
    users: dict[str, list[str]] = Field(default_factory=dict)
    #: token -> seconds until it expires (for token-expiry tests)
    ttl: dict[str, float] = Field(default_factory=dict)


class StaticIdentity(IdentityProvider):
    """Accepts the token ``SUBJECT`` when SUBJECT is in ``users`` (test double for an identity provider)."""

    name = "static"
    Options = StaticOptions

    async def authenticate(self, credential: Credential) -> Identity:
        import time

        token = str(credential.secret)
        if token not in self.options.users:
            raise AuthenticationError("invalid token: signature verification failed; get a fresh token",
                                      reason="invalid_token")
        ttl = self.options.ttl.get(token)
        return Identity(token, tuple(self.options.users[token]), provider=self.instance_name,
                        expires_at=time.time() + ttl if ttl is not None else None)


class DenyWordsOptions(StageOptions):
    words: list[str] = Field(default_factory=list)
    code: str = "policy"


class DenyWords(Stage):
    """Denies statements containing a word (test double for the guard stage)."""

    name = "deny_words"
    Options = DenyWordsOptions

    def evaluate(self, command: Command) -> Verdict | None:
        from gw.model import DenyCode

        for w in self.options.words:
            if w in command.text.lower():
                return Verdict.deny(f"statements mentioning {w!r} are not allowed here; rephrase without it",
                                    code=DenyCode(self.options.code), rule=f"no-{w}")
        return None


class DenyVerbsOptions(StageOptions):
    verbs: list[str] = Field(default_factory=list)


class DenyVerbs(Stage):
    """Denies running statements whose verb is listed (preparing one is allowed): a guard double that judges
    the classification, not the text."""

    name = "deny_verbs"
    Options = DenyVerbsOptions

    def evaluate(self, command: Command) -> Verdict | None:
        if command.verb in self.options.verbs and "prepare" not in command.flags:
            return Verdict.deny(f"{command.verb} is not allowed here", rule=f"no-{command.verb}")
        return None


class NoticeOptions(StageOptions):
    trigger: str = "notice me"


class Notify(Stage):
    """Sends a notice for statements containing ``trigger`` (exercises CommandContext.notice)."""

    name = "notify"
    Options = NoticeOptions

    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        if self.options.trigger in command.text:
            await context.notice("gw: this statement was noticed")
        return None


class MaskOptions(StageOptions):
    sources: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    #: Columns (by name) whose values holding ``secret`` become ``[x]`` (a detector double).
    scan: list[str] = Field(default_factory=list)
    #: The filter also offers its work as gw.stage.ColumnEdits (as the mask stage does).
    columnwise: bool = False


class MaskSources(Stage):
    """Replaces values of columns derived from ``sources`` (or named ``names``) with ``***`` (mask double)."""

    name = "mask_sources"
    Options = MaskOptions
    transforms = True
    wants_sources = True

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        EVENTS.append(("columns", [(c.name, c.type_name, c.binary, c.sources) for c in columns]))
        hit = [i for i, c in enumerate(columns)
               if set(c.sources) & set(self.options.sources) or c.name in self.options.names]
        scanned = tuple(i for i, c in enumerate(columns) if c.name in self.options.scan and i not in hit)
        if not hit and not scanned:
            return None

        def scan(value: bytes) -> bytes:
            return b"[x]" if b"secret" in value else value

        class Filter:
            def row(self, values: list[bytes | None]) -> list[bytes | None]:
                EVENTS.append(("row call", None))
                out = list(values)
                for i in hit:
                    if out[i] is not None:
                        out[i] = b"***"
                for i in scanned:
                    v = out[i]
                    if v is not None:
                        out[i] = scan(v)
                return out

        class Columnwise(Filter):
            constant = dict.fromkeys(hit, b"***")
            edited = scanned

            def columnwise(self) -> Columnwise:
                return self

            def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
                EVENTS.append(("edit call", (len(values), replaced)))
                return {i: b"[x]" for i, v in enumerate(values) if v is not None and b"secret" in v}

        return Columnwise() if self.options.columnwise else Filter()


class RowNames(Stage):
    """Observes rows and keeps the columns it was given, asking for no sources (record double)."""

    name = "row_names"

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        EVENTS.append(("row_names", [(c.name, c.type_name, c.sources) for c in columns]))

        class Filter:
            def row(self, values: list[bytes | None]) -> list[bytes | None]:
                EVENTS.append(("row", tuple(values)))
                return values

        return Filter()


class Recorder(Stage):
    name = "recorder"

    async def decided(self, command: Command, verdict: Verdict) -> None:
        EVENTS.append(("decided", (command.text, command.kind.value, command.verb, verdict.decision.value,
                                   command.params)))

    async def completed(self, command: Command, outcome: Outcome) -> None:
        EVENTS.append(("completed", (command.text, outcome.status, outcome.rows, outcome.tag,
                                     outcome.error_code)))

    async def session_started(self, session: Any) -> None:
        EVENTS.append(("started", (session.identity.subject, session.claimed_user)))

    async def session_ended(self, session: Any, reason: str) -> None:
        EVENTS.append(("ended", reason))

    async def session_refused(self, **kw: Any) -> None:
        EVENTS.append(("refused", kw["reason"]))


class InlinePlugin:
    @hookimpl
    def gw_register_identity_providers(self, register: Callable[[type[Any]], None]) -> None:
        register(StaticIdentity)

    @hookimpl
    def gw_register_stages(self, register: Callable[[type[Any]], None]) -> None:
        for s in (DenyWords, DenyVerbs, Notify, MaskSources, RowNames, Recorder):
            register(s)


BASE = """
[gateway]
handshake_timeout = "{handshake}"

[identity.static]
use = "static"
users = {{ alice = ["agents"], bob = ["guests"], dana = ["dba"], eve = ["agents"] }}
ttl = {{ eve = {eve_ttl} }}

[pipelines.p]
stages = [{stages}]

[[listeners]]
name = "pg"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
allow_groups = ["agents", "dba"]
{listener}

[listeners.upstream]
host = "127.0.0.1"
port = {upstream_port}
database = "test"
{upstream}
"""

DEFAULT_STAGES = '{ use = "recorder" }, { use = "deny_words", words = ["forbidden"] }, { use = "notify" }'


@pytest.fixture
def events() -> list[tuple[str, Any]]:
    EVENTS.clear()
    return EVENTS


@pytest.fixture
def postgres() -> None:
    require_service(PG_HOST, PG_PORT, "PostgreSQL")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_gateway(tmp_path: Path, gw_plugin_manager: Any, gw_register: Any, postgres: None
               ) -> Callable[..., Any]:
    """``async with pg_gateway(stages=..., listener=..., upstream=...) as gw:`` serves a postgres listener
    named ``pg`` in front of the local PostgreSQL (or ``upstream_port``)."""
    gw_register(InlinePlugin(), "pg-inline")

    @asynccontextmanager
    async def start(*, stages: str = DEFAULT_STAGES, listener: str = "", upstream: str = 'user = "postgres"',
                    upstream_port: int = PG_PORT, handshake: str = "5s", eve_ttl: float = 3600,
                    ) -> AsyncIterator[RunningGateway]:
        text = BASE.format(stages=stages, listener=listener, upstream=upstream, upstream_port=upstream_port,
                           handshake=handshake, eve_ttl=eve_ttl)
        path = write_pipeline(tmp_path, text)
        async with running_gateway(path, pm=gw_plugin_manager) as gw:
            yield gw

    return start


def dsn(port: int, user: str = "alice", *, password: str | None = None, dbname: str = "test",
        **extra: str) -> str:
    parts = [f"host=127.0.0.1 port={port} user={user} dbname={dbname} password={password or user}",
             "connect_timeout=5"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


DIRECT = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test connect_timeout=5"


async def psql(conninfo: str, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run psql non-interactively; returns (exit code, stdout, stderr)."""
    r = await trio.run_process(["psql", "-X", "-v", "ON_ERROR_STOP=1", conninfo, *args], stdin=stdin,
                               capture_stdout=True, capture_stderr=True, check=False)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking client (psycopg, pgbench driver) beside the trio gateway."""
    return await trio.to_thread.run_sync(fn, *args)


class RawClient:
    """A hand-driven PostgreSQL client built on gw's own codec, for bad-input tests that real drivers
    cannot produce (lying lengths, stalls, unknown message types)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        from gw_postgres.codec import Role, WireCodec

        self.stream = stream
        self.codec = WireCodec(Role.CLIENT, max_message_size=2**30 - 1)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *messages: Any) -> None:
        data = b"".join(m if isinstance(m, (bytes, bytearray)) else m.encode() for m in messages)
        await self.stream.send_all(data)

    async def recv(self, timeout: float = 5) -> Any:
        """The next message, or None when gw closed the connection."""
        from gw_postgres.codec import CLOSED, NEED_DATA

        with trio.fail_after(timeout):
            while True:
                ev = self.codec.next_event()
                if ev is CLOSED:
                    return None
                if ev is not NEED_DATA:
                    return ev
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                self.codec.receive_data(data)

    async def until(self, *types: type, timeout: float = 5) -> list[Any]:
        """Messages up to and including the first of ``types`` (or up to the close)."""
        out = []
        while True:
            m = await self.recv(timeout)
            if m is None:
                return out
            out.append(m)
            if isinstance(m, types):
                return out

    async def login(self, user: str = "alice", token: str | None = None, database: str = "test") -> list[Any]:
        from gw_postgres.messages import ErrorResponse, PasswordMessage, ReadyForQuery, StartupMessage

        await self.send(StartupMessage({"user": user, "database": database}))
        first = await self.recv()
        if type(first).__name__ != "AuthenticationCleartextPassword":
            return [first]
        await self.send(PasswordMessage(token if token is not None else user))
        return await self.until(ReadyForQuery, ErrorResponse)

    async def aclose(self) -> None:
        await self.stream.aclose()


class Helpers:
    """Test helpers, reached through the ``pg`` fixture (conftest modules cannot be imported under
    ``--import-mode=importlib``)."""

    DIRECT = DIRECT
    dsn = staticmethod(dsn)
    psql = staticmethod(psql)
    in_thread = staticmethod(in_thread)
    closed_port = staticmethod(closed_port)
    RawClient = RawClient


@pytest.fixture
def pg() -> type[Helpers]:
    return Helpers


# -- a private PostgreSQL cluster for upstream authentication and upstream TLS ---------------------------------

def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost, made with the openssl CLI."""
    import subprocess

    from gw.testing import require_program

    openssl = require_program("openssl")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=gw test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "2", "-extfile", str(ext))
    key.chmod(0o600)
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    """A CA, and a certificate + key for 127.0.0.1 signed by it (client-facing TLS tests)."""
    return make_certificates(tmp_path / "certs")


class PrivateCluster:
    """A throwaway PostgreSQL cluster (initdb) whose roles use cleartext, MD5 and SCRAM passwords and whose
    ``gw_tls`` role may only connect over TLS -- the upstream authentication methods gw must speak, which
    the shared trust-auth server cannot offer."""

    PASSWORD = "s3cret pässword"

    def __init__(self, base: Path) -> None:
        import glob
        import os
        import shutil
        import subprocess

        from gw.testing import free_port, require_program

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if not initdb:
            require_program("initdb")
        assert initdb is not None
        self.bindir = Path(initdb).parent
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.certs = make_certificates(base / "certs")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(base, "postgres")
            for p in base.rglob("*"):
                shutil.chown(p, "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        for n in ("cert", "key"):
            target = self.data / f"server.{'crt' if n == 'cert' else 'key'}"
            shutil.copy(self.certs[n], target)
            target.chmod(0o600)
            if self.as_root:
                shutil.chown(target, "postgres")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all gw_clear 127.0.0.1/32 password\n"
            "host all gw_md5 127.0.0.1/32 md5\n"
            "host all gw_scram 127.0.0.1/32 scram-sha-256\n"
            "hostssl all gw_tls 127.0.0.1/32 scram-sha-256\n"
            "host all postgres 127.0.0.1/32 trust\n")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                    "ssl = on\nfsync = off\nshared_buffers = 16MB\nmax_connections = 40\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(base / "log"), "-w", "-t", "20",
                  "start")
        sql = (f"set password_encryption = 'md5'; create role gw_md5 login password '{self.PASSWORD}';"
               f"set password_encryption = 'scram-sha-256';"
               f"create role gw_clear login password '{self.PASSWORD}';"
               f"create role gw_scram login password '{self.PASSWORD}';"
               f"create role gw_tls login password '{self.PASSWORD}';")
        self._run("psql", "-h", str(base), "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql,
                  "-c", "create database test")
        del subprocess

    def _run(self, *args: str) -> None:
        import subprocess

        cmd = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        subprocess.run(cmd, check=True, capture_output=True, cwd="/tmp")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture(scope="session")
def private_cluster() -> Any:
    """Session-wide (initdb takes a second or two).  Lives under /tmp, not pytest's per-user temp directory,
    because the ``postgres`` system user must be able to reach it."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gw-pgcluster-"))
    base.chmod(0o755)
    try:
        cluster = PrivateCluster(base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    yield cluster
    try:
        cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _examples_role() -> None:
    """The least-privilege role examples/*.toml log in as (examples/setup-postgres.sql, idempotent), created
    when the local PostgreSQL runs; tests that need PostgreSQL skip or fail on their own when it does not."""
    import shutil
    import socket
    import subprocess
    from pathlib import Path

    if shutil.which("psql") is None:
        return
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return
    script = Path(__file__).resolve().parents[4] / "examples" / "setup-postgres.sql"
    subprocess.run(["psql", "-X", "-q", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-v",
                    "ON_ERROR_STOP=1", "-f", str(script)], capture_output=True, check=False, timeout=60)
