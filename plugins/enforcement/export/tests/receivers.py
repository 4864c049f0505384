"""Receiving ends the export tests start: a syslog TCP receiver (RFC 6587 octet counting), a syslog UDP
receiver and an HTTPS collector that can refuse for a while.  Each can go down and come back on its port."""

from __future__ import annotations

import datetime
import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gw.testing import free_port

#: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`` (RFC 5424 section 6).
RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) gw (\d+) (\S+) - (.*)$",
                     re.DOTALL)
BOM = b"\xef\xbb\xbf"


def parse_syslog(frame: bytes) -> dict[str, Any]:
    m = RFC5424.match(frame)
    assert m, f"not an RFC 5424 message: {frame[:200]!r}"
    msg = m.group(6)
    assert not msg.startswith(BOM), "MSG is plain UTF-8 JSON (no byte order mark)"
    return {"pri": int(m.group(1)), "timestamp": m.group(2).decode(), "hostname": m.group(3).decode(),
            "msgid": m.group(5).decode(), "msg": msg.decode("utf-8")}


class SyslogTCPReceiver:
    """Accepts connections and splits each stream into octet-counted frames."""

    def __init__(self) -> None:
        self.port = free_port()
        self.frames: list[bytes] = []
        self.lock = threading.Lock()
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and drop every connection (what it had not read is lost, as with a crash)."""
        server, self.server = self.server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)  # wakes the reading thread; unread bytes are discarded
            except OSError:
                pass
            c.close()
        self.conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                sp = buf.find(b" ")
                if sp < 0:
                    break
                length = int(buf[:sp])
                if len(buf) < sp + 1 + length:
                    break
                with self.lock:
                    self.frames.append(buf[sp + 1: sp + 1 + length])
                buf = buf[sp + 1 + length:]

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [parse_syslog(f) for f in self.frames]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m["msg"]) for m in self.messages()]


class SyslogUDPReceiver:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(65536)
            except OSError:
                return
            self.frames.append(data)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(parse_syslog(f)["msg"]) for f in list(self.frames)]

    def close(self) -> None:
        self.sock.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem doubles as the CA file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw test collector")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HTTPSCollector:
    """An HTTPS ingest endpoint: answers 503 to the first ``fail`` requests, then 200, keeping what it took."""

    def __init__(self, directory: Path, fail: int = 0) -> None:
        self.cert, self.key = make_certificate(directory)
        self.fail = fail
        self.batches: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.refused = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if collector.refused < collector.fail:
                    collector.refused += 1
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                collector.batches.append(json.loads(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [e for batch in list(self.batches) for e in batch]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
