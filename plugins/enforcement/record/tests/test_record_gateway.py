"""The record stage end to end: a running gateway with the inline script protocol (conftest.ScriptHandler),
an inline masking stage before record, and a real store (the journal double; gw-sqlite if installed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pluggy
import trio
from gw.runtime import Runtime
from gw.testing import running_gateway
from gw_record import archive
from gw_record.archive import Recording

RAW = b"zebra-unmasked"          # only the upstream has it; the inline scrub stage masks it (conftest)
PASSWORD = "hunter2-xyzzy"       # found by the inline test detector (conftest.WordDetector)
CANONICAL = '{ use = "deny_drop" }, { use = "scrub" }, { use = "record", max_rows = 3 }'


async def read_back(path: Path, pm: pluggy.PluginManager) -> tuple[dict[str, Any], list[list[Any]],
                                                                  list[dict[str, Any]]]:
    """The only recorded session's header, events and index entries, read by a fresh runtime (as the CLI)."""
    async with Runtime.build(path, pm=pm).opened() as rt:
        assert rt.store is not None
        listed = await archive.list_sessions(rt.store, limit=10)
        assert len(listed) == 1
        rec = await Recording.open(rt.store, listed[0]["id"])
        return rec.header, [e async for e in rec.events()], listed


async def test_session_is_recorded_in_order_with_masked_rows(
        pipeline_file: Callable[..., Path], pm: pluggy.PluginManager,
        script_session: Callable[..., Awaitable[list[str]]], persisted_bytes: Callable[[], bytes]) -> None:
    path = pipeline_file(CANONICAL)
    replies = await script_session(path, "rows 5", f"select 1 -- {PASSWORD}", "out 9",
                                   "fail", "drop table t", pause=0.03)
    assert replies[0] == "OK"
    assert replies[1:6] == [f"ROW {i},[scrubbed],NULL" for i in range(5)]  # the agent saw masked values

    header, events, listed = await read_back(path, pm)
    assert header["format"] == "gw-recording" and header["version"] == 1
    assert header["subject"] == "alice" and header["groups"] == ["agents"]
    assert header["listener"] == "script" and header["protocol"] == "script"
    assert header["upstream"] == "script:0"
    assert header["client"].startswith("127.0.0.1:") and header["started"] > 0

    assert [(e[1], e[2].get("seq")) for e in events] == [
        ("query", 1), ("verdict", 1), ("rows", 1), ("notice", 1), ("result", 1),
        ("query", 2), ("verdict", 2), ("rows", 2), ("result", 2),
        ("query", 3), ("verdict", 3), ("data", 3), ("result", 3),
        ("query", 4), ("verdict", 4), ("error", 4), ("result", 4),
        ("query", 5), ("verdict", 5), ("error", 5), ("result", 5),
        ("end", None)]
    times = [e[0] for e in events]
    assert times == sorted(times) and times[0] >= 0
    queries = [e for e in events if e[1] == "query"]
    assert all(b[0] - a[0] >= 0.03 for a, b in zip(queries, queries[1:]))  # the pauses between commands

    rows = events[2][2]
    assert rows["columns"] == ["id", "ssn", "note"]
    assert rows["rows"] == [[str(i), "[scrubbed]", None] for i in range(3)]  # capped at max_rows, masked
    assert rows["truncated"] is True
    result = events[4][2]
    assert result["rows"] == 5 and result["tag"] == "SELECT 5" and result["truncated"] is True
    assert result["columns"] == ["id", "ssn", "note"] and result["status"] == "ok"
    assert events[3][2] == {"seq": 1, "text": "5 rows for you"}
    assert events[5][2]["text"] == "select 1 -- ***"           # the detector ran over what the agent sent
    assert events[11][2] == {"seq": 3, "channel": "stdout", "data": "[scrubbed]-9 here\n"}
    assert events[15][2] == {"seq": 4, "code": "XX000", "message": "upstream says no"}
    assert events[16][2]["status"] == "error"
    assert events[18][2] == {"seq": 5, "decision": "deny", "stage": "deny_drop", "rule": "ddl",
                             "reason": "drops need a DBA", "code": "policy"}
    assert events[20][2]["status"] == "denied"
    assert events[-1][2] == {"reason": "client_closed", "commands": 5}

    assert listed[0]["subject"] == "alice" and listed[0]["commands"] == 5
    assert listed[0]["end_reason"] == "client_closed" and listed[0]["ended"] >= listed[0]["started"]

    stored = persisted_bytes()
    assert b"[scrubbed]" in stored          # the grep below looks at the right bytes
    assert RAW not in stored                # the unmasked value is nowhere gw persisted
    assert PASSWORD.encode() not in stored


async def test_open_session_is_listed_live_and_ended_at_shutdown(
        pipeline_file: Callable[..., Path], pm: pluggy.PluginManager) -> None:
    path = pipeline_file(CANONICAL)
    async with running_gateway(path, pm=pm) as gateway:
        store = gateway.runtime.store
        assert store is not None
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.port("script"))
        async with stream:
            await stream.send_all(b"alice\nrows 1\n")
            with trio.fail_after(5):
                received = b""
                while b"END\n" not in received:
                    received += await stream.receive_some(4096)
                # The index document appears without waiting for the session's end.
                listed: list[dict[str, Any]] = []
                while not listed or not listed[0]["commands"]:
                    listed = await archive.list_sessions(store, limit=5)
                    await trio.sleep(0.02)
            assert listed[0]["ended"] is None and listed[0]["commands"] == 1
            gateway.gateway.shutdown()
            with trio.fail_after(5):
                while gateway.runtime.listeners["script"].sessions:
                    await trio.sleep(0.02)
    header, events, listed = await read_back(path, pm)
    assert [e[1] for e in events] == ["query", "verdict", "rows", "notice", "result", "end"]
    assert events[-1][2] == {"reason": "shutdown", "commands": 1}
    assert listed[0]["end_reason"] == "shutdown"


async def test_refused_login_records_nothing(pipeline_file: Callable[..., Path], pm: pluggy.PluginManager,
                                             script_session: Callable[..., Awaitable[list[str]]]) -> None:
    path = pipeline_file(CANONICAL)
    assert (await script_session(path, token="mallory")) == ["ERR unknown token"]
    async with Runtime.build(path, pm=pm).opened() as rt:
        assert rt.store is not None
        assert await archive.list_sessions(rt.store, limit=10) == []
