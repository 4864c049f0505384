"""Core end to end with inline plugins: a line protocol, an inline identity provider and stages.

The line protocol here is a test double for a real protocol plugin (each line is a command, the reply is
the verdict or the echoed text); it exercises core's server, runtime and pipeline without any real peer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gw import hookimpl
from gw.errors import AuthenticationError, ConfigError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Column, Identity, Kind, Outcome, Verdict
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.runtime import Runtime
from gw.stage import Stage, StageOptions
from gw.testing import running_gateway, write_pipeline


class StaticOptions(ProviderOptions):
    users: dict[str, list[str]] = {}


class StaticIdentity(IdentityProvider):
    """Accepts the token ``SUBJECT`` when SUBJECT is in ``users``."""

    name = "static"
    Options = StaticOptions

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        if token not in self.options.users:
            raise AuthenticationError("unknown token; get one from your operator", reason="invalid_token")
        return Identity(token, tuple(self.options.users[token]), provider=self.instance_name)


class LineHandler(ProtocolHandler):
    name = "lines"
    Options = ListenerOptions

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        buf = b""

        async def readline() -> bytes | None:
            nonlocal buf
            while b"\n" not in buf:
                data = await stream.receive_some(4096)
                if not data:
                    return None
                buf += data
            line, buf = buf.split(b"\n", 1)
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
        try:
            while (line := await readline()) is not None:
                text = line.decode()
                kind = Kind.DDL if text.startswith("drop") else Kind.READ
                cmd = sr.command(text, language="line", kind=kind, verb=text.split()[0] if text else "")

                class Ctx:
                    async def notice(self, message: str) -> None:
                        await stream.send_all(f"NOTICE {message}\n".encode())

                verdict = await sr.decide(cmd, Ctx())
                if not verdict.allowed:
                    await stream.send_all(f"DENIED {verdict.reason}\n".encode())
                    await sr.complete(cmd, Outcome(status="denied"))
                    continue
                filt = sr.rows(cmd, [Column("value")])
                row: list[bytes | None] = [text.encode()]
                if filt is not None:
                    row = filt.row(row)
                await stream.send_all(b"ROW " + (row[0] or b"") + b"\n")
                await sr.complete(cmd, Outcome(rows=1, tag="ROW"))
        finally:
            await sr.end("client_closed")


class DenyDropOptions(StageOptions):
    message: str = "no drops"


events: list[tuple[str, object]] = []


class DenyDrop(Stage):
    name = "deny_drop"
    Options = DenyDropOptions

    def evaluate(self, command):  # type: ignore[no-untyped-def]
        if command.kind is Kind.DDL:
            return Verdict.deny(self.options.message, rule="ddl")
        return None


class Upper(Stage):
    name = "upper"
    transforms = True

    def rows(self, command, columns):  # type: ignore[no-untyped-def]
        class F:
            def row(self, values):  # type: ignore[no-untyped-def]
                return [v.upper() if v else v for v in values]
        return F()


class Recorder(Stage):
    name = "recorder"

    async def decided(self, command, verdict):  # type: ignore[no-untyped-def]
        events.append(("decided", (command.text, verdict.decision.value)))

    async def completed(self, command, outcome):  # type: ignore[no-untyped-def]
        events.append(("completed", (command.text, outcome.status)))

    async def session_refused(self, **kw):  # type: ignore[no-untyped-def]
        events.append(("refused", kw["reason"]))


class Broken(Stage):
    name = "broken"

    async def check(self, command, context):  # type: ignore[no-untyped-def]
        if command.text == "boom":
            raise RuntimeError("stage bug")
        return None


class InlinePlugin:
    @hookimpl
    def gw_register_protocols(self, register):  # type: ignore[no-untyped-def]
        register(LineHandler)

    @hookimpl
    def gw_register_identity_providers(self, register):  # type: ignore[no-untyped-def]
        register(StaticIdentity)

    @hookimpl
    def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
        for s in (DenyDrop, Upper, Recorder, Broken):
            register(s)


CONFIG = """
[identity.static]
use = "static"
users = { alice = ["agents"], bob = ["guests"] }

[pipelines.p]
stages = [{ use = "recorder" }, { use = "broken" }, { use = "deny_drop", message = "drops need a DBA" },
          { use = "upper" }]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
allow_groups = ["agents"]
"""


async def talk(port: int, *lines: str) -> list[str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all("".join(line + "\n" for line in lines).encode())
        out = b""
        with trio.move_on_after(2):
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                out += data
                if out.count(b"\n") >= len(lines):
                    break
    return out.decode().splitlines()


async def test_inline_plugins_run_in_order(tmp_path: Path, gw_plugin_manager, gw_register) -> None:  # type: ignore[no-untyped-def]
    events.clear()
    gw_register(InlinePlugin(), "inline")
    path = write_pipeline(tmp_path, CONFIG)
    async with running_gateway(path, pm=gw_plugin_manager) as gw:
        port = gw.port("lines")
        assert await talk(port, "alice", "select x", "drop table t", "boom") == [
            "OK", "ROW SELECT X", "DENIED drops need a DBA",
            "DENIED gw stage 'broken' failed (RuntimeError); the command was not run. Retry, or ask the "
            "gateway operator to check the gw log"]
        assert (await talk(port, "bob"))[0].startswith("ERR identity 'bob' is not in a group allowed")
        assert (await talk(port, "mallory")) == ["ERR unknown token; get one from your operator"]
    assert ("decided", ("select x", "allow")) in events
    assert ("decided", ("drop table t", "deny")) in events
    assert ("completed", ("drop table t", "denied")) in events
    assert ("refused", "group_not_allowed") in events
    assert ("refused", "invalid_token") in events


def test_unknown_stage_is_a_precise_config_error(tmp_path: Path, gw_plugin_manager, gw_register) -> None:  # type: ignore[no-untyped-def]
    gw_register(InlinePlugin(), "inline")
    path = write_pipeline(tmp_path, CONFIG.replace('{ use = "upper" }', '{ use = "uper" }'))
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=gw_plugin_manager)
    assert "pipelines.p.stages[3].use" in str(err.value)
    assert "unknown stage 'uper'" in str(err.value)
    assert str(path) in str(err.value)


def test_stage_option_errors_name_the_key_path(tmp_path: Path, gw_plugin_manager, gw_register) -> None:  # type: ignore[no-untyped-def]
    gw_register(InlinePlugin(), "inline")
    path = write_pipeline(tmp_path, CONFIG.replace('message = "drops need a DBA"', 'mesage = "x"'))
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=gw_plugin_manager)
    assert "pipelines.p.stages[2].mesage: unknown key" in str(err.value)
