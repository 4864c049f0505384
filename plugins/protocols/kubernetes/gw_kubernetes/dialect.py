"""The Kubernetes dialect of the shared proxy: what a request means, how refusals look, what the API server
is asked for, and how responses and exec streams are filtered."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar

from gw.model import Command, Verdict
from gw.stage import StreamFilter
from gw_httpproxy import CommandSpec, ProxyDialect, Refusal, Reply, RequestView
from gw_httpproxy.filtering import open_filter
from gw_httpproxy.headers import HeaderList
from gw_httpproxy.options import ProxyListenerOptions

from . import status
from .channels import CHANNEL_PROTOCOLS, ExecInput, ExecOutput
from .classify import classify
from .options import KubernetesListenerOptions
from .paths import parse_request
from .secrets import SecretBody, SecretRedactionFailed, SecretWatch

if TYPE_CHECKING:
    from gw.pipeline import CommandRun, SessionRuntime
    from gw_httpproxy.tunnel import MessageFilter, MessageObserver

#: Media types gw cannot read (so cannot mask): removed from ``Accept``.
_BINARY_MEDIA = ("application/vnd.kubernetes.protobuf", "application/cbor", "application/apply-patch+cbor")
#: How long the reason of a refused WebSocket exec is remembered for kubectl's SPDY retry of it.
_RETRY_WINDOW = 30.0
_RETRY_MEMORY = 256

SPDY_MESSAGE = ("gw relays exec, attach and port-forward over WebSocket only (v5.channel.k8s.io / "
                "v4.channel.k8s.io), never SPDY; use kubectl 1.30 or newer and do not set "
                "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")


class _Chain:
    """Two stream filters, one after the other."""

    def __init__(self, first: StreamFilter, second: StreamFilter) -> None:
        self.first = first
        self.second = second

    def feed(self, data: bytes) -> bytes:
        out = self.first.feed(data)
        return self.second.feed(out) if out else b""

    def finish(self) -> bytes:
        out = self.first.finish()
        tail = self.second.feed(out) if out else b""
        return tail + self.second.finish()


class _Refused:
    """A response filter that refuses the body (a response about Secrets gw cannot read)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def feed(self, data: bytes) -> bytes:
        raise SecretRedactionFailed(self.message)

    def finish(self) -> bytes:
        raise SecretRedactionFailed(self.message)


def _json_media(content_type: str) -> tuple[bool, bool]:
    """(is JSON, is a watch stream)."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    watch = is_json and any(p.strip().lower() == "stream=watch" for p in params.split(";"))
    return is_json, watch


def _accept(value: bytes) -> bytes:
    kept = [part for part in value.split(b",") if part.strip() and not any(
        part.strip().lower().startswith(m.encode()) for m in _BINARY_MEDIA)]
    return b",".join(kept).strip() if kept else b"application/json"


def _text(code: int, message: str, reason: str = "") -> Reply:
    return Reply(code, message.encode("utf-8") + b"\n", b"text/plain; charset=utf-8", reason=reason,
                 message=message)


def _reply_for(command: Command, code: int, reason: str, message: str) -> Reply:
    """A ``Status`` for API requests; plain text for discovery and other non-resource paths, whose errors
    kubectl reads as text (it prints a JSON body there as "unknown")."""
    if command.attributes.get("non_resource"):
        return _text(code, message, reason)
    return status.status_reply(code, reason, message)


class KubernetesDialect(ProxyDialect):
    language: ClassVar[str] = "kubernetes"
    managed_headers: ClassVar[tuple[str, ...]] = ("impersonate-user", "impersonate-group", "impersonate-uid")

    def __init__(self) -> None:
        #: (subject, target) -> (when, reply): refused WebSocket execs, for kubectl's SPDY retry.
        self._refused: OrderedDict[tuple[str, str], tuple[float, Reply]] = OrderedDict()

    # -- meaning ------------------------------------------------------------------------------------------
    def command(self, request: RequestView) -> CommandSpec:
        if request.target.normalized:
            # kubectl never sends dot segments, doubled slashes or needless escapes; a path written so that
            # gw and the API server might read it differently is refused, not guessed at.
            raise Refusal(400, "bad_request_target", "gw refuses API paths with '.', '..', '//' or escaped "
                          "characters that need no escaping; send the path as kubectl does")
        api = parse_request(request.method, request.target.path, request.target.query)
        spec = classify(api, request.method, request.target.path_and_query)
        upgrade = (request.upgrade or "").strip().lower()
        if upgrade == "websocket" and api.verb not in ("exec", "attach", "portforward", "proxy"):
            # A watch over WebSocket (old clients) would carry objects -- Secrets among them -- as messages
            # the Secret redaction does not read; kubectl watches over plain HTTP.
            raise Refusal(400, "upgrade_refused", f"gw relays WebSocket upgrades only for exec, attach and "
                          f"port-forward, not for {api.verb}; send the request without Upgrade (kubectl does)")
        if api.verb in ("exec", "attach") and not api.unrecognised and not upgrade.startswith("spdy"):
            if upgrade != "websocket":
                raise Refusal(400, "upgrade_required", f"{api.verb} needs a WebSocket upgrade "
                              f"({', '.join(CHANNEL_PROTOCOLS)}); use kubectl {api.verb}")
            offered = {p.strip() for v in (value for n, value in request.headers if n == b"sec-websocket-protocol")
                       for p in v.decode("latin-1").split(",")}
            if not offered & set(CHANNEL_PROTOCOLS):
                raise Refusal(400, "subprotocol_refused", f"gw relays {api.verb} streams with "
                              f"{' or '.join(CHANNEL_PROTOCOLS)} only; this request offered "
                              f"{', '.join(sorted(offered)) or 'none'}. Use kubectl 1.30 or newer")
        return spec

    def refusal(self, request: RequestView, command: Command, options: ProxyListenerOptions) -> Reply | None:
        """Refusals of the listener itself, before policy: SPDY upgrades (repeating why gw refused the same
        command over WebSocket a moment ago, since kubectl retries a refused WebSocket exec over SPDY), and
        port-forward and proxy unless allowed."""
        for name, _ in request.headers:
            if name.startswith(b"impersonate-"):
                header = "-".join(p.capitalize() for p in name.decode("latin-1").split("-"))
                return _reply_for(command, 403, "impersonation_refused",
                                  f"gw refuses {header} headers: the cluster sees who your gw token says you "
                                  "are; remove --as / --as-group (and impersonation settings in the kubeconfig)")
        if (request.upgrade or "").strip().lower().startswith("spdy"):
            return self.recent_refusal(command) or status.status_reply(400, "spdy_refused", SPDY_MESSAGE)
        if not isinstance(options, KubernetesListenerOptions):
            return None
        reply = self._listener_refusal(options, command)
        if reply is not None:
            self._remember(command, reply)  # kubectl retries port-forward over SPDY too
        return reply

    def _listener_refusal(self, opts: KubernetesListenerOptions, cmd: Command) -> Reply | None:
        if cmd.verb == "portforward" and not opts.allow_portforward:
            return status.status_reply(403, "portforward_refused",
                                       f"gw: port-forward is not allowed on listener {opts.name!r} "
                                       "(allow_portforward = false); use kubectl exec, or ask the gateway "
                                       "operator")
        if cmd.verb == "proxy" and not opts.allow_proxy:
            return status.status_reply(403, "proxy_refused",
                                       f"gw: the proxy subresource is not allowed on listener {opts.name!r} "
                                       "(allow_proxy = false); ask the gateway operator")
        return None

    # -- gw's replies ---------------------------------------------------------------------------------------
    def reply(self, status_code: int, reason: str, message: str, *, request_id: str | None = None,
              **extra: Any) -> Reply:
        return status.status_reply(status_code, reason, message, request_id=request_id, **extra)

    def verdict_reply(self, verdict: Verdict, request_id: str, command: Command | None = None) -> Reply:
        reply = status.verdict_reply(verdict, request_id)
        if command is not None and command.attributes.get("non_resource"):
            reply = _text(reply.status, status.verdict_message(verdict, request_id))
        if command is not None and command.verb in ("exec", "attach", "portforward"):
            self._remember(command, reply)
        return reply

    def _key(self, command: Command) -> tuple[str, str]:
        return (f"{command.session.listener}\0{command.identity.subject}", command.text)

    def _remember(self, command: Command, reply: Reply) -> None:
        self._refused[self._key(command)] = (time.monotonic(), reply)
        self._refused.move_to_end(self._key(command))
        while len(self._refused) > _RETRY_MEMORY:
            self._refused.popitem(last=False)

    def recent_refusal(self, command: Command) -> Reply | None:
        """The reply gw gave a moment ago to the same exec over WebSocket: kubectl retries a refused
        WebSocket exec over SPDY, and the agent should read why the first one was refused."""
        entry = self._refused.get(self._key(command))
        if entry is None or time.monotonic() - entry[0] > _RETRY_WINDOW:
            return None
        return entry[1]

    # -- upstream -------------------------------------------------------------------------------------------
    def upstream_headers(self, headers: HeaderList, request: RequestView, sr: SessionRuntime) -> HeaderList:
        out: HeaderList = []
        accept_seen = False
        for name, value in headers:
            if name == b"accept":
                accept_seen = True
                value = _accept(value)
            out.append((name, value))
        if not accept_seen and request.upgrade is None:
            out.append((b"accept", b"application/json"))
        opts = sr.listener.options
        if isinstance(opts, KubernetesListenerOptions) and opts.upstream.impersonate:
            identity = sr.session.identity
            user = opts.upstream.user_prefix + identity.subject
            out.append((b"impersonate-user", user.encode("utf-8")))
            for group in opts.upstream.cluster_groups(identity.groups):
                out.append((b"impersonate-group", group.encode("utf-8")))
        return out

    # -- responses ------------------------------------------------------------------------------------------
    def response_filter(self, sr: SessionRuntime, run: CommandRun, content_type: str) -> StreamFilter | None:
        command = run.command
        is_json, watch = _json_media(content_type)
        if is_json and not watch and command.verb == "watch":
            # The API server labels a JSON watch plain application/json (only other encodings get
            # ";stream=watch"); it is a stream of one event per line, and stages must see it as one, or a
            # masking stage would hold the whole (endless) watch as a single document.
            content_type, watch = f"{content_type.split(';')[0].strip()};stream=watch", True
        stage_filter = open_filter(run, "response-body", content_type)
        opts = sr.listener.options
        if isinstance(opts, KubernetesListenerOptions) and not opts.redact_secrets:
            return stage_filter
        # Secrets come from requests on secrets (any group, fail closed); other responses go untouched (the
        # hot path: lists of pods are not held whole to look for what the API never puts in them).
        resources = [o.split("/")[1] for o in command.objects if o.count("/") >= 2]
        about_secrets = any(r == "secrets" or r.startswith("secrets.") for r in resources)
        if not about_secrets:
            return stage_filter
        redactor: StreamFilter
        if is_json:
            redactor = SecretWatch(everything=True) if watch else SecretBody(everything=True)
        else:
            redactor = _Refused(f"a response about Secrets came as {content_type!r}, which gw cannot redact; "
                                "it was not passed on")
        return redactor if stage_filter is None else _Chain(redactor, stage_filter)

    def websocket(self, sr: SessionRuntime, run: CommandRun
                  ) -> tuple[MessageFilter | None, MessageObserver | None]:
        command = run.command
        if command.verb in ("exec", "attach"):
            tty = bool(command.attributes.get("tty"))
            return ExecOutput.open(run, tty=tty), ExecInput.open(run, tty=tty)
        return super().websocket(sr, run)
