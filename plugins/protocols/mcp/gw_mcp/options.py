"""The ``protocol = "mcp"`` listener table and its ``[listeners.upstream]``.

```toml
[[listeners]]
name = "tools"
protocol = "mcp"
listen = "127.0.0.1:18090"
identity = "dev"
pipeline = "tools"
allow_groups = ["agents"]
objects_from = { delete_customer = ["customer_id"] }

[listeners.upstream]
url = "http://127.0.0.1:9000/mcp"                 # a Streamable HTTP MCP server
headers = { Authorization = "Bearer ${CRM_MCP_TOKEN}" }
# or: command = ["crm-mcp-server", "--stdio"], env = { CRM_TOKEN = "${CRM_TOKEN}" }
```

Validation is pure (no environment, no files), so ``gw check`` works on a machine without the upstream's
secrets; ``${VAR}`` references are expanded when the listener starts.  The HTTP upstream keys are those of the
shared HTTP proxy (:class:`gw_httpproxy.UpstreamOptions`), with the same meaning and defaults.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from gw.config import Duration
from gw.model import Kind
from gw.protocol import ListenerOptions
from gw_httpproxy import ByteSize, UpstreamOptions
from gw_httpproxy.options import ClientTLS, env_references
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Server-initiated request kinds a listener may let through, and the methods each covers.
SERVER_REQUESTS = {
    "sampling": ("sampling/createMessage",),
    "elicitation": ("elicitation/create",),
    "roots": ("roots/list",),
}
#: Environment variables a stdio server inherits from gw (everything else it gets only from ``env``): enough
#: to find programs and a home directory, none of gw's own secrets.
INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class McpUpstreamOptions(BaseModel):
    """Either ``url`` (a Streamable HTTP MCP server) or ``command`` (a stdio server gw starts per session)."""

    model_config = ConfigDict(extra="forbid")

    #: ``http(s)://host[:port]/path`` of a Streamable HTTP MCP endpoint.
    url: str | None = None
    #: Headers gw adds to every upstream HTTP request (the server's credential); ``${VAR}`` expands from gw's
    #: environment at start-up.  The agent's own headers never reach the upstream.
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None
    verify: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    connect_timeout: Duration = timedelta(seconds=10)
    #: Longest wait for an upstream answer (and between two events of a streamed one).
    read_timeout: Duration = timedelta(seconds=300)
    #: The stdio server's program and arguments, started once per MCP session.
    command: list[str] | None = None
    #: Environment of the stdio server (``${VAR}`` expands from gw's environment); it also inherits only
    #: PATH, HOME, USER, LANG and the like from gw, never gw's other variables.
    env: dict[str, str] = Field(default_factory=dict)
    #: Working directory of the stdio server (relative to the pipeline file).
    cwd: str | None = None

    _http: UpstreamOptions | None = PrivateAttr(default=None)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not v[0].strip()):
            raise ValueError('name the program to start, for example command = ["crm-mcp-server", "--stdio"]')
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            for ref in env_references(value):
                if not _ENV_NAME.fullmatch(ref):
                    raise ValueError(f"env {name!r}: ${{{ref}}} is not a valid environment variable reference")
        return v

    @model_validator(mode="after")
    def _one_transport(self) -> McpUpstreamOptions:
        if (self.url is None) == (self.command is None):
            raise ValueError('give either url (a Streamable HTTP server: url = "http://127.0.0.1:9000/mcp") or '
                             'command (a stdio server: command = ["crm-mcp-server", "--stdio"]), not both')
        if self.url is not None:
            if self.env or self.cwd:
                raise ValueError("env and cwd apply to a stdio server (command); an HTTP upstream takes headers")
            try:
                self._http = UpstreamOptions(
                    url=self.url, headers=self.headers, ca_file=self.ca_file, verify=self.verify,
                    client_cert=self.client_cert, client_key=self.client_key,
                    connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
        elif self.headers or self.ca_file or self.client_cert:
            raise ValueError("headers and TLS keys apply to an HTTP upstream (url); a stdio server takes env")
        return self

    @property
    def http(self) -> UpstreamOptions | None:
        """The HTTP upstream as the shared proxy library reads it (None for a stdio server)."""
        return self._http


def _kinds(v: Any) -> Any:
    if isinstance(v, dict):
        for tool, kind in v.items():
            if str(kind).lower() not in {k.value for k in Kind}:
                raise ValueError(f"tool_kinds.{tool}: unknown kind {kind!r}; expected one of "
                                 f"{', '.join(k.value for k in Kind)}")
    return v


class McpListenerOptions(ListenerOptions):
    """A listener that serves MCP over Streamable HTTP to agents and relays to one MCP server."""

    upstream: McpUpstreamOptions
    #: Serve HTTPS to agents with this certificate and key (``{ cert = "...", key = "..." }``).
    tls: ClientTLS | None = None
    #: The endpoint path agents POST to (their client's server URL is ``http://HOST:PORT`` + this).
    path: str = "/mcp"
    #: Per tool, the argument names whose values become the command's objects (what guard ``objects`` rules
    #: and approvers see): ``{ delete_customer = ["customer_id"] }``.  ``"*"`` as a tool name applies to
    #: every tool.
    objects_from: dict[str, list[str]] = Field(default_factory=dict)
    #: Per tool, the command kind, overriding the tool's annotations (``{ export_report = "read" }``).
    tool_kinds: dict[str, str] = Field(default_factory=dict)
    #: Server-initiated requests relayed to the agent: ``"sampling"``, ``"elicitation"``, ``"roots"``.
    #: Others are refused with a JSON-RPC error to the server, and never reach the agent.
    server_requests: list[Literal["sampling", "elicitation", "roots"]] = Field(default_factory=list)
    #: Largest JSON-RPC message gw accepts from an agent (larger -> HTTP 413).
    max_message_size: ByteSize = 4 * 1024 * 1024
    #: Largest tool result (or resource contents, or prompt) passed to the agent, measured as JSON; a larger
    #: one is refused with a JSON-RPC error, never truncated silently.  A server message larger than this (plus
    #: 64KiB for its envelope) is not even read whole.
    max_result_size: ByteSize = 1024 * 1024
    #: Most tool calls, resource reads and prompt gets one MCP session may make (None: no limit).
    max_calls: int | None = Field(default=None, ge=1)
    #: Most open MCP sessions per identity (each holds an upstream session, or a process for stdio).
    max_sessions: int = Field(default=8, ge=1)
    #: An MCP session without any request for this long is ended (its upstream closed).
    session_idle_timeout: Duration = timedelta(minutes=30)
    #: While a call is held for approval, how often gw sends the agent a progress notification (or an SSE
    #: comment when the agent gave no progress token), so its client does not time out.
    progress_interval: Duration = timedelta(seconds=10)
    #: Authorization servers named in ``/.well-known/oauth-protected-resource`` (RFC 9728); default: the
    #: ``issuer`` of each identity provider of this listener that has one.
    authorization_servers: list[str] | None = None
    #: Largest request head; larger -> 431.
    max_header_bytes: ByteSize = 64 * 1024
    #: Close an idle keep-alive HTTP connection after this long.
    idle_timeout: Duration = timedelta(seconds=120)
    #: A request head and body must arrive within this time of its first byte -> 408.
    header_timeout: Duration = timedelta(seconds=10)
    #: Longest time the agent may take to accept response bytes.
    send_timeout: Duration = timedelta(seconds=60)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in "?#% \t"):
            raise ValueError('expected an absolute path such as "/mcp"')
        return v.rstrip("/") or "/"

    @field_validator("tool_kinds", mode="before")
    @classmethod
    def _tool_kinds(cls, v: Any) -> Any:
        return _kinds(v)

    @field_validator("progress_interval")
    @classmethod
    def _interval(cls, v: timedelta) -> timedelta:
        if not 0.05 <= v.total_seconds() <= 300:
            raise ValueError('expected between "50ms" and "5m"')
        return v

    @field_validator("max_message_size", "max_result_size", "max_header_bytes")
    @classmethod
    def _floor(cls, v: int) -> int:
        if v < 1024:
            raise ValueError("below 1KiB would refuse ordinary MCP messages")
        return v

    def kind_for(self, tool: str) -> Kind | None:
        kind = self.tool_kinds.get(tool)
        return Kind(kind.lower()) if kind is not None else None

    def object_arguments(self, tool: str) -> list[str]:
        return self.objects_from.get(tool) or self.objects_from.get("*") or []
