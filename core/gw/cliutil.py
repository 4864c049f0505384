"""Helpers of gw's command line shared by core's commands and plugins' command groups (re-exported by
:mod:`gw.cli`): the ``-c/--config`` and ``--json`` options, building and opening a runtime, tables."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

from .errors import ConfigError, GwError, PluginError
from .plugins import Registry, make_plugin_manager
from .runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])

_registry: Registry | None = None


def registry() -> Registry:
    """The registry of this CLI process (built once, when the CLI starts)."""
    global _registry
    if _registry is None:
        _registry = Registry.build(make_plugin_manager())
    return _registry


def config_option(f: F) -> F:
    """``-c/--config FILE`` with ``$GW_CONFIG`` as default, for plugin commands that need the pipeline file."""
    return click.option(
        "-c", "--config", "config", envvar="GW_CONFIG", required=True, metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Pipeline file (default: $GW_CONFIG).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def load_runtime(config: Path | str) -> Runtime:
    """Validate the pipeline file and build its runtime (not opened); errors become a clean CLI error."""
    try:
        return Runtime.build(config, pm=registry().pm)
    except (ConfigError, PluginError) as e:
        raise click.ClickException(str(e)) from None


T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async function under trio, turning gw errors into clean CLI errors."""
    try:
        return trio.run(fn)
    except GwError as e:
        raise click.ClickException(str(e)) from None


def with_runtime(config: Path | str, fn: Callable[[Runtime], Awaitable[T]], *, identity: bool = False) -> T:
    """Build and open the runtime's store (and, with ``identity=True``, its identity providers; never the
    listeners) and call ``fn`` with it."""
    rt = load_runtime(config)

    async def main() -> T:
        async with rt.opened(serving=False, identity=identity):
            return await fn(rt)

    return run(main)


def format_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, max_width: int = 60) -> None:
    """A plain aligned table; long cells are cut with an ellipsis."""
    def cell(v: Any) -> str:
        s = "-" if v is None else str(v)
        s = s.replace("\n", " ")
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    text = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    click.echo("  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip())
    for row in text:
        click.echo("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())


def command_error(message: str) -> click.ClickException:
    """A CLI error with gw's formatting (for plugin commands)."""
    return click.ClickException(message)
