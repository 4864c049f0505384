"""Sending on one direction of a proxied HTTP connection (to the agent, to the upstream)."""

from __future__ import annotations

import trio
from gw.protocol import write_now


class Sender:
    """Writes what a plain TCP socket takes at once directly (:func:`gw.protocol.write_now`: a small message
    nearly always goes that way) and hands the rest to ``send_all`` within a deadline.  While a ``send_all``
    runs, a send started meanwhile does not write past it: it goes to ``send_all`` as well, which raises
    trio's BusyResourceError as any concurrent send would."""

    __slots__ = ("_sending", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._sending = False

    async def send(self, data: bytes, timeout: float) -> bool:
        """Send ``data``; False when ``timeout`` seconds passed before it was all sent.  Raises what
        ``send_all`` raises (BrokenResourceError, ClosedResourceError, OSError) for the caller to put in its
        own terms."""
        owner = not self._sending
        if owner:
            sent = write_now(self.stream, data)
            if sent == len(data):
                return True
            data = data[sent:]
        # A bare cancel scope rather than trio.fail_after: this runs for every message, and the context
        # manager's generator costs more than the check below.
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self._sending = True
        try:
            with scope:
                await self.stream.send_all(data)
        finally:
            if owner:
                self._sending = False
        return not scope.cancelled_caught
