"""The record stage driven directly through a real Pipeline with gw.model values (no network): byte streams,
terminal sessions, caps, redaction of what the agent sent, flushing, fail-closed behaviour, option errors."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pluggy
import pytest
import trio
from gw.errors import ConfigError
from gw.model import Column, Command, DenyCode, Identity, Kind, Outcome, Session
from gw.pipeline import Pipeline
from gw.runtime import Runtime
from gw_record.archive import Recording
from gw_record.recording import INDEX, STREAM, utf8_incomplete_tail
from gw_record.stage import Record

PASSWORD = "hunter2-xyzzy"  # what the inline test detector finds (see conftest.WordDetector)


class FakeClock:
    """A monotonic clock the test moves by hand, so event times are exact and nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Context:
    async def notice(self, message: str) -> None:
        pass


@asynccontextmanager
async def opened(path: Path, pm: pluggy.PluginManager) -> AsyncIterator[tuple[Runtime, Pipeline, Record]]:
    rt = Runtime.build(path, pm=pm)
    async with rt.opened(serving=True):
        pipeline = rt.pipelines["p"]
        stage = next(s for s in pipeline.stages if isinstance(s, Record))
        yield rt, pipeline, stage


def session(sid: str = "s1", protocol: str = "ssh", **attributes: str) -> Session:
    return Session(id=sid, listener="web-1", protocol=protocol, identity=Identity("alice", ("agents",)),
                   client_address="127.0.0.1:50000", upstream="127.0.0.1:22", started_at=time.time(),
                   attributes=attributes)


def command(s: Session, seq: int, text: str, *, kind: Kind = Kind.EXEC, **attributes: Any) -> Command:
    return Command(s, seq, text, "shell", kind, text.split()[0] if text else "", attributes=attributes)


async def events_of(rt: Runtime, sid: str) -> tuple[dict[str, Any], list[list[Any]]]:
    assert rt.store is not None
    rec = await Recording.open(rt.store, sid)
    return rec.header, [e async for e in rec.events()]


def of_type(events: list[list[Any]], kind: str) -> list[dict[str, Any]]:
    return [e[2] for e in events if e[1] == kind]


async def test_terminal_session_is_recorded_with_timing(pipeline_file: Callable[..., Path],
                                                        pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record", record_input = true }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        clock = stage.clock = FakeClock()
        s = session(term="xterm-256color")
        await pipeline.session_started(s)
        shell = command(s, 1, "shell", term="xterm-256color", cols=100, rows=30)
        assert (await pipeline.decide(shell, Context())).allowed
        out, typed, resize = (pipeline.stream(shell, ch) for ch in ("pty", "pty-input", "pty-resize"))
        assert out is not None and typed is not None and resize is not None
        clock.now += 0.5
        assert out.feed(b"$ ") == b"$ "
        for key in b"ls\r":
            clock.now += 0.1
            typed.feed(bytes([key]))
        clock.now += 0.2
        out.feed(b"ls\r\nfile-\xc3")  # a UTF-8 character split across two reads ...
        out.feed(b"\xa9.txt\r\n$ ")   # ... stays text
        clock.now += 1.0
        resize.feed(b"120x40")
        resize.feed(b"garbage")       # malformed sizes are ignored, the data path is not disturbed
        clock.now += 0.5
        out.feed(b"exit\r\n")
        for f in (out, typed, resize):
            f.finish()
        await pipeline.completed(shell, Outcome(tag="exit 0"))
        clock.now += 0.25
        await pipeline.session_ended(s, "client_closed")

        header, events = await events_of(rt, "s1")
    assert header["session"] == "s1" and header["subject"] == "alice" and header["groups"] == ["agents"]
    assert header["listener"] == "web-1" and header["protocol"] == "ssh" and header["attributes"] == {
        "term": "xterm-256color"}
    assert [e[1] for e in events] == ["query", "verdict", "data", "data", "data", "data", "resize", "data",
                                      "result", "end"]
    times = [e[0] for e in events]
    assert times == sorted(times)
    data = of_type(events, "data")
    assert [(d["channel"], d["data"]) for d in data] == [
        ("pty", "$ "), ("pty-input", "ls\r"), ("pty", "ls\r\nfile-"), ("pty", "\u00e9.txt\r\n$ "),
        ("pty", "exit\r\n")]
    assert events[2][0] == pytest.approx(0.5, abs=0.01)      # output at +0.5s
    assert events[3][0] == pytest.approx(0.8, abs=0.01)      # the typed line, complete at the carriage return
    assert of_type(events, "resize") == [{"seq": 1, "cols": 120, "rows": 40}]
    assert of_type(events, "query")[0]["attributes"] == {"term": "xterm-256color", "cols": 100, "rows": 30}
    result = of_type(events, "result")[0]
    assert result["channels"]["pty"] == {"bytes": 27, "recorded": 27}
    assert of_type(events, "end") == [{"reason": "client_closed", "commands": 1}]


async def test_typed_input_is_not_recorded_by_default(pipeline_file: Callable[..., Path],
                                                      pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record" }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        s = session()
        await pipeline.session_started(s)
        shell = command(s, 1, "shell")
        await pipeline.decide(shell, Context())
        assert pipeline.stream(shell, "pty-input") is None
        assert pipeline.stream(shell, "stdin") is None
        await pipeline.completed(shell, Outcome())
        await pipeline.session_ended(s, "client_closed")
        _, events = await events_of(rt, "s1")
    assert not of_type(events, "data")


async def test_streams_are_capped_and_binary_is_base64(pipeline_file: Callable[..., Path],
                                                       pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record", max_bytes = 10 }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        s = session()
        await pipeline.session_started(s)
        cat = command(s, 1, "cat /bin/true")
        await pipeline.decide(cat, Context())
        out = pipeline.stream(cat, "stdout", "application/octet-stream")
        err = pipeline.stream(cat, "stderr")
        assert out is not None and err is not None
        assert out.feed(b"\x7fELF\xff\xfe") == b"\x7fELF\xff\xfe"
        assert out.feed(b"0123456789") == b"0123456789"  # passes through whole; only 4 bytes are recorded
        assert err.feed(b"more") == b"more"              # the budget is per command: nothing left
        out.finish()
        err.finish()
        await pipeline.completed(cat, Outcome(status="ok", tag="exit 0"))
        await pipeline.session_ended(s, "client_closed")
        _, events = await events_of(rt, "s1")
    data = of_type(events, "data")
    elf = base64.b64encode(b"\x7fELF\xff\xfe").decode()
    assert data[0] == {"seq": 1, "channel": "stdout", "data": {"b64": elf}}
    assert data[1] == {"seq": 1, "channel": "stdout", "truncated": "max_bytes"}
    assert data[2] == {"seq": 1, "channel": "stdout", "data": "0123"}
    assert data[3] == {"seq": 1, "channel": "stderr", "truncated": "max_bytes"}
    result = of_type(events, "result")[0]
    assert result["truncated"] is True
    assert result["channels"] == {
        "stdout": {"bytes": 16, "recorded": 10, "content_type": "application/octet-stream"},
        "stderr": {"bytes": 4, "recorded": 0}}


async def test_what_the_agent_sent_is_redacted_even_when_split(pipeline_file: Callable[..., Path],
                                                               pm: pluggy.PluginManager,
                                                               persisted_bytes: Callable[[], bytes]) -> None:
    """Command text, parameters, request bodies (a value split across reads, or inside a binary body),
    secret headers, error messages: none of them reaches the store with the detected value or a secret."""
    path = pipeline_file('{ use = "record", redact_keys = ["x-tenant-*"] }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        s = session(protocol="http", cookie="sid=abc123")
        await pipeline.session_started(s)
        post = Command(s, 1, f"POST /login?pw={PASSWORD}", "http", Kind.WRITE, "POST", ("/login",),
                       params=(PASSWORD.encode(), 42),
                       attributes={"headers": [(b"Authorization", b"Bearer tok-abc"),
                                               (b"X-Tenant-Key", b"k-1"), (b"Accept", b"*/*")],
                                   "note": f"user typed {PASSWORD}"})
        await pipeline.decide(post, Context())
        body = pipeline.stream(post, "request-body", "application/json")
        blob = pipeline.stream(post, "ws-client")
        assert body is not None and blob is not None
        half = len(PASSWORD) // 2
        body.feed(b'{"password": "' + PASSWORD[:half].encode())
        body.feed(PASSWORD[half:].encode() + b'"}')
        body.finish()
        blob.feed(b"\x00\xff" + PASSWORD.encode() + b"\xfe")
        blob.finish()
        await pipeline.completed(post, Outcome(status="error", error_code="401",
                                               error_message=f"bad password {PASSWORD}",
                                               notes={"set-cookie": "session=s3cr3t", "status": 401}))
        await pipeline.session_ended(s, "client_closed")
        header, events = await events_of(rt, "s1")
    stored = persisted_bytes()
    for secret in (PASSWORD.encode(), b"tok-abc", b"abc123", b"s3cr3t", b"k-1"):
        assert secret not in stored
    query = of_type(events, "query")[0]
    assert query["text"] == "POST /login?pw=***"
    assert query["params"] == ["***", 42]
    assert query["attributes"]["headers"] == [["Authorization", "***"], ["X-Tenant-Key", "***"],
                                              ["Accept", "*/*"]]
    assert query["attributes"]["note"] == "user typed ***"
    assert header["attributes"] == {"cookie": "***"}
    data = of_type(events, "data")
    assert data[0]["data"] == '{"password": "***"}'
    assert base64.b64decode(data[1]["data"]["b64"]) == b"\x00\xff***\xfe"
    assert of_type(events, "error") == [{"seq": 1, "code": "401", "message": "bad password ***"}]
    assert of_type(events, "result")[0]["notes"] == {"set-cookie": "***", "status": 401}


async def test_close_flushes_what_is_still_buffered(pipeline_file: Callable[..., Path],
                                                    pm: pluggy.PluginManager) -> None:
    """Nothing is written before shutdown (no completion, a long interval); close() writes it all and ends
    the open session."""
    path = pipeline_file('{ use = "record", flush_interval = "1h" }', listener=False)
    rt = Runtime.build(path, pm=pm)
    await rt.open(serving=True)
    try:
        pipeline = rt.pipelines["p"]
        s = session()
        await pipeline.session_started(s)
        await trio.sleep(0.05)  # let the flusher write the header and the index document
        cmd = command(s, 1, "sleep 100")
        await pipeline.decide(cmd, Context())
        out = pipeline.stream(cmd, "stdout")
        assert out is not None
        out.feed(b"working\n")
        assert rt.store is not None
        assert not [e for e in await rt.store.scan(STREAM) if "events" in e.data]
        for p in rt.pipelines.values():
            await p.close()
        _, events = await events_of(rt, "s1")
        assert [e[1] for e in events] == ["query", "verdict", "data", "end"]
        assert events[-1][2]["reason"] == "gateway_stopped"
        doc = await rt.store.get(INDEX, "s1")
        assert doc is not None and doc.data["end_reason"] == "gateway_stopped" and doc.data["commands"] == 1
    finally:
        assert rt.store is not None
        await rt.store.close()


async def test_size_threshold_and_completion_flush_in_the_background(pipeline_file: Callable[..., Path],
                                                                     pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record", flush_interval = "1h", flush_bytes = 2048 }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        assert rt.store is not None
        s = session()
        await pipeline.session_started(s)
        cmd = command(s, 1, "yes")
        await pipeline.decide(cmd, Context())
        out = pipeline.stream(cmd, "stdout")
        assert out is not None
        for _ in range(10):
            out.feed(b"y\n" * 200)  # 4000 bytes: past flush_bytes
        with trio.fail_after(2):
            while not [e for e in await rt.store.scan(STREAM) if "events" in e.data]:
                await trio.sleep(0.01)
        cmd2 = command(s, 2, "true")
        await pipeline.decide(cmd2, Context())
        await pipeline.completed(cmd2, Outcome())
        with trio.fail_after(2):
            while True:
                _, events = await events_of(rt, "s1")
                if [e for e in events if e[1] == "result" and e[2]["seq"] == 2]:
                    break
                await trio.sleep(0.01)
        records = [e for e in await rt.store.scan(STREAM, where={"session": "s1"}) if "events" in e.data]
        assert len(records) >= 2  # written in batches, not all at the end
        await pipeline.session_ended(s, "client_closed")


async def test_commands_completing_back_to_back_share_a_write(pipeline_file: Callable[..., Path],
                                                              pm: pluggy.PluginManager) -> None:
    """A lone command's events are written as soon as it completes; while commands keep completing, their
    events are gathered (at most one append per GATHER seconds) instead of one store commit each."""
    path = pipeline_file('{ use = "record", flush_interval = "1h" }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        store = rt.store
        assert store is not None
        appends = 0
        append = stage.store.append

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal appends
            appends += 1
            return await append(*args, **kwargs)

        stage.store.append = counting  # type: ignore[method-assign]
        s = session()
        await pipeline.session_started(s)

        async def written(seq: int) -> None:
            with trio.fail_after(5):
                while True:
                    events = [e for r in await store.scan(STREAM, where={"session": "s1"})
                              for e in r.data.get("events", [])]
                    if [e for e in events if e[1] == "result" and e[2]["seq"] == seq]:
                        return
                    await trio.sleep(0.005)

        cmd = command(s, 1, "true")
        await pipeline.decide(cmd, Context())
        await pipeline.completed(cmd, Outcome())
        await written(1)  # alone: written without waiting for flush_interval
        before = appends
        for seq in range(2, 102):
            cmd = command(s, seq, "true")
            await pipeline.decide(cmd, Context())
            await pipeline.completed(cmd, Outcome())
            await trio.sleep(0.001)  # the flusher gets to run between any two commands
        await written(101)
        assert appends - before < 50, f"{appends - before} appends for 100 commands completed back to back"
        await pipeline.session_ended(s, "client_closed")


async def test_failing_store_refuses_commands_once_the_buffer_is_full(tmp_path: Path,
                                                                      pm: pluggy.PluginManager) -> None:
    """Recording is policy: while the store fails, events wait in memory (and are written once it is back);
    past max_buffer, new commands are refused with a reason the agent can act on."""
    path = tmp_path / "pipeline.toml"
    path.write_text('[storage]\nuse = "journal"\n\n[pipelines.p]\nstages = [{ use = "record", '
                    'max_buffer = 1024, flush_interval = "1h" }]\n')
    async with opened(path, pm) as (rt, pipeline, stage):
        store: Any = rt.store
        s = session()
        await pipeline.session_started(s)
        store.failing = OSError(28, "No space left on device")
        seq = 0
        verdict = None
        for seq in range(1, 50):
            cmd = command(s, seq, "echo " + "x" * 100)
            verdict = await pipeline.decide(cmd, Context())
            if not verdict.allowed:
                break
            await pipeline.completed(cmd, Outcome())
            await stage.flush()
        assert verdict is not None and not verdict.allowed
        assert verdict.code is DenyCode.UNAVAILABLE and verdict.stage == "record"
        assert verdict.reason.startswith("gw cannot write session recordings right now (OSError: ")
        assert "No space left on device" in verdict.reason and "Retry later" in verdict.reason
        assert stage.refusing
        store.failing = None
        await stage.flush()
        assert not stage.refusing
        cmd = command(s, seq + 1, "echo back")
        assert (await pipeline.decide(cmd, Context())).allowed
        await pipeline.completed(cmd, Outcome())
        await pipeline.session_ended(s, "client_closed")
        _, events = await events_of(rt, "s1")
    assert [e[2]["seq"] for e in events if e[1] == "query"] == list(range(1, seq + 2))


async def test_a_session_first_seen_mid_way_is_still_recorded(pipeline_file: Callable[..., Path],
                                                              pm: pluggy.PluginManager) -> None:
    """After a policy reload the new pipeline's record stage sees commands of sessions it never saw start."""
    path = pipeline_file('{ use = "record" }', listener=False)
    async with opened(path, pm) as (rt, pipeline, stage):
        s = session()
        cmd = command(s, 7, "uptime")
        await pipeline.decide(cmd, Context())
        await pipeline.completed(cmd, Outcome())
        await pipeline.session_ended(s, "client_closed")
        header, events = await events_of(rt, "s1")
    assert header["session"] == "s1"
    assert [e[1] for e in events] == ["query", "verdict", "result", "end"]


async def test_rows_after_the_kept_ones_go_by_as_column_edits(pipeline_file: Callable[..., Path],
                                                               pm: pluggy.PluginManager) -> None:
    """Until it has kept ``max_rows`` rows the capture wants each row; then it offers column edits that touch
    nothing (a protocol may pass the rest a batch at a time), and a batch going by marks the rows truncated."""
    path = pipeline_file('{ use = "record", max_rows = 2 }', listener=False)
    async with opened(path, pm) as (rt, pipeline, _):
        s = session(protocol="postgres")
        cmd = command(s, 1, "select id from people", kind=Kind.READ)
        await pipeline.decide(cmd, Context())
        rows = pipeline.rows(cmd, [Column("id")])
        assert rows is not None
        rows.row([b"1"])
        assert rows.columnwise() is None
        rows.row([b"2"])
        edits = rows.columnwise()
        assert edits is not None and edits is rows.columnwise()
        assert (edits.constant, edits.edited) == ({}, ())
        assert edits.edit([], 0) == {}
        await pipeline.completed(cmd, Outcome(rows=40, tag="SELECT 40"))
        await pipeline.session_ended(s, "client_closed")
        _, events = await events_of(rt, "s1")
    recorded = of_type(events, "rows")[0]
    assert recorded["rows"] == [["1"], ["2"]] and recorded["truncated"] is True


async def test_rows_keep_binary_values_and_non_utf8_text_as_base64(pipeline_file: Callable[..., Path],
                                                                   pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record", max_rows = 2 }', listener=False)
    async with opened(path, pm) as (rt, pipeline, _):
        s = session(protocol="postgres")
        cmd = command(s, 1, "select id, photo, name from people", kind=Kind.READ)
        await pipeline.decide(cmd, Context())
        rows = pipeline.rows(cmd, [Column("id"), Column("photo", binary=True), Column("name")])
        assert rows is not None
        for values in ([b"1", b"ok", b"Ren\xc3\xa9"], [b"2", None, b"latin-1 \xe9"], [b"3", b"x", b"y"]):
            assert rows.row(list(values)) == values
        await pipeline.completed(cmd, Outcome(rows=3, tag="SELECT 3"))
        await pipeline.session_ended(s, "client_closed")
        _, events = await events_of(rt, "s1")
    recorded = of_type(events, "rows")[0]
    assert recorded["rows"] == [["1", {"b64": base64.b64encode(b"ok").decode()}, "Ren\u00e9"],
                                ["2", None, {"b64": base64.b64encode(b"latin-1 \xe9").decode()}]]
    assert recorded["truncated"] is True and of_type(events, "result")[0]["rows"] == 3


@pytest.mark.parametrize("options, message", [
    ("max_rows = -1", "pipelines.p.stages[0].max_rows"),
    ('flush_interval = "0s"', "flush_interval must be longer than 0s"),
    ('redact_detectors = ["no_such_detector"]', "unknown detector 'no_such_detector'"),
    ("recordinput = true", "pipelines.p.stages[0].recordinput: unknown key"),
])
def test_bad_options_are_config_errors(tmp_path: Path, pm: pluggy.PluginManager, options: str,
                                       message: str) -> None:
    path = tmp_path / "pipeline.toml"
    stage = f'{{ use = "record", {options} }}'
    path.write_text(f'[storage]\nuse = "journal"\n\n[pipelines.p]\nstages = [{stage}]\n')
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=pm)
    assert message in str(err.value)


def test_record_needs_a_store(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('[pipelines.p]\nstages = [{ use = "record" }]\n')
    with pytest.raises(ConfigError) as err:
        Runtime.build(path, pm=pm)
    assert "record needs a [storage] table" in str(err.value)
    assert "pipelines.p.stages[0]" in str(err.value)


@pytest.mark.parametrize("data, tail", [
    (b"abc", 0), (b"\xc3", 1), (b"a\xe2\x82", 2), (b"\xf0\x9f\x98", 3), (b"\xe2\x82\xac", 0),
    (b"\xf0\x9f\x98\x80", 0), (b"", 0), (b"\x80\x80\x80", 0), (b"\xfe", 0), (b"\xff\xc0", 0),
])
def test_utf8_incomplete_tail(data: bytes, tail: int) -> None:
    assert utf8_incomplete_tail(data) == tail


def test_detectors_behind_a_prefilter_run_only_where_it_matches() -> None:
    """A detector's ``prefilter`` (a necessary condition of its findings) spares its ``find`` on texts it does
    not match; detectors without one always run; what is found is redacted either way."""
    import re

    from gw_record.recording import Redactor

    calls: list[str] = []

    class Digits:
        name = "digits"
        prefilter = re.compile(r"[0-9]")

        def find(self, text: str) -> list[tuple[int, int]]:
            calls.append(text)
            return [m.span() for m in re.finditer(r"[0-9]{4}", text)]

    class Secret:
        name = "secret"

        def find(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in re.finditer("hush", text)]

    redactor = Redactor([Digits(), Secret()], ())
    assert redactor.text("no numbers, hush") == "no numbers, ***"
    assert calls == []
    assert redactor.text("pin 1234") == "pin ***"
    assert calls == ["pin 1234"]
