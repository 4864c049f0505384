"""``gw sessions``: list, replay, export (JSON lines and asciicast v2), prune -- through click's CliRunner on
recordings made by a running gateway or by the stage driven directly, plus the real ``gw`` executable."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import gw_record.cli
import pluggy
import pytest
import trio
from click.testing import CliRunner, Result
from gw.model import Command, Identity, Kind, Outcome, Session
from gw.runtime import Runtime
from gw.store import Store
from gw_record.archive import Recording
from gw_record.cli import sessions
from gw_record.recording import STREAM
from gw_record.render import Frame, Transcript, play

RAW = b"zebra-unmasked"  # only the upstream has it; the inline scrub stage masks it (conftest)
STAGES = '{ use = "deny_drop" }, { use = "scrub" }, { use = "record" }'


def invoke(*args: str) -> Result:
    return CliRunner().invoke(sessions, list(args), catch_exceptions=False)


def record_script(path: Path, script_session: Callable[..., Awaitable[list[str]]], *lines: str) -> str:
    """Run one session of the inline script protocol and return its id (via `gw sessions list --json`)."""
    trio.run(functools.partial(script_session, path, *lines))
    listed = json.loads(invoke("list", "-c", str(path), "--json").output)
    return str(listed[0]["id"])


class Context:
    async def notice(self, message: str) -> None:
        pass


async def record_terminal(path: Path, pm: pluggy.PluginManager | None, *, with_input: bool = False) -> None:
    """A synthetic SSH shell session, ``t1``, driven through the pipeline the way the SSH plugin will: a
    ``pty`` channel for output, ``pty-input`` for keys, ``pty-resize`` for window changes."""
    rt = Runtime.build(path, pm=pm)
    async with rt.opened(serving=True):
        pipeline = rt.pipelines["p"]
        stage = pipeline.stages[-1]
        now = [500.0]
        stage.clock = lambda: now[0]  # type: ignore[attr-defined]
        s = Session("t1", "web-1", "ssh", Identity("alice", ("agents",)), "127.0.0.1:4000", "127.0.0.1:22",
                    time.time(), claimed_user="deploy")
        await pipeline.session_started(s)
        shell = Command(s, 1, "shell", "shell", Kind.EXEC, "shell",
                        attributes={"term": "xterm-256color", "cols": 100, "rows": 30})
        await pipeline.decide(shell, Context())
        out, keys, size = (pipeline.stream(shell, ch) for ch in ("pty", "pty-input", "pty-resize"))
        assert out is not None and size is not None and (keys is not None) == with_input
        for dt, data in [(0.3, b"deploy@web-1:~$ "), (1.2, b"l"), (0.1, b"s"), (0.2, b"\r\n"),
                         (0.05, b"app.log  \x1b[1;34mreleases\x1b[0m\r\n"), (0.7, b"deploy@web-1:~$ ")]:
            now[0] += dt
            out.feed(data)
            if keys is not None and data in (b"l", b"s", b"\r\n"):
                keys.feed(data.replace(b"\n", b""))
        now[0] += 0.5
        size.feed(b"132x43")
        now[0] += 0.4
        out.feed(b"exit\r\nlogout\r\n")
        await pipeline.completed(shell, Outcome(tag="exit 0"))
        await pipeline.session_ended(s, "client_closed")


def asciinema() -> str | None:
    candidate = Path(sys.executable).with_name("asciinema")
    return str(candidate) if candidate.exists() else shutil.which("asciinema")


# -- list / replay / export of a recorded gateway session ----------------------------------------------------


def test_list_replay_and_export_a_session(pipeline_file: Callable[..., Path], cli_registry: None,
                                          script_session: Callable[..., Awaitable[list[str]]],
                                          tmp_path: Path) -> None:
    path = pipeline_file(STAGES)
    sid = record_script(path, script_session, "rows 2", "out 1", "drop table t")
    config = ["-c", str(path)]

    listed = json.loads(invoke("list", *config, "--json").output)
    assert [(d["id"], d["subject"], d["listener"], d["commands"], d["end_reason"]) for d in listed] == [
        (sid, "alice", "script", 3, "client_closed")]
    table = invoke("list", *config).output
    assert sid in table and "alice" in table and "client_closed" in table
    assert json.loads(invoke("list", *config, "--json", "--listener", "script").output)[0]["id"] == sid
    assert json.loads(invoke("list", *config, "--json", "--user", "bob").output) == []
    assert invoke("list", *config, "--user", "bob").output == "no recorded sessions match the filters\n"
    assert invoke("list", *config, "--limit", "0").exit_code == 2

    replay = invoke("replay", sid, *config, "--no-wait")
    assert replay.exit_code == 0, replay.output
    out = replay.output
    for expected in (f"# gw session {sid}: alice (agents) on listener script (script)", "> rows 2",
                     "id | ssn        | note", "1  | [scrubbed] | NULL", "NOTICE: 2 rows for you",
                     "(2 rows, SELECT 2,", "[scrubbed]-1 here", "> drop table t",
                     "DENIED by deny_drop (rule ddl): drops need a DBA",
                     "# session ended: client_closed (3 commands)"):
        assert expected in out, f"{expected!r} not in replay:\n{out}"
    assert RAW.decode() not in out
    assert invoke("replay", sid, *config, "--speed", "10000").output == out  # same text, with (tiny) waits

    exported = invoke("export", sid, *config).output.splitlines()
    header = json.loads(exported[0])
    assert header["session"] == sid and header["format"] == "gw-recording"
    events = [json.loads(line) for line in exported[1:]]
    assert all(isinstance(e, list) and len(e) == 3 for e in events)
    assert [e[1] for e in events][:2] == ["query", "verdict"] and events[-1][1] == "end"

    target = tmp_path / "exports" / "s.cast"
    target.parent.mkdir()
    assert invoke("export", sid, *config, "--format", "asciicast", "-o", str(target)).exit_code == 0
    assert not list(target.parent.glob("*.partial"))
    lines = target.read_text().splitlines()
    cast_header = json.loads(lines[0])
    assert cast_header["version"] == 2 and cast_header["width"] > 0 and cast_header["height"] > 0
    cast = [json.loads(line) for line in lines[1:]]
    assert {e[1] for e in cast} == {"o"}
    assert [e[0] for e in cast] == sorted(e[0] for e in cast)
    text = "".join(e[2] for e in cast)
    assert "> rows 2\r\n" in text and "[scrubbed]-1 here" in text  # a readable transcript, CR LF line ends


def test_unknown_session_and_bad_arguments(pipeline_file: Callable[..., Path], cli_registry: None) -> None:
    path = pipeline_file(STAGES, listener=False)
    config = ["-c", str(path)]
    result = invoke("replay", "nope", *config)
    assert result.exit_code == 1
    assert "no recording of session 'nope' in this store; `gw sessions list` shows" in result.output
    assert invoke("export", "nope", *config, "--format", "asciicast").exit_code == 1
    bad = invoke("export", "nope", *config, "--format", "mp4")
    assert bad.exit_code == 2 and "'mp4' is not one of 'jsonl', 'asciicast'" in bad.output
    assert invoke("replay", "nope", *config, "--speed", "-1").exit_code == 2
    assert invoke("list", *config).output == "no recorded sessions yet\n"
    no_retention = invoke("prune", *config)
    assert no_retention.exit_code == 2 and "no retention configured" in no_retention.output
    assert "expected a duration" in invoke("prune", *config, "--older-than", "soon").output


def test_sessions_need_a_store(tmp_path: Path, cli_registry: None) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text("[pipelines.p]\nstages = []\n")
    result = invoke("list", "-c", str(path))
    assert result.exit_code == 1 and "gw sessions needs a [storage] table" in result.output


def test_prune_applies_retention_to_recordings_and_the_index(
        pipeline_file: Callable[..., Path], cli_registry: None,
        script_session: Callable[..., Awaitable[list[str]]]) -> None:
    path = pipeline_file(STAGES)
    sid = record_script(path, script_session, "rows 1")
    config = ["-c", str(path)]
    assert "removed 0 recording record(s) and 0 session index entries older than 1d" in invoke(
        "prune", *config, "--older-than", "1d").output
    time.sleep(0.01)
    pruned = json.loads(invoke("prune", *config, "--older-than", "0s", "--json").output)
    assert pruned["records"] >= 2 and pruned["sessions"] == 1
    assert json.loads(invoke("list", *config, "--json").output) == []
    assert "no recording of session" in invoke("replay", sid, *config).output


async def test_a_recording_whose_start_was_pruned_still_replays(pipeline_file: Callable[..., Path],
                                                                pm: pluggy.PluginManager) -> None:
    path = pipeline_file('{ use = "record" }', listener=False)
    rt = Runtime.build(path, pm=pm)
    async with rt.opened(serving=True):
        pipeline = rt.pipelines["p"]
        stage: Any = pipeline.stages[0]
        store: Store = rt.store  # type: ignore[assignment]
        s = Session("p1", "web-1", "ssh", Identity("alice"), "127.0.0.1:1", "up", time.time())
        await pipeline.session_started(s)
        await stage.flush()  # header, command 1 and command 2 in three appends, at three different times
        await trio.sleep(0.01)
        for seq in (1, 2):
            cmd = Command(s, seq, f"echo {seq}", "shell", Kind.EXEC, "echo")
            await pipeline.decide(cmd, Context())
            await pipeline.completed(cmd, Outcome())
            await stage.flush()
            await trio.sleep(0.01)
        records = await store.scan(STREAM, where={"session": "p1"})
        assert len(records) == 3
        await store.prune(STREAM, records[2].ts)  # the header record and the first command's events
        rec = await Recording.open(store, "p1")
        assert rec.header["pruned"] is True and rec.header["subject"] == "alice"
        assert [e[2]["seq"] for e in [e async for e in rec.events()] if e[1] == "query"] == [2]
        await store.prune(STREAM, time.time() + 1)
        with pytest.raises(Exception, match="was removed by retention"):
            await Recording.open(store, "p1")
        await pipeline.session_ended(s, "client_closed")


# -- asciicast of a terminal session -------------------------------------------------------------------------


@pytest.mark.parametrize("with_input", [False, True])
def test_asciicast_export_of_a_terminal_session(pipeline_file: Callable[..., Path], pm: pluggy.PluginManager,
                                                cli_registry: None, tmp_path: Path, with_input: bool) -> None:
    path = pipeline_file(f'{{ use = "record", record_input = {str(with_input).lower()} }}', listener=False)
    trio.run(functools.partial(record_terminal, path, pm, with_input=with_input))
    target = tmp_path / "exports" / "t1.cast"
    target.parent.mkdir()
    result = invoke("export", "t1", "-c", str(path), "--format", "asciicast", "-o", str(target))
    assert result.exit_code == 0, result.output

    lines = target.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 100 and header["height"] == 30
    assert header["env"] == {"TERM": "xterm-256color"} and abs(header["timestamp"] - time.time()) < 60
    events = [json.loads(line) for line in lines[1:]]
    times = [e[0] for e in events]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)
    outputs = [e for e in events if e[1] == "o"]
    assert outputs[0] == [pytest.approx(0.3, abs=0.01), "o", "deploy@web-1:~$ "]
    assert ["r", "132x43"] in [e[1:] for e in events]
    inputs = [e[2] for e in events if e[1] == "i"]
    assert inputs == (["ls\r"] if with_input else [])
    screen = "".join(e[2] for e in outputs)
    assert screen == ("deploy@web-1:~$ ls\r\napp.log  \x1b[1;34mreleases\x1b[0m\r\n"
                      "deploy@web-1:~$ exit\r\nlogout\r\n")
    assert "gw session" not in screen  # a terminal session is exported as the screen only

    player = asciinema()
    if player is None:
        if os.environ.get("GW_REQUIRE_SERVICES") == "1":
            pytest.fail("asciinema is not installed (pip install asciinema); GW_REQUIRE_SERVICES=1 forbids "
                        "skipping")
        pytest.skip("asciinema is not installed (pip install asciinema)")
    cat = subprocess.run([player, "cat", str(target)], capture_output=True, timeout=30,
                         stdin=subprocess.DEVNULL, check=False)
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout.decode() == screen
    played = subprocess.run([player, "play", "--speed", "50", str(target)], capture_output=True, timeout=30,
                            stdin=subprocess.DEVNULL, check=False)
    assert played.returncode == 0, played.stderr
    assert b"logout" in played.stdout


def test_replay_of_a_terminal_session_writes_the_screen(pipeline_file: Callable[..., Path],
                                                        pm: pluggy.PluginManager, cli_registry: None) -> None:
    path = pipeline_file('{ use = "record", record_input = true }', listener=False)
    trio.run(functools.partial(record_terminal, path, pm, with_input=True))
    out = invoke("replay", "t1", "-c", str(path), "--no-wait").output
    assert "\x1b[1;34mreleases\x1b[0m" in out                # terminal output keeps its escape sequences
    assert "ls\r\r" not in out                               # typed keys are not printed twice
    assert out.rstrip().endswith("# session ended: client_closed (1 command)")


def test_replay_escapes_what_could_drive_the_readers_terminal_outside_terminal_channels() -> None:
    """Outside terminal channels, recorded text keeps its lines and tabs and shows every other hidden character
    as an escape (gw.text.escape_visible: controls, bidirectional overrides, zero-width characters); a table
    cell keeps to one line.  Terminal output (pty) stays raw, escape sequences included."""
    transcript = Transcript({"session": "s1"})

    def shown(kind: str, payload: dict[str, Any]) -> str:
        return "".join(text for _, _, text in transcript.frames((1.0, kind, payload)))

    assert shown("query", {"text": "select 1\r\n\tfrom t -- \u202eevil\x1b]0;title\x07"}) == (
        "[00:01.000] > select 1\n    \tfrom t -- \\u202eevil\\x1b]0;title\\x07\n")
    assert shown("data", {"channel": "stdout", "seq": 1, "data": "ok\x1b[2J\rdone\u200b\r\n"}) == (
        "ok\\x1b[2J\\rdone\\u200b\n")
    assert shown("rows", {"columns": ["n\x1bote"], "rows": [["a\tb\r\nc"]]}) == (
        "  n\\x1bote\n  ---------\n  a\\tb\\r\\nc\n")
    assert shown("data", {"channel": "pty", "data": "\x1b[1;34mls\x1b[0m\r\n"}) == "\x1b[1;34mls\x1b[0m\r\n"


# -- timing of replay ----------------------------------------------------------------------------------------


async def _frames(frames: list[Frame]) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


@pytest.mark.parametrize("speed, idle_limit, waits", [
    (1.0, None, [1.0, 0.5, 8.5]),
    (2.0, None, [0.5, 0.25, 4.25]),
    (2.0, 3.0, [0.5, 0.25, 1.5]),
    (0.0, None, []),
])
async def test_replay_waits_follow_the_recorded_timing(speed: float, idle_limit: float | None,
                                                       waits: list[float]) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    written: list[str] = []
    frames = [(0.0, "o", "a"), (1.0, "o", "b"), (1.2, "i", "typed"), (1.5, "r", "80x24"), (1.5, "o", "c"),
              (10.0, "o", "d")]
    await play(_frames(frames), written.append, speed=speed, idle_limit=idle_limit, sleep=sleep)
    assert written == ["a", "b", "c", "d"]
    assert slept == pytest.approx(waits)


# -- the real gw executable ----------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("gw_sqlite") is None, reason="gw-sqlite is not installed (a "
                    "subprocess sees only installed plugins, not the inline journal test double)")
def test_gw_executable_lists_and_exports(tmp_path: Path) -> None:
    """`gw sessions` as operators run it, on a pipeline file with only [storage] and [pipelines]."""
    path = tmp_path / "pipeline.toml"
    path.write_text('[storage]\nuse = "sqlite"\npath = "gw.db"\n\n[pipelines.p]\n'
                    'stages = [{ use = "record" }]\n')
    trio.run(functools.partial(record_terminal, path, None))
    gw = str(Path(sys.executable).with_name("gw"))
    listed = subprocess.run([gw, "sessions", "list", "--json", "-c", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert [d["id"] for d in json.loads(listed.stdout)] == ["t1"]
    exported = subprocess.run([gw, "sessions", "export", "t1", "--format", "asciicast", "-c", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout.splitlines()[0])["version"] == 2
    assert "logout" in exported.stdout


def test_replay_is_instant_when_piped_unless_speed_is_given(pipeline_file: Callable[..., Path], cli_registry: None,
                                                             script_session: Callable[..., Awaitable[list[str]]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = pipeline_file(STAGES)
    sid = record_script(path, script_session, "rows 2", "out 1")
    speeds: list[float] = []
    real_play = gw_record.cli.play

    async def spy(*args: Any, speed: float, **kw: Any) -> None:
        speeds.append(speed)
        await real_play(*args, speed=speed, **kw)

    monkeypatch.setattr(gw_record.cli, "play", spy)
    config = ["-c", str(path)]
    piped = invoke("replay", sid, *config)  # CliRunner's stdout is not a terminal
    assert piped.exit_code == 0 and "> rows 2" in piped.output
    assert invoke("replay", sid, *config, "--speed", "2").exit_code == 0
    monkeypatch.setattr(gw_record.cli, "_interactive", lambda: True)  # a person watching a terminal
    assert invoke("replay", sid, *config, "--idle-limit", "0").exit_code == 0
    assert speeds == [0.0, 2.0, 1.0]
