"""The places events go.  Each sink delivers a batch or raises :class:`SinkError`; the exporter retries.

``alive()`` tells the exporter whether what was sent may be trusted as delivered: over TCP, bytes written
into a connection the receiver then closed (or reset) without reading them are lost, so the exporter only
counts a syslog batch as delivered once the connection was seen open ``settle`` seconds later, and sends
again from the last confirmed event otherwise (at least once: a receiver may see an event twice, never miss
one).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .formats import octet_counted, render, rfc5424, to_json
from .options import FACILITIES, Target

#: The largest syslog message sent over UDP (a datagram over IPv4 carries at most 65507 bytes).
UDP_MAX = 65000


class SinkError(Exception):
    """A batch could not be delivered; the message says why (no credentials)."""


class Sink:
    #: Seconds a delivery must stand unrefuted before it counts (TCP syslog); 0 = at once.
    settle = 0.0

    def __init__(self, target: Target, fmt: str, *, timeout: float, hostname: str) -> None:
        self.target = target
        self.format = fmt
        self.timeout = timeout
        self.hostname = hostname

    async def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        """False when what was sent since the last confirmation may be lost."""
        return True

    async def reset(self) -> None:
        """Drop the connection after a failure (the next send reconnects)."""

    async def close(self) -> None:
        await self.reset()


class SyslogSink(Sink):
    def __init__(self, target: Target, fmt: str, *, timeout: float, hostname: str, facility: str) -> None:
        super().__init__(target, fmt, timeout=timeout, hostname=hostname)
        self.facility = FACILITIES[facility]

    def frame(self, event: Mapping[str, Any]) -> bytes:
        return rfc5424(event, render(event, self.format), facility=self.facility, hostname=self.hostname)


class SyslogTCP(SyslogSink):
    settle = 0.5

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._stream: trio.SocketStream | None = None

    async def _connect(self) -> trio.SocketStream:
        if self._stream is None:
            where = f"{self.target.host}:{self.target.port}"
            try:
                with trio.fail_after(self.timeout):
                    self._stream = await trio.open_tcp_stream(self.target.host, self.target.port)
            except trio.TooSlowError:
                raise SinkError(f"syslog receiver {where} did not accept a connection within "
                                f"{self.timeout:g}s") from None
            except OSError as e:
                raise SinkError(f"cannot connect to syslog receiver {where}: {e.strerror or e}") from None
        return self._stream

    async def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        stream = await self._connect()
        data = b"".join(octet_counted(self.frame(e)) for e in events)
        try:
            with trio.fail_after(self.timeout):
                await stream.send_all(data)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            await self.reset()
            raise SinkError(f"syslog receiver {self.target.host}:{self.target.port} stopped taking events "
                            f"({type(e).__name__})") from None

    def alive(self) -> bool:
        stream = self._stream
        if stream is None:
            return False
        sock = stream.socket
        try:
            readable, _, failed = select.select([sock.fileno()], [], [sock.fileno()], 0)
            if not readable and not failed:
                return True
            # A syslog receiver never writes: readable means end of stream or a reset.
            return bool(sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    async def reset(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass


class SyslogUDP(SyslogSink):
    """RFC 5426: one message per datagram; delivery cannot be confirmed (use TCP where loss matters)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._sock: trio.socket.SocketType | None = None

    async def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        try:
            if self._sock is None:
                infos = await trio.socket.getaddrinfo(self.target.host, self.target.port,
                                                      type=socket.SOCK_DGRAM)
                family, _, _, _, addr = infos[0]
                sock = trio.socket.socket(family, socket.SOCK_DGRAM)
                await sock.connect(addr)
                self._sock = sock
            for e in events:
                await self._sock.send(self.frame(e)[:UDP_MAX])
        except OSError as e:
            await self.reset()
            raise SinkError(f"cannot send to syslog receiver {self.target.host}:{self.target.port} over UDP: "
                            f"{e.strerror or e}") from None

    async def reset(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class HttpSink(Sink):
    """POSTs each batch: a JSON array of events (``format = "json"``) or CEF lines (``format = "cef"``)."""

    def __init__(self, target: Target, fmt: str, *, timeout: float, hostname: str,
                 headers: Mapping[str, str], ca_file: str | None) -> None:
        import httpx  # about 5 MB: imported when an HTTP sink is configured, not whenever gw starts

        super().__init__(target, fmt, timeout=timeout, hostname=hostname)
        self._http_error = httpx.HTTPError
        self.headers = dict(headers)
        verify: ssl.SSLContext | bool = True
        if target.kind == "https":
            verify = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False,
                                         trust_env=False)

    async def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        if self.format == "cef":
            body = "".join(render(e, "cef") + "\n" for e in events).encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        else:
            body = ("[" + ",".join(to_json(e) for e in events) + "]").encode("utf-8")
            content_type = "application/json"
        headers = {"content-type": content_type, "user-agent": "gw-export", **self.headers}
        where = self.target.describe()
        try:
            response = await self._client.post(self.target.url, content=body, headers=headers)
        except self._http_error as e:
            raise SinkError(f"cannot deliver to {where}: {type(e).__name__}: {e}") from None
        if not 200 <= response.status_code < 300:
            raise SinkError(f"{where} answered HTTP {response.status_code} {response.reason_phrase}")

    async def close(self) -> None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await self._client.aclose()


class FileSink(Sink):
    """Appends one event per line and fsyncs before the batch counts as delivered."""

    def __init__(self, target: Target, fmt: str, *, timeout: float, hostname: str, path: Path) -> None:
        super().__init__(target, fmt, timeout=timeout, hostname=hostname)
        self.path = path

    async def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        data = "".join(render(e, self.format) + "\n" for e in events).encode("utf-8")
        try:
            await trio.to_thread.run_sync(self._append, data)
        except OSError as e:
            raise SinkError(f"cannot append to {self.path}: {e.strerror or e}") from None

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
