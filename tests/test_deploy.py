"""deploy/: the systemd unit passes ``systemd-analyze verify`` with ExecStart pointing at the installed gw, and
carries the hardening and reload wiring the operations guide promises; the Dockerfile (not built here: no
container engine) installs from the lock with hashes, runs as a non-root user and health-checks /readyz."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gw.testing import require_program

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "gw.service"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_systemd_unit_verifies_against_the_installed_gw(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    gw = str(Path(sys.executable).with_name("gw"))
    unit = tmp_path / "gw.service"
    unit.write_text(UNIT.read_text().replace("/opt/gw/bin/gw", gw))
    out = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # unknown keys and bad values are only warnings for systemd: none may appear
    assert out.stderr.strip() == "", out.stderr


def test_systemd_unit_hardening_and_reload() -> None:
    d = directives(UNIT.read_text())
    for key, value in {"DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "StateDirectory": "gw",
                       "CapabilityBoundingSet": "", "KillSignal": "SIGTERM"}.items():
        assert d.get(key) == [value], (key, d.get(key))
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # systemctl reload -> SIGHUP -> gw re-reads the file
    assert d["ExecStart"][0].startswith("/opt/gw/bin/gw serve ")
    assert d["ExecStartPre"][0].startswith("/opt/gw/bin/gw check ")


def test_dockerfile_lock_non_root_and_readyz() -> None:
    text = DOCKERFILE.read_text()
    assert "pip install --require-hashes -r requirements.lock" in text
    assert re.search(r"^USER (\d+)", text, re.M) and not re.search(r"^USER (0|root)\b", text, re.M)
    health = next(line for line in text.splitlines() if "CMD" in line and "readyz" in line)
    assert "http://127.0.0.1:9464/readyz" in health
    # every kind of plugin distribution in this repository is installed
    install = text[text.index("pip install --no-deps"):].split("\n &&", 1)[0]
    kinds = {p.parent.parent.name for p in ROOT.glob("plugins/*/*/pyproject.toml")}
    missing = sorted(k for k in kinds if f"plugins/{k}/*" not in install)
    assert not missing, f"deploy/Dockerfile does not install plugins/{missing}/*"
