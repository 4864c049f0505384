"""The README's quickstart as written (examples/quickstart.toml) with the real jwt, audit and sqlite plugins:
``gw serve`` in a subprocess, a token from ``gw token issue``, psql through gw, ``gw audit list``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gw.testing import free_port

QUICKSTART = Path(__file__).resolve().parents[4] / "examples" / "quickstart.toml"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    for module in ("gw_jwt", "gw_audit", "gw_sqlite"):
        pytest.importorskip(module, reason="the quickstart needs the bundled jwt, audit and sqlite plugins")
    text = QUICKSTART.read_text().replace("127.0.0.1:15432", f"127.0.0.1:{free_port()}")
    path = tmp_path / "quickstart.toml"
    path.write_text(text)
    return path


def test_quickstart_as_written(quickstart: Path, gw_process: Any, postgres: None) -> None:
    env = {"GW_DEV_SECRET": "quickstart-test-secret-0123456789abcdef"}
    gw = gw_process(quickstart, env=env)
    full_env = {**os.environ, **env}
    exe = str(Path(sys.executable).with_name("gw"))
    token = subprocess.run([exe, "token", "issue", "-c", str(quickstart), "--identity", "dev", "--sub", "agent-7",
                            "--group", "agents", "--ttl", "1h"], env=full_env, capture_output=True, text=True,
                           check=True).stdout.strip()
    port = gw.port("orders")
    r = subprocess.run(["psql", "-X", f"host=127.0.0.1 port={port} user=agent-7 dbname=test", "-Atc",
                        "select 1 + 1", "-c", "select 'a'; select 'b'"],
                       env={**full_env, "PGPASSWORD": token}, capture_output=True, text=True, timeout=20, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "a", "b"]
    out = subprocess.run([exe, "audit", "list", "-c", str(quickstart), "--json"], env=full_env,
                         capture_output=True, text=True, check=True).stdout
    records = json.loads(out)
    texts = json.dumps(records)
    assert "select 1 + 1" in texts and "agent-7" in texts and "agents" in texts
