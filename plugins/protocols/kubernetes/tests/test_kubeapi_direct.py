"""The test API server (kubeapi.py) checked against kubectl directly, without gw: what kubectl does through gw
in the other tests it does here the same way, so those tests prove gw, not the stand-in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import kubectl_binary
from kubeapi import SERVICE_ACCOUNT_TOKEN, KubeAPI


def _kubectl(api: KubeAPI, certs: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(certs)}
    env.pop("KUBECONFIG", None)
    return subprocess.run([kubectl_binary(), f"--server={api.url}", f"--certificate-authority={certs / 'cluster-ca.pem'}",
                           f"--token={SERVICE_ACCOUNT_TOKEN}", *args], capture_output=True, text=True, env=env,
                          input=input, timeout=60, check=False)


def test_kubectl_talks_to_the_test_api_server_directly(kubeapi: KubeAPI, certs: Path) -> None:
    out = _kubectl(kubeapi, certs, "get", "pods", "-n", "prod")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "web-2" in out.stdout
    out = _kubectl(kubeapi, certs, "get", "secret", "db", "-n", "prod", "-o", "yaml")
    assert out.returncode == 0 and "password: aHVudGVyMi1wcm9kLWRi" in out.stdout  # unredacted without gw
    out = _kubectl(kubeapi, certs, "exec", "web-1", "-n", "prod", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert out.returncode == 5 and out.stdout == "out\n" and "err" in out.stderr, out.stderr
    assert kubeapi.execs[-1].protocol == "v5.channel.k8s.io"
    out = _kubectl(kubeapi, certs, "exec", "-i", "web-1", "-n", "prod", "--", "cat", input="abc\n")
    assert out.returncode == 0 and out.stdout == "abc\n", out.stderr
    out = _kubectl(kubeapi, certs, "logs", "web-1", "-n", "prod")
    assert out.returncode == 0 and "serving on :8080" in out.stdout
    out = _kubectl(kubeapi, certs, "delete", "pod", "web-2", "-n", "prod")
    assert out.returncode == 0 and ("prod", "web-2") not in kubeapi.objects["pods"]
    # kubectl tries WebSocket first and falls back to SPDY only when the upgrade fails
    assert not [s for s in kubeapi.seen if (s.header("Upgrade") or "").lower().startswith("spdy")]
