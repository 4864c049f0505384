"""``gw sessions``: list, replay and export recorded sessions, and prune their index.

Each command opens the pipeline file's store (no listeners, no stages) and reads through the core store
interface, so it works against whatever backend ``gw serve`` writes to.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import click
import trio
from gw.cli import config_option, format_time, json_option, print_json, print_table, with_runtime
from gw.config import parse_duration
from gw.runtime import Runtime
from gw.store import Store

from . import archive
from .archive import Recording
from .render import AsciicastEvents, Frame, TerminalProbe, Transcript, asciicast_header, jsonl, play


def _store(rt: Runtime) -> Store:
    return rt.services.require_store("gw sessions")


@click.group(name="sessions")
def sessions() -> None:
    """Recorded sessions (the record stage): list, replay, export, prune."""


@sessions.command(name="list")
@config_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many of the most recently active sessions to show.")
@click.option("--user", "subject", metavar="SUB", help="Only sessions of this identity (token subject).")
@click.option("--listener", metavar="NAME", help="Only sessions on this listener.")
def list_sessions(config: Path, as_json: bool, limit: int, subject: str | None, listener: str | None) -> None:
    """List recorded sessions, newest first."""
    async def main(rt: Runtime) -> list[dict[str, Any]]:
        return await archive.list_sessions(_store(rt), limit=limit, subject=subject, listener=listener)

    found = with_runtime(config, main)
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no recorded sessions" + (" match the filters" if subject or listener else " yet"))
        return
    rows = [(d["id"], format_time(d.get("started")), d.get("listener"), d.get("protocol"), d.get("subject"),
             d.get("client"), d.get("commands"),
             "live" if d.get("ended") is None else d.get("end_reason") or "ended") for d in found]
    print_table(rows, ["id", "started (utc)", "listener", "protocol", "subject", "client", "commands", "end"])


async def _frames(recording: Recording, transcript: Transcript) -> AsyncIterator[Frame]:
    for frame in transcript.opening():
        yield frame
    async for event in recording.events():
        for frame in transcript.frames(event):
            yield frame


def _write(text: str) -> None:
    # color=True: recorded terminal output keeps its escape sequences even when stdout is not a terminal.
    click.echo(text, nl=False, color=True)


def _interactive() -> bool:
    """Whether standard output is a terminal (replay keeps the recorded timing only for a person watching)."""
    return sys.stdout.isatty()


@sessions.command()
@config_option
@click.argument("session_id", metavar="ID")
@click.option("--speed", type=click.FloatRange(min=0), default=None,
              help="Playback speed factor; 0 prints everything at once.  Default: 1 (the recorded timing) on "
                   "a terminal, 0 when standard output is a pipe or a file.")
@click.option("--no-wait", is_flag=True, help="Print everything at once (same as --speed 0).")
@click.option("--idle-limit", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Shorten recorded pauses longer than this.")
def replay(config: Path, session_id: str, speed: float | None, no_wait: bool, idle_limit: float | None) -> None:
    """Print session ID as the agent saw it, with its timing (on a terminal; piped: at once)."""
    if no_wait:
        speed = 0.0
    elif speed is None:
        speed = 1.0 if _interactive() else 0.0

    async def main(rt: Runtime) -> None:
        recording = await Recording.open(_store(rt), session_id)
        await play(_frames(recording, Transcript(recording.header)), _write, speed=speed, idle_limit=idle_limit,
                   sleep=trio.sleep)

    with_runtime(config, main)


@sessions.command()
@config_option
@click.argument("session_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "asciicast"]), default="jsonl",
              show_default=True,
              help="jsonl: the recording itself; asciicast: asciicast v2 for `asciinema play`.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of standard output.")
def export(config: Path, session_id: str, fmt: str, output: Path | None) -> None:
    """Export session ID as JSON lines (header, then one event per line) or as an asciicast v2 file."""
    async def main(rt: Runtime) -> None:
        recording = await Recording.open(_store(rt), session_id)
        if output is None:
            await _export(recording, fmt, sys.stdout.write)
            return
        partial = output.with_name(output.name + ".partial")
        try:
            with open(partial, "w", encoding="utf-8", newline="\n") as f:
                await _export(recording, fmt, f.write)
        except OSError as e:
            raise click.ClickException(f"cannot write {partial}: {e.strerror}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, output)

    with_runtime(config, main)


async def _export(recording: Recording, fmt: str, write: Callable[[str], Any]) -> None:
    if fmt == "jsonl":
        write(jsonl(recording.header) + "\n")
        async for event in recording.events():
            write(jsonl(event) + "\n")
        return
    probe = TerminalProbe()
    async for event in recording.events():
        probe.see(event)
    write(asciicast_header(recording.header, probe) + "\n")
    lines = AsciicastEvents(terminal=probe.terminal)
    async for frame in _frames(recording, Transcript(recording.header, terminal_only=probe.terminal)):
        line = lines.line(frame)
        if line is not None:
            write(line + "\n")


@sessions.command(name="prune")
@config_option
@json_option
@click.option("--older-than", metavar="DURATION", default=None,
              help="Remove recordings older than this (default: [storage] retention), e.g. 90d.")
def prune_cmd(config: Path, as_json: bool, older_than: str | None) -> None:
    """Apply retention to recordings and remove index entries of sessions whose recordings are gone."""
    async def main(rt: Runtime) -> tuple[int, int, str]:
        store = _store(rt)
        value = older_than or getattr(store.options, "retention", None)
        if not value:
            raise click.UsageError("no retention configured: set [storage] retention = \"90d\" in the "
                                   "pipeline file or pass --older-than 90d")
        try:
            age = parse_duration(value).total_seconds()
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--older-than / storage.retention") from None
        records, docs = await archive.prune(store, time.time() - age)
        return records, docs, value

    records, docs, value = with_runtime(config, main)
    if as_json:
        print_json({"older_than": value, "records": records, "sessions": docs})
    else:
        click.echo(f"removed {records} recording record(s) and {docs} session index entr"
                   f"{'y' if docs == 1 else 'ies'} older than {value}")
