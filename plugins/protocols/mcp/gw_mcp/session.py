"""One MCP session: the agent's side (Mcp-Session-Id), its gw session, and the upstream MCP session.

A session starts with the agent's ``initialize`` (gw starts the stdio process or opens the upstream HTTP session
and performs the handshake itself) and ends when the agent deletes it, its token expires, it is idle for
``session_idle_timeout``, gw revokes it, or gw shuts down.  Requests of one session may arrive on any HTTP
connection of its identity; :class:`McpSession` is what they share.

Per agent request:

* ``tools/call``, ``resources/read``, ``prompts/get`` are commands: classified (:mod:`gw_mcp.classify`),
  decided by the pipeline (audit record first; approval holds keep the agent alive with progress
  notifications), forwarded, and answered with the result masked (:mod:`gw_mcp.content`), recorded, audited
  with its outcome (``isError``, size, duration);
* ``tools/list`` answers with the tools whose pinned definition is accepted (:mod:`gw_mcp.pins`) and that policy
  does not deny this identity outright;
* ``ping`` is answered by gw; listing, completion, subscription and log-level requests are relayed;
  anything else is refused with ``-32601``.

Server-initiated requests (sampling, elicitation, roots) reach the agent only when the listener's
``server_requests`` allows them; otherwise gw answers the server with an error.  Server notifications are
relayed when they carry no data (``list_changed``, ``resources/updated``) or belong to a call whose command
masks them; log messages outside a call are dropped, since no command's masking covers them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

import trio
from gw.model import Channel, Command, Decision, DenyCode, Outcome, Verdict
from pydantic import ValidationError

from . import classify, jsonrpc
from .content import ContentMasker, MaskFailed
from .options import SERVER_REQUESTS, McpListenerOptions
from .pins import ToolPins
from .upstream import ResultTooLarge, Upstream, UpstreamFailed

if TYPE_CHECKING:
    from gw.pipeline import CommandRun, SessionRuntime

log = logging.getLogger("gw.mcp")

#: Methods relayed to the server as they are (their answers carry no data a command would mask).
RELAYED = frozenset({"resources/list", "resources/templates/list", "prompts/list", "completion/complete",
                     "resources/subscribe", "resources/unsubscribe", "logging/setLevel"})
#: Server notifications relayed to the agent outside calls.
RELAYED_NOTIFICATIONS = frozenset({"notifications/tools/list_changed", "notifications/resources/list_changed",
                                   "notifications/prompts/list_changed", "notifications/resources/updated"})
#: Pages of ``tools/list`` gw follows when it reads the server's tools.
MAX_TOOL_PAGES = 100
#: Server requests waiting for the agent's answer, per session.
MAX_PENDING_SERVER_REQUESTS = 64
#: Messages waiting for an agent's GET stream; more are dropped (the agent is not listening).
OUTBOX_SIZE = 256

_DENY_CODES = {
    DenyCode.POLICY: jsonrpc.POLICY_DENIED,
    DenyCode.APPROVAL_REQUIRED: jsonrpc.APPROVAL_REQUIRED,
    DenyCode.APPROVAL_DENIED: jsonrpc.APPROVAL_DENIED,
    DenyCode.APPROVAL_TIMEOUT: jsonrpc.APPROVAL_DENIED,
    DenyCode.UNAVAILABLE: jsonrpc.UNAVAILABLE,
    DenyCode.INTERNAL: jsonrpc.INTERNAL_ERROR,
}


class ClientGone(Exception):
    """The agent's HTTP connection for this request went away."""


class Reply(Protocol):
    """How a request's handler reaches the agent before its final answer (an SSE stream, opened lazily)."""

    @property
    def can_stream(self) -> bool: ...

    async def message(self, msg: dict[str, Any]) -> None:
        """Send an interim message (progress, a server request); raises :class:`ClientGone`."""

    async def comment(self, text: str) -> None:
        """Keep the stream alive without a message."""


class SessionError(Exception):
    """A request cannot be served by this session; carries the JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class Call:
    """One agent request being served (its cancel scope, progress token and reply stream)."""

    def __init__(self, client_id: jsonrpc.RequestId, reply: Reply, token: str | int | None) -> None:
        self.client_id = client_id
        self.reply = reply
        self.token = token
        self.scope = trio.CancelScope()
        #: Why the call was cancelled (for the approve stage's record): see gw.model.END_REASONS.
        self.cancel_reason = ""
        self.upstream_id: int | None = None

    def cancel(self, reason: str) -> None:
        if not self.cancel_reason:
            self.cancel_reason = reason
        self.scope.cancel()


class CallContext:
    """The :class:`gw.stage.CommandContext` of a call: a notice means a stage is about to hold the call, so gw
    starts telling the agent it is waiting (progress notifications with the notice, every
    ``progress_interval``) until the decision is made."""

    def __init__(self, session: McpSession, call: Call, nursery: trio.Nursery) -> None:
        self.session = session
        self.call = call
        self.nursery = nursery
        self.notices: list[str] = []
        self._keepalive: trio.CancelScope | None = None

    @property
    def cancel_reason(self) -> str:
        return self.call.cancel_reason

    async def notice(self, message: str) -> None:
        self.notices.append(message)
        await self._tell(message, 0)
        if self._keepalive is None:
            self._keepalive = trio.CancelScope()
            self.nursery.start_soon(self._keep_alive, self._keepalive, message)

    async def _tell(self, message: str, n: int) -> None:
        reply = self.call.reply
        if not reply.can_stream:
            return
        try:
            if self.call.token is not None:
                await reply.message(jsonrpc.notification("notifications/progress", {
                    "progressToken": self.call.token, "progress": n, "message": message}))
            else:
                await reply.comment(message)
        except ClientGone:
            self.call.cancel("client_disconnected")

    async def _keep_alive(self, scope: trio.CancelScope, message: str) -> None:
        interval = self.session.options.progress_interval.total_seconds()
        started = time.monotonic()
        with scope:
            n = 0
            while True:
                await trio.sleep(interval)
                n += 1
                waited = int(time.monotonic() - started)
                await self._tell(f"{message} (waiting {waited}s)", n)

    def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()


class McpSession:
    """State shared by every HTTP request of one MCP session."""

    def __init__(self, *, session_id: str, sr: SessionRuntime, token: str, options: McpListenerOptions,
                 pins: ToolPins, make_upstream: Callable[[Callable[[dict[str, Any]], Awaitable[None]]], Upstream],
                 on_end: Callable[[McpSession], None]) -> None:
        self.id = session_id
        self.sr = sr
        self.token = token
        self.subject = sr.session.identity.subject
        self.options = options
        self.pins = pins
        self.upstream = make_upstream(self._from_server)
        self._on_end = on_end
        self.protocol_version = ""
        self.tools: dict[str, dict[str, Any]] | None = None
        self.hidden_by_pin: set[str] = set()
        self.calls = 0
        self.inflight: dict[jsonrpc.RequestId, Call] = {}
        self._by_token: dict[str | int, Call] = {}
        #: gw's id of a server request relayed to the agent -> the server's id.
        self._server_requests: dict[str, Any] = {}
        self._server_request_seq = 0
        self._outbox_send, self._outbox = trio.open_memory_channel[dict[str, Any]](OUTBOX_SIZE)
        self.stream_open = False
        self.last_active = time.monotonic()
        self.ended = False
        self.end_reason = ""
        self._ready = trio.Event()
        self._done = trio.Event()
        self._scope = trio.CancelScope()
        self._start_error: BaseException | None = None
        self._tools_lock = trio.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(24)

    @property
    def listener(self) -> str:
        return self.sr.session.listener

    # -- lifetime -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the session's background task (upstream readers, expiry and idle watchers)."""
        self.sr.listener.services.spawn(self._run, name=f"gw-mcp session {self.sr.session.id}")
        await self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    async def _run(self) -> None:
        reason = "closed"
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    try:
                        await self.upstream.start(nursery)
                    except UpstreamFailed as e:
                        self._start_error = e
                        self._ready.set()
                        reason = "upstream_failed"
                        nursery.cancel_scope.cancel()
                        return
                    self._ready.set()
                    nursery.start_soon(self._idle_watch, nursery.cancel_scope)
                    reason = await self.sr.wait_terminated()
                    nursery.cancel_scope.cancel()
        except Exception as e:  # a system task must never raise: it would end the whole gateway
            log.exception("MCP session %s failed", self.sr.session.id)
            reason = f"error: {type(e).__name__}"
        finally:
            self._ready.set()
            with trio.CancelScope(shield=True):
                await self._close(self.end_reason or reason)

    async def _idle_watch(self, scope: trio.CancelScope) -> None:
        limit = self.options.session_idle_timeout.total_seconds()
        while True:
            idle = time.monotonic() - self.last_active
            if idle >= limit and not self.inflight and not self.stream_open:
                self.end_reason = "idle_timeout"
                self.sr.terminate("idle_timeout")
                return
            await trio.sleep(max(1.0, limit - idle))

    async def end(self, reason: str) -> None:
        """End the session (DELETE, shutdown): in-flight calls are cancelled, the upstream closed."""
        if not self.end_reason:
            self.end_reason = reason
        self.sr.terminate(reason)
        with trio.move_on_after(10) as scope:
            scope.shield = True
            await self._done.wait()

    async def _close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        self._on_end(self)
        for call in list(self.inflight.values()):
            call.cancel(reason if reason in ("token_expired", "revoked", "session_max", "shutdown")
                        else "client_disconnected")
        self._outbox_send.close()
        try:
            await self.upstream.aclose()
        except Exception:
            log.exception("closing the upstream of MCP session %s failed", self.sr.session.id)
        await self.sr.end(reason)
        self._done.set()

    def touch(self) -> None:
        self.last_active = time.monotonic()

    # -- initialize -----------------------------------------------------------------------------------------
    async def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        """The handshake with the server on the agent's behalf; returns the ``initialize`` result for the
        agent.  The agent's capabilities are passed on without those gw will not relay."""
        from .sdk import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

        asked = params.get("protocolVersion")
        version = asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        capabilities = dict(params.get("capabilities") or {})
        allowed = set(self.options.server_requests)
        for kind in SERVER_REQUESTS:
            if kind not in allowed:
                capabilities.pop(kind, None)
        forwarded = {"protocolVersion": version, "capabilities": capabilities,
                     "clientInfo": params.get("clientInfo") or {"name": "gw", "version": "0"}}
        reply = await self.upstream.call(jsonrpc.request(self.upstream.new_id(), "initialize", forwarded))
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise SessionError(jsonrpc.UPSTREAM_ERROR, "the MCP server refused to initialize: "
                               f"{str(err.get('message'))[:300]}")
        result = reply.get("result")
        if not isinstance(result, dict) or result.get("protocolVersion") not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise SessionError(jsonrpc.UPSTREAM_ERROR, "the MCP server answered initialize with a protocol "
                               f"version gw does not speak ({str((result or {}).get('protocolVersion'))[:40]}); "
                               f"gw speaks {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}")
        self.protocol_version = result["protocolVersion"]
        self.upstream.negotiated(self.protocol_version)
        await self.upstream.send(jsonrpc.notification("notifications/initialized", {}))
        await self.upstream.listen()
        return result

    # -- agent requests -------------------------------------------------------------------------------------
    async def request(self, msg: dict[str, Any], reply: Reply, watch: Callable[[Call], Awaitable[None]] | None
                      ) -> dict[str, Any]:
        """Serve one agent request; returns the JSON-RPC message answering it."""
        self.touch()
        method = msg["method"]
        client_id = msg["id"]
        params = msg.get("params") or {}
        if client_id in self.inflight:
            return jsonrpc.error(client_id, jsonrpc.INVALID_REQUEST, f"request id {client_id!r} is already in "
                                 "use by a request of this session that has not been answered")
        call = Call(client_id, reply, jsonrpc.progress_token(params))
        self.inflight[client_id] = call
        if call.token is not None:
            self._by_token[call.token] = call
        try:
            async with trio.open_nursery() as nursery:
                if watch is not None:
                    nursery.start_soon(watch, call)
                try:
                    with call.scope:
                        answer = await self._dispatch(method, params, call, nursery)
                except SessionError as e:
                    answer = jsonrpc.error(client_id, e.code, str(e), e.data)
                except ResultTooLarge as e:
                    answer = jsonrpc.error(client_id, jsonrpc.LIMIT_EXCEEDED, str(e))
                except UpstreamFailed as e:
                    answer = jsonrpc.error(client_id, jsonrpc.UPSTREAM_ERROR, str(e))
                else:
                    if call.scope.cancelled_caught:
                        answer = jsonrpc.error(client_id, jsonrpc.INTERNAL_ERROR, "the request was cancelled "
                                               f"({call.cancel_reason or 'session ended'})")
                nursery.cancel_scope.cancel()
            return answer
        finally:
            self.inflight.pop(client_id, None)
            if call.token is not None and self._by_token.get(call.token) is call:
                del self._by_token[call.token]
            self.touch()

    async def _dispatch(self, method: str, params: dict[str, Any], call: Call, nursery: trio.Nursery
                        ) -> dict[str, Any]:
        cid = call.client_id
        if method == "ping":
            return jsonrpc.result(cid, {})
        if method == "tools/list":
            return jsonrpc.result(cid, {"tools": await self.advertised_tools(params)})
        if method == "tools/call":
            return await self._command_call(call, "tools/call", params, nursery)
        if method == "resources/read":
            return await self._command_call(call, "resources/read", params, nursery)
        if method == "prompts/get":
            return await self._command_call(call, "prompts/get", params, nursery)
        if method in RELAYED:
            return await self._relay(call, method, params)
        if method == "initialize":
            raise SessionError(jsonrpc.INVALID_REQUEST, "this MCP session is already initialized; to start "
                               "another, send initialize without an Mcp-Session-Id header")
        raise SessionError(jsonrpc.METHOD_NOT_FOUND, f"gw does not relay the method {method[:80]!r}; it relays "
                           "tools, resources, prompts, completion, logging/setLevel and ping")

    async def _relay(self, call: Call, method: str, params: dict[str, Any]) -> dict[str, Any]:
        upstream_id = self.upstream.new_id()
        call.upstream_id = upstream_id
        answer: dict[str, Any] | None = None
        async with aclosing(self.upstream.request(jsonrpc.request(upstream_id, method, params or None))) as msgs:
            async for msg in msgs:
                if jsonrpc.is_response(msg) and msg.get("id") == upstream_id:
                    answer = msg
                    break
                await self._during(msg, call, None)
        assert answer is not None
        out = dict(answer)
        out["id"] = call.client_id
        if "error" in out and isinstance(out["error"], dict):
            out["error"] = {"code": out["error"].get("code", jsonrpc.UPSTREAM_ERROR),
                            "message": str(out["error"].get("message", ""))[:2000]}
        return out

    # -- tools ----------------------------------------------------------------------------------------------
    async def _server_tools(self) -> dict[str, dict[str, Any]]:
        """Every tool the server lists now (all pages), validated with the SDK's model; a name listed twice
        is dropped (which definition would the agent's model have read?)."""
        from . import sdk

        found: dict[str, dict[str, Any]] = {}
        doubled: set[str] = set()
        cursor: Any = None
        for _ in range(MAX_TOOL_PAGES):
            params = {"cursor": cursor} if cursor else None
            reply = await self.upstream.call(jsonrpc.request(self.upstream.new_id(), "tools/list", params))
            result = reply.get("result")
            if not isinstance(result, dict):
                err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
                raise SessionError(jsonrpc.UPSTREAM_ERROR, "the MCP server did not list its tools: "
                                   f"{str(err.get('message'))[:300]}")
            for tool in result.get("tools") or []:
                try:
                    sdk.Tool.model_validate(tool, by_name=False)
                except ValidationError:
                    log.warning("MCP session %s: the server listed a malformed tool; it is not offered",
                                self.sr.session.id)
                    continue
                name = tool["name"]
                if name in found:
                    doubled.add(name)
                found[name] = tool
            cursor = result.get("nextCursor")
            if not cursor:
                break
        for name in doubled:
            log.warning("MCP session %s: the server listed tool %r twice; it is not offered", self.sr.session.id,
                        name)
            found.pop(name, None)
        return found

    async def refresh_tools(self) -> dict[str, dict[str, Any]]:
        async with self._tools_lock:
            tools = await self._server_tools()
            hidden = set()
            for name, tool in tools.items():
                if not await self.pins.check(self.listener, tool):
                    hidden.add(name)
            self.tools, self.hidden_by_pin = tools, hidden
            return tools

    def denied_outright(self, tool: dict[str, Any]) -> Verdict | None:
        """The refusal policy gives this identity for every call of ``tool``, whatever its arguments."""
        spec = classify.tool_call(self.options, tool["name"], {}, tool)
        probe = Command(self.sr.session, 0, spec.text, classify.LANGUAGE, spec.kind, spec.verb, (), spec.flags)
        try:
            for _stage, verdict in self.sr.listener.pipeline.explain(probe):
                if verdict is not None and verdict.decision is Decision.DENY:
                    return verdict
        except Exception:  # a stage that cannot judge: not offered (fail closed)
            log.exception("MCP session %s: a stage failed to judge tool %r", self.sr.session.id, tool["name"])
            return Verdict.deny("gw could not judge this tool", code=DenyCode.INTERNAL)
        return None

    async def advertised_tools(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if params.get("cursor"):
            return []  # gw lists every tool in one page; there is no next page
        tools = await self.refresh_tools()
        return [tool for name, tool in tools.items()
                if name not in self.hidden_by_pin and self.denied_outright(tool) is None]

    async def _tool(self, name: str) -> dict[str, Any]:
        tools = self.tools
        if tools is None or name not in tools:
            tools = await self.refresh_tools()
        tool = tools.get(name)
        if tool is None:
            raise SessionError(jsonrpc.INVALID_PARAMS, f"the MCP server offers no tool named {name[:80]!r} "
                               "(tools/list shows the tools you may call)")
        if name in self.hidden_by_pin:
            if await self.pins.check(self.listener, tool):
                self.hidden_by_pin.discard(name)
            else:
                raise SessionError(jsonrpc.TOOL_CHANGED, f"the definition of tool {name!r} changed since the "
                                   "gateway operator accepted it; gw refuses it until they review the change "
                                   f"(gw mcp tools show {self.listener} {name}; gw mcp tools accept)")
        return tool

    # -- commands -------------------------------------------------------------------------------------------
    async def _command_call(self, call: Call, method: str, params: dict[str, Any], nursery: trio.Nursery
                            ) -> dict[str, Any]:
        from . import sdk

        opts = self.options
        if opts.max_calls is not None and self.calls >= opts.max_calls:
            raise SessionError(jsonrpc.LIMIT_EXCEEDED, f"this MCP session made {self.calls} calls, the most this "
                               f"listener allows (max_calls); start a new session if you need more")
        named: dict[str, str | None] = {}
        try:
            if method == "tools/call":
                p = sdk.CallToolRequestParams.model_validate(params, by_name=False)
                tool = await self._tool(p.name)
                spec = classify.tool_call(opts, p.name, p.arguments, tool)
                named = classify.named_params(p.arguments)
            elif method == "resources/read":
                r = sdk.ReadResourceRequestParams.model_validate(params, by_name=False)
                spec = classify.resource_read(str(r.uri))
            else:
                g = sdk.GetPromptRequestParams.model_validate(params, by_name=False)
                spec = classify.prompt_get(g.name, g.arguments)
                named = classify.named_params(g.arguments)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "params"
            raise SessionError(jsonrpc.INVALID_PARAMS, f"invalid {method} params ({where}: {first['msg']})") \
                from None
        self.calls += 1
        sr = self.sr
        cmd = sr.command(spec.text, language=classify.LANGUAGE, kind=spec.kind, verb=spec.verb,
                         objects=spec.objects, flags=spec.flags,
                         attributes={"method": method, "named_params": named, "mcp_session": self.id[:8]})
        request_id = f"{sr.session.id}-{cmd.seq}"
        outcome = Outcome(status="error")
        context = CallContext(self, call, nursery)
        run: CommandRun | None = None
        try:
            run = await sr.decide(cmd, context)
            verdict = run.verdict
            context.stop()
            if not verdict.allowed:
                outcome.status = "denied"
                outcome.error_code = verdict.code.value if verdict.code else "policy"
                outcome.error_message = verdict.reason
                code = _DENY_CODES.get(verdict.code or DenyCode.POLICY, jsonrpc.POLICY_DENIED)
                return jsonrpc.error(call.client_id, code, verdict.reason or "gw refused this call by policy",
                                     {"reason": outcome.error_code, "rule": verdict.rule or None,
                                      "stage": verdict.stage or None, "request_id": request_id,
                                      "approval_id": verdict.request_id})
            return await self._forward(call, run, method, params, outcome, request_id)
        except trio.Cancelled:
            outcome.status = "cancelled"
            outcome.error_message = call.cancel_reason or "cancelled"
            raise
        except SessionError as e:
            outcome.error_code = outcome.error_code or "refused"
            outcome.error_message = str(e)
            raise
        except ResultTooLarge as e:
            outcome.error_code, outcome.error_message = "result_too_large", str(e)
            raise
        except UpstreamFailed as e:
            outcome.error_code, outcome.error_message = "upstream", str(e)
            raise
        finally:
            context.stop()
            outcome.notices.extend(context.notices)
            if run is not None:
                with trio.CancelScope(shield=True):
                    await run.complete(outcome)

    async def _forward(self, call: Call, run: CommandRun, method: str, params: dict[str, Any],
                       outcome: Outcome, request_id: str) -> dict[str, Any]:
        request_filter = run.stream(Channel.REQUEST_BODY, "application/json")
        if request_filter is not None:
            request_filter.feed(jsonrpc.dumps({"method": method, "params": params}))
            request_filter.finish()
        masker = ContentMasker(run)
        upstream_id = self.upstream.new_id()
        call.upstream_id = upstream_id
        answer: dict[str, Any] | None = None
        async with aclosing(self.upstream.request(jsonrpc.request(upstream_id, method, params))) as msgs:
            async for msg in msgs:
                if jsonrpc.is_response(msg) and msg.get("id") == upstream_id:
                    answer = msg
                    break
                await self._during(msg, call, masker)
        assert answer is not None
        try:
            if isinstance(answer.get("error"), dict):
                error = masker.error(answer["error"])
                outcome.error_code = str(error.get("code"))
                outcome.error_message = str(error.get("message", ""))[:500]
                return jsonrpc.error(call.client_id, int(error.get("code") or jsonrpc.UPSTREAM_ERROR)
                                     if isinstance(error.get("code"), int) else jsonrpc.UPSTREAM_ERROR,
                                     str(error.get("message", ""))[:4000], error.get("data"))
            result = answer.get("result")
            if not isinstance(result, dict):
                raise SessionError(jsonrpc.UPSTREAM_ERROR, "the MCP server answered without a result")
            size = len(jsonrpc.dumps(result))
            outcome.notes["result_bytes"] = size
            if size > self.options.max_result_size:
                outcome.error_code = "result_too_large"
                raise SessionError(jsonrpc.LIMIT_EXCEEDED, f"the answer is {size} bytes; this listener passes "
                                   f"at most {self.options.max_result_size} (max_result_size). Ask for less "
                                   "(filters, paging)", {"request_id": request_id})
            if method == "tools/call":
                masked = masker.tool_result(result)
                is_error = result.get("isError") is True
                outcome.notes["is_error"] = is_error
                if is_error:
                    outcome.status, outcome.error_code = "error", "tool_error"
                    texts = [b.get("text") for b in masked.get("content") or []
                             if isinstance(b, dict) and isinstance(b.get("text"), str)]
                    outcome.error_message = " ".join(texts)[:500]
                else:
                    outcome.status = "ok"
            elif method == "resources/read":
                masked = masker.resource_result(result)
                outcome.status = "ok"
            else:
                masked = masker.prompt_result(result)
                outcome.status = "ok"
            outcome.tag = method
            return jsonrpc.result(call.client_id, masked)
        except MaskFailed as e:
            outcome.status, outcome.error_code, outcome.error_message = "error", "mask_failed", str(e)
            return jsonrpc.error(call.client_id, jsonrpc.MASK_FAILED, str(e), {"request_id": request_id})

    # -- what the server sends ------------------------------------------------------------------------------
    async def _during(self, msg: dict[str, Any], call: Call, masker: ContentMasker | None) -> None:
        """A message the server sent while answering ``call``."""
        if jsonrpc.is_request(msg):
            await self._server_request(msg, call)
            return
        if not jsonrpc.is_notification(msg):
            return
        method = msg.get("method")
        if method == "notifications/progress":
            if call.token is None or not call.reply.can_stream:
                return
            params = dict(msg.get("params") or {})
            params["progressToken"] = call.token
            relayed = {"jsonrpc": "2.0", "method": method, "params": params}
            if masker is not None:
                relayed = masker.notification(relayed)
            elif "message" in params:
                params.pop("message")
            await self._send_to_call(call, relayed)
            return
        if method == "notifications/message":
            if masker is not None and call.reply.can_stream:
                await self._send_to_call(call, masker.notification(msg))
            return
        await self._from_server(msg)

    async def _send_to_call(self, call: Call, msg: dict[str, Any]) -> None:
        try:
            await call.reply.message(msg)
        except ClientGone:
            call.cancel("client_disconnected")

    async def _from_server(self, msg: dict[str, Any]) -> None:
        """A message the server sent on its own (GET stream, stdio)."""
        if jsonrpc.is_request(msg):
            await self._server_request(msg, None)
            return
        if not jsonrpc.is_notification(msg):
            return
        method = msg.get("method")
        if method == "notifications/progress":
            token = (msg.get("params") or {}).get("progressToken")
            call = self._by_token.get(token) if isinstance(token, (str, int)) else None
            if call is not None:
                await self._during(msg, call, None)
            return
        if method == "notifications/tools/list_changed":
            self.tools = None
        if method in RELAYED_NOTIFICATIONS:
            self._post(msg)

    def _post(self, msg: dict[str, Any]) -> None:
        try:
            self._outbox_send.send_nowait(msg)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            log.debug("MCP session %s: no room for a message to the agent; dropped", self.sr.session.id)

    async def _server_request(self, msg: dict[str, Any], call: Call | None) -> None:
        method = str(msg.get("method"))
        kinds = [k for k, methods in SERVER_REQUESTS.items() if method in methods]
        allowed = bool(kinds) and kinds[0] in self.options.server_requests
        if not allowed or len(self._server_requests) >= MAX_PENDING_SERVER_REQUESTS:
            why = (f"gw refused the server's {method[:60]} request: the listener {self.listener!r} does not relay "
                   "server-initiated requests of this kind to the agent (server_requests)") if not allowed \
                else "gw refused the server's request: too many are waiting for the agent"
            log.info("MCP session %s: %s", self.sr.session.id, why)
            await self.upstream.send(jsonrpc.error(msg.get("id"), jsonrpc.METHOD_NOT_FOUND
                                                   if not allowed else jsonrpc.LIMIT_EXCEEDED, why))
            return
        self._server_request_seq += 1
        gw_id = f"gw-{self._server_request_seq}"
        self._server_requests[gw_id] = msg.get("id")
        relayed = jsonrpc.request(gw_id, method, msg.get("params"))
        if call is not None and call.reply.can_stream:
            await self._send_to_call(call, relayed)
        else:
            self._post(relayed)

    # -- agent notifications and responses --------------------------------------------------------------------
    async def notification(self, msg: dict[str, Any]) -> None:
        self.touch()
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "notifications/initialized":
            return  # gw sent its own when it initialized the server
        if method == "notifications/cancelled":
            call = self.inflight.get(params.get("requestId"))
            if call is not None:
                call.cancel("cancel_request")
                if call.upstream_id is not None:
                    await self.upstream.send(jsonrpc.notification("notifications/cancelled", {
                        "requestId": call.upstream_id, "reason": str(params.get("reason") or "")[:200]}))
            return
        if method == "notifications/roots/list_changed" and "roots" in self.options.server_requests:
            await self.upstream.send(jsonrpc.notification(method, {}))
            return
        if method in ("notifications/progress", "notifications/roots/list_changed"):
            return
        raise SessionError(jsonrpc.METHOD_NOT_FOUND, f"gw does not relay the notification {method[:80]!r}")

    async def response(self, msg: dict[str, Any]) -> None:
        """The agent answers a server request gw relayed."""
        self.touch()
        gw_id = msg.get("id")
        if not isinstance(gw_id, str) or gw_id not in self._server_requests:
            raise SessionError(jsonrpc.INVALID_REQUEST, "this answers no request gw relayed to you")
        server_id = self._server_requests.pop(gw_id)
        out = dict(msg)
        out["id"] = server_id
        await self.upstream.send(out)

    # -- the agent's GET stream ---------------------------------------------------------------------------------
    async def next_outgoing(self) -> dict[str, Any] | None:
        """The next message for the agent's GET stream; None when the session ended."""
        try:
            return await self._outbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
