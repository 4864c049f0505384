"""pytest fixtures and helpers for gw and for plugin authors (loaded as a pytest plugin by ``gw``).

* ``gw_plugin_manager`` -- a fresh plugin manager with the installed plugins; ``gw_register`` registers an
  inline plugin on it for one test and unregisters it afterwards.
* :func:`running_gateway` -- start a gateway in-process (trio) on ephemeral ports and get its addresses.
* :class:`GatewayProcess` / ``gw_process`` -- run ``gw serve`` as a real subprocess for end-to-end tests with
  real clients (psql, psycopg, ssh, curl).
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

from .plugins import make_plugin_manager
from .runtime import Runtime
from .server import Gateway

__all__ = ["GatewayProcess", "RunningGateway", "free_port", "issue_token", "require_program", "require_service", "running_gateway", "wait_for",
           "write_pipeline"]


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


_LISTENING = re.compile(r"listener (\S+) \((\S+)\) on (\S+):(\d+)")


class GatewayProcess:
    """``gw serve PIPELINE`` in a subprocess; knows each listener's bound port from its log."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, timeout: float = 20,
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
        gw = str(Path(sys.executable).with_name("gw"))
        self.proc = subprocess.Popen([gw, "serve", str(self.config), *self.args], stdout=subprocess.PIPE,
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


def wait_for(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (for subprocess-based tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
