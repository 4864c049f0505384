"""``gw mcp tools list / show / accept``: review the tool definitions gw pinned, and accept changed ones.

Accepting is an operator's act on the gateway's store (whoever can run ``gw`` against the pipeline file); the
store remembers who (``--by``, default the login name) and when.
"""

from __future__ import annotations

import difflib
import getpass
import json
from pathlib import Path

import click
from gw.cli import config_option, format_time, json_option, print_json, print_table, with_runtime
from gw.runtime import Runtime

from .pins import Pin, ToolPins


def pins_of(rt: Runtime) -> ToolPins:
    return ToolPins(rt.services.require_store("gw mcp tools"))


async def list_pins(rt: Runtime, listener: str | None = None, *, changed_only: bool = False) -> list[Pin]:
    if listener is not None:
        rt.listener(listener)  # a misspelt name is an error, not an empty list
    pins = await pins_of(rt).list(listener)
    return [p for p in pins if p.pending_hash] if changed_only else pins


async def accept_tool(rt: Runtime, listener: str, name: str, *, by: str, expected: str | None = None) -> Pin:
    rt.listener(listener)
    try:
        return await pins_of(rt).accept(listener, name, by=by, expected=expected)
    except LookupError as e:
        raise click.ClickException(str(e)) from None


def _pretty(definition: dict[str, object] | None) -> list[str]:
    return json.dumps(definition or {}, indent=2, sort_keys=True, ensure_ascii=True).splitlines()


@click.group(name="mcp")
def mcp() -> None:
    """MCP listeners: the tool definitions gw pinned."""


@mcp.group(name="tools")
def tools() -> None:
    """Pinned tool definitions (a changed one is hidden from agents until accepted)."""


@tools.command(name="list")
@config_option
@json_option
@click.option("--listener", default=None, metavar="NAME", help="Only this listener's tools.")
@click.option("--changed", "changed_only", is_flag=True, help="Only tools whose definition changed.")
def list_cmd(config: Path, as_json: bool, listener: str | None, changed_only: bool) -> None:
    """Every pinned tool: accepted, or changed (hidden until `gw mcp tools accept`)."""
    pins = with_runtime(config, lambda rt: list_pins(rt, listener, changed_only=changed_only))
    if as_json:
        print_json([p.to_data() for p in pins])
        return
    print_table([(p.listener, p.name, p.status, p.hash[:12], (p.pending_hash or "")[:12] or None,
                  format_time(p.accepted_at), p.accepted_by) for p in pins],
                ["listener", "tool", "status", "accepted", "changed to", "accepted at", "by"])


@tools.command(name="show")
@config_option
@click.argument("listener")
@click.argument("tool")
def show_cmd(config: Path, listener: str, tool: str) -> None:
    """The accepted definition of TOOL and, if it changed, what changed."""
    pins = with_runtime(config, lambda rt: list_pins(rt, listener))
    pin = next((p for p in pins if p.name == tool), None)
    if pin is None:
        raise click.ClickException(f"listener {listener!r} has no pinned tool {tool!r} (gw mcp tools list)")
    click.echo(f"tool {pin.name} on {pin.listener}: {pin.status}")
    click.echo(f"accepted {pin.hash[:12]} at {format_time(pin.accepted_at)} by {pin.accepted_by}")
    if pin.pending_hash is None:
        click.echo("\n".join(_pretty(pin.definition)))
        return
    click.echo(f"changed to {pin.pending_hash[:12]} (seen {format_time(pin.pending_since)}); the difference:")
    for line in difflib.unified_diff(_pretty(pin.definition), _pretty(pin.pending_definition), "accepted",
                                     "changed", lineterm=""):
        click.echo(line)
    click.echo(f"accept it with: gw mcp tools accept {pin.listener} {pin.name} --hash {pin.pending_hash[:12]}")


@tools.command(name="accept")
@config_option
@click.option("--hash", "expected", default=None, metavar="PREFIX",
              help="Accept only if the changed definition still has this hash (from list or show).")
@click.option("--by", default=None, help="Who accepts (default: your login name).")
@click.argument("listener")
@click.argument("tool", nargs=-1, required=True)
def accept_cmd(config: Path, expected: str | None, by: str | None, listener: str, tool: tuple[str, ...]) -> None:
    """Accept the changed definition of TOOL(s): agents see and may call it again."""
    who = by or getpass.getuser()

    async def accept_all(rt: Runtime) -> list[Pin]:
        return [await accept_tool(rt, listener, name, by=who, expected=expected) for name in tool]

    for pin in with_runtime(config, accept_all):
        click.echo(f"accepted {pin.name} on {pin.listener} ({pin.hash[:12]})")
