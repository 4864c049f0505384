"""The library serves another protocol than HTTP: an inline ``kube-like`` protocol built only from
gw_httpproxy's public API, the way the Kubernetes plugin will be -- its own options (an ``impersonate`` key
in the upstream table), verbs and objects from the API path, ``metav1.Status`` replies, impersonation headers
the agent may not send itself, and exec-style WebSocket channel frames whose stdout passes the mask stage.

The upstreams are real servers started by the test (a threaded ``http.server`` echoing what it received, and
a wsproto server speaking a channel protocol like ``v5.channel.k8s.io``); the mask stage is the real one, and
the identity provider an inline double that accepts ``tok-SUBJECT``."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider
from gw.model import Command, Identity, Kind, Verdict
from gw.pipeline import CommandRun, SessionRuntime
from gw.plugins import Registry
from gw.testing import running_gateway
from gw_httpproxy import (
    CommandSpec,
    ProxyDialect,
    ProxyHandler,
    ProxyListenerOptions,
    Refusal,
    Reply,
    RequestView,
    UpstreamOptions,
)
from gw_httpproxy.filtering import open_filter
from gw_httpproxy.headers import HeaderList
from gw_httpproxy.tunnel import MessageFilter, MessageObserver
from gw_httpproxy.websocket import Frame, Message, channel_split
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request
from wsproto.events import Message as WsMessage

# -- the protocol, from the library's API only ------------------------------------------------------------------


class KubeUpstream(UpstreamOptions):
    impersonate: bool = False


class KubeOptions(ProxyListenerOptions):
    upstream: KubeUpstream


class ExecChannels:
    """A :class:`MessageFilter` for channel frames: stdout (1) and stderr (2) through the pipeline's filters."""

    def __init__(self, run: CommandRun) -> None:
        self.filters = {1: open_filter(run, "stdout", "text/plain"),
                        2: open_filter(run, "stderr", "text/plain")}

    def message(self, message: Message) -> Sequence[Message]:
        channel, data = channel_split(message.payload)
        filt = self.filters.get(channel)
        if filt is not None:
            data = filt.feed(data) + filt.feed(b"")
        return (Message(message.opcode, bytes([channel]) + data),)

    def control(self, frame: Frame) -> Frame | None:
        return frame

    def finish(self) -> None:
        for filt in self.filters.values():
            if filt is not None:
                filt.finish()


class KubeDialect(ProxyDialect):
    language = "kubernetes"
    managed_headers = ("Impersonate-User", "Impersonate-Group")

    def command(self, request: RequestView) -> CommandSpec:
        for name, _ in request.headers:
            if name.startswith(b"impersonate-"):
                raise Refusal(403, "Forbidden", "gw sets impersonation itself; send no Impersonate-* header")
        parts = request.target.path.strip("/").split("/")  # api/v1/namespaces/NS/pods/NAME
        namespace, resource, name = parts[3], parts[4], parts[5] if len(parts) > 5 else ""
        verb = {"GET": "get" if name else "list", "DELETE": "delete"}.get(request.effective_method, "update")
        if request.upgrade:
            verb = "exec"
        kind = Kind.READ if verb in ("get", "list") else Kind.EXEC if verb == "exec" else Kind.WRITE
        return CommandSpec(f"{verb} {resource}/{name} -n {namespace}", kind, verb,
                           (f"{namespace}/{resource}/{name}",))

    def reply(self, status: int, reason: str, message: str, *, request_id: str | None = None,
              **extra: Any) -> Reply:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                "reason": reason, "code": status}
        return Reply(status, json.dumps(body).encode())

    def verdict_reply(self, verdict: Verdict, request_id: str, command: Command | None = None) -> Reply:
        return self.reply(403, "Forbidden", f"gw: {verdict.reason}", request_id=request_id)

    def upstream_headers(self, headers: HeaderList, request: RequestView, sr: SessionRuntime) -> HeaderList:
        identity = sr.session.identity
        headers.append((b"impersonate-user", identity.subject.encode()))
        headers.extend((b"impersonate-group", g.encode()) for g in identity.groups)
        headers.append((b"accept", b"application/json"))
        return headers

    def websocket(self, sr: SessionRuntime, run: CommandRun) -> tuple[MessageFilter | None, MessageObserver | None]:
        return ExecChannels(run), None


class KubeHandler(ProxyHandler):
    name = "kubelike"
    Options: ClassVar[type[KubeOptions]] = KubeOptions
    dialect = KubeDialect()


class Tokens(IdentityProvider):
    """Accepts ``tok-SUBJECT`` (a stand-in for the jwt provider)."""

    name = "kube_test_tokens"

    async def authenticate(self, credential: Credential) -> Identity:
        token = str(credential.secret)
        if not token.startswith("tok-"):
            raise AuthenticationError("bad token", reason="invalid_token")
        return Identity(token[4:], ("agents",), provider=self.instance_name, expires_at=time.time() + 600)


class Plugin:
    @hookimpl
    def gw_register_protocols(self, register: Any) -> None:
        register(KubeHandler)

    @hookimpl
    def gw_register_identity_providers(self, register: Any) -> None:
        register(Tokens)


# -- upstreams ---------------------------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()],
                           "secret": {"ssn": "234567890"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_DELETE = do_GET


class _Exec(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    sock.sendall(ws.send(AcceptConnection(subprotocol="v5.channel.k8s.io")))
                    sock.sendall(ws.send(BytesMessage(b"\x01card 4111 1111 1111 1111\n")))
                    sock.sendall(ws.send(BytesMessage(b"\x03" + b'{"status":"Success"}')))
                    sock.sendall(ws.send(CloseConnection(code=1000)))
                elif isinstance(event, CloseConnection):
                    return


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    http.daemon_threads = True
    ws = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Exec)
    ws.daemon_threads = True
    for server in (http, ws):
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}", f"http://127.0.0.1:{ws.server_address[1]}"
    for server in (http, ws):
        server.shutdown()
        server.server_close()


CONFIG = """
[identity.dev]
use = "kube_test_tokens"

[pipelines.k8s]
stages = [
  {{ use = "guard", deny = [{{ verb = "delete", objects = ["prod/*"], message = "no deletes in prod" }}] }},
  {{ use = "mask", json_paths = ["secret.ssn"], detectors = ["credit_card"] }},
]

[[listeners]]
name = "cluster"
protocol = "kubelike"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "k8s"

[listeners.upstream]
url = "{url}"
impersonate = true
headers = {{ Authorization = "Bearer ${{KUBE_TEST_SA}}" }}
"""


@pytest.fixture
def kube(gw_plugin_manager: Any, gw_register: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    have = set(Registry.build(gw_plugin_manager).names("stages"))
    if not {"guard", "mask"} <= have:
        pytest.skip("needs the guard and mask plugins")
    monkeypatch.setenv("KUBE_TEST_SA", "sa-token-0123456789")
    gw_register(Plugin(), "kubelike-test")

    def config(url: str) -> Path:
        path = tmp_path / "gw.toml"
        path.write_text(CONFIG.format(url=url))
        return path

    return config


async def _request(port: int, head: str) -> tuple[int, Any]:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head.encode())
        out = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                out += chunk
                if b"\r\n\r\n" in out and out.endswith(b"}"):
                    break
    head_bytes, _, body = out.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), json.loads(body)


async def test_a_second_protocol_built_on_the_library(kube: Any, servers: tuple[str, str],
                                                      gw_plugin_manager: Any) -> None:
    http_url, _ = servers
    async with running_gateway(kube(http_url), pm=gw_plugin_manager) as gw:
        port = gw.port("cluster")
        auth = "Authorization: Bearer tok-agent-7\r\n"
        status, got = await _request(port, f"GET /api/v1/namespaces/dev/pods/web-1 HTTP/1.1\r\nHost: k\r\n{auth}"
                                           "Impersonate-Group: system:masters\r\nConnection: close\r\n\r\n")
        assert status == 403 and got["kind"] == "Status" and "Impersonate" in got["message"]
        status, got = await _request(port, f"GET /api/v1/namespaces/dev/pods/web-1 HTTP/1.1\r\nHost: k\r\n{auth}"
                                           "Connection: close\r\n\r\n")
        assert status == 200
        headers = dict(got["headers"])
        assert headers["impersonate-user"] == "agent-7" and headers["accept"] == "application/json"
        assert headers["authorization"] == "*" * len("Bearer sa-token-0123456789"), "injected, echo scrubbed"
        assert got["secret"]["ssn"] == "***", "JSON responses pass the mask stage"
        status, got = await _request(port, f"DELETE /api/v1/namespaces/prod/pods/web-1 HTTP/1.1\r\nHost: k\r\n"
                                           f"{auth}Connection: close\r\n\r\n")
        assert status == 403 and got == {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                         "message": "gw: no deletes in prod", "reason": "Forbidden",
                                         "code": 403}
        status, got = await _request(port, "GET /api/v1/namespaces/dev/pods HTTP/1.1\r\nHost: k\r\n"
                                           "Connection: close\r\n\r\n")
        assert status == 401 and got["kind"] == "Status" and got["reason"] == "missing_token"


async def test_exec_channel_frames_pass_the_stream_filters(kube: Any, servers: tuple[str, str],
                                                           gw_plugin_manager: Any) -> None:
    _, ws_url = servers
    async with running_gateway(kube(ws_url), pm=gw_plugin_manager) as gw:
        ws = WSConnection(ConnectionType.CLIENT)
        frames: list[bytes] = []
        async with await trio.open_tcp_stream("127.0.0.1", gw.port("cluster")) as stream:
            await stream.send_all(ws.send(Request(
                host="k", target="/api/v1/namespaces/dev/pods/web-1/exec?command=cat",
                subprotocols=["v5.channel.k8s.io"], extra_headers=[(b"authorization", b"Bearer tok-agent-7")])))
            with trio.fail_after(5):
                done = False
                while not done:
                    ws.receive_data(await stream.receive_some(65536) or None)
                    for event in ws.events():
                        if isinstance(event, WsMessage):
                            frames.append(bytes(event.data))
                        elif isinstance(event, CloseConnection):
                            done = True
    assert frames == [b"\x01card ***\n", b'\x03{"status":"Success"}']
