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
from gw.model import Kind, Verdict
from gw.stage import Stage, StageOptions
from gw.testing import KitPlugin


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


class InlinePlugin:
    @hookimpl
    def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
        for s in (DenyDrop, Upper, Recorder, Broken):
            register(s)



@pytest.fixture
def inline_pm(gw_plugin_manager: pluggy.PluginManager, gw_register) -> pluggy.PluginManager:  # type: ignore[no-untyped-def]
    """A plugin manager with the inline test plugins registered."""
    events.clear()
    gw_register(InlinePlugin(), "inline")
    gw_register(KitPlugin(), "kit")
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
