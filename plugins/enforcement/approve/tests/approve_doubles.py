"""Test doubles for the approve stage's tests (imported by conftest.py and the tests; also loadable by a
``gw approvals`` subprocess through the entry point ``approve_doubles:plugin``).

The approve stage is protocol-neutral, so its tests run it behind small inline plugins instead of a real
protocol (the PostgreSQL end-to-end test lives beside them and needs the real plugins):

* ``lines`` -- a line protocol (a test double for a real protocol plugin): the first line is a token, every
  further line a command, classified by a toy SQL classifier.  Replies: ``NOTICE ...`` lines while a command is
  held, then ``RAN <text>`` or ``DENIED <code> <request id or -> <reason>``.  Like a real protocol it watches
  the client while a command is held and abandons the command when the client goes away.
* ``static`` -- an identity provider that accepts the token ``SUBJECT`` for the subjects it lists.
* ``memory`` -- a :class:`gw.store.Store` with the collections API and its optimistic versions, in memory or
  in a JSON file shared between processes (a test double for a storage backend, so these tests do not depend
  on one being installed; they also run against the real ``sqlite`` backend when it is installed).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Command, Identity, Kind, Outcome, Session
from gw.pipeline import CommandRun
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.store import Document, StorageOptions, Store, VersionConflict
from pydantic import Field

# -- storage double ---------------------------------------------------------------------------------------------


class MemoryOptions(StorageOptions):
    #: When set, documents are kept in this JSON file (relative to the pipeline file) instead of in memory, so
    #: a ``gw approvals`` subprocess and the gateway share them.
    path: str | None = None


class MemoryStore(Store):
    """Collections with versions, ``expect_version`` conflicts and newest-first queries like a real backend.

    In memory by default; with ``path``, every operation reads and rewrites a JSON file under an exclusive
    ``flock``, which is enough to share state between processes in a test.  Streams are not implemented (the
    approve stage does not use them).
    """

    name = "memory"
    Options = MemoryOptions

    def __init__(self, options: MemoryOptions, services: Any) -> None:
        super().__init__(options, services)
        self.path = services.resolve_path(options.path) if options.path else None
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
        if self.path is None:
            yield self.docs
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            docs = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield docs
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(docs))
            os.replace(tmp, self.path)

    @staticmethod
    def _doc(key: str, raw: dict[str, Any]) -> Document:
        return Document(key, raw["version"], raw["data"], raw["updated"])

    async def put(self, collection: str, key: str, data: Mapping[str, Any], *,
                  expect_version: int | None = None) -> int:
        await trio.lowlevel.checkpoint()
        with self._locked() as all_docs:
            docs = all_docs.setdefault(collection, {})
            have = docs[key]["version"] if key in docs else 0
            if expect_version is not None and expect_version != have:
                raise VersionConflict(f"{collection}/{key} is at version {have}, not {expect_version}")
            docs[key] = {"version": have + 1, "data": json.loads(json.dumps(dict(data))),
                         "updated": time.time()}
            return have + 1

    async def get(self, collection: str, key: str) -> Document | None:
        await trio.lowlevel.checkpoint()
        with self._locked() as all_docs:
            raw = all_docs.get(collection, {}).get(key)
            return None if raw is None else self._doc(key, raw)

    async def query(self, collection: str, *, where: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> list[Document]:
        await trio.lowlevel.checkpoint()
        with self._locked() as all_docs:
            found = [self._doc(k, raw) for k, raw in all_docs.get(collection, {}).items()
                     if all(raw["data"].get(f) == v for f, v in (where or {}).items())]
        found.sort(key=lambda d: d.updated, reverse=True)
        return found[:limit] if limit else found

    async def delete(self, collection: str, key: str) -> bool:
        await trio.lowlevel.checkpoint()
        with self._locked() as all_docs:
            return all_docs.get(collection, {}).pop(key, None) is not None


# -- identity double --------------------------------------------------------------------------------------------


class StaticOptions(ProviderOptions):
    users: dict[str, list[str]] = Field(default_factory=dict)


class StaticIdentity(IdentityProvider):
    """Accepts the token ``SUBJECT`` when SUBJECT is listed in ``users``."""

    name = "static"
    Options = StaticOptions

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        if token not in self.options.users:
            raise AuthenticationError("unknown token", reason="invalid_token")
        return Identity(token, tuple(self.options.users[token]), provider=self.instance_name)


# -- protocol double --------------------------------------------------------------------------------------------

_KINDS = {"select": Kind.READ, "insert": Kind.WRITE, "update": Kind.WRITE, "delete": Kind.WRITE,
          "grant": Kind.ADMIN, "revoke": Kind.ADMIN, "drop": Kind.DDL, "create": Kind.DDL}


def classify(text: str) -> tuple[Kind, str, tuple[str, ...], frozenset[str]]:
    """A toy SQL classifier: enough for rules on kind, verb, objects and ``no_where``."""
    words = text.lower().rstrip(";").split()
    verb = words[0] if words else ""
    objects: list[str] = []
    for i, w in enumerate(words[:-1]):
        if w in ("from", "into", "on") or (w == "update" and i == 0):
            name = words[i + 1]
            objects.append(name if "." in name else f"public.{name}")
    flags = {"no_where"} if verb in ("update", "delete") and "where" not in words else set()
    return _KINDS.get(verb, Kind.UNKNOWN), verb, tuple(objects), frozenset(flags)


class LineHandler(ProtocolHandler):
    name = "lines"
    Options = ListenerOptions

    def classify(self, text: str, *, session: Session) -> Command:
        kind, verb, objects, flags = classify(text)
        return Command(session, 0, text, "sql", kind, verb, objects, flags)

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        buf = bytearray()

        async def readline() -> bytes | None:
            while b"\n" not in buf:
                data = await stream.receive_some(4096)
                if not data:
                    return None
                buf.extend(data)
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            return line

        token = await readline()
        if token is None:
            return
        try:
            identity = await self.listener.authenticate(Credential("token", token.decode()),
                                                        client_address=client_address)
        except AuthenticationError as e:
            await stream.send_all(f"ERR {e}\n".encode())
            return
        sr = await self.listener.start_session(identity, client_address=client_address)
        await stream.send_all(b"OK\n")

        class Context:
            cancel_reason = ""

            async def notice(self, message: str) -> None:
                await stream.send_all(f"NOTICE {message}\n".encode())

        try:
            while (line := await readline()) is not None:
                text = line.decode()
                kind, verb, objects, flags = classify(text)
                cmd = sr.command(text, language="sql", kind=kind, verb=verb, objects=objects, flags=flags)
                run: CommandRun | None = None
                gone = False
                async with trio.open_nursery() as nursery:
                    context = Context()

                    async def decide(cmd: Command = cmd, context: Context = context) -> None:
                        nonlocal run
                        run = await sr.decide(cmd, context)
                        nursery.cancel_scope.cancel()

                    async def watch_client(context: Context = context) -> None:
                        nonlocal gone
                        while data := await stream.receive_some(4096):
                            buf.extend(data)
                        gone = True
                        context.cancel_reason = "client_disconnected"
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(decide)
                    nursery.start_soon(watch_client)
                if gone or run is None:
                    if run is not None:
                        await run.complete(Outcome(status="cancelled"))
                    return
                verdict = run.verdict
                if not verdict.allowed:
                    code = verdict.code.value if verdict.code else "-"
                    await stream.send_all(f"DENIED {code} {verdict.request_id or '-'} {verdict.reason}\n".encode())
                    await run.complete(Outcome(status="denied"))
                    continue
                await stream.send_all(f"RAN {text}\n".encode())
                await run.complete(Outcome(rows=0, tag="RAN"))
        finally:
            await sr.end("client_closed")


class Doubles:
    @hookimpl
    def gw_register_protocols(self, register: Callable[[type[Any]], None]) -> None:
        register(LineHandler)

    @hookimpl
    def gw_register_identity_providers(self, register: Callable[[type[Any]], None]) -> None:
        register(StaticIdentity)

    @hookimpl
    def gw_register_storage(self, register: Callable[[type[Any]], None]) -> None:
        register(MemoryStore)


#: What the entry point of a subprocess's fake distribution names.
plugin = Doubles()


# -- client -----------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    notices: list[str] = field(default_factory=list)
    outcome: str = ""  # RAN | DENIED
    code: str = ""
    request_id: str = ""
    message: str = ""

    @property
    def ran(self) -> bool:
        return self.outcome == "RAN"


class LineClient:
    """A client of the line protocol double."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    @classmethod
    async def connect(cls, port: int, token: str) -> LineClient:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.stream.send_all(f"{token}\n".encode())
        hello = await client.readline()
        assert hello == "OK", hello
        return client

    async def readline(self) -> str:
        with trio.fail_after(10):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(4096)
                if not data:
                    raise EOFError("the gateway closed the connection")
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    async def send(self, text: str) -> None:
        await self.stream.send_all(f"{text}\n".encode())

    async def reply(self) -> Reply:
        """Read NOTICE lines until the command's outcome."""
        reply = Reply()
        while True:
            line = await self.readline()
            if line.startswith("NOTICE "):
                reply.notices.append(line[len("NOTICE "):])
                continue
            if line.startswith("RAN "):
                reply.outcome = "RAN"
                return reply
            _, reply.code, reply.request_id, reply.message = line.split(" ", 3)
            reply.outcome = "DENIED"
            return reply

    async def run(self, text: str) -> Reply:
        await self.send(text)
        return await self.reply()

    async def aclose(self) -> None:
        await self.stream.aclose()




# -- pipeline files ---------------------------------------------------------------------------------------------

USERS = ('{ alice = ["agents"], bob = ["agents"], dana = ["dba"], dave = ["dba", "agents"], '
         'erin = ["dba"], eve = ["guests"] }')

#: The issue's canonical approve stage, as written.
CANONICAL = ('{ use = "approve", approvers = ["dba"], timeout = "10m", mode = "hold", require = [ '
             '{ kind = "write", flags = ["no_where"] }, { verb = ["grant", "revoke"] }, '
             '{ objects = ["public.payments*"], kind = "write" } ] }')


def pipeline_text(stage: str, storage: str, data_dir: str, *, identity: str = "") -> str:
    """A pipeline file with one ``lines`` listener ``orders`` whose pipeline is ``stage``."""
    identity = identity or f'[identity.static]\nuse = "static"\nusers = {USERS}'
    name = identity.split("]", 1)[0].split(".", 1)[1]
    return f"""
[gateway]
data_dir = "{data_dir}"
name = "gw-test"
drain_timeout = "1s"

[storage]
{storage}

{identity}

[pipelines.agents]
stages = [{stage}]

[[listeners]]
name = "orders"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "{name}"
pipeline = "agents"
allow_groups = ["agents"]
"""
