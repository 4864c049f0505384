"""kubectl (the real binary) through ``gw serve`` to the test API server (kubeapi.py, standing in for
kube-apiserver): identity, reads, audit."""

from __future__ import annotations

from typing import Any

from kubeapi import SERVICE_ACCOUNT_TOKEN


def test_get_pods_through_gw_with_audit(cluster: Any) -> None:
    token = cluster.token("agent-7", "agents")
    out = cluster.kubectl_run(token, "get", "pods", "-n", "prod")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert {line.split()[0] for line in lines[1:]} == {"web-1", "web-2"}
    # gw, not the agent, authenticated to the API server; the agent's token never went upstream.
    seen = cluster.api.requests("/api/v1/namespaces/prod/pods")
    assert seen and all(s.header("Authorization") == f"Bearer {SERVICE_ACCOUNT_TOKEN}" for s in seen)
    assert all(token not in str(s.headers) for s in cluster.api.seen)
    records = cluster.audit()
    lists = [r for r in records if r.get("verb") == "list"]
    assert lists, records
    rec = lists[0]
    assert rec["text"] == "list pods -n prod"
    assert rec["kind"] == "read" and rec["objects"] == ["prod/pods/*"]
    assert rec["subject"] == "agent-7"
    notes = rec["outcome"]["notes"]
    assert notes["response_status"] == 200 and notes["response_bytes"] > 0, rec["outcome"]


def test_get_pod_yaml_and_all_namespaces(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.kubectl_run(token, "get", "pod", "web-1", "-n", "prod", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    assert "name: web-1" in out.stdout and "namespace: prod" in out.stdout
    out = cluster.kubectl_run(token, "get", "pods", "-A")
    assert out.returncode == 0, out.stderr
    assert "debug" in out.stdout and "web-1" in out.stdout
    texts = [r["text"] for r in cluster.audit()]
    assert "get pods/web-1 -n prod" in texts and "list pods -A" in texts


def test_bad_token_is_a_status_kubectl_prints(cluster: Any) -> None:
    out = cluster.kubectl_run("not-a-token", "get", "pods", "-n", "prod")
    assert out.returncode != 0
    assert "Unauthorized" in out.stderr or "provide credentials" in out.stderr, out.stderr
    assert not cluster.api.requests("/pods")
