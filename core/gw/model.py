"""The protocol-neutral vocabulary every stage understands.

A protocol plugin turns wire traffic into these values; enforcement stages see nothing else, so one guard
rule or mask rule works for PostgreSQL, MySQL, SSH and HTTP alike.  Values are frozen, slotted dataclasses.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Kind(enum.StrEnum):
    """Coarse classification shared by every protocol.

    Classification is fail-closed: what cannot be parsed or is not recognised is ``UNKNOWN``, never ``READ``.
    """

    READ = "read"
    WRITE = "write"
    DDL = "ddl"
    ADMIN = "admin"
    EXEC = "exec"
    TRANSACTION = "transaction"
    UNKNOWN = "unknown"


class ObjectSyntax(enum.StrEnum):
    """What a protocol's ``Command.objects`` are, and so how rule globs compare with them.

    ``NAME``: names compared case-insensitively (SQL ``public.users``; ``schema.*`` stands for every table of
    a schema).  ``PATH``: file paths and URLs, compared case-sensitively and written as globs themselves
    (``*``, ``?``, ``[...]``; a literal character from that set is escaped as ``[*]``): an object with a
    wildcard -- a glob argument, a part the protocol cannot know -- matches every rule glob it could match.
    """

    NAME = "name"
    PATH = "path"


class Direction(enum.StrEnum):
    """Which way a stream channel's bytes travel."""

    TO_AGENT = "to_agent"  # what the agent is shown (output, responses): masked, recorded
    FROM_AGENT = "from_agent"  # what the agent sends (input, request bodies): forwarded as sent, observed
    CONTROL = "control"  # terminal control (window sizes): neither text nor data


class Channel(enum.StrEnum):
    """The byte streams a protocol offers stages (:meth:`gw.stage.Stage.stream`).  A protocol passes one of
    these; stages decide by :attr:`direction` and :attr:`terminal` rather than by listing names."""

    STDOUT = "stdout"  # a command's standard output (SSH exec)
    STDERR = "stderr"  # its standard error
    STDIN = "stdin"  # what the agent writes to a command's standard input
    PTY = "pty"  # an interactive terminal's output
    PTY_INPUT = "pty-input"  # what is typed into an interactive terminal
    PTY_RESIZE = "pty-resize"  # terminal sizes, one ``b"COLSxROWS"`` per chunk
    REQUEST_BODY = "request-body"  # an HTTP request body as the agent sent it
    RESPONSE_BODY = "response-body"  # an HTTP response body
    RESPONSE_HEADERS = "response-headers"  # an HTTP response head, as ``[["name", "value"], ...]`` JSON
    WS_CLIENT = "ws-client"  # WebSocket messages from the agent, one per chunk
    WS_SERVER = "ws-server"  # WebSocket messages to the agent, one per chunk
    ERROR = "error"  # an upstream error message's text (MySQL)
    MCP_CONTENT = "mcp-content"  # one content item of an MCP tool result

    @property
    def direction(self) -> Direction:
        if self in _FROM_AGENT:
            return Direction.FROM_AGENT
        if self is Channel.PTY_RESIZE:
            return Direction.CONTROL
        return Direction.TO_AGENT

    @property
    def terminal(self) -> bool:
        """Terminal output or input: arbitrary bytes, read leniently as text."""
        return self in (Channel.STDOUT, Channel.STDERR, Channel.PTY, Channel.PTY_INPUT, Channel.STDIN)

    @property
    def messages(self) -> bool:
        """Each chunk is one whole message (WebSocket), not a slice of a byte stream."""
        return self in (Channel.WS_CLIENT, Channel.WS_SERVER)


_FROM_AGENT = frozenset({Channel.STDIN, Channel.PTY_INPUT, Channel.REQUEST_BODY, Channel.WS_CLIENT})


class SessionEnd(enum.StrEnum):
    """Why a session ended (``Stage.session_ended``; ``SessionRuntime.wait_terminated``).  A protocol may add
    detail after a colon (``"error: upstream reset"``); :meth:`of` recovers the reason."""

    CLIENT_CLOSED = "client_closed"
    UPSTREAM_CLOSED = "upstream_closed"
    IDLE_TIMEOUT = "idle_timeout"
    ERROR = "error"
    # Endings gw decides (SessionRuntime.terminate): each has a message for the client.
    TOKEN_EXPIRED = "token_expired"
    SESSION_MAX = "session_max"
    REVOKED = "revoked"
    SHUTDOWN = "shutdown"

    @classmethod
    def of(cls, reason: str) -> SessionEnd:
        """The reason of ``"error: ..."``-style text; an unknown one is :attr:`ERROR`."""
        try:
            return cls(reason.split(":", 1)[0].strip())
        except ValueError:
            return cls.ERROR

    @property
    def message(self) -> str:
        """What a protocol tells the client when gw ends its session for this reason."""
        return _END_MESSAGES.get(self, f"gw closed this session ({self.value})")


_END_MESSAGES = {
    SessionEnd.TOKEN_EXPIRED: "token expired; reconnect with a fresh token",
    SessionEnd.SESSION_MAX: "this session reached the listener's session_max; reconnect to continue",
    SessionEnd.REVOKED: "access was revoked by the gateway operator; this session is closed",
    SessionEnd.SHUTDOWN: "gw is shutting down; reconnect in a moment",
    SessionEnd.IDLE_TIMEOUT: "this session was idle too long; reconnect to continue",
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is acting, as established by an identity provider (never from the client's say-so)."""

    subject: str
    groups: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False)
    provider: str = ""
    #: Unix time at which the credential stops being valid, if it has an end.
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not self.subject:
            raise ValueError("an identity needs a non-empty subject")
        if not isinstance(self.groups, tuple):
            object.__setattr__(self, "groups", tuple(self.groups))

    def in_any(self, groups: object) -> bool:
        """True when this identity belongs to at least one of ``groups``."""
        return any(g in self.groups for g in groups)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Session:
    """One client connection that authenticated and was admitted to a listener."""

    id: str
    listener: str
    protocol: str
    identity: Identity
    client_address: str
    upstream: str
    started_at: float
    #: What the client claimed to be (PostgreSQL startup ``user``, SSH user name); recorded, never trusted.
    claimed_user: str = ""
    #: Protocol details worth recording (database name, application_name, terminal type ...).
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class Command:
    """One statement, exec request or HTTP request, classified.

    ``objects`` are what the command touches (``public.users``; a path); ``flags`` carry facts such as
    ``no_where``, ``multi_statement``, ``unparsed``.
    """

    session: Session
    seq: int
    text: str
    language: str
    kind: Kind = Kind.UNKNOWN
    verb: str = ""
    objects: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    params: tuple[Any, ...] = ()
    #: Protocol-specific facts (prepared statement name, HTTP headers of interest ...).
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: Every verb of a multi-statement text (``select 1; grant ...`` -> ``("select", "grant")``); rules on
    #: ``verb`` match any of them.  Empty means just ``verb``.
    verbs: tuple[str, ...] = ()
    #: How rules compare ``objects`` (case-insensitive names, or case-sensitive paths that may be globs).
    object_syntax: ObjectSyntax = ObjectSyntax.NAME
    #: Each stage's state for this command (:meth:`gw.stage.Stage.state`); core empties it at completion.
    stage_state: dict[object, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def identity(self) -> Identity:
        return self.session.identity


class Decision(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PENDING = "pending"


class DenyCode(enum.StrEnum):
    """Why a command was refused, in words each protocol maps to its own error (SQLSTATE, HTTP status ...)."""

    POLICY = "policy"  # a rule forbids it (PostgreSQL 42501, HTTP 403)
    APPROVAL_REQUIRED = "approval_required"  # retry mode: ask for approval, then re-send
    APPROVAL_DENIED = "approval_denied"  # an approver said no
    APPROVAL_TIMEOUT = "approval_timeout"  # nobody decided in time (PostgreSQL 57014)
    UNAVAILABLE = "unavailable"  # gw could not do what policy requires (audit store down ...): fail closed
    INTERNAL = "internal"  # a stage raised; the command is refused, the session survives
    CANCELLED = "cancelled"  # the client left (or cancelled, or its session ended) while it was being decided


@dataclass(frozen=True, slots=True)
class Verdict:
    """A stage's answer about one command.  The pipeline combines them: any deny wins."""

    decision: Decision
    reason: str = ""
    code: DenyCode | None = None
    stage: str = ""
    rule: str = ""
    request_id: str | None = None
    #: Approvals that let the command through, for the audit trail.
    approved_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW

    @classmethod
    def allow(cls, *, stage: str = "", rule: str = "", reason: str = "", request_id: str | None = None,
              approved_by: tuple[str, ...] = ()) -> Verdict:
        return cls(Decision.ALLOW, reason=reason, stage=stage, rule=rule, request_id=request_id,
                   approved_by=approved_by)

    @classmethod
    def deny(cls, reason: str, *, code: DenyCode = DenyCode.POLICY, stage: str = "", rule: str = "",
             request_id: str | None = None) -> Verdict:
        return cls(Decision.DENY, reason=reason, code=code, stage=stage, rule=rule, request_id=request_id)

    @classmethod
    def pending(cls, request_id: str, reason: str = "", *, stage: str = "", rule: str = "") -> Verdict:
        return cls(Decision.PENDING, reason=reason, stage=stage, rule=rule, request_id=request_id,
                   code=DenyCode.APPROVAL_REQUIRED)


ALLOW = Verdict(Decision.ALLOW)


#: Why a decision in progress was cancelled (``CommandContext.cancel_reason``), in words for people.
_CANCEL_REASONS = {
    "client_disconnected": "the client disconnected",
    "client_disconnected_mid_query": "the client disconnected",
    "client_cancelled": "the client cancelled it",
    "cancel_request": "the client cancelled it",
    "client_closed": "the client disconnected",
    "token_expired": "the session's token expired",
    "revoked": "the session's access was revoked",
    "session_max": "the session reached the listener's session_max",
    "shutdown": "the gateway holding it stopped",
}


def cancel_reason_text(code: str) -> str:
    """``client_disconnected`` -> ``the client disconnected``; no code means gw itself stopped."""
    if not code:
        return "the gateway holding it stopped"
    return _CANCEL_REASONS.get(code, code)


@dataclass(frozen=True, slots=True)
class Measurement:
    """How many rows a write changes, as the database counted it (``rows_over`` rules decide on it).

    ``rows`` is None when gw cannot learn the count before the write would commit (a function with side
    effects, ``COPY FROM``, several statements in one message, a protocol that cannot measure): such a write
    matches every ``rows_over`` rule (fail closed), and ``reason`` says why."""

    rows: int | None
    reason: str = ""

    def over(self, limit: int) -> bool:
        return self.rows is None or self.rows > limit

    def describe(self) -> str:
        """``1000 rows`` or ``row count unknown (reason)``, for notices, approvers and the audit trail."""
        if self.rows is None:
            return f"row count unknown ({self.reason})" if self.reason else "row count unknown"
        return f"{self.rows} row" + ("" if self.rows == 1 else "s")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a tabular result, with its source where the protocol or lineage knows it."""

    name: str
    #: Source table, schema-qualified where known (``public.people``), else None.
    table: str | None = None
    #: Source column name in that table, else None.
    column: str | None = None
    type_name: str = ""
    #: ``text`` values arrive as UTF-8 bytes; ``binary`` values in the protocol's binary encoding.
    binary: bool = False
    #: Every source column the value derives from, as ``schema.table.column`` (``upper(ssn) AS x`` derives
    #: from ``public.people.ssn``).  Protocols fill it from the wire and from SQL lineage; masking matches on it.
    sources: tuple[str, ...] = ()
    #: For a composite value that is exactly a whole row (``select p from people p``): each field's sources, in
    #: order, so masking can redact field by field; None otherwise.
    fields: tuple[tuple[str, ...], ...] | None = None


#: ``Command.attributes`` key under which ``gw policy explain`` hands stages the result's columns as the protocol
#: found them without running the command (:meth:`gw.protocol.ProtocolHandler.describe_result`): a tuple of
#: :class:`Column` (empty: no rows), or a sentence saying why they are known only when the command runs.
RESULT_COLUMNS = "result_columns"


class OutcomeStatus(enum.StrEnum):
    """How a command ended."""

    OK = "ok"  # it ran (the upstream answered without an error)
    ERROR = "error"  # the upstream (or gw on its behalf) reported an error
    DENIED = "denied"  # the pipeline refused it; it never reached the upstream
    CANCELLED = "cancelled"  # the client cancelled it or went away before it finished


@dataclass(slots=True)
class Outcome:
    """What happened to a forwarded (or refused) command; filled in by the protocol plugin."""

    status: OutcomeStatus = OutcomeStatus.OK
    rows: int | None = None
    tag: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    duration: float = 0.0
    #: Annotations stages add while the result flows (e.g. ``{"masked": 3}``).
    notes: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def now() -> float:
    """Wall-clock time used for records (a function so tests can reason about it)."""
    return time.time()
