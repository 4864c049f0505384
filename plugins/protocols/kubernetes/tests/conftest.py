"""Fixtures for the Kubernetes protocol tests: the test API server (kubeapi.py, a stand-in for kube-apiserver,
which cannot be installed here), certificates from ``gw tls selfsigned``'s code, ``gw serve`` with the real
plugins, and the real kubectl with a kubeconfig pointing at gw."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from gw.testing import GatewayProcess, require_program

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # --import-mode=importlib does not put test directories on sys.path
    sys.path.insert(0, str(HERE))

from gw_kubernetes.certs import write_selfsigned
from kubeapi import SERVICE_ACCOUNT_TOKEN, KubeAPI

GW = str(Path(sys.executable).with_name("gw"))

PIPELINE = """
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_K8S_SECRET"

[pipelines.k8s]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [
      {{ verb = "delete", objects = ["prod/*"], groups = ["agents"],
         message = "agents may not delete in prod; ask an SRE" }},
      {{ verb = "exec", objects = ["/etc/shadow"], message = "no reading shadow files" }},
  ] }},
  {{ use = "approve", approvers = ["sre-leads"], timeout = "60s", poll_interval = "50ms", require = [
      {{ verb = "delete", objects = ["default/*"] }},
  ] }},
  {{ use = "mask", detectors = ["us_ssn", "credit_card"] }},
  {{ use = "record" }},
]

[[listeners]]
name = "cluster"
protocol = "kubernetes"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "k8s"
allow_groups = ["agents", "sre"]
tls = {{ cert = "kube.pem", key = "kube-key.pem" }}
{extra}
[listeners.upstream]
url = "{url}"
ca_file = "cluster-ca.pem"
headers = {{ Authorization = "Bearer ${{KUBE_SA_TOKEN}}" }}
{upstream_extra}
"""


def kubectl_binary() -> str:
    """The real kubectl.  A distribution's dispatcher (``kubectl`` that picks a versioned binary after asking
    the server's /version without credentials) is bypassed for its 1.32 binary when it is there."""
    path = require_program("kubectl")
    real = Path(os.path.realpath(path))
    versioned = real.with_name("kubectl.1.32")
    return str(versioned) if versioned.exists() else path


@dataclass
class Cluster:
    """gw (``gw serve``) in front of the test API server."""

    dir: Path
    config: Path
    env: dict[str, str]
    api: KubeAPI
    proc: GatewayProcess
    kubectl: str

    @property
    def port(self) -> int:
        return self.proc.port("cluster")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def gw(self, *args: str, token: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token is not None:
            env["GW_TOKEN"] = token
        return subprocess.run([GW, *args], capture_output=True, text=True, env=env, timeout=timeout,
                              check=False, cwd=self.dir)

    def token(self, sub: str = "agent-7", group: str = "agents", ttl: float = 3600) -> str:
        """A token of the pipeline's jwt provider (``[identity.dev]``: HS256 with ``GW_K8S_SECRET``), signed
        here rather than with ``gw token issue`` to keep the tests fast (the example test uses the CLI)."""
        now = int(time.time())
        claims = {"iss": "gw-dev", "aud": "gw", "sub": sub, "groups": [group], "iat": now, "exp": now + int(ttl),
                  "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self.env["GW_K8S_SECRET"], algorithm="HS256")

    def kubeconfig(self, token: str, name: str = "") -> Path:
        """What ``gw kubeconfig`` prints (test_kubernetes_cli and the example test run the command itself)."""
        name = name or hashlib.sha256(token.encode()).hexdigest()[:12]
        path = self.dir / f"kubeconfig-{name}"
        if not path.exists():
            path.write_text(json.dumps(kubeconfig_document(self.server, self.dir / "kube.pem", token)))
        return path

    def kubectl_run(self, token: str, *args: str, input: str | None = None, timeout: float = 60,
                    kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or self.kubeconfig(token)
        env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(self.dir)}
        return subprocess.run([self.kubectl, *args], capture_output=True, text=True, input=input, env=env,
                              timeout=timeout, check=False)

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        out = self.gw("audit", "list", "-c", str(self.config), "--json", "--limit", str(limit))
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))


def kubeconfig_document(server: str, ca: Path, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "gw",
            "clusters": [{"name": "gw", "cluster": {
                "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
            "users": [{"name": "gw", "user": {"token": token}}],
            "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": "gw"}}]}


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    write_selfsigned(tmp_path / "kube.pem", tmp_path / "kube-key.pem", ["127.0.0.1", "localhost"])
    write_selfsigned(tmp_path / "cluster-ca.pem", tmp_path / "cluster-key.pem", ["127.0.0.1"])
    return tmp_path


@pytest.fixture
def kubeapi(certs: Path) -> Iterator[KubeAPI]:
    work = certs / "pod-root"
    work.mkdir()
    api = KubeAPI()
    api.workdir = str(work)
    api.start(certfile=str(certs / "cluster-ca.pem"), keyfile=str(certs / "cluster-key.pem"))
    yield api
    api.stop()


@pytest.fixture
def cluster_factory(certs: Path, kubeapi: KubeAPI) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(extra: str = "", upstream_extra: str = "") -> Cluster:
        config = certs / "pipeline.toml"
        config.write_text(PIPELINE.format(url=kubeapi.url, extra=extra, upstream_extra=upstream_extra))
        env = {**os.environ, "GW_K8S_SECRET": secrets.token_urlsafe(32), "KUBE_SA_TOKEN": SERVICE_ACCOUNT_TOKEN,
               "GW_CONFIG": str(config)}
        env.pop("GW_TOKEN", None)
        proc = GatewayProcess(config, env=env)
        proc.start()
        started.append(proc)
        return Cluster(certs, config, env, kubeapi, proc, kubectl_binary())

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def cluster(cluster_factory: Any) -> Cluster:
    return cluster_factory()


def has_kubectl() -> bool:
    return shutil.which("kubectl") is not None
