"""End to end through core's server: a running gateway with an inline line protocol whose "upstream" checks the
audit database at the moment a command is forwarded.

The line protocol and the token table are test doubles for a real protocol plugin and identity provider (each
line is a command; the reply says whether the command's audit record was already on disk when it ran).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Identity, Kind, Outcome
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.testing import running_gateway, write_pipeline
from pydantic import Field


class TokenTableOptions(ProviderOptions):
    tokens: dict[str, list[str]] = Field(default_factory=dict)


class TokenTable(IdentityProvider):
    """The token is the subject; ``tokens`` maps it to its groups."""

    name = "token_table"
    Options = TokenTableOptions

    async def authenticate(self, credential: Credential) -> Identity:
        groups = self.options.tokens.get(str(credential.secret))
        if groups is None:
            raise AuthenticationError("token not recognised; get a new one", reason="invalid_token")
        return Identity(str(credential.secret), tuple(groups), provider=self.instance_name)


class AuditProbeProtocol(ProtocolHandler):
    """Line protocol whose upstream answers ``audited`` when the command's record is already in the database."""

    name = "audit_probe"
    Options = ListenerOptions

    def upstream(self, session_id: str, seq: int) -> str:
        conn = sqlite3.connect(str(self.listener.services.data_dir / "gw.db"))
        try:
            found = conn.execute(
                "SELECT count(*) FROM entries WHERE json_extract(data, '$.type') = 'command' AND "
                "json_extract(data, '$.session') = ? AND json_extract(data, '$.seq') = ?",
                (session_id, seq)).fetchone()[0]
        finally:
            conn.close()
        return "audited" if found == 1 else "NOT AUDITED"

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        lines = _Lines(stream)
        token = await lines.read()
        if token is None:
            return
        try:
            identity = await self.listener.authenticate(Credential("token", token), client_address=client_address,
                                                        claimed_user="line-user")
        except AuthenticationError as e:
            await stream.send_all(f"ERR {e}\n".encode())
            return
        sr = await self.listener.start_session(identity, client_address=client_address, claimed_user="line-user")
        await stream.send_all(b"OK\n")
        try:
            while (text := await lines.read()) is not None:
                cmd = sr.command(text, language="line", kind=Kind.DDL if text.startswith("drop") else Kind.READ,
                                 verb=text.split()[0])

                class Context:
                    async def notice(self, message: str) -> None:
                        await stream.send_all(f"NOTICE {message}\n".encode())

                run = await sr.decide(cmd, Context())
                if not run.allowed:
                    await stream.send_all(f"DENIED {run.verdict.reason}\n".encode())
                    await run.complete(Outcome(status="denied"))
                    continue
                reply = await trio.to_thread.run_sync(self.upstream, sr.session.id, cmd.seq)
                await stream.send_all(f"ROW {reply}\n".encode())
                await run.complete(Outcome(rows=1, tag="ROW"))
        finally:
            await sr.end("client_closed")


class _Lines:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def read(self) -> str | None:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


class ProbePlugin:
    @hookimpl
    def gw_register_protocols(self, register: Callable[[type[Any]], None]) -> None:
        register(AuditProbeProtocol)

    @hookimpl
    def gw_register_identity_providers(self, register: Callable[[type[Any]], None]) -> None:
        register(TokenTable)


CONFIG = """
[gateway]
name = "gw-e2e"

[storage]
use = "sqlite"

[identity.table]
use = "token_table"
tokens = { alice = ["agents"], bob = ["guests"] }

[pipelines.agents]
stages = [{ use = "audit" }, { use = "deny_drops" }]

[[listeners]]
name = "lines"
protocol = "audit_probe"
listen = "127.0.0.1:0"
identity = "table"
pipeline = "agents"
allow_groups = ["agents"]
"""


async def talk(port: int, *lines: str) -> tuple[list[str], str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    local = "{}:{}".format(*stream.socket.getsockname()[:2])
    out = b""
    async with stream:
        await stream.send_all("".join(f"{line}\n" for line in lines).encode())
        with trio.fail_after(3):
            while out.count(b"\n") < len(lines):
                data = await stream.receive_some(4096)
                if not data:
                    break
                out += data
    return out.decode().splitlines(), local


async def test_commands_are_audited_before_they_reach_the_upstream(
        tmp_path: Path, audit_pm: pluggy.PluginManager, gw_register: Callable[..., None],
        db: Callable[[], sqlite3.Connection]) -> None:
    gw_register(ProbePlugin(), "probe")
    async with running_gateway(write_pipeline(tmp_path, CONFIG), pm=audit_pm) as gw:
        port = gw.port("lines")
        replies, alice_address = await talk(port, "alice", "select 1", "drop table t", "select 2")
        assert replies == ["OK", "ROW audited", "DENIED DDL needs a DBA; ask one", "ROW audited"]
        assert (await talk(port, "bob"))[0][0].startswith("ERR identity 'bob' is not in a group allowed")
        refused, mallory_address = await talk(port, "mallory")
        assert refused == ["ERR token not recognised; get a new one"]
        with trio.fail_after(3):
            while not db().execute("SELECT count(*) FROM entries WHERE data LIKE '%session_end%'").fetchone()[0]:
                await trio.sleep(0.01)
    records = [json.loads(d) for (d,) in db().execute("SELECT data FROM entries ORDER BY seq")]
    alice = [r for r in records if r.get("subject") == "alice"]
    assert [(r["type"], r.get("seq"), r.get("verdict") or r.get("status") or r.get("reason")) for r in alice] == [
        ("session_start", None, None), ("command", 1, "allowed"), ("outcome", 1, "ok"),
        ("command", 2, "denied"), ("outcome", 2, "denied"), ("command", 3, "allowed"), ("outcome", 3, "ok"),
        ("session_end", None, "client_closed")]
    assert alice[0]["client"] == alice_address and alice[0]["claimed_user"] == "line-user"
    assert alice[3]["stage"] == "deny_drops" and alice[3]["gateway"] == "gw-e2e"
    refusals = [(r["reason"], r["client"]) for r in records if r["type"] == "session_refused"]
    assert refusals[0][0] == "group_not_allowed"
    assert refusals[1] == ("invalid_token", mallory_address)
