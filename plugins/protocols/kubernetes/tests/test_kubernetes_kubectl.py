"""The issue's end-to-end list with the real kubectl through ``gw serve`` (jwt, audit, guard, approve, mask,
record) in front of the test API server (kubeapi.py, standing in for kube-apiserver)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from typing import Any

from gw.testing import wait_for
from kubeapi import pod


def _records(cluster: Any, verb: str) -> list[dict[str, Any]]:
    return [r for r in cluster.audit(200) if r.get("verb") == verb]


def test_secret_values_are_redacted_in_get_list_and_table(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "get", "secret", "db", "-n", "prod", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout
    assert base64.b64encode(b"hunter2-prod-db").decode() not in out.stdout
    assert "password: Kioq" in out.stdout and "username: Kioq" in out.stdout
    assert "last-applied-configuration" in out.stdout  # kept, with its values redacted
    out = cluster.kubectl_run(token, "get", "secret", "db", "-n", "prod", "-o", "jsonpath={.data.password}")
    assert out.returncode == 0 and base64.b64decode(out.stdout) == b"***", out.stdout
    for args in (["get", "secrets", "-n", "prod", "-o", "json"], ["get", "secrets", "-A", "-o", "yaml"],
                 ["get", "secrets", "-n", "prod"]):
        out = cluster.kubectl_run(token, *args)
        assert out.returncode == 0, out.stderr
        assert "aHVudGVyMi1wcm9kLWRi" not in out.stdout and "hunter2" not in out.stdout, args
    assert "db" in out.stdout  # the table still lists the secret


def test_delete_is_denied_for_agents_in_prod(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "delete", "pod", "web-2", "-n", "prod")
    assert out.returncode != 0
    assert "Error from server (Forbidden)" in out.stderr, out.stderr
    assert "agents may not delete in prod" in out.stderr
    assert ("prod", "web-2") in cluster.api.objects["pods"]
    assert not [s for s in cluster.api.seen if s.method == "DELETE"]
    rec = _records(cluster, "delete")[0]
    assert rec["text"] == "delete pods/web-2 -n prod" and rec["verdict"] == "denied"
    # an SRE may
    sre = cluster.token("sam", "sre")
    out = cluster.kubectl_run(sre, "delete", "pod", "web-2", "-n", "prod")
    assert out.returncode == 0, out.stderr
    assert ("prod", "web-2") not in cluster.api.objects["pods"]


def test_delete_held_for_approval_then_released(cluster: Any) -> None:
    token = cluster.token()
    result: dict[str, Any] = {}

    def run() -> None:
        result["out"] = cluster.kubectl_run(token, "delete", "pod", "debug", "-n", "default", "--wait=false",
                                            timeout=90)

    cluster.kubeconfig(token)
    t = threading.Thread(target=run)
    t.start()

    def pending() -> list[dict[str, Any]]:
        out = cluster.gw("approvals", "list", "-c", str(cluster.config), "--json")
        return [r for r in json.loads(out.stdout or "[]") if "debug" in json.dumps(r)] if out.returncode == 0 \
            else []

    requests = wait_for(pending, timeout=40)
    assert ("default", "debug") in cluster.api.objects["pods"]
    lead = cluster.token("lee", "sre-leads")
    approve = cluster.gw("approvals", "approve", "-c", str(cluster.config), requests[0]["id"], token=lead)
    assert approve.returncode == 0, approve.stderr + approve.stdout
    t.join(60)
    assert result["out"].returncode == 0, result["out"].stderr
    assert ("default", "debug") not in cluster.api.objects["pods"]


def test_exec_cat_and_exit_code(cluster: Any) -> None:
    token = cluster.token()
    (cluster.dir / "pod-root" / "hostname").write_text("web-1\n")
    out = cluster.kubectl_run(token, "exec", "web-1", "-n", "prod", "--", "cat", "hostname")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "web-1\n"
    out = cluster.kubectl_run(token, "exec", "web-1", "-n", "prod", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert out.returncode == 3, out.stderr
    assert "oops" in out.stderr
    execs = _records(cluster, "exec")
    texts = [r["text"] for r in execs]
    assert "exec pods/web-1 -n prod -c app -- cat hostname" in texts, texts
    assert all(r["kind"] == "exec" for r in execs)
    failed = next(r for r in execs if "exit 3" in r["text"])
    assert failed["outcome"]["notes"]["exit_code"] == 3, failed["outcome"]
    assert next(r for r in execs if r["text"].endswith("cat hostname"))["outcome"]["notes"]["exit_code"] == 0
    # over WebSocket only: no SPDY request reached the API server
    assert not [s for s in cluster.api.seen if (s.header("Upgrade") or "").lower().startswith("spdy")]


def test_exec_output_is_masked(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "exec", "web-1", "-n", "prod", "--", "echo", "ssn 123-45-6789 end")
    assert out.returncode == 0, out.stderr
    assert "123-45-6789" not in out.stdout and "ssn" in out.stdout and "end" in out.stdout


def test_exec_with_stdin(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "exec", "-i", "web-1", "-n", "prod", "--", "cat",
                              input="line one\nline two\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "line one\nline two\n"


def test_exec_denied_by_shell_analysis(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "exec", "web-1", "-n", "prod", "--", "sh", "-c", "cat /etc/shadow")
    assert out.returncode != 0
    assert "no reading shadow files" in out.stderr, out.stderr  # the WebSocket refusal, repeated for SPDY
    assert not cluster.api.execs


def test_logs(cluster: Any) -> None:
    token = cluster.token()
    cluster.api.logs[("prod", "web-1")] = "started\ncard 4111 1111 1111 1111 charged\n"
    out = cluster.kubectl_run(token, "logs", "web-1", "-n", "prod")
    assert out.returncode == 0, out.stderr
    assert "started" in out.stdout and "4111 1111 1111 1111" not in out.stdout
    assert _records(cluster, "log")[0]["text"] == "log pods/web-1/log -n prod" or \
        _records(cluster, "log")[0]["kind"] == "read"


def test_watch_relays_events(cluster: Any) -> None:
    token = cluster.token()
    config = cluster.kubeconfig(token)
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(cluster.dir)}
    proc = subprocess.Popen([cluster.kubectl, "get", "pods", "-n", "prod", "--watch", "-o", "name"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen: list[str] = []

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line.strip())

        threading.Thread(target=reader, daemon=True).start()
        wait_for(lambda: len(seen) >= 2, timeout=30)
        wait_for(lambda: cluster.api.requests("/pods") and any(
            s.query.get("watch") for s in cluster.api.requests("/namespaces/prod/pods")), timeout=30)
        time.sleep(0.5)
        cluster.api.put("pods", pod("web-3", "prod"))
        wait_for(lambda: "pod/web-3" in seen, timeout=30)
        cluster.api.put("pods", pod("web-4", "prod"))
        wait_for(lambda: "pod/web-4" in seen, timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert any(r["text"] == "watch pods -n prod" for r in cluster.audit(100))


def test_secret_watch_events_are_redacted(cluster: Any) -> None:
    from kubeapi import secret

    token = cluster.token()
    config = cluster.kubeconfig(token)
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(cluster.dir)}
    proc = subprocess.Popen([cluster.kubectl, "get", "secrets", "-n", "prod", "--watch", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    chunks: list[str] = []
    try:
        def reader() -> None:
            assert proc.stdout is not None
            chunks.extend(proc.stdout)

        threading.Thread(target=reader, daemon=True).start()
        wait_for(lambda: any(s.query.get("watch") for s in cluster.api.requests("/namespaces/prod/secrets")),
                 timeout=30)
        time.sleep(0.5)
        cluster.api.put("secrets", secret("api-key", "prod", {"key": "sk-live-very-secret"}))
        wait_for(lambda: "api-key" in "".join(chunks), timeout=30)
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    text = "".join(chunks)
    assert "sk-live-very-secret" not in text
    assert base64.b64encode(b"sk-live-very-secret").decode() not in text
    assert "Kioq" in text


def test_port_forward_refused(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "port-forward", "web-1", "-n", "prod", "18080:80", timeout=30)
    assert out.returncode != 0
    assert "port-forward is not allowed" in out.stderr, out.stderr
    assert not cluster.api.requests("/portforward")
    refused = cluster.gw("audit", "sessions", "-c", str(cluster.config), "--json")
    assert "portforward_refused" in refused.stdout and "portforward pods/web-1 -n prod" in refused.stdout


def test_impersonation_headers_from_the_agent_are_refused(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "get", "pods", "-n", "prod", "--as", "admin")
    assert out.returncode != 0
    assert "Impersonate-User" in out.stderr or "impersonate-user" in out.stderr, out.stderr
    assert not [s for s in cluster.api.seen if s.header("Impersonate-User")]


def test_impersonation_sends_the_agent_identity(cluster_factory: Any) -> None:
    cluster = cluster_factory(upstream_extra='impersonate = true\nuser_prefix = "gw:"\n'
                                             'group_map = { agents = ["gw:agents", "viewers"] }\n')
    token = cluster.token("agent-9", "agents")
    out = cluster.kubectl_run(token, "get", "pods", "-n", "prod")
    assert out.returncode == 0, out.stderr
    seen = cluster.api.requests("/api/v1/namespaces/prod/pods")[-1]
    assert seen.header("Impersonate-User") == "gw:agent-9"
    assert [v for n, v in seen.headers if n.lower() == "impersonate-group"] == ["gw:agents", "viewers"]
    # gw asked for JSON, never protobuf
    assert all("protobuf" not in (s.header("Accept") or "") for s in cluster.api.seen)


def test_attach_with_stdin(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "attach", "web-1", "-n", "prod", "-i", input="echo attached-ok\n")
    assert out.returncode == 0, out.stderr
    assert "attached-ok" in out.stdout
    rec = _records(cluster, "attach")[0]
    assert rec["kind"] == "exec" and rec["text"] == "attach pods/web-1 -n prod -c app"


def test_a_held_delete_is_cancelled_when_kubectl_gives_up(cluster: Any) -> None:
    token = cluster.token()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig(token)), "HOME": str(cluster.dir)}
    proc = subprocess.Popen([cluster.kubectl, "delete", "pod", "debug", "-n", "default", "--wait=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def listed(status: str) -> list[dict[str, Any]]:
        out = cluster.gw("approvals", "list", "-c", str(cluster.config), "--json", "--status", status)
        return [r for r in json.loads(out.stdout or "[]") if "debug" in json.dumps(r)] if out.returncode == 0 \
            else []

    try:
        wait_for(lambda: listed("pending"), timeout=40)
    finally:
        proc.kill()  # the agent gives up (Ctrl-C)
        proc.wait()
    wait_for(lambda: listed("cancelled"), timeout=40)
    assert ("default", "debug") in cluster.api.objects["pods"]
    assert not [s for s in cluster.api.seen if s.method == "DELETE"]
