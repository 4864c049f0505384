"""`gw check` warns about a postgres or mysql listener that accepts tokens on a non-loopback address without
require_tls, and stays quiet for loopback listeners and for listeners that require TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GW = str(Path(sys.executable).with_name("gw"))

FILE = """
[identity.dev]
use = "jwt"
issuer = "i"
audience = "a"
secret_env = "X"

[pipelines.p]
stages = []

[[listeners]]
name = "pg-open"
protocol = "postgres"
listen = "0.0.0.0:0"
identity = "dev"
pipeline = "p"
[listeners.upstream]
host = "127.0.0.1"
database = "test"
user = "postgres"

[[listeners]]
name = "my-open"
protocol = "mysql"
listen = ":0"
identity = "dev"
pipeline = "p"
[listeners.upstream]
host = "127.0.0.1"
user = "gw_agent"

[[listeners]]
name = "my-local"
protocol = "mysql"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "p"
[listeners.upstream]
host = "127.0.0.1"
user = "gw_agent"

[[listeners]]
name = "my-tls"
protocol = "mysql"
listen = "10.1.2.3:0"
identity = "dev"
pipeline = "p"
tls = { cert = "c.pem", key = "k.pem" }
require_tls = true
[listeners.upstream]
host = "127.0.0.1"
user = "gw_agent"
"""


def test_warnings(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(FILE)
    out = subprocess.run([GW, "check", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stdout.splitlines() if "warning:" in line]
    assert len(warnings) == 2, out.stdout
    assert "'pg-open'" in warnings[0] and "require_tls" in warnings[0]
    assert "'my-open'" in warnings[1] and "not loopback" in warnings[1]
