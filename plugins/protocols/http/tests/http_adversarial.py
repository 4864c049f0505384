"""Shared pieces of the adversarial HTTP tests: an upstream whose every response is scripted by the test
(status line, repeated or missing headers, raw body bytes, chunked framing), a WebSocket upstream that sends
scripted messages, the real-plugin pipeline, and a scan for raw values in anything gw sends or stores."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pluggy
import pytest
import trio
from gw.plugins import Registry

JWT_SECRET = "http-adversarial-secret-0123456789abcdef"
UPSTREAM_SECRET = "Upstr3am/Cred+ential=9f8e7d"

#: What the masked columns hold upstream, and every other sensitive value the responses carry.
SSN_BARE = "234567890"
SSN = "234-56-7890"
CARD = "4111111111111111"
CARD_SPACED = "4111 1111 1111 1111"
EMAIL = "ann@example.com"
RAW_VALUES = (SSN_BARE, SSN, CARD, CARD_SPACED, EMAIL)
#: Where the test upstream's ``/echo-deep/N`` writes the credential it received: in the first read, across
#: 64 KiB boundaries, megabytes into the body.
LONG_ECHO_AT = (100, 65536 - 5, 300_000, 5 * 65536 - 11, 1_000_000)
ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp500")

DOC = {"id": 7, "name": "Ann", "ssn": SSN_BARE, "card_number": CARD, "email": EMAIL,
       "note": f"backup ssn {SSN} on file"}
DOC_JSON = json.dumps(DOC).encode()

PIPELINE = """
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_HTTP_ADV_SECRET"

[pipelines.api]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [
      {{ objects = ["/api/v1/admin", "/api/v1/admin/*"], message = "agents may not use the admin API" }},
      {{ verb = "DELETE", message = "agents may not delete" }},
  ] }},
{approve}
{mask_stage}
  {{ use = "record" }},
]

[[listeners]]
name = "api"
protocol = "http"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "api"
allow_groups = ["agents"]
{listener}

[listeners.upstream]
url = "{url}"
headers = {{ Authorization = "Bearer ${{ADV_UPSTREAM_TOKEN}}" }}
"""

MASK_STAGE = """  { use = "mask", columns = ["ssn", "*.card_number", "email"], detectors = ["us_ssn", "credit_card",
     "email", "iban"]EXTRA },"""

ENV = {"GW_HTTP_ADV_SECRET": JWT_SECRET, "ADV_UPSTREAM_TOKEN": UPSTREAM_SECRET, "PATH": "/usr/bin:/bin"}


def require_plugins(pm: pluggy.PluginManager, *names: str) -> None:
    registry = Registry.build(pm)
    have = set(registry.names("stages")) | set(registry.names("identity_providers"))
    missing = [n for n in names if n not in have]
    if missing:
        pytest.skip(f"plugin(s) not installed: {', '.join(missing)}")


# -- the scripted upstream ----------------------------------------------------------------------------------------


@dataclass
class Scripted:
    """One response: status, reason phrase, header pairs (in order, repeats allowed), body, framing."""

    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 200
    reason: str = "OK"
    chunked: bool = False


@dataclass
class ScriptedUpstream:
    url: str
    routes: dict[str, Scripted]
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _, _ in self.seen if method is None or m == method]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self) -> None:
        body = self._body()
        state: ScriptedUpstream = self.server.state
        state.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        path = self.path.split("?")[0]
        if path == "/echo-auth":
            self._echo_auth()
            return
        spec = state.routes.get(path) or Scripted(b'{"error": "no such route"}',
                                                  [("Content-Type", "application/json")], 404, "Not Found")
        self.send_response_only(spec.status, spec.reason)
        for name, value in spec.headers:
            self.send_header(name, value)
        if spec.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(spec.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if spec.chunked:
            for i in range(0, len(spec.body), 7):
                part = spec.body[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(spec.body)

    def _echo_auth(self) -> None:
        """Echoes the Authorization header it received in the encoding the query names."""
        query = self.path.partition("?")[2]
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        auth = self.headers.get("Authorization", "")
        form = params.get("form", "raw")
        text = {"raw": auth, "slash": auth.replace("/", "\\/"), "pct": _pct(auth), "html": _html(auth)}[form]
        encoding = params.get("enc", "utf-8")
        body = f"you sent: {text}\n".encode(encoding)
        ctype = params.get("ctype", "text/plain").replace("_", "/").replace("~", "; charset=")
        self.send_response_only(200, "OK")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Echo", auth)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def _pct(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _html(text: str) -> str:
    import html

    return html.escape(text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # gw drops upstream connections of refused responses: resets are expected


@contextlib.contextmanager
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    """A scripted upstream running on an ephemeral port until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ScriptedUpstream(f"http://127.0.0.1:{server.server_address[1]}", {})  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.state  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with scripted_upstream() as state:
        yield state


# -- the scripted WebSocket upstream ------------------------------------------------------------------------------


@dataclass
class WsScript:
    """What the WebSocket upstream sends after the handshake: wsproto events (or raw bytes), in order."""

    url: str
    script: list[Any] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    upgrade_headers: list[dict[str, str]] = field(default_factory=list)


def _ws_handler(state: WsScript) -> type[socketserver.BaseRequestHandler]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, Request

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            ws = WSConnection(ConnectionType.SERVER)
            sock: socket.socket = self.request
            sock.settimeout(10)
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, Request):
                        state.upgrade_headers.append({k.decode().lower(): v.decode()
                                                      for k, v in event.extra_headers})
                        sock.sendall(ws.send(AcceptConnection()))
                        for item in state.script:
                            sock.sendall(item if isinstance(item, bytes) else ws.send(item))
                    elif isinstance(event, Message):
                        state.received.append(event.data)
                    elif isinstance(event, CloseConnection):
                        with contextlib.suppress(OSError):  # the peer may be gone already
                            sock.sendall(ws.send(event.response()))
                        return
                if not data:
                    return

    return Handler


@pytest.fixture
def ws_scripted() -> Iterator[WsScript]:
    state = WsScript("")
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ws_handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# -- the gateway --------------------------------------------------------------------------------------------------


@pytest.fixture
def adversarial_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       gw_plugin_manager: pluggy.PluginManager) -> Callable[..., Path]:
    """``adversarial_config(url, mask=", pass_through_types = [...]", listener="...", approve="...",
    masking=True)`` writes the pipeline file (audit, guard, [approve], [mask], record) and returns its path."""
    for name, value in ENV.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    require_plugins(gw_plugin_manager, "jwt", "audit", "guard", "mask", "record", "approve")

    def make(url: str, *, mask: str = "", listener: str = "", approve: str = "", masking: bool = True) -> Path:
        mask_stage = MASK_STAGE.replace("EXTRA", mask) if masking else ""
        path = tmp_path / "pipeline.toml"
        path.write_text(PIPELINE.format(url=url, mask_stage=mask_stage, listener=listener, approve=approve))
        return path

    return make


async def gw_cli(*args: str, check: bool = True) -> tuple[int, str, str]:
    done = await trio.run_process([str(Path(sys.executable).with_name("gw")), *args], capture_stdout=True,
                                  capture_stderr=True, check=False, env=ENV)
    if check:
        assert done.returncode == 0, done.stderr.decode()
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def leaks(data: bytes, values: tuple[str, ...] = RAW_VALUES) -> list[str]:
    """Raw values found in ``data`` in any of :data:`ENCODINGS`."""
    found = []
    for value in values:
        for encoding in ENCODINGS:
            if value.encode(encoding) in data:
                found.append(f"{value!r} ({encoding})")
    return found


def stored_bytes(config: Path) -> bytes:
    """Every byte gw wrote under its data directory (the database, its WAL, anything else)."""
    state = config.parent / "state"
    return b"".join(p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file())
