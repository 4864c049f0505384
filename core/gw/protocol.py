"""What a protocol plugin implements.

The wire codec is sans-IO (see docs/writing-a-plugin.md); this module is the I/O side's contract with core:
core accepts TCP connections and hands each one to :meth:`ProtocolHandler.handle`, which authenticates through
:meth:`gw.runtime.ListenerRuntime.authenticate`, opens a session with
:meth:`gw.runtime.ListenerRuntime.start_session` and runs every command through the returned
:class:`gw.pipeline.SessionRuntime`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

import trio
from pydantic import Field

from .model import Column, Command, Session
from .types import Address, Duration, StrictModel, parse_address

if TYPE_CHECKING:
    from .runtime import ListenerRuntime


class ListenerOptions(StrictModel):
    """Keys every listener has.  A protocol's ``Options`` subclasses this and adds its own (``upstream`` ...)."""


    name: str
    protocol: str
    #: ``HOST:PORT`` to accept connections on; port 0 picks a free port (reported at start-up).
    listen: Address
    #: Identity provider name(s); with several, the first that accepts the credential decides.
    identity: str | list[str]
    #: The pipeline of stages every command passes; required unless the protocol proxies nothing.
    pipeline: str | None = None
    #: Only identities in at least one of these groups may connect (None: any authenticated identity).
    allow_groups: list[str] | None = None
    #: Subjects and groups refused even with a valid credential (revocation without touching the IdP).
    deny_subjects: list[str] = Field(default_factory=list)
    deny_groups: list[str] = Field(default_factory=list)
    #: Extra time a session may run after its token expires before gw closes it.
    token_grace: Duration = timedelta(seconds=0)
    #: Hard cap on any session's length regardless of its token.
    session_max: Duration | None = None

    @property
    def identities(self) -> list[str]:
        return [self.identity] if isinstance(self.identity, str) else list(self.identity)

    @property
    def address(self) -> tuple[str, int]:
        return parse_address(self.listen)


class ProtocolHandler:
    """Base class of protocol handlers; one instance per listener."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[ListenerOptions]] = ListenerOptions
    #: False for a protocol that proxies nothing (a web console): its listeners take no ``pipeline``.
    needs_pipeline: ClassVar[bool] = True
    #: Keys read only in :meth:`open` (TLS material ...): a reload that changes one is refused with a log line
    #: saying a restart is needed.  Every other key must be read from :attr:`options` when used, so a reload
    #: applies it to the next session.
    restart_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, listener: ListenerRuntime) -> None:
        self.listener = listener

    @property
    def options(self) -> ListenerOptions:
        return self.listener.options

    async def open(self) -> None:
        """Called once before the listener accepts connections."""

    async def close(self) -> None:
        """Called once after the listener stopped and its sessions ended."""

    async def reconfigure(self, previous: ListenerOptions) -> None:
        """A reload changed this listener's options (:attr:`options` holds the new ones).  Rebuild what is
        derived from them; raising keeps ``previous``.  The default does nothing."""

    def describe_upstream(self) -> str:
        """A credential-free description of the upstream for logs and ``gw check`` (``127.0.0.1:5432/test``)."""
        return ""

    def upstream_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the upstream server, when there is one TCP upstream (for :meth:`check_ready`)."""
        return None

    async def check_ready(self) -> str | None:
        """Why this listener could not serve an agent now (``/readyz``), or None when it can.  The default
        opens (and closes) a TCP connection to :meth:`upstream_address`."""
        address = self.upstream_address()
        if address is None:
            return None
        host, port = address
        with trio.move_on_after(2):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as e:
                return f"upstream {host}:{port} is unreachable ({e.strerror or e})"
            await stream.aclose()
            return None
        return f"upstream {host}:{port} did not answer within 2s"

    def warnings(self) -> list[str]:
        """Configuration that is valid but risky, for ``gw check`` (a token-accepting listener on a
        non-loopback address without required TLS ...)."""
        return []

    def classify(self, text: str, *, session: Session) -> Command:
        """Classify a command text the way this protocol would on the data path (``gw policy explain``).
        Protocols without a text form of commands may raise NotImplementedError."""
        raise NotImplementedError(f"protocol {self.name!r} cannot classify command text")

    async def describe_result(self, command: Command) -> Sequence[Column] | str | None:
        """For ``gw policy explain``: the columns ``command``'s result would have, as the data path would see
        them, found without running it (a protocol may ask the upstream to describe the statement); a sentence
        saying why they are known only when it runs; None when this protocol's results are not tables."""
        return None

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        """Serve one client connection until it ends.  Exceptions are logged by core and end only this
        connection; the handler should already have sent the client a protocol-native error."""
        raise NotImplementedError


def write_now(stream: trio.abc.Stream, data: bytes | memoryview) -> int:
    """Write what a plain TCP stream's socket takes at once and return how many bytes that was; 0 for any other
    stream (TLS keeps its own state), a closed one, or an error (the caller's ``send_all`` then raises trio's
    own).  ``send_all`` costs several microseconds of Python per call besides the system call; a protocol that
    writes once per message tries this first and hands only what is left to ``send_all``."""
    if type(stream) is not trio.SocketStream or (fd := stream.socket.fileno()) < 0:
        return 0
    try:
        return os.write(fd, data)
    except OSError:  # BlockingIOError (no room) included
        return 0
