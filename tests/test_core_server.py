"""The trio server: graceful shutdown with drain, reload, session lifetime, contained connection errors."""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.testing
from gw.testing import running_gateway, write_pipeline

BASE = """
[gateway]
drain_timeout = "{drain}"

[identity.static]
use = "static"
users = {{ alice = ["agents"], bob = ["agents", "contractors"] }}

[pipelines.p]
stages = [{{ use = "recorder" }}, {{ use = "deny_drop", message = "{message}" }}]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
deny_groups = [{deny}]
{extra}
"""


def config(tmp_path: Path, *, drain: str = "5s", message: str = "no drops", deny: str = "",
           extra: str = "") -> Path:
    return write_pipeline(tmp_path, BASE.format(drain=drain, message=message, deny=deny, extra=extra))


async def open_session(port: int, token: str = "alice") -> tuple[trio.SocketStream, list[bytes]]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(token.encode() + b"\n")
    return stream, []


async def read_lines(stream: trio.SocketStream, n: int, timeout: float = 3) -> list[str]:
    out = b""
    with trio.move_on_after(timeout):
        while out.count(b"\n") < n:
            data = await stream.receive_some(4096)
            if not data:
                break
            out += data
    return out.decode().splitlines()


async def test_shutdown_lets_in_flight_command_finish(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    async with running_gateway(config(tmp_path), pm=inline_pm) as gw:
        port = gw.port("lines")
        stream, _ = await open_session(port)
        assert await read_lines(stream, 1) == ["OK"]
        await stream.send_all(b"sleep 0.3\n")
        await trio.sleep(0.05)
        gw.gateway.shutdown()
        # new connections are refused once accepting stopped
        await trio.sleep(0.05)
        try:
            extra = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            pass
        else:
            assert await extra.receive_some(10) == b""
            await extra.aclose()
        assert await read_lines(stream, 2) == ["ROW sleep 0.3", "BYE shutdown"]


async def test_shutdown_cancels_sessions_after_drain_timeout(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    async with running_gateway(config(tmp_path, drain="0.2s"), pm=inline_pm) as gw:
        stream, _ = await open_session(gw.port("lines"))
        assert await read_lines(stream, 1) == ["OK"]
        await stream.send_all(b"sleep 30\n")
        await trio.sleep(0.05)
    assert time.monotonic() - started < 5
    assert await read_lines(stream, 1, timeout=1) == []


async def test_reload_applies_to_existing_session_and_keeps_old_on_error(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    path = config(tmp_path)
    async with running_gateway(path, pm=inline_pm) as gw:
        stream, _ = await open_session(gw.port("lines"))
        await stream.send_all(b"drop a\n")
        assert await read_lines(stream, 2) == ["OK", "DENIED no drops"]
        audit_stage = gw.runtime.pipelines["p"].stages[0]

        path.write_text(path.read_text().replace("no drops", "drops are for DBAs"))
        assert await gw.gateway.reload()
        await stream.send_all(b"drop b\n")
        assert await read_lines(stream, 1) == ["DENIED drops are for DBAs"]
        # an unchanged stage keeps its instance (the audit chain would not fork)
        assert gw.runtime.pipelines["p"].stages[0] is audit_stage

        path.write_text("this is [not toml")
        assert not await gw.gateway.reload()
        await stream.send_all(b"drop c\n")
        assert await read_lines(stream, 1) == ["DENIED drops are for DBAs"]
        await stream.aclose()


async def test_reload_closes_sessions_of_newly_denied_group(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    path = config(tmp_path)
    async with running_gateway(path, pm=inline_pm) as gw:
        alice, _ = await open_session(gw.port("lines"), "alice")
        bob, _ = await open_session(gw.port("lines"), "bob")
        assert await read_lines(alice, 1) == ["OK"]
        assert await read_lines(bob, 1) == ["OK"]
        path.write_text(path.read_text().replace("deny_groups = []", 'deny_groups = ["contractors"]'))
        assert await gw.gateway.reload()
        assert await read_lines(bob, 1) == ["BYE revoked"]
        await alice.send_all(b"select 1\n")
        assert await read_lines(alice, 1) == ["ROW select 1"]
        await alice.aclose()


async def test_session_max_ends_session(tmp_path: Path, inline_pm, recorded_events) -> None:  # type: ignore[no-untyped-def]
    async with running_gateway(config(tmp_path, extra='session_max = "0.3s"'), pm=inline_pm) as gw:
        stream, _ = await open_session(gw.port("lines"))
        assert await read_lines(stream, 2) == ["OK", "BYE session_max"]


async def test_garbage_connection_does_not_disturb_others(tmp_path: Path, inline_pm) -> None:  # type: ignore[no-untyped-def]
    async with running_gateway(config(tmp_path), pm=inline_pm) as gw:
        port = gw.port("lines")
        good, _ = await open_session(port)
        assert await read_lines(good, 1) == ["OK"]
        for payload in (b"", b"\xff\xfe\x00garbage\n", b"x" * 10000):
            bad = await trio.open_tcp_stream("127.0.0.1", port)
            if payload:
                await bad.send_all(payload)
            await bad.aclose()
        await good.send_all(b"select 2\n")
        assert await read_lines(good, 1) == ["ROW select 2"]
        await good.aclose()


async def test_reload_builds_against_the_running_services_and_closes_what_it_replaced(
        tmp_path: Path, inline_pm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    closed: list[object] = []

    async def close(self) -> None:  # type: ignore[no-untyped-def]
        closed.append(self)

    path = config(tmp_path)
    async with running_gateway(path, pm=inline_pm) as gw:
        old_stage = gw.runtime.pipelines["p"].stages[1]
        old_provider = gw.runtime.identity["static"]
        monkeypatch.setattr(type(old_stage), "close", close)
        monkeypatch.setattr(type(old_provider), "close", close)
        stream, _ = await open_session(gw.port("lines"))
        assert await read_lines(stream, 1) == ["OK"]
        path.write_text(path.read_text().replace("no drops", "drops are for DBAs")
                        .replace("bob = [", "carol = [\"agents\"], bob = ["))
        assert await gw.gateway.reload()
        new_stage, new_provider = gw.runtime.pipelines["p"].stages[1], gw.runtime.identity["static"]
        assert new_stage is not old_stage and new_provider is not old_provider
        # built against the running services, not a second runtime's
        assert new_stage.services is gw.runtime.services and new_provider.services is gw.runtime.services
        # the replaced provider closes at once; the replaced stage when the last session older than the
        # reload ends
        assert closed == [old_provider]
        await stream.send_all(b"drop x\n")
        assert await read_lines(stream, 1) == ["DENIED drops are for DBAs"]
        carol, _ = await open_session(gw.port("lines"), "carol")
        assert await read_lines(carol, 1) == ["OK"]
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(50):
            if old_stage in closed:
                break
            await trio.sleep(0.02)
        assert closed == [old_provider, old_stage]
        await carol.aclose()
    assert set(closed[-2:]) == {new_stage, new_provider}  # and at shutdown, the ones in use
