"""gw-console: the web console (``protocol = "console"``).

Approvers, auditors and operators see and act in a browser: the approvals inbox (live), live and recorded
sessions (terminal replay, command timelines), audit search and export, and a JSON API with the same data and
authorisation.  Served by gw itself; it proxies nothing, so its listener has no pipeline.  It reads what the
approve, audit and record plugins keep through their offers (``runtime.offer``).  See docs/plugins/console.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import ConsoleHandler, ConsoleOptions

__all__ = ["ConsoleHandler", "ConsoleOptions"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(ConsoleHandler)
