"""The sans-IO HTTP/1.1 interface the proxy speaks on both sides, and its h11 implementation.

The proxy (:mod:`gw_httpproxy.proxy`) and the upstream connection (:mod:`gw_httpproxy.upstream`) never touch a
parser library directly: they feed bytes to a :class:`ServerCodec` (towards the agent) or a
:class:`ClientCodec` (towards the upstream), read the events below, and ask the codec to serialise what they
send.  Today both are thin adapters over h11, which owns the HTTP/1.1 state machine (keep-alive, framing,
``Expect: 100-continue``, protocol switches).  h11's pure-Python parsing is the largest CPU cost of a proxied
request (about 425 µs for both sides together on the reference machine), so the interface is kept small and
free of h11 types: a C-accelerated parser (httptools / llhttp) can be put behind the same two classes later
without touching the proxy.

Events are immutable named tuples: one is made per parsed event, and a named tuple costs a fifth of a frozen
dataclass to create.  Compare them by type (``type(event) is Data``) or identity (:data:`END_OF_MESSAGE`),
never by equality: the field-less events are all equal to ``()``.  Header lists are sequences of
``(lower-case name, value)`` byte pairs, as h11 produces them; body data may be ``bytes`` or ``bytearray`` (no
copy is made on the hot path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

import h11

#: ``(lower-case name, value)`` pairs in the order received.
HeaderSeq = Sequence[tuple[bytes, bytes]]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``next_event`` found no complete event in the bytes received so far.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: ``next_event`` will return nothing until the current request/response cycle is restarted (keep-alive) or
#: the connection switched protocols (after ``101``).
PAUSED: Final = _Sentinel("PAUSED")


class Request(NamedTuple):
    method: bytes
    target: bytes
    #: ``(lower-case name, value)`` pairs in the order received.
    headers: HeaderSeq
    http_version: bytes


class Response(NamedTuple):
    status: int
    reason: bytes
    headers: HeaderSeq
    http_version: bytes


class Informational(NamedTuple):
    """A 1xx response (``100 Continue``, ``101 Switching Protocols``, ``103 Early Hints``)."""

    status: int
    reason: bytes
    headers: HeaderSeq


class Data(NamedTuple):
    data: bytes | bytearray


class EndOfMessage(NamedTuple):
    """The current message is complete (trailers are not kept)."""


class ConnectionClosed(NamedTuple):
    """The peer closed the connection between messages."""


END_OF_MESSAGE: Final = EndOfMessage()
CONNECTION_CLOSED: Final = ConnectionClosed()

Event = Request | Response | Informational | Data | EndOfMessage | ConnectionClosed


class ProtocolError(Exception):
    """The peer broke HTTP/1.1.  ``status_hint`` is the status to answer a client with (400, 431, 501)."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class ServerCodec(Protocol):
    """The agent side: parses requests, serialises responses."""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the agent; ``b""`` means the agent closed its sending side."""

    def next_event(self) -> Event | _Sentinel:
        """The next :class:`Request`, :class:`Data`, :class:`EndOfMessage` or :class:`ConnectionClosed`,
        or :data:`NEED_DATA` / :data:`PAUSED`.  Raises :class:`ProtocolError`."""

    def send_response(self, status: int, headers: HeaderSeq, reason: bytes) -> bytes: ...

    def send_informational(self, status: int, headers: HeaderSeq, reason: bytes) -> bytes: ...

    def send_data(self, data: bytes | bytearray) -> bytes: ...

    def send_end(self) -> bytes: ...

    @property
    def request_body_pending(self) -> bool:
        """The agent is (or should be) still sending the current request's body."""

    @property
    def can_respond(self) -> bool:
        """No response to the current request has been started yet."""

    @property
    def expects_continue(self) -> bool:
        """The agent sent ``Expect: 100-continue`` and waits for it before sending the body."""

    @property
    def unprocessed(self) -> bytes:
        """Bytes received but not yet parsed (a pipelined request; the first bytes after an upgrade)."""

    def start_next_cycle(self) -> bool:
        """After a complete exchange, get ready for the next request; False when the connection cannot be
        reused (either side asked to close)."""


class ClientCodec(Protocol):
    """The upstream side: serialises requests, parses responses."""

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> Event | _Sentinel:
        """The next :class:`Informational`, :class:`Response`, :class:`Data`, :class:`EndOfMessage` or
        :class:`ConnectionClosed`, or :data:`NEED_DATA` / :data:`PAUSED`.  Raises :class:`ProtocolError`."""

    def send_request(self, method: bytes, target: bytes, headers: HeaderSeq) -> bytes: ...

    def send_data(self, data: bytes | bytearray) -> bytes: ...

    def send_end(self) -> bytes: ...

    @property
    def receiving_body(self) -> bool:
        """The response head arrived and its body has not ended yet."""

    @property
    def peer_closed(self) -> bool:
        """The upstream closed its side of the connection."""

    @property
    def unprocessed(self) -> bytes: ...

    def start_next_cycle(self) -> bool: ...


# -- h11 ----------------------------------------------------------------------------------------------------------


class _H11Codec:
    __slots__ = ("_h11",)

    def __init__(self, role: type[h11.SERVER | h11.CLIENT], max_header_bytes: int) -> None:
        self._h11 = h11.Connection(role, max_incomplete_event_size=max_header_bytes)

    def receive_data(self, data: bytes) -> None:
        self._h11.receive_data(data)

    def next_event(self) -> Event | _Sentinel:
        try:
            ev = self._h11.next_event()
        except h11.RemoteProtocolError as e:
            raise ProtocolError(str(e), e.error_status_hint) from None
        # h11's event as ours: one small tuple per event, bodies not copied; the commonest first.
        kind = type(ev)
        if kind is h11.Data:
            return Data(ev.data)  # type: ignore[union-attr]
        if kind is h11.EndOfMessage:
            return END_OF_MESSAGE
        if ev is h11.NEED_DATA:
            return NEED_DATA
        # h11's header list iterates through one Python call per item, and gw reads the headers of each
        # request and response several times: one plain list, made once, is cheaper.
        if kind is h11.Request:
            return Request(ev.method, ev.target, list(ev.headers), ev.http_version)  # type: ignore[union-attr]
        if kind is h11.Response:
            return Response(ev.status_code, ev.reason, list(ev.headers),  # type: ignore[union-attr]
                            ev.http_version)  # type: ignore[union-attr]
        if kind is h11.InformationalResponse:
            return Informational(ev.status_code, ev.reason, ev.headers)  # type: ignore[union-attr]
        if ev is h11.PAUSED:
            return PAUSED
        return CONNECTION_CLOSED

    def send_data(self, data: bytes | bytearray) -> bytes:
        return self._h11.send(h11.Data(data=data)) or b""  # type: ignore[arg-type]  # any bytes-like works

    def send_end(self) -> bytes:
        return self._h11.send(h11.EndOfMessage()) or b""

    @property
    def unprocessed(self) -> bytes:
        return self._h11.trailing_data[0]

    def start_next_cycle(self) -> bool:
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


class H11Server(_H11Codec):
    """:class:`ServerCodec` over h11."""

    __slots__ = ()

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.SERVER, max_header_bytes)

    def send_response(self, status: int, headers: HeaderSeq, reason: bytes) -> bytes:
        return self._h11.send(h11.Response(status_code=status, headers=headers,  # type: ignore[arg-type]
                                           reason=reason)) or b""  # (any sequence of pairs works)

    def send_informational(self, status: int, headers: HeaderSeq, reason: bytes) -> bytes:
        return self._h11.send(h11.InformationalResponse(status_code=status, headers=headers,  # type: ignore[arg-type]
                                                        reason=reason)) or b""

    @property
    def request_body_pending(self) -> bool:
        return self._h11.their_state is h11.SEND_BODY

    @property
    def can_respond(self) -> bool:
        return self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def expects_continue(self) -> bool:
        return self._h11.they_are_waiting_for_100_continue


class H11Client(_H11Codec):
    """:class:`ClientCodec` over h11."""

    __slots__ = ()

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.CLIENT, max_header_bytes)

    def send_request(self, method: bytes, target: bytes, headers: HeaderSeq) -> bytes:
        return self._h11.send(h11.Request(method=method, target=target,
                                          headers=headers)) or b""  # type: ignore[arg-type]

    @property
    def receiving_body(self) -> bool:
        return self._h11.their_state is h11.SEND_BODY

    @property
    def peer_closed(self) -> bool:
        return self._h11.trailing_data[1]


def server_codec(max_header_bytes: int) -> ServerCodec:
    """The codec for one agent connection (a larger incomplete head than ``max_header_bytes`` is a 431)."""
    return H11Server(max_header_bytes)


def client_codec(max_header_bytes: int) -> ClientCodec:
    """The codec for one upstream connection."""
    return H11Client(max_header_bytes)
