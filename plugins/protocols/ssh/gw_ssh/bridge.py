"""The only module that runs asyncio: asyncssh's SSH transport on a dedicated event-loop thread, driven from trio.

gw is trio; asyncssh is asyncio-only.  trio-asyncio does not import on Python 3.14, so each listener starts
one asyncio event loop in a daemon thread (:class:`Bridge`) and keeps every asyncssh connection object there.
The trio side never touches them: it holds the handles this module returns (:class:`ClientConnection`,
:class:`ServerChannel`, :class:`UpstreamConnection`, :class:`UpstreamChannel`), whose ``async`` methods are
called from trio and whose events (:mod:`gw_ssh.events`) arrive on trio memory channels.

Crossing the thread boundary, both ways without blocking either loop:

* trio -> asyncio: :meth:`Bridge.run` schedules a coroutine on the loop
  (``asyncio.run_coroutine_threadsafe``) and waits for it with a :class:`trio.Event` that the future's
  done-callback sets through the trio token (``TrioToken.run_sync_soon``).  Cancelling the trio side cancels
  the asyncio task.
* asyncio -> trio, one-way (channel data, window changes, exit status ...): ``run_sync_soon`` puts the event on
  an unbounded trio memory channel.  Memory stays bounded by flow control: past :data:`PAUSE_AT` unconsumed
  bytes the asyncssh channel stops reading (so the SSH window closes and the peer waits); the trio side
  acknowledges what it consumed, and reading resumes below :data:`RESUME_AT`.
* asyncio -> trio, asking (authentication needs the identity providers, which are trio code):
  :meth:`Bridge.ask` starts the trio function in the connection's nursery and hands asyncssh an
  ``asyncio.Future`` that the trio task resolves with ``loop.call_soon_threadsafe``.

asyncssh lacks three hooks gw needs, so three methods of each server connection *instance* are wrapped when it
is made (:meth:`_GatewayServer.connection_made`): ``validate_public_key`` (to see the whole certificate --
principals, validity, extensions -- before asyncssh checks the signature), ``create_agent_listener`` and
``attach_x11_listener`` (to tell the client *why* agent and X11 forwarding are refused; they are also disabled
by option, so they stay refused whatever asyncssh version runs).  :func:`check_asyncssh` verifies at start-up
that these methods exist.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import logging
import math
import posixpath
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from ._asyncssh import Boolean, String, UInt32, asyncssh, decode_ssh_certificate
from .events import (
    AuthAnswer,
    Authenticator,
    ChannelClosedError,
    ChannelEvent,
    Closed,
    Data,
    Eof,
    ExitSignal,
    ExitStatus,
    HandshakeError,
    SessionRequest,
    SignalRequest,
    Terminal,
    UpstreamError,
    WindowChange,
)

log = logging.getLogger("gw.ssh")

T = TypeVar("T")

#: Unconsumed bytes of one channel after which asyncssh stops reading it (the peer's window closes).
PAUSE_AT = 512 * 1024
#: ... and below which reading resumes.
RESUME_AT = 128 * 1024

_REQUIRED_METHODS = ("validate_public_key", "create_agent_listener", "attach_x11_listener", "send_auth_banner")


def check_asyncssh() -> None:
    """Fail at start-up (not on the first client) if this asyncssh lacks a method gw wraps or calls."""
    missing = [m for m in _REQUIRED_METHODS if not callable(getattr(asyncssh.SSHServerConnection, m, None))]
    if not callable(getattr(asyncssh.SSHServerChannel, "_send_request", None)):
        missing.append("_send_request (of SSHServerChannel)")
    if missing:
        raise RuntimeError(f"asyncssh {asyncssh.__version__} lacks SSHServerConnection.{', '.join(missing)}; "
                           "gw-ssh needs asyncssh>=2.14 (pip install -U asyncssh)")


# ---------------------------------------------------------------------------------------------------------------
# The event loop thread and the calls across it
# ---------------------------------------------------------------------------------------------------------------


class Bridge:
    """One asyncio event loop in a daemon thread, and the calls between it and the trio run that started it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the SSH bridge is not started"
        return self._loop

    async def start(self) -> None:
        check_asyncssh()
        asyncssh_log = logging.getLogger("asyncssh")
        if asyncssh_log.level == logging.NOTSET:
            # asyncssh logs every channel request at INFO; gw logs what matters itself.
            asyncssh_log.setLevel(logging.WARNING)
        self._token = trio.lowlevel.current_trio_token()
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name=f"gw-ssh-{self.name}", daemon=True)
        self._thread.start()
        await trio.to_thread.run_sync(ready.wait)

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:
            pass
        await trio.to_thread.run_sync(self._thread.join, 5.0)
        self._thread = None

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From trio: run coroutine function ``fn(*args)`` on the asyncio loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(fn, *args), self.loop)
        done = trio.Event()
        token = self._token
        assert token is not None

        def wake(_: concurrent.futures.Future[T]) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From trio: call ``fn(*args)`` on the asyncio loop soon, without waiting."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the gateway is stopping
            pass

    def notify(self, fn: Callable[..., Any], *args: Any) -> None:
        """From asyncio: call ``fn(*args)`` on the trio thread soon, without waiting.  ``fn`` must not raise."""
        assert self._token is not None
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    def ask(self, nursery: trio.Nursery, fn: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
        """From asyncio: run trio coroutine function ``fn(*args)`` in ``nursery``; await the returned future."""
        loop = self.loop
        answer: asyncio.Future[T] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:
            if answer.done():
                return
            if ok:
                answer.set_result(value)
            else:
                answer.set_exception(value)

        async def runner() -> None:
            try:
                value = await fn(*args)
            except BaseException as e:
                loop.call_soon_threadsafe(resolve, False, asyncio.CancelledError() if isinstance(e, trio.Cancelled)
                                          else e)
                if not isinstance(e, Exception):
                    raise
                log.exception("gw ssh: %s failed", getattr(fn, "__name__", fn))
            else:
                loop.call_soon_threadsafe(resolve, True, value)

        def start() -> None:
            try:
                nursery.start_soon(runner)
            except RuntimeError:  # the nursery is closed: the connection is going away
                loop.call_soon_threadsafe(resolve, False, asyncio.CancelledError())

        self.notify(start)
        return answer


async def _as_coroutine(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


def _as_async(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    async def call(*args: Any) -> T:
        return fn(*args)
    return call


# ---------------------------------------------------------------------------------------------------------------
# Channels: asyncssh session callbacks (asyncio thread) + trio-side methods
# ---------------------------------------------------------------------------------------------------------------


class _Channel:
    """What server and upstream channels share.  Methods starting with ``_a_`` and the asyncssh callbacks run on
    the asyncio thread; the public ``async`` methods are called from trio."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._chan: Any = None
        self._to_trio, self._events = trio.open_memory_channel[ChannelEvent](math.inf)
        self._unconsumed = 0
        self._paused = False
        self._writable: asyncio.Event | None = None
        self._closed = False
        self._muted = False

    # -- asyncio side ---------------------------------------------------------------------------------------
    def _a_push(self, event: ChannelEvent) -> None:
        self.bridge.notify(self._t_deliver, event)

    def _t_deliver(self, event: ChannelEvent) -> None:  # runs on the trio thread
        try:
            self._to_trio.send_nowait(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _a_data(self, data: bytes, stderr: bool) -> None:
        self._unconsumed += len(data)
        if self._unconsumed > PAUSE_AT and not self._paused and self._chan is not None:
            self._paused = True
            self._chan.pause_reading()
        self._a_push(Data(bytes(data), stderr))

    def _a_consumed(self, n: int) -> None:
        self._unconsumed -= n
        if self._paused and self._unconsumed < RESUME_AT and self._chan is not None and not self._closed:
            self._paused = False
            self._chan.resume_reading()

    def _a_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._writable is not None:
            self._writable.set()
        self._a_push(Closed(str(exc) if exc else ""))

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.Event()
        self._writable.clear()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()

    async def _a_write(self, data: bytes, stderr: bool) -> None:
        if self._closed or self._chan is None or self._chan.is_closing():
            raise ChannelClosedError("the channel is closed")
        try:
            if stderr:
                self._chan.write_stderr(data)
            else:
                self._chan.write(data)
        except (BrokenPipeError, OSError) as e:
            raise ChannelClosedError(str(e)) from None
        if self._writable is not None and not self._writable.is_set():
            await self._writable.wait()

    async def _a_call(self, method: str, *args: Any) -> None:
        if self._closed or self._chan is None:
            raise ChannelClosedError("the channel is closed")
        try:
            getattr(self._chan, method)(*args)
        except (BrokenPipeError, OSError) as e:
            raise ChannelClosedError(str(e)) from None

    def _a_close(self) -> None:
        if self._chan is not None and not self._closed:
            self._chan.close()

    # -- trio side ------------------------------------------------------------------------------------------
    async def receive(self) -> ChannelEvent:
        """The next event; :class:`Closed` (again and again) once the channel is gone.  After :meth:`mute`,
        only that."""
        while True:
            try:
                event = await self._events.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return Closed()
            if isinstance(event, Data):
                self.bridge.post(self._a_consumed, len(event.data))
            elif isinstance(event, Closed):
                self._to_trio.close()
            if not self._muted or isinstance(event, Closed):
                return event

    def mute(self) -> None:
        """gw is ending this channel: from now on nothing the peer sends is passed on (what is queued included),
        only the channel's end."""
        self._muted = True

    async def send(self, data: bytes, *, stderr: bool = False) -> None:
        """Write ``data`` (to stderr with ``stderr=True``); waits while the peer's window is full."""
        if data:
            await self.bridge.run(self._a_write, data, stderr)

    async def send_eof(self) -> None:
        await self.bridge.run(self._a_call, "write_eof")

    def close(self) -> None:
        self.bridge.post(self._a_close)


class ServerChannel(_Channel, asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """A session channel the client opened to gw."""

    def __init__(self, bridge: Bridge, server: _GatewayServer) -> None:
        super().__init__(bridge)
        self._server = server
        self._terminal: Terminal | None = None

    # -- asyncssh callbacks (asyncio thread) ----------------------------------------------------------------
    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.channel_closed(self)
        self._a_lost(exc)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        cols, rows, wpx, hpx = term_size
        self._terminal = Terminal(term_type, cols, rows, wpx, hpx, dict(term_modes))
        return True

    def shell_requested(self) -> bool:
        return self._a_start("shell")

    def exec_requested(self, command: str) -> bool:
        return self._a_start("exec", command=command)

    def subsystem_requested(self, subsystem: str) -> bool:
        return self._a_start("subsystem", subsystem=subsystem)

    def _a_start(self, kind: str, *, command: str | None = None, subsystem: str | None = None) -> bool:
        env: list[tuple[str, str]] = []
        for key, value in self._chan.get_environment().items():
            env.append((str(key), str(value)))
        self._a_push(SessionRequest(kind, command, subsystem, self._terminal, tuple(env),
                                    self._server.take_notices()))
        return True

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._a_data(data, False)

    def eof_received(self) -> bool:
        self._a_push(Eof())
        return True  # keep the channel half open: output still flows after the client's EOF

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._a_push(WindowChange(width, height, pixwidth, pixheight))

    def signal_received(self, signal: str) -> None:
        self._a_push(SignalRequest(signal))

    def break_received(self, msec: int) -> bool:
        return False

    def _a_exit(self, request: bytes, *args: bytes) -> None:
        """Send an exit request, then EOF, then close: the order OpenSSH's sshd uses.  A client multiplexing
        sessions over one connection (ControlMaster) reports a session's exit status only if it arrives
        before the channel's end of output."""
        chan = self._chan
        if self._closed or chan is None or chan.is_closing():
            raise ChannelClosedError("the channel is closed")
        chan._send_request(request, *args)
        chan.write_eof()
        chan.close()

    # -- trio side ------------------------------------------------------------------------------------------
    async def exit(self, status: int) -> None:
        """Send the exit status, EOF, and close the channel."""
        try:
            await self.bridge.run(_as_async(self._a_exit), b"exit-status", UInt32(status & 0xFF))
        except ChannelClosedError:
            pass

    async def exit_signal(self, signal: str, core_dumped: bool, message: str) -> None:
        try:
            await self.bridge.run(_as_async(self._a_exit), b"exit-signal", String(signal), Boolean(core_dumped),
                                  String(message), String("en"))
        except ChannelClosedError:
            pass


class UpstreamChannel(_Channel, asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """A session channel gw opened on the target."""

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def connection_lost(self, exc: Exception | None) -> None:
        self._a_lost(exc)

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._a_data(data, datatype == asyncssh.EXTENDED_DATA_STDERR)

    def eof_received(self) -> bool:
        self._a_push(Eof())
        return True

    def exit_status_received(self, status: int) -> None:
        self._a_push(ExitStatus(status))

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._a_push(ExitSignal(signal, core_dumped, msg))

    # -- trio side ------------------------------------------------------------------------------------------
    async def resize(self, change: WindowChange) -> None:
        try:
            await self.bridge.run(self._a_call, "change_terminal_size", change.cols, change.rows,
                                  change.width_px, change.height_px)
        except ChannelClosedError:
            pass

    async def signal(self, name: str) -> None:
        try:
            await self.bridge.run(self._a_call, "send_signal", name)
        except ChannelClosedError:
            pass


# ---------------------------------------------------------------------------------------------------------------
# The client's connection to gw
# ---------------------------------------------------------------------------------------------------------------


#: Why forwarding is refused, shown to clients.
BYPASS = "it would open a path to the target that bypasses the gateway's policy, audit and recording"


class _GatewayServer(asyncssh.SSHServer):
    """asyncssh's per-connection server callbacks (asyncio thread)."""

    def __init__(self, bridge: Bridge, auth: Authenticator, nursery: trio.Nursery, max_sessions: int,
                 max_auth_attempts: int) -> None:
        self.bridge = bridge
        self.auth = auth
        self.nursery = nursery
        self.max_sessions = max_sessions
        self.max_auth_attempts = max_auth_attempts
        self.conn: Any = None
        self.identity: Any = None
        self.username = ""
        self.failures = 0
        self.open_channels = 0
        self._notices: list[str] = []
        self._key_answers: dict[tuple[str, bytes], AuthAnswer] = {}
        self._bannered: set[str] = set()
        self._approved_key: Any = None
        self._approved_ca: Any = None
        self._channels_in, self.channels = trio.open_memory_channel[ServerChannel](math.inf)

    # -- connection -----------------------------------------------------------------------------------------
    def connection_made(self, conn: Any) -> None:
        self.conn = conn
        original = conn.validate_public_key

        async def validate_public_key(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
            return await self._validate_public_key(original, username, key_data, msg, signature)

        async def refuse_agent() -> bool:
            self._note(f"gw: agent forwarding (ssh -A) is refused on this gateway: {BYPASS}")
            return False

        async def refuse_x11(*_: Any) -> None:
            self._note(f"gw: X11 forwarding (ssh -X/-Y) is refused on this gateway: {BYPASS}")

        conn.validate_public_key = validate_public_key
        conn.create_agent_listener = refuse_agent
        conn.attach_x11_listener = refuse_x11

    def connection_lost(self, exc: Exception | None) -> None:
        self.bridge.notify(self._channels_in.close)

    def abort(self) -> None:
        if self.conn is not None:
            self.conn.abort()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def _note(self, message: str) -> None:
        if message not in self._notices:
            self._notices.append(message)

    def take_notices(self) -> tuple[str, ...]:
        notices, self._notices = tuple(self._notices), []
        return notices

    # -- authentication -------------------------------------------------------------------------------------
    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True

    def password_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return self.auth.public_keys

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        # "password:" in the prompt lets tools that answer password prompts (sshpass) answer this one too.
        return "", "", "", [("gw identity token as password: ", False)]

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> Any:
        if len(responses) != 1:
            return False
        return await self.validate_password(username, responses[0])

    async def validate_password(self, username: str, password: str) -> bool:
        answer = await self.bridge.ask(self.nursery, self.auth.password, username, password)
        return self._conclude(answer, answer.banner)

    def _conclude(self, answer: AuthAnswer, banner: str | None) -> bool:
        if banner:
            self.conn.send_auth_banner(banner.rstrip("\n") + "\r\n")
        if answer.accepted:
            self.identity = answer.identity
            return True
        if answer.counts:
            self.failures += 1
            if self.failures >= self.max_auth_attempts:
                self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                     "gw: too many failed authentication attempts")
        return False

    async def _validate_public_key(self, original: Callable[..., Awaitable[bool]], username: str,
                                   key_data: bytes, msg: bytes, signature: bytes) -> bool:
        """Ask the trio side about this key or certificate once per (user, key); if it is accepted, let
        asyncssh check the signatures (it calls :meth:`validate_public_key` / :meth:`validate_ca_key`)."""
        cache_key = (username, bytes(key_data))
        answer = self._key_answers.get(cache_key)
        if answer is None:
            answer = await self.bridge.ask(self.nursery, self.auth.public_key, username, bytes(key_data))
            self._key_answers[cache_key] = answer
        banner = answer.banner if answer.banner and answer.banner not in self._bannered else None
        if banner:
            self._bannered.add(banner)
        if not answer.accepted:
            return self._conclude(answer, banner)
        try:
            cert: Any = decode_ssh_certificate(key_data)
        except asyncssh.KeyImportError:
            self._approved_key, self._approved_ca = bytes(key_data), None
        else:
            self._approved_key, self._approved_ca = None, cert.signing_key.public_data
        ok = bool(await original(username, key_data, msg, signature))
        if ok and msg:
            self.identity = answer.identity
        return ok

    def validate_public_key(self, username: str, key: Any) -> bool:
        return self._approved_key is not None and key.public_data == self._approved_key

    def validate_ca_key(self, username: str, key: Any) -> bool:
        return self._approved_ca is not None and key.public_data == self._approved_ca

    # -- channels -------------------------------------------------------------------------------------------
    def session_requested(self) -> Any:
        if self.identity is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not authenticated")
        if self.open_channels >= self.max_sessions:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE,
                f"gw allows at most {self.max_sessions} sessions per connection; close one or open another "
                "connection")
        self.open_channels += 1
        chan = ServerChannel(self.bridge, self)
        self.bridge.notify(self._deliver_channel, chan)
        return chan

    def _deliver_channel(self, chan: ServerChannel) -> None:  # trio thread
        try:
            self._channels_in.send_nowait(chan)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            chan.close()

    def channel_closed(self, chan: ServerChannel) -> None:
        self.open_channels -= 1

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        log.info("gw ssh: refused a port forwarding channel to %s:%d from %s", dest_host, dest_port,
                 self.conn.get_extra_info("peername"))
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        f"gw refuses port forwarding (ssh -L/-D): {BYPASS}")

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._note(f"gw: remote port forwarding (ssh -R {listen_host or '*'}:{listen_port}) is refused on this "
                   f"gateway: {BYPASS}")
        return False

    def unix_connection_requested(self, dest_path: str) -> Any:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        f"gw refuses socket forwarding: {BYPASS}")

    def unix_server_requested(self, listen_path: str) -> bool:
        self._note(f"gw: remote socket forwarding (ssh -R {listen_path}) is refused on this gateway: {BYPASS}")
        return False


class ClientConnection:
    """An authenticated client connection (trio side)."""

    def __init__(self, bridge: Bridge, server: _GatewayServer) -> None:
        self._bridge = bridge
        self._server = server
        #: What the :class:`Authenticator` answered for the attempt that succeeded.
        self.identity = server.identity
        #: The user name the client logged in as (recorded, never trusted).
        self.username = server.username
        self.client_version = str(server.conn.get_extra_info("client_version") or "")

    async def next_channel(self) -> ServerChannel | None:
        """The next session channel the client opens, or None once the connection is gone."""
        try:
            return await self._server.channels.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    def close(self) -> None:
        """Disconnect the client (channels end with :class:`Closed`)."""
        self._bridge.post(self._server.close)

    def abort(self) -> None:
        self._bridge.post(self._server.abort)


async def accept(bridge: Bridge, sock: socket.socket, *, host_key: Any, auth: Authenticator,
                 nursery: trio.Nursery, max_sessions: int, max_auth_attempts: int,
                 login_timeout: float) -> ClientConnection:
    """Run the SSH handshake and authentication on an accepted socket (which the bridge now owns).

    Raises :class:`HandshakeError` when the client does not complete them."""
    server = _GatewayServer(bridge, auth, nursery, max_sessions, max_auth_attempts)

    async def start() -> None:
        await asyncssh.run_server(
            sock, config=None, server_factory=lambda: server, server_host_keys=[host_key], encoding=None,
            line_editor=False, allow_pty=True, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
            sftp_factory=None, gss_host=None, login_timeout=login_timeout, keepalive_interval=30,
            keepalive_count_max=4)

    try:
        await bridge.run(start)
    except BaseException as e:
        bridge.post(server.abort)
        if isinstance(e, (asyncssh.Error, OSError, asyncio.TimeoutError, asyncio.CancelledError)):
            raise HandshakeError(_describe(e)) from None
        raise
    if server.identity is None:
        bridge.post(server.abort)
        raise HandshakeError("authentication did not produce an identity")
    return ClientConnection(bridge, server)


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncssh.DisconnectError):
        return e.reason or type(e).__name__
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------------------------------------------------
# gw's connection to the target
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamTarget:
    """Everything needed to reach the target (the key is an asyncssh key object; never logged)."""

    host: str
    port: int
    user: str
    key: Any = field(repr=False)
    known_hosts: Any = field(repr=False)
    known_hosts_path: str = ""
    connect_timeout: float = 10.0
    keepalive_interval: float = 30.0

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class _UpstreamClient(asyncssh.SSHClient):
    """Notes the host key the target presented when it is not trusted (asyncio thread)."""

    def __init__(self) -> None:
        self.untrusted_key: Any = None
        self.lost: asyncio.Future[str] | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.untrusted_key = key
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(str(exc) if exc else "")


class UpstreamConnection:
    """gw's logged-in connection to the target (trio side)."""

    def __init__(self, bridge: Bridge, conn: Any, client: _UpstreamClient, target: UpstreamTarget) -> None:
        self._bridge = bridge
        self._conn = conn
        self._client = client
        self.target = target
        self.server_version = str(conn.get_extra_info("server_version") or "")
        #: gw's own sftp session for questions about paths (None: not started, False: unavailable).
        self._sftp_client: Any = None

    async def open_session(self, *, command: str | None = None, subsystem: str | None = None,
                           terminal: Terminal | None = None,
                           env: Sequence[tuple[str, str]] = ()) -> UpstreamChannel:
        """Open a session channel on the target running ``command`` / ``subsystem`` / a shell (neither)."""
        chan = UpstreamChannel(self._bridge)

        async def open_() -> None:
            kwargs: dict[str, Any] = {"encoding": None, "env": dict(env) if env else (),
                                      "request_pty": terminal is not None}
            if terminal is not None:
                kwargs.update(term_type=terminal.term,
                              term_size=(terminal.cols, terminal.rows, terminal.width_px, terminal.height_px),
                              term_modes=dict(terminal.modes))
            if subsystem is not None:
                kwargs["subsystem"] = subsystem
            await self._conn.create_session(lambda: chan, command if command is not None else (), **kwargs)

        try:
            await self._bridge.run(open_)
        except (asyncssh.Error, OSError) as e:
            raise UpstreamError(f"the target {self.target.host}:{self.target.port} refused to open a session "
                                f"({_describe(e)})", reason="upstream_refused") from None
        return chan

    async def resolve_paths(self, paths: Sequence[str], *, limit: float = 5.0) -> list[str | None]:
        """Where each absolute path leads on the target (symbolic links followed, ``..`` taken physically),
        asked over an sftp session gw opens on this connection once.  None for a path the target could not
        answer for (or all None when the target offers no sftp subsystem)."""

        async def resolve() -> list[str | None]:
            sftp = await self._sftp()
            if sftp is None:
                return [None] * len(paths)
            out: list[str | None] = []
            for path in paths:
                try:
                    out.append(await _resolve(sftp, path, 0))
                except (asyncssh.Error, OSError, UnicodeError):
                    out.append(None)
            return out

        try:
            with trio.fail_after(limit):
                return await self._bridge.run(resolve)
        except trio.TooSlowError:
            raise UpstreamError(_SLOW.format(where=f"{self.target.host}:{self.target.port}", limit=limit),
                                reason="upstream_slow") from None

    async def expand_globs(self, patterns: Sequence[str], *, limit: float = 5.0,
                           most: int = 256) -> list[list[str] | None]:
        """The paths each glob matches on the target (asked over gw's own sftp session), or None when the
        target cannot say or more than ``most`` match."""

        async def expand() -> list[list[str] | None]:
            sftp = await self._sftp()
            if sftp is None:
                return [None] * len(patterns)
            out: list[list[str] | None] = []
            for pattern in patterns:
                try:
                    out.append(await _glob(sftp, pattern, most))
                except (asyncssh.Error, OSError, UnicodeError):
                    out.append(None)
            return out

        try:
            with trio.fail_after(limit):
                return await self._bridge.run(expand)
        except trio.TooSlowError:
            raise UpstreamError(_SLOW.format(where=f"{self.target.host}:{self.target.port}", limit=limit),
                                reason="upstream_slow") from None

    async def directories(self, paths: Sequence[str], *, limit: float = 5.0) -> list[str]:
        """What each path is on the target, following links: ``dir``, ``file`` (anything else that exists),
        ``missing``, or ``unknown`` (the target cannot say)."""

        async def kinds() -> list[str]:
            sftp = await self._sftp()
            if sftp is None:
                return ["unknown"] * len(paths)
            out: list[str] = []
            for path in paths:
                try:
                    attrs = await sftp.stat(path)
                except asyncssh.SFTPNoSuchFile:
                    out.append("missing")
                    continue
                except (asyncssh.Error, OSError, UnicodeError):
                    out.append("unknown")
                    continue
                out.append("dir" if stat.S_ISDIR(attrs.permissions or 0) else "file")
            return out

        try:
            with trio.fail_after(limit):
                return await self._bridge.run(kinds)
        except trio.TooSlowError:
            raise UpstreamError(_SLOW.format(where=f"{self.target.host}:{self.target.port}", limit=limit),
                                reason="upstream_slow") from None

    async def home(self) -> str | None:
        """The directory the target starts sessions in (the account's home), or None if it cannot tell."""
        return (await self.resolve_paths(["."]))[0]

    async def stat_owner(self, path: str) -> tuple[int, int] | None:
        """(mode, uid) of ``path`` on the target (lstat), or None."""

        async def stat() -> tuple[int, int] | None:
            sftp = await self._sftp()
            if sftp is None:
                return None
            try:
                attrs = await sftp.lstat(path)
            except (asyncssh.Error, OSError):
                return None
            return int(attrs.permissions or 0), int(attrs.uid if attrs.uid is not None else -1)

        return await self._bridge.run(stat)

    async def _sftp(self) -> Any:
        """(asyncio side) gw's own sftp client on this connection, started on first use; None if the target
        has no sftp subsystem."""
        if self._sftp_client is None:
            try:
                self._sftp_client = await asyncio.wait_for(self._conn.start_sftp_client(), 5)
            except (TimeoutError, asyncssh.Error, OSError):
                self._sftp_client = False
        return self._sftp_client or None

    async def wait_lost(self) -> str:
        """Return (with the reason) when the connection to the target ends."""

        async def wait() -> str:
            if self._client.lost is None:
                self._client.lost = asyncio.get_running_loop().create_future()
            if self._conn.is_closed():
                return "closed"
            return await self._client.lost

        return await self._bridge.run(wait)

    def close(self) -> None:
        self._bridge.post(self._conn.close)


_SLOW = ("the target {where} did not say within {limit:g}s where the command's paths lead, so gw could not "
         "check them against the policy; the command was not run. Try again, or tell the gateway operator")


async def _glob(sftp: Any, pattern: str, most: int) -> list[str] | None:
    """(asyncio side) The paths an absolute glob matches on the target, component by component; a directory
    reached through a symbolic link is listed too (the shell's globbing follows links).  None when more than
    ``most`` paths match at any step."""
    paths = ["/"]
    for part in [p for p in pattern.split("/") if p]:
        step: list[str] = []
        if not any(c in part for c in "*?["):
            step = [posixpath.join(p, part) for p in paths]
        else:
            for directory in paths:
                try:
                    names = await sftp.listdir(directory)
                except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied, asyncssh.SFTPFailure):
                    continue
                step.extend(posixpath.join(directory, str(n)) for n in names
                            if str(n) not in (".", "..") and fnmatch.fnmatchcase(str(n), part)
                            and (not str(n).startswith(".") or part.startswith(".")))
        if len(step) > most:
            return None
        paths = step
    return paths


async def _resolve(sftp: Any, path: str, depth: int) -> str | None:
    """(asyncio side) The physical path ``path`` leads to: an existing path as the server's realpath sees it;
    a symbolic link's target even when that does not exist (writing through it would create it); a path
    that does not exist under its resolved parent."""
    if depth > 16:
        return None
    try:
        attrs = await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        attrs = None
    if attrs is not None and not stat.S_ISLNK(attrs.permissions or 0):
        return str(await sftp.realpath(path))
    parent, name = posixpath.split(path.rstrip("/") or "/")
    if not name:
        return "/"
    if name in (".", ".."):
        return None
    base = await _resolve(sftp, parent or "/", depth + 1)
    if base is None:
        return None
    if attrs is None:
        return posixpath.join(base, name)
    target = str(await sftp.readlink(path))
    return await _resolve(sftp, posixpath.join(base, target), depth + 1)


async def connect_upstream(bridge: Bridge, target: UpstreamTarget) -> UpstreamConnection:
    """Connect, verify the target's host key against known_hosts and log in with gw's key."""
    client = _UpstreamClient()

    async def connect() -> Any:
        conn = await asyncssh.connect(
            target.host, target.port, config=None, username=target.user, client_keys=[target.key],
            known_hosts=target.known_hosts, agent_path=None, agent_forwarding=False, x11_forwarding=False,
            password=None, kbdint_auth=False, gss_host=None, preferred_auth="publickey",
            connect_timeout=target.connect_timeout, keepalive_interval=target.keepalive_interval or None,
            client_factory=lambda: client, encoding=None)
        client.lost = asyncio.get_running_loop().create_future()
        return conn

    where = f"{target.host}:{target.port}"
    try:
        conn = await bridge.run(connect)
    except asyncssh.HostKeyNotVerifiable:
        raise UpstreamError(_host_key_problem(target, client.untrusted_key), reason="upstream_host_key") from None
    except asyncssh.PermissionDenied:
        raise UpstreamError(f"the target {where} refused gw's key for user {target.user!r}; the gateway operator "
                            "must add gw's upstream public key to that account's authorized_keys",
                            reason="upstream_auth") from None
    except TimeoutError:
        raise UpstreamError(f"the target {where} did not complete the SSH login within "
                            f"{target.connect_timeout:g}s; try again later or tell the gateway operator",
                            reason="upstream_unavailable") from None
    except (OSError, asyncssh.Error) as e:
        raise UpstreamError(f"gw cannot reach the target {where} ({_describe(e)}); try again later or tell the "
                            "gateway operator", reason="upstream_unavailable") from None
    return UpstreamConnection(bridge, conn, client, target)


def _host_key_problem(target: UpstreamTarget, key: Any) -> str:
    where = f"{target.host}:{target.port}"
    fingerprint = f"{key.get_algorithm()} {key.get_fingerprint()}" if key is not None else "an unknown key"
    try:
        known = asyncssh.match_known_hosts(target.known_hosts, target.host, target.host, target.port)[0]
    except (ValueError, TypeError, asyncssh.Error):
        known = []
    if known:
        return (f"the host key of the target {where} CHANGED: it presented {fingerprint}, which is not the key "
                f"listed for it in gw's known_hosts ({target.known_hosts_path}). gw refused to connect (this can "
                "be a man-in-the-middle attack). If the target was legitimately re-keyed, the gateway operator "
                "must update that file")
    return (f"the target {where} presented host key {fingerprint}, which is not in gw's known_hosts "
            f"({target.known_hosts_path}); gw never trusts an unknown host key. The gateway operator must add "
            "the target's key to that file (verify it first, e.g. with ssh-keyscan on a trusted network)")
