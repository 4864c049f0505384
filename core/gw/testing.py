"""pytest fixtures and helpers for gw and for plugin authors (loaded as a pytest plugin by ``gw``).

* ``gw_plugin_manager`` -- a fresh plugin manager with the installed plugins; ``gw_register`` registers an
  inline plugin on it for one test and unregisters it afterwards.
* :func:`running_gateway` -- start a gateway in-process (trio) on ephemeral ports and get its addresses.
* :class:`GatewayProcess` / ``gw_process`` -- run ``gw serve`` as a real subprocess for end-to-end tests with
  real clients (psql, psycopg, ssh, curl); :func:`gw_cli` runs any other ``gw`` command, :func:`cli_token`
  issues a token with ``gw token issue`` (both also as methods of a running :class:`GatewayProcess`).
* The in-memory store and the storage contract suite every backend runs are in the ``gw-storagekit`` helper
  distribution (``gw_storagekit.MemoryStore``, ``gw_storagekit.StoreContract``).
* :func:`require_service` -- skip a test when a peer (PostgreSQL, sshd ...) is unreachable, or fail with
  ``GW_REQUIRE_SERVICES=1`` so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pluggy
import pytest
import trio

from .errors import AuthenticationError
from .hookspecs import hookimpl
from .identity import Credential, IdentityProvider, ProviderOptions
from .model import Column, Identity, Kind, Outcome, OutcomeStatus, SessionEnd
from .pipeline import SessionRuntime
from .plugins import make_plugin_manager
from .protocol import ListenerOptions, ProtocolHandler
from .runtime import Runtime
from .server import Gateway

__all__ = ["GatewayProcess", "KitPlugin", "LineHandler", "RunningGateway", "StaticIdentity", "StaticOptions",
           "cli_token", "free_port", "gw_cli", "issue_token", "require_program", "require_service",
           "running_gateway", "wait_for", "write_pipeline"]


def require_service(host: str, port: int, what: str, *, timeout: float = 1.0) -> None:
    """Skip (or, with ``GW_REQUIRE_SERVICES=1``, fail) unless ``host:port`` accepts TCP connections."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as e:
        reason = f"{what} is not reachable at {host}:{port} ({e})"
    if os.environ.get("GW_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; GW_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(reason)


def require_program(name: str) -> str:
    """Path of an external program (psql, sshd ...); skip or fail like :func:`require_service`."""
    import shutil

    for candidate in (name, f"/usr/sbin/{name}", f"/usr/lib/postgresql/bin/{name}"):
        found = shutil.which(candidate)
        if found:
            return found
    reason = f"program {name!r} is not installed"
    if os.environ.get("GW_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; GW_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_pipeline(directory: Path, text: str, name: str = "pipeline.toml") -> Path:
    path = Path(directory) / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def gw_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with every installed plugin (no state shared between tests)."""
    return make_plugin_manager()


@pytest.fixture
def gw_register(gw_plugin_manager: pluggy.PluginManager) -> Iterator[Callable[[object, str], None]]:
    """Register inline plugins on ``gw_plugin_manager`` for this test: ``gw_register(plugin, "name")``."""
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> None:
        gw_plugin_manager.register(plugin, name=name)
        gw_plugin_manager.check_pending()
        registered.append(plugin)

    yield register
    for plugin in registered:
        gw_plugin_manager.unregister(plugin)


class RunningGateway:
    """A gateway started by :func:`running_gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.runtime: Runtime = gateway.runtime

    def address(self, listener: str) -> tuple[str, int]:
        host, port = self.runtime.listeners[listener].bound[0]
        return str(host), int(port)

    def port(self, listener: str) -> int:
        return self.address(listener)[1]

    def token(self, sub: str = "agent-7", groups: list[str] | None = None, *, identity: str | None = None,
              ttl: float = 3600, **claims: Any) -> str:
        return issue_token(self.runtime, sub, groups or ["agents"], identity=identity, ttl=ttl, **claims)


def issue_token(runtime: Runtime, sub: str, groups: list[str], *, identity: str | None = None,
                ttl: float = 3600, **claims: Any) -> str:
    """A token from an identity provider that can issue them (the jwt provider with ``secret_env``)."""
    name = identity or next(iter(runtime.identity))
    return runtime.identity[name].issue_token(sub, groups, ttl, claims or None)


@asynccontextmanager
async def running_gateway(config: str | Path, *, pm: pluggy.PluginManager | None = None
                          ) -> AsyncIterator[RunningGateway]:
    """Serve ``config`` in this trio run; listeners may use port 0.  Shuts down gracefully on exit."""
    runtime = Runtime.build(config, pm=pm)
    gateway = Gateway(runtime)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.serve)
        try:
            yield RunningGateway(gateway)
        finally:
            gateway.shutdown()


#: The ``gw`` command installed beside the running Python.
GW = str(Path(sys.executable).with_name("gw"))


def gw_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
    """Run ``gw ARGS`` as an operator would, with ``env`` added to this environment; the output as text, the
    exit status in ``returncode`` (never raises for a failing command)."""
    return subprocess.run([GW, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout, check=False)


def cli_token(config: Path, sub: str = "agent-7", *groups: str, identity: str | None = None, ttl: str = "1h",
              env: dict[str, str] | None = None) -> str:
    """A token issued by ``gw token issue -c CONFIG`` (groups default to ``agents``); asserts that it worked."""
    args = ["token", "issue", "-c", str(config), "--sub", sub, "--ttl", ttl]
    args += ["--identity", identity] if identity else []
    for group in groups or ("agents",):
        args += ["--group", group]
    out = gw_cli(*args, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


_LISTENING = re.compile(r"listener (\S+) \((\S+)\) on (\S+):(\d+)")


class GatewayProcess:
    """``gw serve PIPELINE`` in a subprocess; knows each listener's bound port from its log.  ``timeout`` bounds
    the wait for its listeners (generous: a loaded machine starts a Python process slowly; a healthy start
    returns as soon as the last listener is up)."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, timeout: float = 60,
                 args: Sequence[str] = ()) -> None:
        self.config = Path(config)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout
        self.ports: dict[str, int] = {}
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen([GW, "serve", str(self.config), *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=self.env)
        ready = threading.Event()
        expected = self._expected_listeners()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                m = _LISTENING.search(line)
                if m:
                    self.ports.setdefault(m.group(1), int(m.group(4)))
                    if set(self.ports) >= expected:
                        ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(self.timeout) or self.proc.poll() is not None or set(self.ports) < expected:
            self.stop()
            raise RuntimeError("gw serve did not start:\n" + "\n".join(self.log))
        return self

    def _expected_listeners(self) -> set[str]:
        import tomli

        data = tomli.loads(self.config.read_text())
        return {lst["name"] for lst in data.get("listeners", [])}

    def port(self, listener: str) -> int:
        return self.ports[listener]

    def output(self) -> str:
        return "\n".join(self.log)

    def gw(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``gw ARGS`` in this gateway's environment (its secrets and passwords); add ``-c`` yourself."""
        return gw_cli(*args, env=self.env, timeout=timeout)

    def token(self, sub: str = "agent-7", *groups: str, identity: str | None = None, ttl: str = "1h") -> str:
        """:func:`cli_token` from this gateway's pipeline file."""
        return cli_token(self.config, sub, *groups, identity=identity, ttl=ttl, env=self.env)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(2)
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def gw_process() -> Iterator[Callable[..., GatewayProcess]]:
    """Factory: ``gw_process(config_path, env={...})`` starts ``gw serve`` and stops it after the test."""
    started: list[GatewayProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> GatewayProcess:
        p = GatewayProcess(config, env=env).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (for subprocess-based tests); ``timeout`` only
    bounds a failing wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- a kit for plugin tests: a static identity provider and a line protocol ----------------------------------

class StaticOptions(ProviderOptions):
    #: Token -> groups: the token ``SUBJECT`` authenticates as SUBJECT.
    users: dict[str, list[str]] = {}  # noqa: RUF012 -- pydantic copies defaults


class StaticIdentity(IdentityProvider):
    """``use = "static"``: accepts the token ``SUBJECT`` when SUBJECT is in ``users`` (tests only)."""

    name = "static"
    Options = StaticOptions

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        if token not in self.options.users:
            raise AuthenticationError("unknown token; get one from your operator", reason="invalid_token")
        return Identity(token, tuple(self.options.users[token]), provider=self.instance_name)


class _Notices:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def notice(self, message: str) -> None:
        await self.stream.send_all(f"NOTICE {message}\n".encode())


class LineHandler(ProtocolHandler):
    """``protocol = "lines"``, an example protocol for tests: the first line is a token (``OK`` or ``ERR ...``);
    then each line is a command, answered ``ROW <text>`` (after row filters), ``DENIED <reason>`` or
    ``NOTICE ...``; ``BYE <reason>`` when gw ends the session.  ``sleep N`` takes N seconds; ``drop ...`` is DDL."""

    name = "lines"
    Options = ListenerOptions

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        buf = b""

        async def readline() -> bytes | None:
            nonlocal buf
            while b"\n" not in buf:
                data = await stream.receive_some(4096)
                if not data:
                    return None
                buf += data
            line, buf = buf.split(b"\n", 1)
            return line

        token = await readline()
        if token is None:
            return
        try:
            identity = await self.listener.authenticate(Credential("token", token.decode()),
                                                        client_address=client_address)
        except AuthenticationError as e:
            await stream.send_all(f"ERR {e}\n".encode())
            return
        sr = await self.listener.start_session(identity, client_address=client_address)
        await stream.send_all(b"OK\n")
        reason: str = SessionEnd.CLIENT_CLOSED
        busy = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal reason
                why = await sr.wait_terminated()
                while busy:  # let the command in flight finish (graceful drain)
                    await trio.sleep(0.01)
                reason = why
                await stream.send_all(f"BYE {why}\n".encode())
                nursery.cancel_scope.cancel()

            async def serve() -> None:
                nonlocal busy
                while (line := await readline()) is not None:
                    busy = True
                    await self.run_command(sr, stream, line.decode())
                    busy = False
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(serve)
        await sr.end(reason)

    async def run_command(self, sr: SessionRuntime, stream: trio.abc.Stream, text: str) -> None:
        if text.startswith("sleep "):
            await trio.sleep(float(text.split()[1]))
        kind = Kind.DDL if text.startswith("drop") else Kind.READ
        cmd = sr.command(text, language="line", kind=kind, verb=text.split()[0] if text else "")
        async with await sr.decide(cmd, _Notices(stream)) as run:
            if not run.allowed:
                await stream.send_all(f"DENIED {run.verdict.reason}\n".encode())
                await run.complete(Outcome(status=OutcomeStatus.DENIED))
                return
            filt = run.rows([Column("value")])
            row: list[bytes | None] = [text.encode()]
            if filt is not None:
                row = filt.row(row)
            await stream.send_all(b"ROW " + (row[0] or b"") + b"\n")
            await run.complete(Outcome(rows=1, tag="ROW"))


class KitPlugin:
    """Registers :class:`StaticIdentity` and :class:`LineHandler`: ``gw_register(KitPlugin(), "kit")``."""

    @hookimpl
    def gw_register_protocols(self, register: Callable[[type[Any]], None]) -> None:
        register(LineHandler)

    @hookimpl
    def gw_register_identity_providers(self, register: Callable[[type[Any]], None]) -> None:
        register(StaticIdentity)
