"""`gw check` warns when a pipeline lets a group other than its approvers run admin statements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GW = [sys.executable, "-m", "gw"] if not (Path(sys.executable).parent / "gw").exists() else [
    str(Path(sys.executable).parent / "gw")]


def _check(path: Path) -> str:
    env = {**os.environ, "GW_DEV_SECRET": "x" * 32}
    r = subprocess.run([*GW, "check", str(path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    return r.stdout + r.stderr


def test_examples_deny_admin_to_everyone_but_approvers(tmp_path: Path) -> None:
    for name in ("agents.toml", "quickstart.toml"):
        text = (ROOT / "examples" / name).read_text().replace('".gw/', f'"{tmp_path}/{name}/')
        path = tmp_path / name
        path.write_text(text)
        assert "run admin statements" not in _check(path), name


def test_a_pipeline_that_lets_agents_run_admin_statements_is_flagged(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "quickstart.toml").read_text().replace('".gw/', f'"{tmp_path}/')
    text = text.replace('{ kind = "admin", except_groups = ["dba"], message = "administrative statement; ask a dba" },',
                        "")
    path = tmp_path / "open.toml"
    path.write_text(text)
    out = _check(path)
    assert "lets group 'agents' run admin statements" in out
