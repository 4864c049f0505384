"""What the trio side of the SSH plugin exchanges with the bridge: channel events, errors and the
authentication questions.  Plain values; no asyncio, no asyncssh."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Terminal:
    """A pty request: terminal type and size."""

    term: str
    cols: int
    rows: int
    width_px: int = 0
    height_px: int = 0
    modes: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What the client asked a session channel to run: ``exec`` (with ``command``), ``shell`` or ``subsystem``."""

    kind: str
    command: str | None = None
    subsystem: str | None = None
    terminal: Terminal | None = None
    env: tuple[tuple[str, str], ...] = ()
    #: Refusals of forwarding requests made on this connection, to show the client on this channel's stderr.
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key or certificate was not accepted.  ``definitive``: the client presented a credential gw knows
    and refuses (audited at once, counts as a failed attempt); otherwise it may still succeed another way."""

    reason: str
    message: str
    definitive: bool = False


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes
    stderr: bool = False


@dataclass(frozen=True, slots=True)
class Eof:
    pass


@dataclass(frozen=True, slots=True)
class WindowChange:
    cols: int
    rows: int
    width_px: int = 0
    height_px: int = 0


@dataclass(frozen=True, slots=True)
class SignalRequest:
    name: str


@dataclass(frozen=True, slots=True)
class ExitStatus:
    status: int


@dataclass(frozen=True, slots=True)
class ExitSignal:
    signal: str
    core_dumped: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class Closed:
    """The channel is gone; ``error`` says why when it did not close cleanly."""

    error: str = ""


ChannelEvent = SessionRequest | Data | Eof | WindowChange | SignalRequest | ExitStatus | ExitSignal | Closed


class ChannelClosedError(Exception):
    """Writing to a channel that the peer (or the connection) already closed."""


class UpstreamError(Exception):
    """gw could not connect to, verify or log in to the target; ``str()`` is for the client and the log."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HandshakeError(Exception):
    """The client's SSH handshake or authentication did not complete."""


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """The trio side's answer to one authentication attempt."""

    accepted: bool
    #: Shown to the client during authentication (an SSH banner), e.g. why its token was refused.
    banner: str | None = None
    #: Whatever the trio side wants back from :attr:`ClientConnection.identity` once authenticated.
    identity: Any = None
    #: Whether a refusal counts towards ``max_auth_attempts`` (a probe for an unknown key does not: clients
    #: offer each of their keys before trying a password).
    counts: bool = True


class Authenticator(Protocol):
    """Implemented on the trio side; called (on trio) for each authentication attempt."""

    public_keys: bool

    async def password(self, username: str, password: str) -> AuthAnswer: ...

    async def public_key(self, username: str, key_blob: bytes) -> AuthAnswer: ...
