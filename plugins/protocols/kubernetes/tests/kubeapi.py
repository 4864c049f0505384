"""A small Kubernetes API server for the tests -- a stand-in, not Kubernetes.

No kube-apiserver can be installed where these tests run, so this server speaks the part of the real wire
protocol kubectl v1.32 uses, well enough that kubectl talks to it directly (test_kubeapi_direct.py proves
that before any test puts gw in between):

* discovery: ``/version``, ``/api``, ``/apis``, ``/api/v1`` (legacy discovery; aggregated discovery is not
  offered, so kubectl falls back to it as it does with older servers);
* pods, secrets, namespaces, nodes: get, list (as JSON lists or ``meta.k8s.io/v1`` Tables when kubectl asks
  for them), watch (one JSON event per line, labelled ``application/json`` as kube-apiserver labels it),
  create, delete;
* ``pods/log``;
* ``pods/exec`` and ``pods/attach`` over WebSocket with the channel protocols ``v5.channel.k8s.io`` and
  ``v4.channel.k8s.io`` (stdin 0, stdout 1, stderr 2, status 3, resize 4, close 255).  The command really
  runs, as a local process in a scratch directory (with a pseudo-terminal for ``-t``), so shells work;
* ``pods/portforward`` and SPDY upgrades are refused, as a server without them would.

Every request is recorded (method, path, headers) so tests can check what gw forwarded.  It serves HTTP (or
HTTPS with a certificate) with ``http.server`` and frames WebSocket messages with wsproto, so it shares no
code with gw's proxy.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fcntl
import hashlib
import json
import os
import pty
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

CREATED = "2026-01-01T00:00:00Z"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
#: Seconds between the exec's 101 and the start of its process (see ``_exec``).
EXEC_START_DELAY = 0.1

RESOURCES = {
    # name: (kind, namespaced, verbs)
    "pods": ("Pod", True, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]),
    "secrets": ("Secret", True, ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                                 "watch"]),
    "namespaces": ("Namespace", False, ["create", "delete", "get", "list", "patch", "update", "watch"]),
    "nodes": ("Node", False, ["create", "delete", "get", "list", "patch", "update", "watch"]),
}
SUBRESOURCES = {"pods/log": "Pod", "pods/exec": "PodExecOptions", "pods/attach": "PodAttachOptions",
                "pods/portforward": "PodPortForwardOptions"}
SHORT_NAMES = {"pods": ["po"], "namespaces": ["ns"], "nodes": ["no"]}


def _meta(name: str, namespace: str | None, rv: int, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": hashlib.md5(f"{namespace}/{name}".encode()).hexdigest(),
                            "resourceVersion": str(rv), "creationTimestamp": CREATED}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def pod(name: str, namespace: str, rv: int = 1, *, phase: str = "Running") -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": _meta(name, namespace, rv, labels={"app": name}),
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], "nodeName": "node-1"},
            "status": {"phase": phase, "podIP": "10.0.0.7",
                       "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                              "image": "busybox:1.36", "imageID": "", "started": True,
                                              "state": {"running": {"startedAt": CREATED}}}]}}


def secret(name: str, namespace: str, data: dict[str, str], rv: int = 1) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    applied = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": encoded,
                          "metadata": {"name": name, "namespace": namespace}})
    return {"kind": "Secret", "apiVersion": "v1", "type": "Opaque", "data": encoded,
            "metadata": _meta(name, namespace, rv, annotations={
                "kubectl.kubernetes.io/last-applied-configuration": applied})}


def default_objects() -> dict[str, dict[tuple[str | None, str], dict[str, Any]]]:
    return {
        "pods": {("prod", "web-1"): pod("web-1", "prod"), ("prod", "web-2"): pod("web-2", "prod"),
                 ("default", "debug"): pod("debug", "default")},
        "secrets": {("prod", "db"): secret("db", "prod", {"password": "hunter2-prod-db",
                                                          "username": "app"})},
        "namespaces": {(None, n): {"kind": "Namespace", "apiVersion": "v1", "metadata": _meta(n, None, 1),
                                   "status": {"phase": "Active"}} for n in ("default", "prod")},
        "nodes": {(None, "node-1"): {"kind": "Node", "apiVersion": "v1", "metadata": _meta("node-1", None, 1),
                                     "status": {"conditions": [{"type": "Ready", "status": "True"}]}}},
    }


def status(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    body.update(extra)
    return body


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


@dataclass
class ExecRecord:
    namespace: str
    pod: str
    command: list[str]
    tty: bool
    protocol: str
    exit_code: int | None = None
    resizes: list[tuple[int, int]] = field(default_factory=list)


class KubeAPI:
    """The server's state, shared by its handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.objects = default_objects()
        self.rv = 10
        #: (resource, namespace, event) -- what watches deliver.
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []
        self.seen: list[Seen] = []
        self.execs: list[ExecRecord] = []
        self.logs: dict[tuple[str, str], str] = {("prod", "web-1"): "started web-1\nserving on :8080\n"}
        self.workdir = os.getcwd()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- state ------------------------------------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, resource: str, obj: dict[str, Any], event: str = "ADDED") -> None:
        with self.lock:
            ns = obj["metadata"].get("namespace")
            obj["metadata"]["resourceVersion"] = str(self.next_rv())
            self.objects[resource][(ns, obj["metadata"]["name"])] = obj
            self.events.append((resource, ns, {"type": event, "object": copy.deepcopy(obj)}))
            self.lock.notify_all()

    def remove(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects[resource].pop((namespace, name), None)
            if obj is not None:
                obj["metadata"]["resourceVersion"] = str(self.next_rv())
                self.events.append((resource, namespace, {"type": "DELETED", "object": copy.deepcopy(obj)}))
                self.lock.notify_all()
            return obj

    def requests(self, path_part: str = "") -> list[Seen]:
        return [s for s in self.seen if path_part in s.path]

    # -- lifetime ---------------------------------------------------------------------------------------
    def start(self, port: int = 0, *, certfile: str | None = None, keyfile: str | None = None) -> KubeAPI:
        api = self

        class Handler(_Handler):
            state = api

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        scheme = "http"
        if certfile:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(certfile, keyfile)
            ctx.set_alpn_protocols(["http/1.1"])
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self.server = server
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _table(resource: str, objects: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    if resource == "pods":
        columns = ["Name", "Ready", "Status", "Restarts", "Age"]
        rows = [[o["metadata"]["name"], "1/1", o["status"]["phase"], 0, "1d"] for o in objects]
    elif resource == "secrets":
        columns = ["Name", "Type", "Data", "Age"]
        rows = [[o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), "1d"] for o in objects]
    else:
        columns = ["Name", "Status", "Age"]
        rows = [[o["metadata"]["name"], "Active", "1d"] for o in objects]
    defs = [{"name": c, "type": "integer" if c in ("Restarts", "Data") else "string", "format": "name"
             if c == "Name" else "", "description": c, "priority": 0} for c in columns]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": defs,
            "rows": [{"cells": cells, "object": {"kind": "PartialObjectMetadata",
                                                 "apiVersion": "meta.k8s.io/v1",
                                                 "metadata": o["metadata"]}} for cells, o in zip(rows, objects)]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: KubeAPI

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- responses ----------------------------------------------------------------------------------------
    def _json(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, **extra: Any) -> None:
        self._json(code, status(code, reason, message, **extra))

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    # -- dispatch -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        st = self.state
        with st.lock:
            st.seen.append(Seen(method, parts.path, query, list(self.headers.items())))
        if (self.headers.get("Authorization") or "") != f"Bearer {SERVICE_ACCOUNT_TOKEN}" and \
                not parts.path.startswith("/version"):
            self._status(401, "Unauthorized", "Unauthorized")
            return
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        segs = [s for s in parts.path.split("/") if s]
        try:
            self._route(method, segs, query, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, method: str, segs: list[str], query: dict[str, list[str]], body: bytes) -> None:
        if segs == ["version"]:
            self._json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})
        elif segs == ["api"]:
            self._json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
        elif segs == ["apis"]:
            self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        elif segs == ["api", "v1"]:
            resources = [{"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": v,
                          **({"shortNames": SHORT_NAMES[n]} if n in SHORT_NAMES else {})}
                         for n, (k, ns, v) in RESOURCES.items()]
            resources += [{"name": n, "singularName": "", "namespaced": True, "kind": k,
                           "verbs": ["get"] if n == "pods/log" else ["create", "get"]}
                          for n, k in SUBRESOURCES.items()]
            self._json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
        elif segs[:2] == ["api", "v1"]:
            self._resource(method, segs[2:], query, body)
        else:
            self._status(404, "NotFound", "the server could not find the requested resource")

    def _resource(self, method: str, segs: list[str], query: dict[str, list[str]], body: bytes) -> None:
        namespace: str | None = None
        if len(segs) >= 3 and segs[0] == "namespaces":
            namespace, segs = segs[1], segs[2:]
        elif len(segs) == 2 and segs[0] == "namespaces":
            segs = ["namespaces", segs[1]]
        resource = segs[0] if segs else ""
        if resource not in RESOURCES:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        name = segs[1] if len(segs) > 1 else None
        sub = segs[2] if len(segs) > 2 else None
        st = self.state
        if sub is not None:
            self._subresource(method, resource, namespace, name or "", sub, query)
            return
        if name is None:
            if method == "GET" and (query.get("watch") or ["false"])[0] in ("1", "true"):
                self._watch(resource, namespace, query)
            elif method == "GET":
                with st.lock:
                    items = [copy.deepcopy(o) for (ns, _), o in sorted(st.objects[resource].items(),
                                                                      key=lambda kv: str(kv[0]))
                             if namespace is None or ns == namespace]
                    rv = str(st.rv)
                if self._wants_table():
                    self._json(200, _table(resource, items, rv))
                    return
                for item in items:
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                kind = RESOURCES[resource][0]
                self._json(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                                 "items": items})
            elif method == "POST":
                obj = json.loads(body)
                obj.setdefault("metadata", {})
                if namespace is not None:
                    obj["metadata"]["namespace"] = namespace
                obj["metadata"].setdefault("creationTimestamp", CREATED)
                st.put(resource, obj)
                self._json(201, obj)
            else:
                self._status(405, "MethodNotAllowed", f"{method} is not supported here")
            return
        kind = RESOURCES[resource][0]
        if method == "GET":
            with st.lock:
                obj = copy.deepcopy(st.objects[resource].get((namespace, name)))
            if obj is None:
                self._status(404, "NotFound", f'{resource} "{name}" not found',
                             details={"name": name, "kind": resource})
            elif self._wants_table():
                self._json(200, _table(resource, [obj], obj["metadata"]["resourceVersion"]))
            else:
                self._json(200, obj)
        elif method == "DELETE":
            obj = st.remove(resource, namespace, name)
            if obj is None:
                self._status(404, "NotFound", f'{resource} "{name}" not found',
                             details={"name": name, "kind": resource})
            else:
                self._json(200, obj)
        else:
            self._status(405, "MethodNotAllowed", f"{method} {kind} is not supported by this test server")

    def _watch(self, resource: str, namespace: str | None, query: dict[str, list[str]]) -> None:
        st = self.state
        since = int((query.get("resourceVersion") or ["0"])[0] or 0)
        timeout = float((query.get("timeoutSeconds") or ["30"])[0])
        self.send_response(200)
        # As kube-apiserver does: a JSON watch is labelled plain application/json (only other encodings get
        # ";stream=watch"), one event per line, chunked.
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        table = self._wants_table()
        deadline = time.monotonic() + min(timeout, 60)
        sent = 0
        with st.lock:
            backlog = [e for e in st.events if e[0] == resource and (namespace is None or e[1] == namespace)
                       and int(e[2]["object"]["metadata"]["resourceVersion"]) > since]
            start = len(st.events)
        try:
            pending = backlog
            while True:
                for _, _, event in pending:
                    obj = event["object"]
                    if table:
                        obj = _table(resource, [obj], obj["metadata"]["resourceVersion"])
                    line = json.dumps({"type": event["type"], "object": obj}).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    sent += 1
                with st.lock:
                    while len(st.events) == start and time.monotonic() < deadline:
                        st.lock.wait(0.2)
                    pending = [e for e in st.events[start:] if e[0] == resource and
                               (namespace is None or e[1] == namespace)]
                    start = len(st.events)
                if time.monotonic() >= deadline:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _subresource(self, method: str, resource: str, namespace: str | None, name: str, sub: str,
                     query: dict[str, list[str]]) -> None:
        st = self.state
        with st.lock:
            exists = (namespace, name) in st.objects.get(resource, {})
        if resource != "pods" or not exists:
            self._status(404, "NotFound", f'{resource} "{name}" not found')
            return
        if sub == "log":
            text = st.logs.get((namespace or "", name), "")
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if sub in ("exec", "attach"):
            upgrade = (self.headers.get("Upgrade") or "").lower()
            if upgrade.startswith("spdy"):
                self._status(400, "BadRequest", "this test server speaks only WebSocket (v5/v4.channel.k8s.io)")
                return
            if upgrade != "websocket":
                self._status(400, "BadRequest", "Upgrade request required")
                return
            self._exec(namespace or "", name, sub, query)
            return
        self._status(400, "BadRequest", f"{sub} is not supported by this test server")

    # -- exec over WebSocket ------------------------------------------------------------------------------
    def _exec(self, namespace: str, name: str, sub: str, query: dict[str, list[str]]) -> None:
        offered = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        chosen = next((p for p in CHANNEL_PROTOCOLS if p in offered), None)
        if chosen is None:
            self._status(400, "BadRequest", f"none of the offered subprotocols {offered} is supported")
            return
        key = self.headers.get("Sec-WebSocket-Key") or ""
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", chosen)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        command = query.get("command") or (["sh"] if sub == "attach" else [])
        tty = (query.get("tty") or ["false"])[0] == "true"
        stdin = (query.get("stdin") or ["false"])[0] == "true"
        record = ExecRecord(namespace, name, command, tty, chosen)
        with self.state.lock:
            self.state.execs.append(record)
        # The real API server answers the upgrade first and only then reaches the kubelet, which asks the
        # container runtime to start the process: output never follows the 101 at once.  kubectl before 1.34
        # depends on that gap: it reads the connection before it has set up its streams and drops a message
        # that arrives earlier ("Unknown stream id 1, discarding message", then "error: closed all streams").
        time.sleep(EXEC_START_DELAY)
        _ExecSession(self, record, stdin=stdin, v5=chosen.startswith("v5")).run()


class _ExecSession:
    """One exec: a local process wired to the channel protocol."""

    def __init__(self, handler: _Handler, record: ExecRecord, *, stdin: bool, v5: bool) -> None:
        self.handler = handler
        self.record = record
        self.want_stdin = stdin
        self.v5 = v5
        self.ws = Connection(ConnectionType.SERVER)
        self.send_lock = threading.Lock()
        self.sock = handler.connection

    def send(self, channel: int, data: bytes) -> None:
        out = self.ws.send(BytesMessage(data=bytes([channel]) + data))
        with self.send_lock:
            self.sock.sendall(out)

    def run(self) -> None:
        record = self.record
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": record.pod, "TERM": "xterm",
               "PS1": "$ ", "HOME": self.handler.state.workdir}
        master = None
        try:
            if record.tty:
                master, slave = pty.openpty()
                proc = subprocess.Popen(record.command, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        cwd=self.handler.state.workdir, start_new_session=True)
                os.close(slave)
            else:
                proc = subprocess.Popen(record.command, stdin=subprocess.PIPE if self.want_stdin else
                                        subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=env, cwd=self.handler.state.workdir)
        except OSError as e:
            self.send(3, json.dumps(status(500, "InternalError", f"exec failed: {e}")).encode())
            self._close()
            return
        readers = []
        if master is not None:
            readers.append(threading.Thread(target=self._pump, args=(master, 1), daemon=True))
        else:
            assert proc.stdout is not None and proc.stderr is not None
            readers.append(threading.Thread(target=self._pump, args=(proc.stdout.fileno(), 1), daemon=True))
            readers.append(threading.Thread(target=self._pump, args=(proc.stderr.fileno(), 2), daemon=True))
        for t in readers:
            t.start()
        inbound = threading.Thread(target=self._inbound, args=(proc, master), daemon=True)
        inbound.start()
        code = proc.wait()
        for t in readers:
            t.join(5)
        record.exit_code = code
        if code == 0:
            result = {"metadata": {}, "status": "Success"}
        else:
            result = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": f"command terminated with non-zero exit code: exit status {code}",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        try:
            self.send(3, json.dumps(result).encode())
            self._close()
        except OSError:
            pass
        inbound.join(3)
        if master is not None:
            os.close(master)

    def _close(self) -> None:
        with self.send_lock:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))

    def _pump(self, fd: int, channel: int) -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            try:
                self.send(channel, data)
            except OSError:
                return

    def _inbound(self, proc: subprocess.Popen[bytes], master: int | None) -> None:
        rfile = self.handler.rfile
        while True:
            try:
                data = rfile.read1(65536)
            except (OSError, ValueError):
                return
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, BytesMessage | TextMessage):
                    payload = event.data if isinstance(event.data, bytes) else event.data.encode()
                    if not payload:
                        continue
                    self._channel(payload[0], payload[1:], proc, master)
                elif isinstance(event, Ping):
                    with self.send_lock:
                        self.sock.sendall(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if proc.poll() is None:
                        proc.kill()
                    # the close handshake may already be complete
                    with contextlib.suppress(Exception), self.send_lock:
                            self.sock.sendall(self.ws.send(event.response()))
                    return

    def _channel(self, channel: int, data: bytes, proc: subprocess.Popen[bytes], master: int | None) -> None:
        if channel == 0:
            if master is not None:
                os.write(master, data)
            elif proc.stdin is not None:
                try:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                except OSError:
                    pass
        elif channel == 4:
            size = json.loads(data)
            self.record.resizes.append((int(size["Width"]), int(size["Height"])))
            if master is not None:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
        elif channel == 255 and self.v5 and data[:1] == b"\x00":
            if proc.stdin is not None:
                proc.stdin.close()
            elif master is not None:
                os.write(master, b"\x04")


#: The credential this server accepts (what gw's upstream.headers inject).
SERVICE_ACCOUNT_TOKEN = "fake-sa-token-6c1f"


def main() -> None:
    """``python kubeapi.py PORT``: serve until interrupted (examples/kubernetes.toml's test uses it)."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6443
    api = KubeAPI().start(port)
    print(api.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
