"""gw-record: the ``record`` stage and the ``gw sessions`` commands.

The stage records each session as the agent saw it (after masking) into the store; ``gw sessions`` lists,
replays and exports the recordings (JSON lines, asciicast v2).  See docs/plugins/record.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .stage import Record, RecordOptions

__all__ = ["Record", "RecordOptions"]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(Record)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import sessions

    register(sessions)


@hookimpl
def gw_register_offers(register: Callable[[type[Any]], None]) -> None:
    from .offer import RecordingsOffer

    register(RecordingsOffer)
