"""``gw storage prune`` and ``gw storage info``.

These commands use only the :class:`gw.store.Store` interface (``streams``, ``prune``, ``scan``, ``last``,
``describe``), so they work for whatever backend the pipeline file's ``[storage]`` table names.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from .cliutil import (
    command_error,
    config_option,
    format_time,
    json_option,
    print_json,
    print_table,
    with_runtime,
)
from .config import format_duration, parse_duration
from .runtime import Runtime
from .store import Store


def _store(rt: Runtime) -> Store:
    if rt.store is None:
        raise command_error(f"{rt.config.path} has no [storage] table, so there is nothing to prune or "
                            "describe; add one (for example: [storage] use = \"sqlite\")")
    return rt.store


def _retention(rt: Runtime, older_than: str | None) -> timedelta:
    value = older_than or getattr(_store(rt).options, "retention", None)
    if isinstance(value, timedelta):
        return value
    if not value:
        raise command_error(f"storage.retention is not set in {rt.config.path}, so nothing is due for "
                            "pruning; set it (for example retention = \"90d\" under [storage]) or pass "
                            "--older-than 90d")
    try:
        return parse_duration(value)
    except ValueError as e:
        raise command_error(f"bad retention {value!r}: {e}") from None


@click.group(name="storage")
def storage() -> None:
    """Maintain the storage backend named by the pipeline file's [storage] table."""


@storage.command(name="prune")
@config_option
@click.option("--older-than", metavar="DURATION",
              help="Delete records older than this (e.g. 30d) instead of storage.retention.")
@json_option
def prune(config: Path, older_than: str | None, as_json: bool) -> None:
    """Delete stream records (audit, recordings ...) older than storage.retention; prints counts."""

    async def main(rt: Runtime) -> dict[str, Any]:
        store = _store(rt)
        age = _retention(rt, older_than)
        cutoff = time.time() - age.total_seconds()
        counts = [{"stream": s, "deleted": await store.prune(s, cutoff)} for s in await store.streams()]
        return {"cutoff": cutoff, "streams": counts}

    result = with_runtime(config, main)
    if as_json:
        print_json(result)
        return
    click.echo(f"deleted records older than {format_time(result['cutoff'])} UTC")
    print_table([(c["stream"], c["deleted"]) for c in result["streams"]], ["stream", "deleted"])
    click.echo(f"total: {sum(c['deleted'] for c in result['streams'])}")


@storage.command(name="info")
@config_option
@json_option
def info(config: Path, as_json: bool) -> None:
    """Show the backend, its retention, and each stream's oldest and newest record."""

    async def main(rt: Runtime) -> dict[str, Any]:
        store = _store(rt)
        streams = []
        for name in await store.streams():
            first = await store.scan(name, limit=1)
            last = await store.last(name)
            streams.append({
                "stream": name,
                "oldest": first[0].ts if first else None,
                "newest": last.ts if last else None,
                "last_seq": last.seq if last else None,
            })
        details = await store.describe()
        for pending in rt.pm.hook.gw_storage_info(runtime=rt):
            details.update(await pending)
        retention = getattr(store.options, "retention", None)
        return {"backend": store.name, "retention": format_duration(retention) if retention else None,
                "details": details, "streams": streams}

    result = with_runtime(config, main)
    if as_json:
        print_json(result)
        return
    click.echo(f"backend: {result['backend']}")
    click.echo(f"retention: {result['retention'] or 'none (records are kept forever)'}")
    for key, value in result["details"].items():
        click.echo(f"{key}: {value}")
    if result["streams"]:
        print_table([(s["stream"], format_time(s["oldest"]), format_time(s["newest"]), s["last_seq"])
                     for s in result["streams"]], ["stream", "oldest (UTC)", "newest (UTC)", "last seq"])
    else:
        click.echo("no stream records")
