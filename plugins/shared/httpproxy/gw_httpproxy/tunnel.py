"""What flows after ``101 Switching Protocols``: a WebSocket relayed message by message, or raw bytes.

:func:`relay_websocket` reads the frames the upstream sends, joins them into messages and hands each to a
:class:`MessageFilter`, which returns what the agent gets (the HTTP plugin's filter masks text messages and
refuses binary ones when masking applies; the Kubernetes plugin's splits exec channel frames); the result is
re-framed unfragmented.  What the agent sends is relayed byte for byte; a :class:`MessageObserver` sees its
messages (unmasked from the RFC 6455 client masking) for recording.  With neither, both directions are raw
byte pumps.

:func:`relay` is the raw relay for upgrades gw cannot read (anything but WebSocket): observers see the bytes
but may not change them -- a stage that tries is a failure that ends the tunnel, since nothing can be
rewritten inside a protocol gw does not parse.

Either way: a failing filter or observer ends the tunnel (what policy requires to be masked or recorded is
never relayed without it); the agent gets a close frame saying why where the protocol has one.  Half-closes
are passed on where the transport supports them; the other direction then gets :data:`CLOSE_GRACE` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio
from gw.model import Channel
from gw.stage import StreamFilter

from . import filtering
from .scrub import SecretForms, SecretScrubber
from .websocket import (
    INTERNAL_ERROR,
    Frame,
    FrameReader,
    Message,
    MessageAssembler,
    Opcode,
    WebSocketError,
    close_payload,
    encode_frame,
)

RECEIVE_SIZE = 64 * 1024
#: After one direction ends, how long the other may still finish its closing handshake.
CLOSE_GRACE = 2.0

CLIENT_CHANNEL = Channel.WS_CLIENT
SERVER_CHANNEL = Channel.WS_SERVER


@dataclass
class TunnelResult:
    bytes_from_client: int = 0
    bytes_from_upstream: int = 0
    messages_from_client: int = 0
    messages_from_upstream: int = 0
    failures: list[str] = field(default_factory=list)


class MessageFilter(Protocol):
    """Rewrites the messages the upstream sends before the agent gets them."""

    def message(self, message: Message) -> Sequence[Message]:
        """What the agent gets for one complete message (any number of messages).  Raising
        :class:`~gw_httpproxy.websocket.WebSocketError` closes the WebSocket with its code and reason."""

    def control(self, frame: Frame) -> Frame | None:
        """What the agent gets for a ping, pong or close frame (None: nothing)."""

    def finish(self) -> None:
        """The stream ended."""


class MessageObserver(Protocol):
    """Sees the messages the agent sends (they are relayed unchanged)."""

    def message(self, message: Message) -> None: ...

    def finish(self) -> None: ...


async def _send(stream: trio.abc.Stream, data: bytes, lock: trio.Lock) -> None:
    async with lock:
        await stream.send_all(data)


async def _half_close(dst: trio.abc.Stream, tunnel: trio.CancelScope) -> None:
    """This direction ended: pass the half-close on where the transport can (TCP; not TLS), give the other
    direction a moment to finish its closing handshake, then end the tunnel."""
    send_eof = getattr(dst, "send_eof", None)
    try:
        if send_eof is None:
            raise trio.ClosedResourceError
        await send_eof()
        tunnel.deadline = min(tunnel.deadline, trio.current_time() + CLOSE_GRACE)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        tunnel.cancel()


# -- raw ---------------------------------------------------------------------------------------------------------


async def _pump(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes, observer: StreamFilter | None,
                channel: str, result: TunnelResult, tunnel: trio.CancelScope,
                scrub: SecretScrubber | None = None) -> None:
    data = first
    try:
        while True:
            if data and scrub is not None:
                data = bytes(scrub.feed(data))
            if data:
                if observer is not None:
                    seen = filtering.feed(observer, data, channel)
                    if seen is not data and seen != data:
                        raise filtering.FilterFailed(channel, ValueError(
                            "a stage rewrote the bytes of a protocol gw does not parse; they cannot be relayed"))
                if channel == CLIENT_CHANNEL:
                    result.bytes_from_client += len(data)
                else:
                    result.bytes_from_upstream += len(data)
                await dst.send_all(data)
            data = bytes(await src.receive_some(RECEIVE_SIZE))  # no copy: trio returns bytes
            if not data:
                break
        if scrub is not None and (tail := bytes(scrub.finish())):
            await dst.send_all(tail)
        if observer is not None:
            filtering.finish(observer, channel)
    except filtering.FilterFailed as e:
        result.failures.append(f"{channel} observer failed: {e}")
        tunnel.cancel()
        return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    await _half_close(dst, tunnel)


async def relay(client: trio.abc.Stream, upstream: trio.abc.Stream, *, client_first: bytes,
                upstream_first: bytes, client_observer: StreamFilter | None,
                upstream_observer: StreamFilter | None, secrets: SecretForms | None = None) -> TunnelResult:
    """Relay raw bytes until both directions ended (or one failed); ``*_first`` are bytes the HTTP parsers
    had already read past the upgrade.  ``secrets`` (the injected credential) are blanked in what the
    upstream sends, in place (lengths, and so any framing inside, stay intact)."""
    result = TunnelResult()
    async with trio.open_nursery() as nursery:
        tunnel = nursery.cancel_scope
        nursery.start_soon(_pump, client, upstream, client_first, client_observer, CLIENT_CHANNEL, result,
                           tunnel)
        nursery.start_soon(_pump, upstream, client, upstream_first, upstream_observer, SERVER_CHANNEL,
                           result, tunnel, SecretScrubber(secrets) if secrets is not None else None)
    return result


# -- WebSocket -----------------------------------------------------------------------------------------------


class _WebSocketRelay:
    def __init__(self, client: trio.abc.Stream, upstream: trio.abc.Stream, to_agent: MessageFilter | None,
                 from_agent: MessageObserver | None, max_message: int, secrets: SecretForms | None) -> None:
        self.secrets = secrets
        self.client = client
        self.upstream = upstream
        self.to_agent = to_agent
        self.from_agent = from_agent
        self.max_message = max_message
        self.client_lock = trio.Lock()
        self.upstream_lock = trio.Lock()
        self.result = TunnelResult()
        self.tunnel = trio.CancelScope()
        #: The agent was sent a close frame (by the upstream or by gw): nothing more goes its way.
        self.agent_closed = False

    async def _refuse(self, error: WebSocketError, where: str) -> None:
        """Tell the agent why the WebSocket ends, then end it."""
        self.result.failures.append(f"{where}: {error.reason}")
        if not self.agent_closed:
            self.agent_closed = True
            try:
                with trio.move_on_after(1):
                    await _send(self.client, encode_frame(Opcode.CLOSE, close_payload(error.code, error.reason)),
                                self.client_lock)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        self.tunnel.cancel()

    def _to_agent(self, frame: Frame, assembler: MessageAssembler, out: bytearray) -> None:
        assert self.to_agent is not None
        item = assembler.add(frame)
        if item is None:
            return
        if self.secrets is not None:  # before any stage sees it: the credential never reaches a filter
            scrubbed = self.secrets.scrub(item.payload)
            if scrubbed is not item.payload:
                item = Message(item.opcode, bytes(scrubbed)) if isinstance(item, Message) else \
                    Frame(item.opcode, bytes(scrubbed), item.fin)
        if isinstance(item, Message):
            self.result.messages_from_upstream += 1
            for message in self.to_agent.message(item):
                out += encode_frame(message.opcode, message.payload)
            return
        control = self.to_agent.control(item)
        if control is not None:
            out += encode_frame(control.opcode, control.payload)
            if control.opcode is Opcode.CLOSE:
                self.agent_closed = True

    async def from_upstream(self, first: bytes) -> None:
        reader = FrameReader(from_client=False, max_payload=self.max_message)
        assembler = MessageAssembler(self.max_message)
        # Without a message filter the frames are relayed as they come; the credential is still blanked in
        # place (server frames are not masked, so their payload bytes are the bytes on the wire).
        raw_scrub = SecretScrubber(self.secrets) if self.to_agent is None and self.secrets is not None else None
        data = first
        try:
            while True:
                if data:
                    self.result.bytes_from_upstream += len(data)
                    if self.to_agent is None:
                        if raw_scrub is not None:
                            data = bytes(raw_scrub.feed(data))
                        await _send(self.client, data, self.client_lock)
                    elif not self.agent_closed:  # after a close frame nothing more may be sent
                        reader.receive_data(data)
                        out = bytearray()
                        try:
                            while not self.agent_closed and (frame := reader.next_frame()) is not None:
                                self._to_agent(frame, assembler, out)
                        finally:  # what was relayed before a refusal still goes out, ahead of the close
                            if out:
                                await _send(self.client, bytes(out), self.client_lock)
                data = bytes(await self.upstream.receive_some(RECEIVE_SIZE))
                if not data:
                    break
            if raw_scrub is not None and (tail := bytes(raw_scrub.finish())):
                await _send(self.client, tail, self.client_lock)
            if self.to_agent is not None:
                self.to_agent.finish()
        except WebSocketError as e:
            await self._refuse(e, "upstream -> agent")
            return
        except filtering.FilterFailed as e:
            await self._refuse(WebSocketError(INTERNAL_ERROR, f"gw could not apply its policy to a message "
                                              f"({e}); the WebSocket was closed"), "upstream -> agent")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        await _half_close(self.client, self.tunnel)

    async def from_client(self, first: bytes) -> None:
        reader = FrameReader(from_client=True, max_payload=self.max_message)
        assembler = MessageAssembler(self.max_message)
        observer = self.from_agent
        data = first
        try:
            while True:
                if data:
                    self.result.bytes_from_client += len(data)
                    if observer is not None:
                        reader.receive_data(data)
                        while (frame := reader.next_frame()) is not None:
                            item = assembler.add(frame)
                            if isinstance(item, Message):
                                self.result.messages_from_client += 1
                                observer.message(item)
                    await _send(self.upstream, data, self.upstream_lock)
                data = bytes(await self.client.receive_some(RECEIVE_SIZE))
                if not data:
                    break
            if observer is not None:
                observer.finish()
        except WebSocketError as e:
            await self._refuse(e, "agent -> upstream")
            return
        except filtering.FilterFailed as e:
            await self._refuse(WebSocketError(INTERNAL_ERROR, f"gw could not record a message ({e}); the "
                                              "WebSocket was closed"), "agent -> upstream")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        await _half_close(self.upstream, self.tunnel)


async def relay_websocket(client: trio.abc.Stream, upstream: trio.abc.Stream, *, client_first: bytes,
                          upstream_first: bytes, to_agent: MessageFilter | None,
                          from_agent: MessageObserver | None, max_message: int,
                          secrets: SecretForms | None = None) -> TunnelResult:
    """Relay a WebSocket until both directions ended (or gw closed it); see the module docstring.
    ``secrets`` (the injected credential) are blanked in every message and control frame the upstream
    sends, before ``to_agent`` sees it."""
    ws = _WebSocketRelay(client, upstream, to_agent, from_agent, max_message, secrets)
    with ws.tunnel:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.from_client, client_first)
            nursery.start_soon(ws.from_upstream, upstream_first)
    return ws.result
