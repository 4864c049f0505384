"""Unit tests: API paths as the API server reads them, commands, Secret redaction, exec channel handling."""

from __future__ import annotations

import base64
import json

import pytest
from gw.model import Kind
from gw_httpproxy.websocket import Message, Opcode, WebSocketError
from gw_kubernetes.channels import ExecInput, ExecOutput
from gw_kubernetes.classify import classify
from gw_kubernetes.paths import parse_request
from gw_kubernetes.secrets import REDACTED_B64, SecretBody, SecretWatch, redact


def spec(method: str, target: str):
    path, _, query = target.partition("?")
    return classify(parse_request(method, path, query), method, target)


@pytest.mark.parametrize(("method", "target", "verb", "kind", "objects", "text"), [
    ("GET", "/api/v1/namespaces/prod/pods", "list", Kind.READ, ("prod/pods/*",), "list pods -n prod"),
    ("GET", "/api/v1/pods?labelSelector=app%3Dweb", "list", Kind.READ, ("*/pods/*",), "list pods -A -l app=web"),
    ("GET", "/api/v1/namespaces/prod/pods/web-1", "get", Kind.READ, ("prod/pods/web-1",),
     "get pods/web-1 -n prod"),
    ("GET", "/api/v1/namespaces/prod/pods?watch=1", "watch", Kind.READ, ("prod/pods/*",), "watch pods -n prod"),
    ("GET", "/api/v1/watch/namespaces/prod/pods", "watch", Kind.READ, ("prod/pods/*",), "watch pods -n prod"),
    ("DELETE", "/api/v1/namespaces/prod/pods/web-1", "delete", Kind.WRITE, ("prod/pods/web-1",),
     "delete pods/web-1 -n prod"),
    ("DELETE", "/api/v1/namespaces/prod/pods", "deletecollection", Kind.WRITE, ("prod/pods/*",),
     "deletecollection pods -n prod"),
    ("PATCH", "/apis/apps/v1/namespaces/prod/deployments/web/scale", "patch", Kind.WRITE,
     ("prod/deployments/web", "prod/deployments/web/scale"), "patch deployments/web/scale -n prod"),
    ("GET", "/api/v1/nodes/n1", "get", Kind.READ, ("_cluster/nodes/n1",), "get nodes/n1"),
    ("GET", "/api/v1/nodes", "list", Kind.READ, ("_cluster/nodes/*",), "list nodes"),
    ("PATCH", "/api/v1/nodes/n1", "patch", Kind.ADMIN, ("_cluster/nodes/n1",), "patch nodes/n1"),
    ("DELETE", "/api/v1/namespaces/prod", "delete", Kind.ADMIN, ("_cluster/namespaces/prod", "prod/*"),
     "delete namespaces/prod"),
    ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "create", Kind.ADMIN,
     ("_cluster/clusterrolebindings/*",), "create clusterrolebindings"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create", Kind.READ,
     ("_cluster/selfsubjectaccessreviews/*",), "create selfsubjectaccessreviews"),
    ("POST", "/api/v1/namespaces/prod/serviceaccounts/default/token", "create", Kind.ADMIN,
     ("prod/serviceaccounts/default", "prod/serviceaccounts/default/token"),
     "create serviceaccounts/default/token -n prod"),
    ("GET", "/api/v1/namespaces/prod/pods/web-1/log?container=app", "log", Kind.READ, ("prod/pods/web-1",),
     "log pods/web-1 -n prod"),
    ("GET", "/api/v1/namespaces/prod/pods/web-1/portforward?ports=80", "portforward", Kind.EXEC,
     ("prod/pods/web-1",), "portforward pods/web-1 -n prod"),
    ("GET", "/api/v1/nodes/n1/proxy/configz", "proxy", Kind.ADMIN, ("_cluster/nodes/n1",),
     "proxy nodes/n1 -- /configz"),
    ("GET", "/apis/cert-manager.io/v1/namespaces/prod/certificates/web", "get", Kind.READ,
     ("prod/certificates.cert-manager.io/web",), "get certificates.cert-manager.io/web -n prod"),
    ("GET", "/version", "get", Kind.READ, ("/version",), "get /version"),
    ("GET", "/api/v1", "get", Kind.READ, ("/api/v1",), "get /api/v1"),
    ("POST", "/version", "post", Kind.UNKNOWN, ("/version",), "POST /version"),
    ("PUT", "/api/v1/namespaces/prod/pods", "put", Kind.UNKNOWN, ("/api/v1/namespaces/prod/pods",),
     "PUT /api/v1/namespaces/prod/pods"),
    ("GET", "/etc/passwd", "get", Kind.UNKNOWN, ("/etc/passwd",), "GET /etc/passwd"),
])
def test_requests_as_commands(method: str, target: str, verb: str, kind: Kind, objects: tuple[str, ...],
                              text: str) -> None:
    s = spec(method, target)
    assert (s.verb, s.kind, s.objects) == (verb, kind, objects)
    if text != "proxy nodes/n1 -- /configz":
        assert s.text == text
    else:
        assert s.text == "proxy nodes/n1 /configz"


def test_exec_argv_is_a_shell_command_line() -> None:
    s = spec("GET", "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=rm+-rf+/data"
                    "&container=app&stdout=true")
    assert s.kind is Kind.EXEC and s.verb == "exec"
    assert "rm" in s.verbs and "sh" in s.verbs and s.verbs[0] == "exec"
    assert "prod/pods/web-1" in s.objects and any(o.startswith("/data") for o in s.objects)
    assert s.text == "exec pods/web-1 -n prod -c app -- sh -c 'rm -rf /data'"
    s = spec("GET", "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=%24%28curl+x%29"
                    "&tty=true&stdin=true")
    assert s.kind is Kind.EXEC and "unparsed" in s.flags and "tty" in s.flags


def test_secret_redaction_shapes() -> None:
    secret = {"kind": "Secret", "data": {"a": "c2VjcmV0"}, "stringData": {"b": "plain"},
              "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                           json.dumps({"kind": "Secret", "data": {"a": "c2VjcmV0"}})}}}
    doc = {"kind": "SecretList", "items": [dict(secret, kind=None)]}
    redact(doc, everything=False)
    item = doc["items"][0]
    assert item["data"] == {"a": REDACTED_B64} and item["stringData"] == {"b": "***"}
    assert "c2VjcmV0" not in json.dumps(doc)
    assert base64.b64decode(REDACTED_B64) == b"***"
    # a Secret inside any other document is found by its kind
    other = {"kind": "List", "items": [{"kind": "ConfigMap", "data": {"x": "visible"}}, secret]}
    redact(other, everything=False)
    assert other["items"][0]["data"] == {"x": "visible"} and "c2VjcmV0" not in json.dumps(other)


def test_secret_body_and_watch_filters() -> None:
    body = SecretBody(everything=True)
    raw = json.dumps({"kind": "Secret", "data": {"k": "dmFsdWU="}}).encode()
    assert body.feed(raw[:10]) == b"" and body.feed(raw[10:]) == b""
    assert b"dmFsdWU=" not in body.finish()
    watch = SecretWatch(everything=True)
    line = json.dumps({"type": "ADDED", "object": {"kind": "Secret", "data": {"k": "dmFsdWU="}}}).encode() + b"\n"
    out = b""
    for i in range(len(line)):  # split at every byte: nothing leaks, each event leaves when complete
        out += watch.feed(line[i:i + 1])
        if i < len(line) - 1:
            assert out == b""
    out += watch.finish()
    assert b"dmFsdWU=" not in out and out.endswith(b"\n") and b"ADDED" in out
    bad = SecretBody(everything=True)
    bad.feed(b"not json")
    with pytest.raises(ValueError):
        bad.finish()


class _Upper:
    def __init__(self) -> None:
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        return data.upper()

    def finish(self) -> bytes:
        self.finished = True
        return b"<tail>"


class _Seen:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        self.data.append(data)
        return data

    def finish(self) -> bytes:
        return b""


def test_exec_output_channels() -> None:
    out = ExecOutput(_Upper(), None, tty=False)
    assert out.message(Message(Opcode.BINARY, b"\x01hello"))[0].payload == b"\x01HELLO"
    assert out.message(Message(Opcode.BINARY, b"\x02err"))[0].payload == b"\x02err"
    status = json.dumps({"status": "Failure", "reason": "NonZeroExitCode",
                         "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}).encode()
    sent = out.message(Message(Opcode.BINARY, b"\x03" + status))
    assert [m.payload for m in sent] == [b"\x01<tail>", b"\x03" + status]  # the held tail leaves first
    assert out.outcome_notes["exit_code"] == 3
    for bad in (Message(Opcode.TEXT, b"\x01x"), Message(Opcode.BINARY, b""), Message(Opcode.BINARY, b"\x07x")):
        with pytest.raises(WebSocketError):
            ExecOutput(None, None, tty=False).message(bad)


def test_exec_input_channels() -> None:
    stdin, resize = _Seen(), _Seen()
    inp = ExecInput(stdin, resize, tty=True)
    inp.message(Message(Opcode.BINARY, b"\x00ls\r"))
    inp.message(Message(Opcode.BINARY, b'\x04{"Width":120,"Height":40}'))
    inp.message(Message(Opcode.BINARY, b"\xff\x00"))
    assert stdin.data == [b"ls\r"] and resize.data == [b"120x40"]
    for bad in (b"\x05x", b'\x04{"Width":"x"}', b"\x04not json", b""):
        with pytest.raises(WebSocketError):
            inp.message(Message(Opcode.BINARY, bad))
    with pytest.raises(WebSocketError):
        inp.message(Message(Opcode.TEXT, b"\x00ls"))
