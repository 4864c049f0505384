"""``gw ssh``: commands for SSH listeners (``gw ssh keygen`` creates gw's host key)."""

from __future__ import annotations

from pathlib import Path

import click
from gw.cli import command_error, config_option, load_runtime
from gw.config import parse_address


@click.group(name="ssh")
def ssh() -> None:
    """SSH listeners: gw's host key."""


@ssh.command()
@config_option
@click.option("--listener", "listener_name", default=None, help="Only this listener (default: every ssh listener).")
@click.option("--force", is_flag=True, help="Replace an existing key (clients will see a changed host key).")
def keygen(config: Path, listener_name: str | None, force: bool) -> None:
    """Create the ed25519 host key (host_key_file, mode 0600) of the ssh listeners of the pipeline file.

    An existing key is kept unless --force is given, so the command is safe to run on every deploy."""
    from .keys import KeyFileError, generate_host_key  # imports asyncssh: only when the command runs

    rt = load_runtime(config)
    listeners = [lr for lr in rt.listeners.values() if lr.options.protocol == "ssh"]
    if listener_name is not None:
        match = [lr for lr in listeners if lr.name == listener_name]
        if not match:
            known = ", ".join(lr.name for lr in listeners) or "none"
            raise command_error(f"no ssh listener named {listener_name!r} in {config} (ssh listeners: {known})")
        listeners = match
    if not listeners:
        raise command_error(f"{config} has no listener with protocol = \"ssh\"")
    done: set[Path] = set()
    for lr in listeners:
        path = rt.services.resolve_path(lr.options.host_key_file)  # type: ignore[attr-defined]
        if path in done:
            continue
        done.add(path)
        if path.exists() and not force:
            click.echo(f"{lr.name}: {path} exists; kept (pass --force to replace it)")
            continue
        try:
            public = generate_host_key(path, comment=f"gw {lr.name}", force=force)
        except (KeyFileError, OSError) as e:
            raise command_error(f"{lr.name}: cannot write {path}: {e}") from None
        host, port = parse_address(lr.options.listen)
        shown = "GW_HOST" if host in ("0.0.0.0", "::", "") else host
        entry = shown if port == 22 else f"[{shown}]:{port}"
        click.echo(f"{lr.name}: wrote {path} (mode 0600) and {path.name}.pub")
        click.echo("  clients trust it with this known_hosts line:")
        click.echo(f"  {entry} {' '.join(public.split()[:2])}")
