"""``gw audit tail [--follow] [--json]``: the audit trail as a stream of events, in a terminal.

Every record type (session start/end/refusal, command, outcome), oldest first, in the shape the export stage
sends to a SIEM: the ``gw audit list --json`` record plus ``event`` (the record type) and ``gateway``.  With
``--follow`` it keeps reading the store (while ``gw serve`` writes it) until interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import trio
from gw.cli import command_error, config_option, format_time, json_option, with_runtime
from gw.runtime import Runtime
from gw.store import Entry

from .records import STREAM

#: How often ``--follow`` looks for new records, and how many it reads at once.
POLL = 0.5
PAGE = 500


def event_of(entry: Entry) -> dict[str, Any]:
    data = entry.data
    t = data.get("time")
    iso = datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds") if isinstance(
        t, (int, float)) else None
    return {"id": entry.seq, **data, "ts": t, "time": iso, "event": data.get("type"),
            "gateway": data.get("gateway")}


def _line(e: Mapping[str, Any]) -> str:
    kind = str(e.get("event"))
    who = e.get("subject") or (f"(claimed {e['claimed_user']})" if e.get("claimed_user") else "-")
    head = f"{e['id']:>7}  {format_time(e.get('ts'))}  {kind:<15} {who:<16} {e.get('listener') or '-':<10}"
    if kind == "command":
        detail = f"#{e.get('seq')} {e.get('verdict')}: {e.get('text')}"
        if e.get("reason") and e.get("verdict") != "allowed":
            detail += f"  ({e.get('reason')})"
    elif kind == "outcome":
        parts = [str(e.get("status"))]
        if e.get("rows") is not None:
            parts.append(f"{e['rows']} rows")
        if e.get("error_message"):
            parts.append(str(e["error_message"]))
        if isinstance(e.get("duration"), (int, float)):
            parts.append(f"{e['duration'] * 1000:.1f}ms")
        detail = f"#{e.get('seq')} " + ", ".join(parts)
    elif kind == "session_refused":
        detail = f"{e.get('client')}: {e.get('message') or e.get('reason')}"
    elif kind == "session_end":
        detail = f"{e.get('session')} {e.get('reason')}"
    else:
        detail = f"{e.get('session') or ''} {e.get('client') or ''}".strip()
    return f"{head} {detail}".replace("\n", " ")


@click.command(name="tail")
@config_option
@json_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as gw serve writes them "
              "(until interrupted).")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="Start with the newest N events.")
def tail(config: Path, as_json: bool, follow: bool, limit: int) -> None:
    """Print the newest audit events (sessions, commands, outcomes), oldest first; --json: one JSON object
    per line, the shape the export stage sends."""

    def emit(entries: list[Entry]) -> None:
        for entry in entries:
            event = event_of(entry)
            click.echo(json.dumps(event, ensure_ascii=False, default=str) if as_json else _line(event))
        sys.stdout.flush()

    async def main(rt: Runtime) -> None:
        store = rt.store
        if store is None:
            raise command_error(f"{rt.config.path} has no [storage] table, so there is no audit trail to read; "
                                "add one (for example: [storage] use = \"sqlite\")")
        newest = await store.scan(STREAM, limit=limit, newest_first=True) if limit else []
        newest.reverse()
        emit(newest)
        if not follow:
            return
        last = newest[-1].seq if newest else ((await store.last(STREAM)) or Entry(0, 0.0, {})).seq
        # SIGINT / SIGTERM end the follow cleanly (exit status 0), wherever the loop is.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop)
                while True:
                    await trio.sleep(POLL)
                    entries = await store.scan(STREAM, after=last, limit=PAGE)
                    if entries:
                        emit(entries)
                        last = entries[-1].seq

    try:
        with_runtime(config, main)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # piped into head / a closed pager
        sys.stderr.close()
