"""``gw audit list``, ``gw audit sessions`` and ``gw audit verify``.

They read the store named by the pipeline file's ``[storage]`` table through the :class:`gw.store.Store`
interface, while ``gw serve`` keeps writing (SQLite WAL readers never block the writer).  Lists show the
newest records first, so ``--limit 20`` is the latest 20.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from gw.cli import (
    command_error,
    config_option,
    format_time,
    json_option,
    print_json,
    print_table,
    with_runtime,
)
from gw.runtime import Runtime
from gw.store import Entry, Store

from .records import STREAM
from .tail import tail
from .verify import Anchor, ChainReport, verify_store

#: Page size when looking up the outcome records of listed commands.
_OUTCOME_PAGE = 500


def _store(rt: Runtime) -> Store:
    if rt.store is None:
        raise command_error(f"{rt.config.path} has no [storage] table, so there is no audit trail to read; "
                            "add one (for example: [storage] use = \"sqlite\")")
    return rt.store


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, (int, float)):
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


async def _outcomes(store: Store, commands: list[Entry]) -> dict[tuple[str, int], dict[str, Any]]:
    """The outcome record of each listed command, found per session from the oldest listed command on."""
    wanted: dict[str, set[int]] = defaultdict(set)
    start: dict[str, int] = {}
    for e in commands:
        sid, seq = e.data.get("session"), e.data.get("seq")
        if isinstance(sid, str) and isinstance(seq, int):
            wanted[sid].add(seq)
            start[sid] = min(start.get(sid, e.seq), e.seq)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for sid, seqs in wanted.items():
        after = start[sid]
        while seqs:
            page = await store.scan(STREAM, where={"type": "outcome", "session": sid}, after=after,
                                    limit=_OUTCOME_PAGE)
            for e in page:
                seq = e.data.get("seq")
                if seq in seqs:
                    seqs.discard(seq)
                    found[(sid, seq)] = dict(e.data)
            if len(page) < _OUTCOME_PAGE:
                break
            after = page[-1].seq
    return found


def _result(outcome: dict[str, Any] | None) -> str:
    if outcome is None:
        return "-"
    if outcome.get("error_code") or outcome.get("status") == "error":
        return f"error {outcome.get('error_code') or ''}: {outcome.get('error_message') or ''}".strip()
    parts = [str(outcome["tag"])] if outcome.get("tag") else [str(outcome.get("status", ""))]
    if outcome.get("rows") is not None:
        parts.append(f"{outcome['rows']} rows")
    return ", ".join(p for p in parts if p)


def _duration(outcome: dict[str, Any] | None) -> str:
    if outcome is None or not isinstance(outcome.get("duration"), (int, float)):
        return "-"
    ms = float(outcome["duration"]) * 1000
    return f"{ms:.1f}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"


@click.group(name="audit")
def audit() -> None:
    """Read and verify the audit trail."""


@audit.command(name="list")
@config_option
@json_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show the newest N commands.")
@click.option("--user", "subject", metavar="SUB", help="Only commands of this identity (token subject).")
@click.option("--session", metavar="ID", help="Only commands of this session.")
@click.option("--listener", metavar="NAME", help="Only commands on this listener.")
@click.option("--verdict", type=click.Choice(["allowed", "denied", "pending"]), help="Only this verdict.")
@click.option("--chain", metavar="NAME", help="Only records of this chain (gateway).")
def list_commands(config: Path, as_json: bool, limit: int, subject: str | None, session: str | None,
                  listener: str | None, verdict: str | None, chain: str | None) -> None:
    """List audited commands, newest first: who, where, what, verdict and outcome."""
    where = {"type": "command"}
    for key, value in (("subject", subject), ("session", session), ("listener", listener),
                       ("verdict", verdict), ("chain", chain)):
        if value:
            where[key] = value

    async def main(rt: Runtime) -> list[tuple[Entry, dict[str, Any] | None]]:
        store = _store(rt)
        commands = await store.scan(STREAM, where=where, limit=limit, newest_first=True)
        outcomes = await _outcomes(store, commands)
        return [(e, outcomes.get((e.data.get("session"), e.data.get("seq")))) for e in commands]  # type: ignore[arg-type]

    rows = with_runtime(config, main)
    if as_json:
        print_json([{"id": e.seq, **e.data, "ts": e.data.get("time"), "time": _iso(e.data.get("time")),
                     "outcome": outcome} for e, outcome in rows])
        return
    if not rows:
        click.echo("no audited commands match" if len(where) > 1 else "no audited commands yet")
        return
    print_table([(e.seq, format_time(e.data.get("time")), e.data.get("subject"),
                  ",".join(e.data.get("groups") or []), e.data.get("listener"), e.data.get("session"),
                  e.data.get("text"), e.data.get("verdict"), _result(outcome), _duration(outcome))
                 for e, outcome in rows],
                ["id", "time (UTC)", "subject", "groups", "listener", "session", "statement", "verdict",
                 "result", "duration"])


_EVENT = {"session_start": "start", "session_end": "end", "session_refused": "refused"}


@audit.command(name="sessions")
@config_option
@json_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show the newest N session events.")
@click.option("--user", "subject", metavar="SUB", help="Only sessions of this identity.")
@click.option("--session", metavar="ID", help="Only events of this session.")
@click.option("--listener", metavar="NAME", help="Only events on this listener.")
def list_sessions(config: Path, as_json: bool, limit: int, subject: str | None, session: str | None,
                  listener: str | None) -> None:
    """List session starts, ends (with reason) and refused clients, newest first."""
    where = {"type": "session"}
    for key, value in (("subject", subject), ("session", session), ("listener", listener)):
        if value:
            where[key] = value

    async def main(rt: Runtime) -> list[Entry]:
        return await _store(rt).scan(STREAM, where=where, limit=limit, newest_first=True)

    entries = with_runtime(config, main)
    if as_json:
        print_json([{"id": e.seq, **e.data, "ts": e.data.get("time"), "time": _iso(e.data.get("time"))}
                    for e in entries])
        return
    if not entries:
        click.echo("no session events match" if len(where) > 1 else "no session events yet")
        return
    rows = []
    for e in entries:
        d = e.data
        who = d.get("subject") or (f"(claimed {d['claimed_user']})" if d.get("claimed_user") else "-")
        detail = d.get("message") or d.get("reason") or ("groups " + ",".join(d.get("groups") or []))
        rows.append((e.seq, format_time(d.get("time")), _EVENT.get(str(d.get("type")), d.get("type")), who,
                     d.get("listener"), d.get("session"), d.get("client"), detail))
    print_table(rows, ["id", "time (UTC)", "event", "subject", "listener", "session", "client", "detail"])


def _describe(r: ChainReport) -> str:
    if r.ok:
        span = f"positions {r.first_position}-{r.last_position}"
        text = f"OK: chain {r.chain!r}: {r.verified} records verified ({span}); head {r.last_position}:{r.head}"
        if not r.complete:
            text += (f"\n  the stored chain starts at position {r.first_position} (record {r.first_id}, "
                     f"{format_time(r.first_time)} UTC): older records were pruned by retention (or deleted; "
                     "compare with an --anchor you noted earlier)")
        return text
    return (f"FAILED: chain {r.chain!r}: {r.problem}\n  {r.verified} records before it verified; "
            f"run `gw audit list` around id {r.problem_id} and restore the audit store from a backup")


def _progress_shown() -> bool:
    """Progress of a long verify goes to standard error, and only when a person is watching it."""
    return sys.stderr.isatty()


@audit.command(name="verify")
@config_option
@json_option
@click.option("--chain", metavar="NAME", help="Verify only this chain (default: every chain in the store).")
@click.option("--anchor", metavar="POSITION:HASH",
              help="A head printed by an earlier verify; fails if that position is gone or has another hash "
                   "(detects deleted newest records and rewritten chains).")
def verify(config: Path, as_json: bool, chain: str | None, anchor: str | None) -> None:
    """Walk the hash chain(s) and name the first record that was altered, inserted or deleted."""
    try:
        mark = Anchor.parse(anchor) if anchor else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--anchor") from None

    shown = _progress_shown()

    def progress(read: int, newest: int) -> None:
        click.echo(f"\rverifying: {read} records read (newest position {newest})", nl=False, err=True)

    async def main(rt: Runtime) -> list[ChainReport]:
        return await verify_store(_store(rt), chain=chain, anchor=mark, progress=progress if shown else None)

    reports = with_runtime(config, main)
    if shown:
        click.echo("\r\033[K", nl=False, err=True)  # the progress line is gone before the verdict
    if mark is not None and len(reports) > 1:
        raise command_error(f"the store holds {len(reports)} chains; name the anchored one with --chain")
    if as_json:
        print_json([r.as_dict() for r in reports])
    elif not reports and chain:
        raise command_error(f"no audit records in chain {chain!r}; check the name (chains are named after "
                            "[gateway] name, or the stage's chain option)")
    elif not reports:
        click.echo("OK: no audit records yet")
    else:
        for r in reports:
            click.echo(_describe(r))
    if any(not r.ok for r in reports):
        sys.exit(1)


audit.add_command(tail)
