"""Calling stages' stream filters so that a failing filter can never let data past it.

Filters come from other plugins (mask, record ...); whatever they raise -- a body over the mask's bound,
unparseable JSON, a bug -- becomes :class:`FilterFailed`, which the connection turns into a 502 (before the
response head) or a cut connection (after it).  Unfiltered bytes are never sent instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gw.model import Command
from gw.stage import StreamFilter

if TYPE_CHECKING:
    from gw.pipeline import SessionRuntime


class FilterFailed(Exception):
    """A stage's stream filter raised: the data it was given cannot be passed on (fail closed)."""

    def __init__(self, channel: str, error: BaseException) -> None:
        detail = str(error)[:200] or type(error).__name__
        super().__init__(f"{type(error).__name__}: {detail}")
        self.channel = channel


def open_filter(sr: SessionRuntime, command: Command, channel: str, content_type: str) -> StreamFilter | None:
    """The pipeline's filter for one stream of ``command`` (None when no stage wants it)."""
    try:
        return sr.stream(command, channel, content_type)
    except Exception as e:
        raise FilterFailed(channel, e) from e


def feed(filt: StreamFilter, data: bytes, channel: str) -> bytes:
    try:
        return filt.feed(data)
    except Exception as e:
        raise FilterFailed(channel, e) from e


def finish(filt: StreamFilter, channel: str) -> bytes:
    try:
        return filt.finish()
    except Exception as e:
        raise FilterFailed(channel, e) from e
