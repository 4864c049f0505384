"""What a protocol plugin decides when it builds on the shared proxy: a :class:`ProxyDialect`.

The proxy (:mod:`gw_httpproxy.proxy`) owns everything the HTTP-based protocols have in common -- framing,
keep-alive, identity from a bearer token, sessions, approval holds, the upstream connection, credential
injection and scrubbing, masking of headers, bodies and WebSocket messages.  The dialect owns meaning:

* :meth:`ProxyDialect.command` -- what a request is as a :class:`gw.model.Command` (the HTTP plugin: the
  method and path; the Kubernetes plugin: ``delete pods/web-1 -n prod`` with ``prod/pods/web-1``).  It may
  raise :class:`Refusal` (Kubernetes refuses agent-supplied ``Impersonate-*`` headers and SPDY upgrades).
* :meth:`ProxyDialect.reply` / :meth:`ProxyDialect.verdict_reply` -- the body of every response gw writes
  itself (the HTTP plugin: ``{"error", "reason"}`` JSON; Kubernetes: a ``metav1.Status`` kubectl prints).
* :meth:`ProxyDialect.upstream_headers` -- last edits to the upstream request's headers (Kubernetes:
  ``Impersonate-User``/``-Group`` from the session's identity, ``Accept: application/json`` instead of
  protobuf so responses can be masked).  Names it sets go in :attr:`ProxyDialect.managed_headers`, which
  the agent can never send.
* :meth:`ProxyDialect.response_filter` -- the filter for a response body (default: the pipeline's
  ``response-body`` filters; Kubernetes can add Secret redaction for JSON and watch streams, whose
  ``application/json;stream=watch`` lines the mask stage masks one by one).
* :meth:`ProxyDialect.websocket` -- the message filter and observer of an upgraded connection (default:
  :class:`gw_httpproxy.filtering.StageMessages`; Kubernetes: exec channel frames whose stdout/stderr pass
  the ``stdout``/``stderr`` filters and whose channel 3 carries the exit status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from gw.model import Channel, Command, Kind, ObjectSyntax, Verdict
from gw.stage import StreamFilter

from . import filtering, replies
from .headers import HeaderList, Headers
from .targets import Target

if TYPE_CHECKING:
    from gw.pipeline import CommandRun, SessionRuntime

    from .options import ProxyListenerOptions
    from .tunnel import MessageFilter, MessageObserver


class Refusal(Exception):
    """A request the dialect will not let through; ``status`` and ``reason`` go into :meth:`ProxyDialect.reply`
    with the message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class RequestView(NamedTuple):
    """A request as the proxy parsed and checked it, for the dialect to classify (a named tuple: one is made
    per request)."""

    #: The method in the request line.
    method: str
    #: The method the upstream will act as: ``method``, or what an honoured method override names.
    effective_method: str
    target: Target
    headers: Headers
    http_version: str
    content_type: str | None
    #: ``None`` for a chunked body.
    content_length: int | None
    #: The ``Upgrade`` header of an upgrade request (``websocket``), else None.
    upgrade: str | None


class CommandSpec(NamedTuple):
    """The protocol-neutral fields of the command a request becomes (see :class:`gw.model.Command`)."""

    text: str
    kind: Kind
    verb: str
    objects: tuple[str, ...]
    flags: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = {}  # never mutated: the proxy copies it into the command
    #: Every verb the request runs when there are several (a Kubernetes exec: ``exec`` and the programs of
    #: its command line); rules on ``verb`` match any of them.
    verbs: tuple[str, ...] = ()
    #: How rules compare ``objects``; None keeps the command's default.
    object_syntax: ObjectSyntax | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A response gw writes itself."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: For a refusal before policy (:meth:`ProxyDialect.refusal`): the short code and the message that go into
    #: the audit trail's record of refused clients.
    reason: str = ""
    message: str = ""


class ProxyDialect:
    """The defaults are the HTTP plugin's; subclasses override what their clients expect."""

    #: ``Command.language``.
    language: ClassVar[str] = "http"
    #: Request headers gw sets itself through :meth:`upstream_headers`; the agent's are dropped.
    managed_headers: ClassVar[tuple[str, ...]] = ()

    def command(self, request: RequestView) -> CommandSpec:
        raise NotImplementedError

    def refusal(self, request: RequestView, command: Command, options: ProxyListenerOptions) -> Reply | None:
        """A refusal of the listener itself, before any stage sees the command (the Kubernetes plugin: SPDY
        upgrades, port-forward unless allowed); None lets the command go on to the pipeline.  The refusal is
        recorded as a refused client (stages' ``session_refused``: ``gw audit sessions``) with the reply's
        ``reason`` and ``message``."""
        return None

    def reply(self, status: int, reason: str, message: str, *, request_id: str | None = None,
              **extra: Any) -> Reply:
        return Reply(status, replies.json_body(message, reason, request_id, **extra))

    def verdict_reply(self, verdict: Verdict, request_id: str, command: Command | None = None) -> Reply:
        """The response to a refused command (``command``: the refused command, for dialects that tailor
        the reply to it)."""
        return Reply(replies.verdict_status(verdict), replies.verdict_body(verdict, request_id))

    def upstream_headers(self, headers: HeaderList, request: RequestView, sr: SessionRuntime) -> HeaderList:
        return headers

    def response_filter(self, sr: SessionRuntime, run: CommandRun, content_type: str) -> StreamFilter | None:
        return filtering.open_filter(run, Channel.RESPONSE_BODY, content_type)

    def websocket(self, sr: SessionRuntime, run: CommandRun
                  ) -> tuple[MessageFilter | None, MessageObserver | None]:
        return filtering.StageMessages.open(run), filtering.StageMessageObserver.open(run)
