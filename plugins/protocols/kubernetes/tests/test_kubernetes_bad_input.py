"""Bad input on a kubernetes listener (through ``gw serve``, in front of the test API server): malformed
WebSocket frames, an unknown channel byte, an oversized frame, a client that stalls, an upgrade with a wrong
protocol list, paths with encoded separators or dot segments.  Each is refused or closed with a reason, and
kubectl keeps working for everyone else."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import time
from typing import Any

import pytest

EXEC = "/api/v1/namespaces/prod/pods/web-1/exec?command=cat&container=app&stdin=true&stdout=true&stderr=true"


class Raw:
    """A TLS connection to gw written by hand."""

    def __init__(self, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before a response head: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def body(self, headers: dict[str, str]) -> bytes:
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self.buf += self.sock.recv(65536)
        body, self.buf = self.buf[:length], self.buf[length:]
        return body

    def frames(self, timeout: float = 20) -> list[tuple[int, bytes]]:
        """Server frames until a close frame or EOF."""
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                n, at = b1 & 0x7F, 2
                if n == 126:
                    n, at = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127:
                    n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
                if len(self.buf) < at + n:
                    break
                out.append((b0 & 0x0F, self.buf[at:at + n]))
                self.buf = self.buf[at + n:]
                if b0 & 0x0F == 0x8:
                    return out
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, OSError):
                return out
            if not chunk:
                return out
            self.buf += chunk
        return out

    def close(self) -> None:
        self.sock.close()


def _masked(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _upgrade(raw: Raw, token: str, protocols: str = "v5.channel.k8s.io", target: str = EXEC) -> tuple[int, Any]:
    key = base64.b64encode(os.urandom(16)).decode()
    raw.send((f"GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n"
              f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
              f"Sec-WebSocket-Protocol: {protocols}\r\n\r\n").encode())
    return raw.head()


def _close_reason(frames: list[tuple[int, bytes]]) -> tuple[int, str]:
    closes = [p for op, p in frames if op == 0x8]
    assert closes, frames
    return struct.unpack(">H", closes[0][:2])[0], closes[0][2:].decode()


def _still_serves(cluster: Any, token: str) -> None:
    out = cluster.kubectl_run(token, "get", "pods", "-n", "prod")
    assert out.returncode == 0 and "web-1" in out.stdout, out.stderr


@pytest.fixture
def strict(cluster_factory: Any) -> Any:
    return cluster_factory(extra='max_websocket_message = "4KiB"\nheader_timeout = "2s"\n')


def test_bad_frames_and_channels_close_the_exec(strict: Any) -> None:
    token = strict.token()
    cases = [
        (b"\x82\x02\x00a", 1002, "not masked"),                        # an unmasked client frame
        (_masked(0x2, b"\x07hello"), 1002, "unknown channel 7"),        # an unknown channel byte
        (_masked(0x1, b"\x00text"), 1002, "binary channel messages"),  # a text message
        (_masked(0x2, b"\x04{not json"), 1002, "resize"),              # a malformed resize
        (_masked(0x2, b"\x00" + b"x" * 8000), 1009, "max_websocket_message"),  # oversized
        (bytes([0x82 | 0x40, 0x81, 1, 2, 3, 4, 0]), 1002, "reserved bits"),    # RSV bit set
    ]
    for data, code, words in cases:
        raw = Raw(strict.port)
        try:
            status, headers = _upgrade(raw, token)
            assert status == 101, (status, headers)
            assert headers.get("sec-websocket-protocol") == "v5.channel.k8s.io"
            raw.send(_masked(0x2, b"\x00ok\n"))
            raw.send(data)
            got, reason = _close_reason(raw.frames())
            assert got == code and words in reason, (data[:8], got, reason)
        finally:
            raw.close()
    _still_serves(strict, token)


def test_exec_stdin_roundtrip_over_a_raw_websocket(strict: Any) -> None:
    token = strict.token()
    raw = Raw(strict.port)
    try:
        status, _ = _upgrade(raw, token)
        assert status == 101
        raw.send(_masked(0x2, b"\x00hello gw\n"))
        raw.send(_masked(0x2, b"\xff\x00"))  # v5: close stdin
        frames = raw.frames()
        data = [p for op, p in frames if op == 0x2]
        assert b"\x01hello gw\n" in data
        status_msgs = [json.loads(p[1:]) for p in data if p[:1] == b"\x03"]
        assert status_msgs and status_msgs[0]["status"] == "Success"
    finally:
        raw.close()


def test_wrong_protocol_lists_and_spdy_are_refused(strict: Any) -> None:
    token = strict.token()
    for protocols in ("base64.channel.k8s.io", "chat, superchat", "channel.k8s.io"):
        raw = Raw(strict.port)
        try:
            status, headers = _upgrade(raw, token, protocols)
            body = json.loads(raw.body(headers))
            assert status == 400 and body["kind"] == "Status", (protocols, status, body)
            assert "v5.channel.k8s.io" in body["message"]
        finally:
            raw.close()
    raw = Raw(strict.port)
    try:
        raw.send((f"POST {EXEC} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n"
                  "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
                  ).encode())
        status, headers = raw.head()
        body = json.loads(raw.body(headers))
        assert status == 400 and "WebSocket only" in body["message"]
    finally:
        raw.close()
    assert not strict.api.execs
    _still_serves(strict, token)


@pytest.mark.parametrize("target", [
    "/api/v1/namespaces/prod/pods/../secrets/db",
    "/api/v1/namespaces/prod/pods/%2E%2E/secrets/db",
    "/api/v1/namespaces/prod%2Fsecrets/db",
    "/api/v1/namespaces/prod/pods/web-1%2Fexec",
    "/api/v1//namespaces/prod/secrets/db",
])
def test_odd_paths_are_refused(strict: Any, target: str) -> None:
    token = strict.token()
    raw = Raw(strict.port)
    try:
        raw.send(f"GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        status, headers = raw.head()
        body = json.loads(raw.body(headers))
        assert status == 400 and body["kind"] == "Status" and body["reason"] == "BadRequest", body
    finally:
        raw.close()
    assert not strict.api.requests("/secrets")


def test_a_stalled_client_does_not_hold_up_others(strict: Any) -> None:
    token = strict.token()
    raw = Raw(strict.port)
    try:
        raw.send(b"GET /api/v1/namespaces/prod/pods HTTP/1.1\r\nHost: gw\r\n")  # and then nothing
        _still_serves(strict, token)
        status, headers = raw.head()
        assert status == 408
        assert "header_timeout" in json.loads(raw.body(headers))["message"]
    finally:
        raw.close()


def test_websocket_watches_are_refused(strict: Any) -> None:
    token = strict.token()
    raw = Raw(strict.port)
    try:
        status, headers = _upgrade(raw, token, "v4.channel.k8s.io", target="/api/v1/namespaces/prod/secrets?watch=1")
        body = json.loads(raw.body(headers))
        assert status == 400 and "only for exec" in body["message"], body
    finally:
        raw.close()
    assert not strict.api.requests("/secrets")
