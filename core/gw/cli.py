"""The ``gw`` command line.  Core provides ``serve``, ``check`` and ``plugins``; plugins add command groups
through :func:`gw.hookspecs.gw_register_commands` (``gw token``, ``gw audit``, ``gw approvals`` ...).

Commands other than ``serve`` take ``-c/--config`` (default ``$GW_CONFIG``).  Every ``list`` command has
``--json``.  Errors print one precise message and exit non-zero.
"""

from __future__ import annotations

import functools
import json
import logging

import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone
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


def with_runtime(config: Path | str, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """Build and open the runtime (store and identity providers, no listeners) and call ``fn`` with it."""
    rt = load_runtime(config)

    async def main() -> T:
        async with rt.opened(serving=False):
            return await fn(rt)

    return run(main)


def format_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gw", prog_name="gw")
def cli() -> None:
    """gw: identity-aware gateway between AI agents and production systems."""


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path), envvar="GW_CONFIG")
@click.option("--log-level", default=None, help="debug, info, warning or error (default: the file's "
              "gateway.log_level, else info).")
def serve(pipeline: Path, log_level: str | None) -> None:
    """Serve the listeners of PIPELINE until SIGTERM/SIGINT (SIGHUP re-reads the file)."""
    from .server import Gateway

    rt = load_runtime(pipeline)
    setup_logging(log_level or rt.config.model.gateway.log_level)
    gateway = Gateway(rt)

    async def main() -> None:
        await gateway.serve(handle_signals=True)

    try:
        run(main)
    except OSError as e:
        raise click.ClickException(str(e.strerror or e)) from None
    except KeyboardInterrupt:
        sys.exit(130)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("-c", "--config", "config", envvar="GW_CONFIG", type=click.Path(dir_okay=False, path_type=Path),
              help="Pipeline file (alternative to the argument; default: $GW_CONFIG).")
@json_option
def check(pipeline: Path | None, config: Path | None, as_json: bool) -> None:
    """Validate PIPELINE, load its plugins and print the assembled listeners and pipelines."""
    path = pipeline or config
    if path is None:
        raise click.UsageError("name the pipeline file: gw check PIPELINE (or -c FILE, or $GW_CONFIG)")
    rt = load_runtime(path)
    summary = rt.describe()
    if as_json:
        print_json(summary)
        return
    click.echo(f"{summary['file']}: OK")
    click.echo(f"  data_dir: {summary['data_dir']}")
    click.echo(f"  storage: {summary['storage'] or '(none)'}")
    for name, use in summary["identity"].items():
        click.echo(f"  identity {name}: {use}")
    for name, stages in summary["pipelines"].items():
        click.echo(f"  pipeline {name}: {' -> '.join(stages) or '(no stages)'}")
    for lst in summary["listeners"]:
        groups = ", ".join(lst["allow_groups"]) if lst["allow_groups"] is not None else "any"
        click.echo(f"  listener {lst['name']}: {lst['protocol']} on {lst['listen']} -> "
                   f"{lst['upstream'] or '-'}; identity {', '.join(lst['identity'])}; "
                   f"pipeline {lst['pipeline']}; groups {groups}")


@cli.command(name="plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins: name, version, what each registers."""
    info = registry().plugins()
    if as_json:
        print_json(info)
        return
    rows = []
    for p in info:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["provides"].items()) or "-"
        rows.append((p["name"], p["distribution"] or "-", p["version"] or "-", provides))
    print_table(rows, ["name", "distribution", "version", "provides"], max_width=80)


def build_cli() -> click.Group:
    """The full CLI: core commands plus every command plugins register."""
    try:
        reg = registry()
    except PluginError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    for r in reg.items["commands"].values():
        if r.name in cli.commands and cli.commands[r.name] is not r.obj:
            click.echo(f"Error: plugin {r.plugin!r} registers command {r.name!r}, which gw already has",
                       err=True)
            sys.exit(1)
        cli.add_command(r.obj)
    return cli


def main(argv: Iterable[str] | None = None) -> None:
    build_cli()(args=list(argv) if argv is not None else None, prog_name="gw")


def command_error(message: str) -> click.ClickException:
    """A CLI error with gw's formatting (for plugin commands)."""
    return click.ClickException(message)


def async_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Decorator: run an async click callback under trio."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(lambda: fn(*args, **kwargs))

    return wrapper


if __name__ == "__main__":  # pragma: no cover
    main()

