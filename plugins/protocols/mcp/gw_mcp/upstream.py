"""The MCP server behind a listener: a Streamable HTTP endpoint or a stdio process gw starts per session.

Both look the same to a session (:class:`Upstream`): :meth:`Upstream.request` sends one JSON-RPC request and
yields every message the server sends about it until its response; :meth:`Upstream.send` delivers a
notification or a response to one of the server's own requests; messages the server sends on its own
(notifications, server-initiated requests) go to the session's ``on_message`` callback.

Ids are gw's own towards the server (a counter), so an agent's ids can never collide with the requests gw
makes itself (the ``tools/list`` it needs to classify a call); the session maps them back.

Credentials: an HTTP server gets the configured headers (the agent's never); a stdio server gets the
configured ``env`` plus a few harmless variables of gw's own (:data:`~gw_mcp.options.INHERITED_ENV`), never
the rest of gw's environment.  Every message from the server is scrubbed of those secret values before gw
parses it, in every spelling the shared HTTP proxy's scrubber knows (escapes, UTF-16 ...).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import trio
from gw_httpproxy.codec import Data, EndOfMessage, Response
from gw_httpproxy.headers import header_value
from gw_httpproxy.scrub import SecretForms
from gw_httpproxy.upstream import UpstreamClosed, UpstreamConnection, UpstreamError, UpstreamTarget

from . import jsonrpc, sse

log = logging.getLogger("gw.mcp")

OnMessage = Callable[[dict[str, Any]], Awaitable[None]]


class UpstreamFailed(Exception):
    """The server could not be reached, misbehaved or went away; the message is for the agent (no
    credential in it)."""


class ResultTooLarge(UpstreamFailed):
    """The server sent a message larger than gw reads (``max_result_size`` and its envelope)."""


def scrub(forms: SecretForms | None, raw: bytes) -> bytes:
    if forms is None:
        return raw
    out = forms.scrub(raw)
    return out if isinstance(out, bytes) else bytes(out)


def _decode(raw: bytes, forms: SecretForms | None, max_size: int, where: str) -> dict[str, Any]:
    if len(raw) > max_size:
        raise ResultTooLarge(f"the MCP server sent a message larger than {max_size} bytes; this listener passes "
                             "answers up to max_result_size. Ask for less (filters, paging)")
    try:
        msg = json.loads(scrub(forms, raw))
    except (ValueError, RecursionError):
        raise UpstreamFailed(f"the MCP server sent {where} that is not JSON") from None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise UpstreamFailed(f"the MCP server sent {where} that is not a JSON-RPC 2.0 message")
    return msg


class Upstream:
    """What a session talks to.  Subclasses: :class:`HttpUpstream`, :class:`StdioUpstream`."""

    def __init__(self, on_message: OnMessage, *, secrets: SecretForms | None, max_message: int) -> None:
        self.on_message = on_message
        self.secrets = secrets
        self.max_message = max_message
        self.protocol_version = ""
        self._next_id = 0

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def start(self, nursery: trio.Nursery) -> None:
        """Connect (start the process); background readers run in ``nursery``."""

    def request(self, msg: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError

    async def send(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    def negotiated(self, protocol_version: str) -> None:
        """The server accepted ``initialize``: later requests carry its protocol version (HTTP header)."""
        self.protocol_version = protocol_version

    async def listen(self) -> None:
        """Start receiving what the server sends on its own (the HTTP GET stream), after ``initialized``."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """:meth:`request` for gw's own requests: the response, with other messages handed to
        ``on_message``."""
        async with aclosing(self.request(msg)) as replies:
            async for reply in replies:
                if jsonrpc.is_response(reply) and reply.get("id") == msg["id"]:
                    return reply
                await self.on_message(reply)
        raise UpstreamFailed("the MCP server ended its answer without a response")


# -- Streamable HTTP ----------------------------------------------------------------------------------------------


class HttpUpstream(Upstream):
    """A Streamable HTTP MCP server: one POST per message, JSON or SSE answers, an optional GET stream."""

    def __init__(self, target: UpstreamTarget, injected: list[tuple[str, str]], on_message: OnMessage, *,
                 secrets: SecretForms | None, max_message: int) -> None:
        super().__init__(on_message, secrets=secrets, max_message=max_message)
        self.target = target
        self.injected = [(n.lower().encode("ascii"), v.encode("latin-1")) for n, v in injected]
        self.session_id: bytes | None = None
        self._idle: list[UpstreamConnection] = []
        self._open: set[UpstreamConnection] = set()
        self._nursery: trio.Nursery | None = None
        self._closed = False

    @property
    def where(self) -> str:
        return self.target.describe()

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def _headers(self, *, body: int | None, accept: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"host", self.target.host_header.encode("ascii")), (b"accept", accept)]
        if body is not None:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(body).encode())]
        if self.session_id is not None:
            headers.append((b"mcp-session-id", self.session_id))
        if self.protocol_version:
            headers.append((b"mcp-protocol-version", self.protocol_version.encode("ascii")))
        headers.extend(self.injected)
        return headers

    async def _connection(self) -> UpstreamConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        try:
            conn = await UpstreamConnection.open(self.target)
        except UpstreamError as e:
            raise UpstreamFailed(str(e)) from None
        self._open.add(conn)
        return conn

    async def _release(self, conn: UpstreamConnection, reusable: bool) -> None:
        if reusable and not self._closed and conn.finish_cycle():
            self._idle.append(conn)
            return
        self._open.discard(conn)
        await conn.aclose()

    async def _post(self, msg: dict[str, Any]) -> tuple[UpstreamConnection, Response]:
        body = jsonrpc.dumps(msg)
        path = (self.target.base_path or "/").encode("ascii")
        retried = False
        while True:
            conn = await self._connection()
            reused = conn.completed > 0
            try:
                await conn.send_request(b"POST", path, self._headers(body=len(body),
                                                                     accept=b"application/json, text/event-stream"))
                await conn.send_data(body)
                await conn.send_end()
                head = await conn.response_head()
            except UpstreamClosed as e:
                await self._release(conn, False)
                if reused and e.before_response and not retried:
                    retried = True
                    continue
                raise UpstreamFailed(str(e)) from None
            except UpstreamError as e:
                await self._release(conn, False)
                raise UpstreamFailed(str(e)) from None
            if type(head) is not Response:
                await self._release(conn, False)
                raise UpstreamFailed(f"the MCP server {self.where} switched protocols on a POST")
            return conn, head

    async def _read_body(self, conn: UpstreamConnection, limit: int) -> bytes:
        body = bytearray()
        while True:
            try:
                event = await conn.next_event()
            except UpstreamError as e:
                raise UpstreamFailed(str(e)) from None
            if type(event) is Data:
                body += event.data
                if len(body) > limit:
                    raise ResultTooLarge(f"the MCP server sent a message larger than {limit} bytes; this "
                                         "listener passes answers up to max_result_size. Ask for less")
            elif type(event) is EndOfMessage:
                return bytes(body)

    def _failure(self, status: int, body: bytes, request_id: Any) -> dict[str, Any]:
        """A JSON-RPC error for a non-2xx answer: the server's own error when it sent one."""
        try:
            msg = json.loads(scrub(self.secrets, body))
            if isinstance(msg, dict) and isinstance(msg.get("error"), dict):
                msg["id"] = request_id
                return msg
        except (ValueError, RecursionError):
            pass
        if status == 404 and self.session_id is not None:
            text = "the MCP server ended its session (404); start a new MCP session (initialize)"
        else:
            text = f"the MCP server {self.where} answered HTTP {status}"
        return jsonrpc.error(request_id, jsonrpc.UPSTREAM_ERROR, text)

    async def request(self, msg: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        conn, head = await self._post(msg)
        reusable = False
        try:
            content_type = (header_value(head.headers, b"content-type") or b"").split(b";")[0].strip().lower()
            if msg.get("method") == "initialize" and head.status < 300:
                sid = header_value(head.headers, b"mcp-session-id")
                if sid is not None:
                    if not sid or len(sid) > 1024 or any(c < 0x21 or c > 0x7E for c in sid):
                        raise UpstreamFailed("the MCP server sent a malformed Mcp-Session-Id")
                    self.session_id = sid
            if head.status >= 300 or head.status == 202:
                body = await self._read_body(conn, self.max_message)
                reusable = True
                if head.status == 202:
                    raise UpstreamFailed("the MCP server accepted a request without answering it (202)")
                yield self._failure(head.status, body, msg["id"])
                return
            if content_type == b"application/json":
                body = await self._read_body(conn, self.max_message)
                reusable = True
                yield _decode(body, self.secrets, self.max_message, "an answer")
                return
            if content_type != b"text/event-stream":
                raise UpstreamFailed(f"the MCP server answered with {content_type.decode('latin-1')!r}, neither "
                                     "JSON nor an event stream")
            decoder = sse.EventDecoder(self.max_message)
            while True:
                try:
                    event = await conn.next_event()
                except UpstreamError as e:
                    raise UpstreamFailed(str(e)) from None
                if type(event) is EndOfMessage:
                    reusable = True
                    raise UpstreamFailed("the MCP server ended its event stream without a response")
                if type(event) is not Data:
                    continue
                try:
                    events = decoder.feed(event.data)
                except sse.EventTooLarge as e:
                    raise ResultTooLarge(f"the MCP server sent {e}; this listener passes answers up to "
                                         "max_result_size. Ask for less (filters, paging)") from None
                for ev in events:
                    if ev.event != "message" or not ev.data.strip():
                        continue
                    reply = _decode(ev.data.encode("utf-8"), self.secrets, self.max_message, "an event")
                    yield reply
                    if jsonrpc.is_response(reply) and reply.get("id") == msg["id"]:
                        return  # the rest of the stream (if any) is dropped with the connection
        finally:
            with trio.CancelScope(shield=True):
                await self._release(conn, reusable)

    async def send(self, msg: dict[str, Any]) -> None:
        conn, head = await self._post(msg)
        reusable = False
        try:
            await self._read_body(conn, self.max_message)
            reusable = True
            if head.status >= 300:
                log.info("MCP server %s answered HTTP %d to a %s", self.where, head.status,
                         msg.get("method") or "response")
        finally:
            with trio.CancelScope(shield=True):
                await self._release(conn, reusable)

    async def listen(self) -> None:
        if self._nursery is not None and self.session_id is not None:
            self._nursery.start_soon(self._get_stream)

    async def _get_stream(self) -> None:
        """The server's own messages (GET stream); reopened a few times when it drops, given up after."""
        failures = 0
        path = (self.target.base_path or "/").encode("ascii")
        while not self._closed and failures < 3:
            try:
                conn = await UpstreamConnection.open(self.target)
            except UpstreamError:
                failures += 1
                await trio.sleep(1)
                continue
            self._open.add(conn)
            try:
                await conn.send_request(b"GET", path, self._headers(body=None, accept=b"text/event-stream"))
                await conn.send_end()
                head = await conn.response_head()
                if type(head) is not Response or head.status != 200:
                    return  # 405: the server offers no stream
                decoder = sse.EventDecoder(self.max_message)
                while True:
                    event = await self._stream_event(conn)
                    if type(event) is EndOfMessage:
                        break
                    if type(event) is Data:
                        for ev in decoder.feed(event.data):
                            if ev.event == "message" and ev.data.strip():
                                await self.on_message(_decode(ev.data.encode("utf-8"), self.secrets,
                                                              self.max_message, "an event"))
                failures = 0
            except (UpstreamError, UpstreamFailed, sse.EventTooLarge) as e:
                log.info("MCP server %s: the GET stream ended: %s", self.where, e)
                failures += 1
            finally:
                self._open.discard(conn)
                with trio.CancelScope(shield=True):
                    await conn.aclose()
            await trio.sleep(0.5)

    @staticmethod
    async def _stream_event(conn: UpstreamConnection) -> Any:
        """The next event of a long-lived stream: no read timeout (the server may say nothing for hours)."""
        while True:
            try:
                return await conn.next_event()
            except UpstreamError as e:
                if e.reason != "upstream_timeout":
                    raise
                # Silence is normal on the GET stream; keep waiting.

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(3) as scope:
            scope.shield = True
            if self.session_id is not None:
                try:
                    conn = await UpstreamConnection.open(self.target)
                    path = (self.target.base_path or "/").encode("ascii")
                    await conn.send_request(b"DELETE", path, self._headers(body=None, accept=b"*/*"))
                    await conn.send_end()
                    await conn.response_head()
                    await conn.aclose()
                except (UpstreamError, OSError):
                    pass
        for conn in list(self._open):
            await conn.aclose()
        self._open.clear()
        self._idle.clear()


# -- stdio --------------------------------------------------------------------------------------------------------


def stdio_environment(env: Mapping[str, str], inherited: tuple[str, ...], base: Mapping[str, str]
                      ) -> dict[str, str]:
    out = {name: base[name] for name in inherited if name in base}
    out.update(env)
    return out


class StdioUpstream(Upstream):
    """A server gw starts for one session: newline-delimited JSON-RPC on its stdin and stdout."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str | None, on_message: OnMessage, *,
                 secrets: SecretForms | None, max_message: int, read_timeout: float) -> None:
        super().__init__(on_message, secrets=secrets, max_message=max_message)
        self.command = command
        self.env = env
        self.cwd = cwd
        self.read_timeout = read_timeout
        self.process: trio.Process | None = None
        self._waiters: dict[Any, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._write_lock = trio.Lock()
        self._dead: str | None = None
        self._too_large = False

    @property
    def where(self) -> str:
        return os.path.basename(self.command[0])

    async def start(self, nursery: trio.Nursery) -> None:
        try:
            self.process = await trio.lowlevel.open_process(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, cwd=self.cwd, start_new_session=True)
        except OSError as e:
            raise UpstreamFailed(f"gw could not start the MCP server {self.where!r}: {e.strerror or e}") from None
        nursery.start_soon(self._read_stdout)
        nursery.start_soon(self._read_stderr)

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        buffer = bytearray()
        try:
            while True:
                chunk = await self.process.stdout.receive_some(256 * 1024)
                if not chunk:
                    break
                buffer += chunk
                while (end := buffer.find(b"\n")) != -1:
                    line = bytes(buffer[:end]).strip()
                    del buffer[:end + 1]
                    if line:
                        await self._deliver(line)
                if len(buffer) > self.max_message:
                    self._too_large = True
                    self._fail(f"the MCP server {self.where!r} wrote a message larger than {self.max_message} "
                               "bytes; this listener passes answers up to max_result_size, and the server's "
                               "session was ended. Ask for less (filters, paging) in a new session")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except UpstreamFailed as e:
            self._fail(str(e))
            return
        self._fail(f"the MCP server {self.where!r} exited")

    async def _deliver(self, line: bytes) -> None:
        msg = _decode(line, self.secrets, self.max_message, "a line")
        if jsonrpc.is_response(msg):
            waiter = self._waiters.get(msg.get("id"))
            if waiter is not None:
                try:
                    waiter.send_nowait(msg)
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            return
        await self.on_message(msg)

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        try:
            while chunk := await self.process.stderr.receive_some(64 * 1024):
                text = scrub(self.secrets, bytes(chunk)).decode("utf-8", "replace").rstrip()
                if text:
                    log.debug("MCP server %s: %s", self.where, text[:2000])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _fail(self, why: str) -> None:
        if self._dead is None:
            self._dead = why
            log.info("%s", why)
        for waiter in list(self._waiters.values()):
            waiter.close()
        self._waiters.clear()

    async def _write(self, msg: dict[str, Any]) -> None:
        if self._dead is not None:
            raise UpstreamFailed(self._dead)
        assert self.process is not None and self.process.stdin is not None
        data = jsonrpc.dumps(msg) + b"\n"
        async with self._write_lock:
            try:
                await self.process.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise UpstreamFailed(f"the MCP server {self.where!r} is not reading its input any more") from None

    async def request(self, msg: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiters[msg["id"]] = send
        try:
            await self._write(msg)
            try:
                with trio.fail_after(self.read_timeout):
                    reply = await receive.receive()
            except trio.EndOfChannel:
                error = ResultTooLarge if self._too_large else UpstreamFailed
                raise error(self._dead or f"the MCP server {self.where!r} went away") from None
            except trio.TooSlowError:
                raise UpstreamFailed(f"the MCP server {self.where!r} did not answer within "
                                     f"{self.read_timeout:g}s (upstream.read_timeout)") from None
            yield reply
        finally:
            self._waiters.pop(msg["id"], None)

    async def send(self, msg: dict[str, Any]) -> None:
        await self._write(msg)

    async def aclose(self) -> None:
        proc = self.process
        if proc is None:
            return
        self.process = None
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await trio.aclose_forcefully(proc.stdin)
            with trio.move_on_after(2):
                await proc.wait()
            if proc.returncode is None:
                proc.terminate()
                with trio.move_on_after(2):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
