"""gw's guard stage: the first matching deny rule refuses the command.

Protocol-neutral: rules match the :class:`gw.model.Command` vocabulary (kind, verb, objects, flags, text and
the identity's groups) through core's :mod:`gw_rules`, so one pipeline guards PostgreSQL, MySQL, SSH and HTTP
alike.  The decision is pure (no I/O, no state), which is what ``gw policy explain`` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .stage import Guard, GuardOptions

__all__ = ["Guard", "GuardOptions"]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(Guard)
