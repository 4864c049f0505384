"""gw's SSH protocol plugin: agents run commands, shells and sftp on a target host through gw, which logs in
with a key the agent never sees and runs every command through the listener's pipeline.
See docs/plugins/ssh.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import SSHHandler

__all__ = ["SSHHandler"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(SSHHandler)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import ssh

    register(ssh)
