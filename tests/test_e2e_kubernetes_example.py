"""examples/kubernetes.toml as written, served by `gw serve`, in front of the Kubernetes plugin's test API
server (plugins/protocols/kubernetes/tests/kubeapi.py, a stand-in for kube-apiserver, which cannot be
installed where these tests run), driven by the real kubectl: a read, a masked Secret, a delete refused by
policy, an exec, and the steps of the file's header comment (token, kubeconfig)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gw.testing import GatewayProcess, free_port, require_program

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))
KUBE_TESTS = ROOT / "plugins" / "protocols" / "kubernetes" / "tests"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[dict[str, Any]]:
    pytest.importorskip("gw_kubernetes", reason="gw-kubernetes is not installed")
    require_program("kubectl")
    if str(KUBE_TESTS) not in sys.path:
        sys.path.insert(0, str(KUBE_TESTS))
    from gw_kubernetes.certs import write_selfsigned
    from kubeapi import SERVICE_ACCOUNT_TOKEN, KubeAPI

    write_selfsigned(tmp_path / "gw.pem", tmp_path / "gw-key.pem", ["127.0.0.1"])  # made here, never committed
    write_selfsigned(tmp_path / "cluster-ca.pem", tmp_path / "cluster-key.pem", ["127.0.0.1"])
    (tmp_path / "pod-root").mkdir()
    api = KubeAPI()
    api.workdir = str(tmp_path / "pod-root")
    api.start(certfile=str(tmp_path / "cluster-ca.pem"), keyfile=str(tmp_path / "cluster-key.pem"))
    port = free_port()
    text = (ROOT / "examples" / "kubernetes.toml").read_text()
    assert "127.0.0.1:6443" in text and "127.0.0.1:16443" in text
    text = text.replace("127.0.0.1:16443", f"127.0.0.1:{port}").replace("https://127.0.0.1:6443", api.url)
    path = tmp_path / "kubernetes.toml"
    path.write_text(text)
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "KUBE_SA_TOKEN": SERVICE_ACCOUNT_TOKEN,
           "HOME": str(tmp_path)}
    proc = GatewayProcess(path, env=env).start()
    try:
        yield {"path": path, "env": env, "api": api, "dir": tmp_path}
    finally:
        proc.stop()
        api.stop()


def _run(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=90, check=False, **kw)


def test_kubernetes_example_works_as_written(example: dict[str, Any]) -> None:
    path, env = example["path"], example["env"]
    token = _run([GW, "token", "issue", "-c", str(path), "--identity", "dev", "--sub", "agent-7", "--group",
                  "agents", "--ttl", "1h"], env)
    assert token.returncode == 0, token.stderr
    config = _run([GW, "kubeconfig", "-c", str(path), "--listener", "cluster", "--token", token.stdout.strip()],
                  env)
    assert config.returncode == 0, config.stderr
    kubeconfig = example["dir"] / "agent.kubeconfig"
    kubeconfig.write_text(config.stdout)
    kenv = {**env, "KUBECONFIG": str(kubeconfig)}
    kubectl = require_program("kubectl")

    got = _run([kubectl, "get", "pods", "-n", "prod"], kenv)
    assert got.returncode == 0, got.stderr
    assert "web-1" in got.stdout and "web-2" in got.stdout

    secret = _run([kubectl, "get", "secret", "db", "-n", "prod", "-o", "yaml"], kenv)
    assert secret.returncode == 0, secret.stderr
    assert "password: Kioq" in secret.stdout and "aHVudGVyMi1wcm9kLWRi" not in secret.stdout

    delete = _run([kubectl, "delete", "pod", "web-1", "-n", "prod"], kenv)
    assert delete.returncode != 0
    assert "Error from server (Forbidden)" in delete.stderr and "only SREs delete in prod" in delete.stderr
    assert ("prod", "web-1") in example["api"].objects["pods"]

    run = _run([kubectl, "exec", "web-1", "-n", "prod", "--", "echo", "card 4111 1111 1111 1111"], kenv)
    assert run.returncode == 0, run.stderr
    assert "4111 1111 1111 1111" not in run.stdout and "card" in run.stdout

    rm = _run([kubectl, "exec", "web-1", "-n", "prod", "--", "sh", "-c", "rm -rf /data"], kenv)
    assert rm.returncode != 0 and "no destructive programs" in rm.stderr, rm.stderr

    audit = _run([GW, "audit", "list", "-c", str(path)], env)
    assert audit.returncode == 0, audit.stderr
    assert "delete pods/web-1 -n prod" in audit.stdout


def test_kubernetes_example_policy_explain_and_selfsigned(example: dict[str, Any]) -> None:
    path, env = example["path"], example["env"]
    explain = _run([GW, "policy", "explain", "-c", str(path), "--listener", "cluster", "--group", "agents",
                    "DELETE /api/v1/namespaces/prod/pods/web-1"], env)
    assert explain.returncode == 1, explain.stdout + explain.stderr
    assert "kind=write verb=delete objects=prod/pods/web-1" in explain.stdout
    assert "only SREs delete in prod" in explain.stdout
    explain = _run([GW, "policy", "explain", "-c", str(path), "--listener", "cluster", "--group", "sre",
                    "GET /api/v1/pods?watch=1"], env)
    assert explain.returncode == 0 and "kind=read verb=watch objects=*/pods/*" in explain.stdout, explain.stdout
    out = example["dir"]
    made = _run([GW, "tls", "selfsigned", "--cert", str(out / "t.pem"), "--key", str(out / "t-key.pem"), "--host",
                 "127.0.0.1", "--host", "gw.internal"], env)
    assert made.returncode == 0, made.stderr
    assert (out / "t-key.pem").stat().st_mode & 0o077 == 0
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((out / "t.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gw.internal" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
