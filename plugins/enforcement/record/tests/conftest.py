"""Fixtures for the record stage's tests: a storage test double, inline protocol / identity / stage plugins.

``JournalStore`` is a **test double** of a storage backend, used so these tests run whether or not gw-sqlite
is installed: it keeps streams and documents in memory and journals every write as JSON lines to a file, so a
test can grep the bytes gw persisted and a second runtime (the CLI) reads what the gateway wrote.  Every test
that needs a store is parametrized to run on it *and* on the real gw-sqlite backend when that is importable.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gw.cliutil
import pluggy
import pytest
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Column, Identity, Kind, Outcome, Verdict
from gw.plugins import Registry
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.stage import Stage
from gw.store import Document, Entry, StorageOptions, Store
from gw.testing import running_gateway

HAVE_SQLITE = importlib.util.find_spec("gw_sqlite") is not None
STORES = ["journal", pytest.param("sqlite", marks=pytest.mark.skipif(not HAVE_SQLITE,
                                                                    reason="gw-sqlite is not installed"))]

#: A value only the upstream has; the inline "scrub" stage masks it.  It must never reach the store.
RAW = b"zebra-unmasked"
#: A value the inline detector finds in what the agent sends.
PASSWORD = "hunter2-xyzzy"


# -- storage test double -------------------------------------------------------------------------------------


class JournalOptions(StorageOptions):
    path: str = "journal.jsonl"


class JournalStore(Store):
    """In-memory streams and documents with a JSON-lines journal on disk (see the module docstring)."""

    name = "journal"
    Options = JournalOptions

    def __init__(self, options: JournalOptions, services: Any) -> None:
        super().__init__(options, services)
        self.file = services.resolve_path(options.path)
        self.entries: dict[str, list[tuple[Entry, dict[str, str]]]] = {}
        self.docs: dict[str, dict[str, Document]] = {}
        self.seq = 0
        #: Set by a test to make every write fail (a disk that filled up, a database that went away).
        self.failing: Exception | None = None

    async def open(self) -> None:
        if self.file.exists():
            for line in self.file.read_text(encoding="utf-8").splitlines():
                self._apply(json.loads(line))

    def _write(self, op: dict[str, Any]) -> None:
        if self.failing is not None:
            raise self.failing
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(json.dumps(op) + "\n")
        self._apply(op)

    def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "append":
            self.seq = max(self.seq, op["seq"])
            entry = Entry(op["seq"], op["ts"], op["data"])
            self.entries.setdefault(op["stream"], []).append((entry, op["index"]))
        elif kind == "prune":
            kept = [(e, i) for e, i in self.entries.get(op["stream"], []) if e.ts >= op["older_than"]]
            self.entries[op["stream"]] = kept
        elif kind == "put":
            doc = Document(op["key"], op["version"], op["data"], op["updated"])
            self.docs.setdefault(op["collection"], {})[op["key"]] = doc
        elif kind == "delete":
            self.docs.get(op["collection"], {}).pop(op["key"], None)

    async def append(self, stream: str, records: Sequence[Mapping[str, Any]],
                     *, index: Sequence[Mapping[str, str]] | None = None) -> list[int]:
        ts = time.time()
        seqs = []
        for i, record in enumerate(records):
            self._write({"op": "append", "stream": stream, "seq": self.seq + 1, "ts": ts,
                         "data": json.loads(json.dumps(record)), "index": dict(index[i]) if index else {}})
            seqs.append(self.seq)
        await trio.lowlevel.checkpoint()
        return seqs

    async def scan(self, stream: str, *, where: Mapping[str, str] | None = None, after: int | None = None,
                   before: int | None = None, limit: int | None = None, newest_first: bool = False
                   ) -> list[Entry]:
        found = [e for e, idx in self.entries.get(stream, [])
                 if all(idx.get(k) == v for k, v in (where or {}).items())
                 and (after is None or e.seq > after) and (before is None or e.seq < before)]
        if newest_first:
            found.reverse()
        return found[:limit] if limit is not None else found

    async def streams(self) -> list[str]:
        return sorted(s for s, entries in self.entries.items() if entries)

    async def prune(self, stream: str, older_than: float) -> int:
        before = len(self.entries.get(stream, []))
        self._write({"op": "prune", "stream": stream, "older_than": older_than})
        return before - len(self.entries.get(stream, []))

    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        current = self.docs.get(collection, {}).get(key)
        version = (current.version if current else 0) + 1
        self._write({"op": "put", "collection": collection, "key": key, "version": version,
                     "data": json.loads(json.dumps(data)), "updated": time.time()})
        return version

    async def get(self, collection: str, key: str) -> Document | None:
        return self.docs.get(collection, {}).get(key)

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        found = [d for d in self.docs.get(collection, {}).values()
                 if all(d.data.get(k) == v for k, v in (where or {}).items())]
        found.sort(key=lambda d: d.updated, reverse=True)
        return found[:limit] if limit is not None else found

    async def delete(self, collection: str, key: str) -> bool:
        if key not in self.docs.get(collection, {}):
            return False
        self._write({"op": "delete", "collection": collection, "key": key})
        return True


# -- inline identity, protocol and stages --------------------------------------------------------------------


class StaticOptions(ProviderOptions):
    users: dict[str, list[str]] = {}


class StaticIdentity(IdentityProvider):
    """Accepts the token ``SUBJECT`` when SUBJECT is in ``users`` (an inline stand-in for gw-jwt)."""

    name = "static"
    Options = StaticOptions

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        if token not in self.options.users:
            raise AuthenticationError("unknown token", reason="invalid_token")
        return Identity(token, tuple(self.options.users[token]), provider=self.instance_name)


class ScriptHandler(ProtocolHandler):
    """A line protocol standing in for a real protocol plugin.  The first line is the token; then each line is
    a command:

    * ``rows N`` -- a result of N rows (id, ssn, note), the ssn holding :data:`RAW`;
    * ``out X`` -- ``<RAW>-X here`` on the ``stdout`` stream;
    * ``fail`` -- an upstream error;
    * anything else -- one row ``ok``; ``drop ...`` is classified as DDL.

    Every reply ends with an ``END`` line.  The session ends when the client closes or gw asks (shutdown).
    """

    name = "script"
    Options = ListenerOptions

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        lines = _LineReader(stream)
        token = await lines.readline()
        if token is None:
            return
        try:
            identity = await self.listener.authenticate(Credential("token", token),
                                                        client_address=client_address)
        except AuthenticationError as e:
            await stream.send_all(f"ERR {e}\n".encode())
            return
        sr = await self.listener.start_session(identity, client_address=client_address, upstream="script:0")
        await stream.send_all(b"OK\n")
        reason = "client_closed"
        try:
            async with trio.open_nursery() as nursery:
                async def watch() -> None:
                    nonlocal reason
                    reason = await sr.wait_terminated()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                while (line := await lines.readline()) is not None:
                    await self._command(sr, stream, line)
                nursery.cancel_scope.cancel()
        finally:
            await sr.end(reason)

    async def _command(self, sr: Any, stream: trio.SocketStream, text: str) -> None:
        word = text.split(" ", 1)[0]
        kind = Kind.DDL if word == "drop" else Kind.READ
        cmd = sr.command(text, language="script", kind=kind, verb=word)

        class Context:
            async def notice(self, message: str) -> None:
                await stream.send_all(f"NOTICE {message}\n".encode())

        run = await sr.decide(cmd, Context())
        verdict = run.verdict
        if not verdict.allowed:
            await stream.send_all(f"DENIED {verdict.reason}\nEND\n".encode())
            await run.complete(Outcome(status="denied", error_message=verdict.reason))
            return
        out = b""
        outcome = Outcome(rows=1, tag="ECHO")
        if word == "rows":
            n = int(text.split()[1])
            filt = run.rows([Column("id"), Column("ssn", table="public.people", column="ssn"), Column("note")])
            for i in range(n):
                row: list[bytes | None] = [str(i).encode(), RAW + b"-" + str(i).encode(), None]
                if filt is not None:
                    row = filt.row(row)
                out += b"ROW " + b",".join(v or b"NULL" for v in row) + b"\n"
            outcome = Outcome(rows=n, tag=f"SELECT {n}", notices=[f"{n} rows for you"])
        elif word == "out":
            filt_s = run.stream("stdout", "text/plain")
            data = RAW + b"-" + text.split(" ", 1)[1].encode() + b" here\n"
            if filt_s is not None:
                data = filt_s.feed(data) + filt_s.finish()
            out += b"OUT " + data
            outcome = Outcome(status="ok", tag="exit 0")
        elif word == "fail":
            outcome = Outcome(status="error", error_code="XX000", error_message="upstream says no")
            out += b"ERROR upstream says no\n"
        else:
            filt = run.rows([Column("answer")])
            row = [b"ok"]
            if filt is not None:
                row = filt.row(row)
            out += b"ROW " + (row[0] or b"") + b"\n"
        await stream.send_all(out + b"END\n")
        await run.complete(outcome)


class _LineReader:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def readline(self) -> str | None:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


class DenyDrop(Stage):
    """Refuses DDL (a stand-in for guard)."""

    name = "deny_drop"

    def evaluate(self, command: Any) -> Verdict | None:
        return Verdict.deny("drops need a DBA", rule="ddl") if command.kind is Kind.DDL else None


class _Scrubber:
    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        return [b"[scrubbed]" if v is not None and RAW in v else v for v in values]

    def feed(self, data: bytes) -> bytes:
        return data.replace(RAW, b"[scrubbed]")

    def finish(self) -> bytes:
        return b""


class Scrub(Stage):
    """A transforming stage standing in for mask: replaces every value holding :data:`RAW`."""

    name = "scrub"
    transforms = True

    def rows(self, command: Any, columns: Any) -> Any:
        return _Scrubber()

    def stream(self, command: Any, channel: str, content_type: str = "") -> Any:
        return _Scrubber() if channel in ("stdout", "pty", "response-body") else None


class WordDetector:
    """A detector (as the mask plugin registers them) that finds :data:`PASSWORD`."""

    name = "test_password"

    def find(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], text.find(PASSWORD)
        while start >= 0:
            spans.append((start, start + len(PASSWORD)))
            start = text.find(PASSWORD, start + 1)
        return spans


class InlinePlugin:
    @hookimpl
    def gw_register_protocols(self, register: Callable[[type[Any]], None]) -> None:
        register(ScriptHandler)

    @hookimpl
    def gw_register_identity_providers(self, register: Callable[[type[Any]], None]) -> None:
        register(StaticIdentity)

    @hookimpl
    def gw_register_stages(self, register: Callable[[type[Any]], None]) -> None:
        register(DenyDrop)
        register(Scrub)

    @hookimpl
    def gw_register_storage(self, register: Callable[[type[Any]], None]) -> None:
        register(JournalStore)

    @hookimpl
    def gw_register_detectors(self, register: Callable[[Any], None]) -> None:
        register(WordDetector())


def storage_table(kind: str) -> str:
    if kind == "sqlite":
        return '[storage]\nuse = "sqlite"\npath = "data/gw.db"\n'
    return '[storage]\nuse = "journal"\npath = "journal.jsonl"\n'


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each test that uses a store runs on the journal test double and on gw-sqlite (when installed)."""
    return str(request.param)


@pytest.fixture
def pipeline_file(tmp_path: Path, store_kind: str) -> Callable[..., Path]:
    """Factory: ``pipeline_file('{ use = "record" }', listener=True)`` writes a pipeline file whose pipeline
    ``p`` has those stages, on the parametrized store; with ``listener`` an inline ``script`` listener too."""
    def write(stages: str, *, listener: bool = True, gateway: str = 'drain_timeout = "2s"') -> Path:
        text = f"[gateway]\n{gateway}\n\n{storage_table(store_kind)}\n[pipelines.p]\nstages = [{stages}]\n"
        if listener:
            text += (
                '\n[identity.static]\nuse = "static"\nusers = { alice = ["agents"], bob = ["dba"] }\n'
                '\n[[listeners]]\nname = "script"\nprotocol = "script"\nlisten = "127.0.0.1:0"\n'
                'identity = "static"\npipeline = "p"\n')
        path = tmp_path / "pipeline.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def pm(gw_plugin_manager: pluggy.PluginManager, gw_register: Callable[[object, str], None]
       ) -> pluggy.PluginManager:
    """The installed plugins plus the inline ones above."""
    gw_register(InlinePlugin(), "record-tests")
    return gw_plugin_manager


@pytest.fixture
def cli_registry(pm: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make `gw` CLI commands (run through click's CliRunner) see the inline plugins too."""
    monkeypatch.setattr(gw.cliutil, "_registry", Registry.build(pm))
    yield


@pytest.fixture
def persisted_bytes(tmp_path: Path) -> Callable[[], bytes]:
    """Every byte gw wrote under the test's directory (database, its -wal and -shm files, journals ...);
    tests write their exports under ``exports/``, which is left out."""
    def read() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                        if p.is_file() and p.suffix != ".toml" and "exports" not in p.parts)

    return read


async def converse(stream: trio.SocketStream, token: str, lines: Sequence[str], *, pause: float = 0.0
                   ) -> list[str]:
    """Log in with ``token`` and send ``lines`` one at a time, each after the previous reply's END; returns
    the replies."""
    reader = _LineReader(stream)
    replies: list[str] = []
    with trio.fail_after(5):
        await stream.send_all(token.encode() + b"\n")
        replies.append(await reader.readline() or "")
        for line in lines:
            await trio.sleep(pause)
            await stream.send_all(line.encode() + b"\n")
            while (reply := await reader.readline()) not in (None, "END"):
                replies.append(reply)
    return replies


@pytest.fixture
def script_session(pm: pluggy.PluginManager) -> Callable[..., Awaitable[list[str]]]:
    """``await script_session(path, "rows 3", ...)``: serve ``path``, run one session of the inline script
    protocol as alice, then shut the gateway down (so everything is flushed) and return the replies.  With
    ``keep_open`` the client is still connected when the gateway shuts down."""
    async def run(path: Path, *lines: str, token: str = "alice", pause: float = 0.0,
                  keep_open: bool = False) -> list[str]:
        stream: trio.SocketStream | None = None
        try:
            async with running_gateway(path, pm=pm) as gateway:
                stream = await trio.open_tcp_stream("127.0.0.1", gateway.port("script"))
                replies = await converse(stream, token, lines, pause=pause)
                if not keep_open:
                    await stream.aclose()
        finally:
            if stream is not None:
                await stream.aclose()
        return replies

    return run
