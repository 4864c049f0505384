"""``gw kubeconfig`` prints a kubeconfig kubectl uses as it is."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any


def test_gw_kubeconfig_is_what_kubectl_needs(cluster: Any) -> None:
    token = cluster.token()
    out = cluster.gw("kubeconfig", "-c", str(cluster.config), "--listener", "cluster", "--token", token,
                     "--server", cluster.server, "--namespace", "prod")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["users"][0]["user"]["token"] == token
    assert doc["clusters"][0]["cluster"]["server"] == cluster.server
    path = cluster.dir / "from-cli.kubeconfig"
    path.write_text(out.stdout)
    env = {**os.environ, "KUBECONFIG": str(path), "HOME": str(cluster.dir)}
    got = subprocess.run([cluster.kubectl, "get", "pods"], capture_output=True, text=True, env=env, timeout=60,
                         check=False)
    assert got.returncode == 0, got.stderr
    assert "web-1" in got.stdout  # the context's namespace is prod
    bad = cluster.gw("kubeconfig", "-c", str(cluster.config), "--listener", "nope", "--token", token)
    assert bad.returncode != 0 and "no listener named 'nope'" in bad.stderr
