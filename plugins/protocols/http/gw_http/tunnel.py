"""The byte tunnel after ``101 Switching Protocols`` (WebSocket, SPDY exec streams ...).

Bytes are relayed unchanged both ways; observers (the record stage) see them on ``ws-client`` (agent ->
upstream) and ``ws-server`` (upstream -> agent) but cannot change them: rewriting would break the framing of
the protocol inside.  An observer that fails ends the tunnel (what policy requires to be recorded is not
relayed unrecorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from gw.stage import StreamFilter

from . import filtering

RECEIVE_SIZE = 64 * 1024
#: After one direction ends, how long the other may still finish its closing handshake.
CLOSE_GRACE = 2.0

CLIENT_CHANNEL = "ws-client"
SERVER_CHANNEL = "ws-server"


@dataclass
class TunnelResult:
    bytes_from_client: int = 0
    bytes_from_upstream: int = 0
    failures: list[str] = field(default_factory=list)


async def _pump(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes, observer: StreamFilter | None,
                channel: str, result: TunnelResult, tunnel: trio.CancelScope) -> None:
    data = first
    try:
        while True:
            if data:
                if observer is not None:
                    filtering.feed(observer, data, channel)
                if channel == CLIENT_CHANNEL:
                    result.bytes_from_client += len(data)
                else:
                    result.bytes_from_upstream += len(data)
                await dst.send_all(data)
            data = bytes(await src.receive_some(RECEIVE_SIZE))  # no copy: trio returns bytes
            if not data:
                break
        if observer is not None:
            filtering.finish(observer, channel)
    except filtering.FilterFailed as e:
        result.failures.append(f"{channel} observer failed: {e}")
        tunnel.cancel()
        return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    # This direction ended: pass the half-close on where the transport can (TCP; not TLS), give the other
    # direction a moment to finish its closing handshake, then end the tunnel.
    send_eof = getattr(dst, "send_eof", None)
    try:
        if send_eof is None:
            raise trio.ClosedResourceError
        await send_eof()
        tunnel.deadline = min(tunnel.deadline, trio.current_time() + CLOSE_GRACE)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        tunnel.cancel()


async def relay(client: trio.abc.Stream, upstream: trio.abc.Stream, *, client_first: bytes,
                upstream_first: bytes, client_observer: StreamFilter | None,
                upstream_observer: StreamFilter | None) -> TunnelResult:
    """Relay until both directions ended (or one failed); ``*_first`` are bytes the HTTP parsers had already
    read past the upgrade."""
    result = TunnelResult()
    async with trio.open_nursery() as nursery:
        tunnel = nursery.cancel_scope
        nursery.start_soon(_pump, client, upstream, client_first, client_observer, CLIENT_CHANNEL, result,
                           tunnel)
        nursery.start_soon(_pump, upstream, client, upstream_first, upstream_observer, SERVER_CHANNEL,
                           result, tunnel)
    return result
