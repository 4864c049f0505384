"""Fixtures for the HTTP protocol tests: a real HTTP upstream, a WebSocket echo upstream, and inline plugins.

The upstreams are real servers started by the tests (a threaded ``http.server`` speaking HTTP/1.1 with
keep-alive, and a wsproto echo server).  The inline identity provider and stages are test doubles of the
jwt/guard/approve/mask/record plugins, so the protocol is tested on its own; test_http_stages.py repeats the
acceptance scenarios with the real plugins when they are installed.
"""

from __future__ import annotations

import gzip
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Command, Identity, Outcome, Verdict
from gw_rules import Rule, first_match
from gw.stage import Stage, StageOptions
from pydantic import Field
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # --import-mode=importlib does not put test directories on sys.path
    sys.path.insert(0, str(HERE))

from http_adversarial import LONG_ECHO_AT, adversarial_config, scripted, ws_scripted  # noqa: F401  (fixtures)

CUSTOMERS = {
    "customers": [
        {"id": 1, "name": "Ann", "ssn": "123-45-6789", "email": "ann@example.com",
         "cards": [{"number": "4111 1111 1111 1111", "note": "card 5500-0000-0000-0004 on file"}]},
        {"id": 2, "name": "Bob", "ssn": "987-65-4321", "profile": {"tax": {"ssn": "111-22-3333"}}},
    ],
    "meta": {"owner": {"ssn": "222-33-4444"}, "count": 2},
}


# -- the upstream -----------------------------------------------------------------------------------------
@dataclass
class SeenRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@dataclass
class Upstream:
    url: str
    port: int
    seen: list[SeenRequest] = field(default_factory=list)
    connections: int = 0

    def last(self) -> SeenRequest:
        return self.seen[-1]


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are separate writes: no 40 ms delayed-ACK stalls
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.state.connections += 1

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_pattern(self, n: int, content_type: str, declared: int | None = None) -> None:
        """``n`` bytes of a repeating pattern, with ``declared`` (default ``n``) as their Content-Length."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(n if declared is None else declared))
        self.end_headers()
        piece = bytes(range(256)) * 256
        while n > 0:
            chunk = piece[: min(n, len(piece))]
            self.wfile.write(chunk)
            n -= len(chunk)

    def _handle(self) -> None:
        body = self._read_body()
        seen = SeenRequest(self.command, self.path, list(self.headers.items()), body)
        self.server.state.seen.append(seen)
        path = self.path.split("?")[0]
        if path == "/api/v1/customers":
            self._send(200, json.dumps(CUSTOMERS).encode())
        elif path.startswith("/api/v1/customers/"):
            self._send(200, json.dumps({"id": path.rsplit("/", 1)[1], "method": self.command}).encode())
        elif path == "/echo":
            payload = {"method": self.command, "path": self.path, "headers": seen.headers,
                       "body": body.decode("latin-1")}
            self._send(200, json.dumps(payload).encode(),
                       extra={"X-Echo-Auth": self.headers.get("Authorization", ""),
                              "Set-Cookie": "upstream-session=abc123"})
        elif path == "/badjson":
            self._send(200, b'{"ssn": "123-45-6789", ')
        elif path.startswith(("/bytes/", "/textbytes/")):
            kind = "text/plain" if path.startswith("/text") else "application/octet-stream"
            self._send_pattern(int(path.rsplit("/", 1)[1]), kind)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/text":
            self._send(200, b"card 4111 1111 1111 1111 and ssn 123-45-6789\n", "text/plain")
        elif path == "/gzip":
            self._send(200, gzip.compress(json.dumps(CUSTOMERS).encode()), extra={"Content-Encoding": "gzip"})
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b'{"status": "as asked"}')
        elif path == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/short":
            # Declares more than it sends, then closes: the upstream lies about Content-Length.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path.startswith("/shortbytes/"):
            # /short for a long body: declares 1000 bytes more than the N it sends, then closes.
            n = int(path.rsplit("/", 1)[1])
            self._send_pattern(n, "application/octet-stream", declared=n + 1000)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path.startswith("/echo-deep/"):
            # N bytes of text with the Authorization header received echoed at the offsets of LONG_ECHO_AT.
            n = int(path.rsplit("/", 1)[1])
            echo = self.headers.get("Authorization", "").encode()
            body = bytearray(b"abcdefghij" * (n // 10 + 1))[:n]
            for at in LONG_ECHO_AT:
                body[at:at + len(echo)] = echo
            self._send(200, bytes(body[:n]), "text/plain; charset=utf-8")
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, b'{"slow": true}')
        else:
            self._send(404, b'{"error": "no such path"}')

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_PROPFIND = _handle


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    state: Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A real HTTP/1.1 server on an ephemeral port; ``upstream.seen`` lists what it received."""
    server = _UpstreamServer(("127.0.0.1", 0), _UpstreamHandler)
    port = server.server_address[1]
    server.state = Upstream(url=f"http://127.0.0.1:{port}", port=port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.state
    server.shutdown()
    server.server_close()


# -- the WebSocket echo upstream --------------------------------------------------------------------------
class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        sock: socket.socket = self.request
        partial = ""
        while True:
            data = sock.recv(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, Request):
                    sock.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, Message):
                    partial += event.data
                    if event.message_finished:
                        sock.sendall(ws.send(Message(data=partial)))
                        partial = ""
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    return
            if not data:
                return


@pytest.fixture
def ws_upstream() -> Iterator[str]:
    """A WebSocket echo server (wsproto over a threaded socket server); yields its http:// URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- inline plugins ---------------------------------------------------------------------------------------
class TokenOptions(ProviderOptions):
    tokens: dict[str, list[str]] = Field(default_factory=dict)
    #: Tokens that authenticate but expire this many seconds after the test starts using them.
    short_lived: dict[str, float] = Field(default_factory=dict)


class DevTokens(IdentityProvider):
    """Accepts ``tok-SUBJECT`` when SUBJECT is configured; a stand-in for the jwt provider."""

    name = "http_test_tokens"
    Options = TokenOptions

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        subject = token.removeprefix("tok-")
        if not token.startswith("tok-") or subject not in self.options.tokens:
            raise AuthenticationError("the token is not valid; get a fresh one with gw token issue",
                                      reason="invalid_token")
        ttl = self.options.short_lived.get(subject)
        return Identity(subject, tuple(self.options.tokens[subject]), provider=self.instance_name,
                        expires_at=time.time() + ttl if ttl is not None else None)


class RuleOptions(StageOptions):
    rules: list[Rule] = Field(default_factory=list)


class DenyByRule(Stage):
    """Denies commands matching a rule (a stand-in for the guard stage)."""

    name = "http_test_deny"
    Options = RuleOptions

    def evaluate(self, command: Command) -> Verdict | None:
        rule = first_match(self.options.rules, command)
        if rule is None:
            return None
        return Verdict.deny(rule.message or f"{command.verb} {command.objects[0]} is not allowed",
                            rule=rule.label())


class HoldOptions(RuleOptions):
    mode: str = "hold"


APPROVALS: dict[str, trio.Event] = {}


class HoldForApproval(Stage):
    """Holds matching commands until ``APPROVALS[request_id]`` is set (hold mode), or returns a pending
    verdict (retry mode): a stand-in for the approve stage."""

    name = "http_test_hold"
    Options = HoldOptions

    async def check(self, command: Command, context: Any) -> Verdict | None:
        if first_match(self.options.rules, command) is None:
            return None
        request_id = f"apr-{command.session.id}-{command.seq}"
        if self.options.mode == "retry":
            return Verdict.pending(request_id, "approval required: ask an approver, then retry")
        event = APPROVALS.setdefault(request_id, trio.Event())
        await context.notice(f"waiting for approval {request_id}")
        await event.wait()
        return Verdict.allow(request_id=request_id, approved_by=("alice",))


class MaskOptions(StageOptions):
    keys: list[str] = Field(default_factory=lambda: ["ssn"])
    bound: int = 1 << 20
    #: The text filter raises once it has seen more than this many bytes (a filter failing mid-stream).
    text_fail_after: int | None = None


class _JsonMask:
    def __init__(self, keys: list[str], bound: int) -> None:
        self.keys = set(keys)
        self.bound = bound
        self.buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        if len(self.buffer) > self.bound:
            raise ValueError(f"JSON body larger than the masking bound of {self.bound} bytes")
        return b""

    def finish(self) -> bytes:
        doc = json.loads(self.buffer)

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: "***" if k in self.keys else walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        return json.dumps(walk(doc)).encode()


class _Upper:
    def __init__(self, fail_after: int | None) -> None:
        self.fail_after = fail_after
        self.seen = 0

    def feed(self, data: bytes) -> bytes:
        self.seen += len(data)
        if self.fail_after is not None and self.seen > self.fail_after:
            raise RuntimeError("text filter failed")
        return data.upper()

    def finish(self) -> bytes:
        return b""


class JsonKeyMask(Stage):
    """Masks JSON keys with a bounded buffer and upper-cases text/plain (a stand-in for the mask stage)."""

    name = "http_test_mask"
    Options = MaskOptions
    transforms = True

    def stream(self, command: Command, channel: str, content_type: str = "") -> Any:
        if channel != "response-body":
            return None
        if content_type.startswith("application/json"):
            return _JsonMask(self.options.keys, self.options.bound)
        if content_type.startswith("text/plain"):
            return _Upper(self.options.text_fail_after)
        return None


OBSERVED: dict[str, Any] = {}


class _Tap:
    def __init__(self, key: tuple[int, str]) -> None:
        self.key = key
        OBSERVED.setdefault("streams", {})[key] = bytearray()

    def feed(self, data: bytes) -> bytes:
        OBSERVED["streams"][self.key] += data
        return data

    def finish(self) -> bytes:
        OBSERVED.setdefault("finished", []).append(self.key)
        return b""


class Observer(Stage):
    """Records commands, outcomes and every stream it is offered (a stand-in for the record stage)."""

    name = "http_test_observe"

    async def decided(self, command: Command, verdict: Verdict) -> None:
        OBSERVED.setdefault("commands", []).append(command)

    def stream(self, command: Command, channel: str, content_type: str = "") -> Any:
        return _Tap((command.seq, channel))

    async def completed(self, command: Command, outcome: Outcome) -> None:
        OBSERVED.setdefault("outcomes", []).append((command, outcome))

    async def session_started(self, session: Any) -> None:
        OBSERVED.setdefault("sessions", []).append(session)

    async def session_ended(self, session: Any, reason: str) -> None:
        OBSERVED.setdefault("ended", []).append((session.id, reason))

    async def session_refused(self, **kw: Any) -> None:
        OBSERVED.setdefault("refused", []).append(kw["reason"])


class Outcomes(Stage):
    """Records outcomes only, filtering no stream (a stand-in for the audit stage: bodies take gw's
    unfiltered path)."""

    name = "http_test_outcomes"

    async def completed(self, command: Command, outcome: Outcome) -> None:
        OBSERVED.setdefault("outcomes", []).append((command, outcome))


class BrokenOptions(StageOptions):
    session: bool = False
    stream: bool = False


class Broken(Stage):
    """A stage with a bug in ``session_started`` or ``stream`` (what gw does when a stage fails there)."""

    name = "http_test_broken"
    Options = BrokenOptions

    async def session_started(self, session: Any) -> None:
        if self.options.session:
            raise RuntimeError("session store is down")

    def stream(self, command: Command, channel: str, content_type: str = "") -> Any:
        if self.options.stream:
            raise RuntimeError("filter factory bug")
        return None


class InlineHttpPlugins:
    @hookimpl
    def gw_register_identity_providers(self, register: Any) -> None:
        register(DevTokens)

    @hookimpl
    def gw_register_stages(self, register: Any) -> None:
        for stage in (DenyByRule, HoldForApproval, JsonKeyMask, Observer, Outcomes, Broken):
            register(stage)


@pytest.fixture
def http_pm(gw_plugin_manager: pluggy.PluginManager, gw_register: Any) -> pluggy.PluginManager:
    """A plugin manager with the installed plugins (gw_http among them) plus the inline test doubles."""
    OBSERVED.clear()
    APPROVALS.clear()
    gw_register(InlineHttpPlugins(), "inline-http")
    return gw_plugin_manager


@pytest.fixture
def observed() -> dict[str, Any]:
    return OBSERVED


@pytest.fixture
def approvals() -> dict[str, trio.Event]:
    return APPROVALS


def pipeline_text(upstream_url: str, *, stages: str = '{ use = "http_test_observe" }', listener: str = "",
                  upstream: str = "", identity: str = "",
                  headers: str = 'Authorization = "Bearer ${HTTP_TEST_UPSTREAM_TOKEN}"') -> str:
    """A pipeline file with one http listener named ``api`` in front of ``upstream_url``."""
    return f"""
[identity.dev]
use = "http_test_tokens"
tokens = {{ agent = ["agents"], other = ["agents"], guest = ["guests"] }}
{identity}

[pipelines.api]
stages = [{stages}]

[[listeners]]
name = "api"
protocol = "http"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "api"
allow_groups = ["agents"]
{listener}

[listeners.upstream]
url = "{upstream_url}"
headers = {{ {headers} }}
{upstream}
"""


UPSTREAM_TOKEN = "upstream-secret-7f3a9c2e"


@pytest.fixture(autouse=True)
def upstream_token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HTTP_TEST_UPSTREAM_TOKEN", UPSTREAM_TOKEN)
    return UPSTREAM_TOKEN


@pytest.fixture
def http_config(tmp_path: Path) -> Any:
    """``http_config(upstream_url, stages=..., listener=..., upstream=...)`` writes a pipeline file (see
    :func:`pipeline_text`) and returns its path."""

    def make(upstream_url: str, **kw: str) -> Path:
        path = tmp_path / "pipeline.toml"
        path.write_text(pipeline_text(upstream_url, **kw), encoding="utf-8")
        return path

    return make


async def raw_exchange(port: int, data: bytes, *, timeout: float = 3.0, pause: float = 0.0,
                       rest: bytes = b"") -> bytes:
    """Send raw bytes (optionally ``rest`` after ``pause`` seconds) and read until the server closes or
    ``timeout`` passes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = b""
    async with stream:
        await stream.send_all(data)
        if pause:
            await trio.sleep(pause)
        if rest:
            try:
                await stream.send_all(rest)
            except trio.BrokenResourceError:
                pass
        with trio.move_on_after(timeout):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                out += chunk
    return out


@pytest.fixture
def raw_http() -> Any:
    """``await raw_http(port, bytes, timeout=..., pause=..., rest=...)`` -> everything the server sent."""
    return raw_exchange


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def json_of(response: bytes) -> Any:
    _, _, body = response.partition(b"\r\n\r\n")
    return json.loads(body)


@pytest.fixture
def parse_raw() -> Any:
    """(status_of, json_of) helpers for raw responses."""
    return status_of, json_of


async def run_curl(*args: str, timeout: float = 20) -> tuple[int, bytes, bytes]:
    """Run curl with ``args``; returns (exit code, stdout, stderr)."""
    from gw.testing import require_program

    curl = require_program("curl")
    with trio.fail_after(timeout):
        done = await trio.run_process([curl, "-sS", *args], capture_stdout=True, capture_stderr=True,
                                      check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def curl() -> Any:
    """``await curl(*args)`` -> (exit code, stdout, stderr); skips (or fails in CI) without curl."""
    return run_curl


# -- TLS material -----------------------------------------------------------------------------------------
@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def _make_ca(name: str) -> tuple[Any, Any]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA, a certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _make_ca("gw test CA")
    _, other_ca = _make_ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = TlsFiles(out / "ca.pem", out / "cert.pem", out / "key.pem", out / "other-ca.pem")
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca.write_bytes(other_ca.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@pytest.fixture
def tls_upstream(tls_files: TlsFiles) -> Iterator[Upstream]:
    """The HTTP upstream of :func:`upstream`, served over TLS with the test CA's certificate."""
    import ssl

    server = _UpstreamServer(("127.0.0.1", 0), _UpstreamHandler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert, tls_files.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    server.state = Upstream(url=f"https://127.0.0.1:{port}", port=port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.state
    server.shutdown()
    server.server_close()


def agent_client(gw: Any, token: str = "tok-agent", listener: str = "api", **kw: Any) -> httpx.AsyncClient:
    """An httpx client for ``gw``'s listener that sends ``Authorization: Bearer TOKEN``."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port(listener)}",
                             headers={"Authorization": f"Bearer {token}"}, **kw)


@pytest.fixture
def agent() -> Any:
    """``async with agent(gw, token="tok-agent", **httpx_options) as client``."""
    return agent_client
