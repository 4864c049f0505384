"""Inline test plugins for core's tests: a line protocol, a static identity provider and small stages.

The line protocol is a test double for a real protocol plugin (each line is a command; the reply is the
verdict or the echoed, possibly transformed, text).  It exercises core's server, runtime and pipeline without
any real peer; real protocols are tested end to end in their own plugins and in tests/test_e2e_*.py.
"""

from __future__ import annotations

import pluggy
import pytest
import trio

from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Column, Identity, Kind, Outcome, Verdict
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.stage import Stage, StageOptions


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
        reason = "client_closed"
        busy = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal reason
                why = await sr.wait_terminated()
                while busy:  # let the command in flight finish (graceful drain)
                    await trio.sleep(0.01)
                reason = why
                await stream.send_all(f"BYE {why}\n".encode())
                nursery.cancel_scope.cancel()

            async def serve() -> None:
                nonlocal busy
                while (line := await readline()) is not None:
                    busy = True
                    await self.run_command(sr, stream, line.decode())
                    busy = False
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(serve)
        await sr.end(reason)

    async def run_command(self, sr, stream: trio.SocketStream, text: str) -> None:  # type: ignore[no-untyped-def]
        if text.startswith("sleep "):
            await trio.sleep(float(text.split()[1]))
        kind = Kind.DDL if text.startswith("drop") else Kind.READ
        cmd = sr.command(text, language="line", kind=kind, verb=text.split()[0] if text else "")

        class Ctx:
            async def notice(self, message: str) -> None:
                await stream.send_all(f"NOTICE {message}\n".encode())

        verdict = await sr.decide(cmd, Ctx())
        if not verdict.allowed:
            await stream.send_all(f"DENIED {verdict.reason}\n".encode())
            await sr.complete(cmd, Outcome(status="denied"))
            return
        filt = sr.rows(cmd, [Column("value")])
        row: list[bytes | None] = [text.encode()]
        if filt is not None:
            row = filt.row(row)
        await stream.send_all(b"ROW " + (row[0] or b"") + b"\n")
        await sr.complete(cmd, Outcome(rows=1, tag="ROW"))


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



@pytest.fixture
def inline_pm(gw_plugin_manager: pluggy.PluginManager, gw_register) -> pluggy.PluginManager:  # type: ignore[no-untyped-def]
    """A plugin manager with the inline test plugins registered."""
    events.clear()
    gw_register(InlinePlugin(), "inline")
    return gw_plugin_manager


@pytest.fixture
def recorded_events() -> list[tuple[str, object]]:
    return events


async def talk(port: int, *lines: str, expect: int | None = None) -> list[str]:
    """Send lines to the line protocol and collect one reply line per sent line (or ``expect`` lines)."""
    want = len(lines) if expect is None else expect
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all("".join(line + "\n" for line in lines).encode())
        out = b""
        with trio.move_on_after(3):
            while out.count(b"\n") < want:
                data = await stream.receive_some(4096)
                if not data:
                    break
                out += data
    return out.decode().splitlines()


@pytest.fixture
def line_talk():  # type: ignore[no-untyped-def]
    return talk


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
    script = Path(__file__).resolve().parents[1] / "examples" / "setup-postgres.sql"
    subprocess.run(["psql", "-X", "-q", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-v",
                    "ON_ERROR_STOP=1", "-f", str(script)], capture_output=True, check=False, timeout=60)
