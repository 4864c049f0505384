"""A fresh install behaves: gw's stderr carries no third-party warnings, and asyncssh (the SSH plugin's
asyncio library) is imported only when an SSH listener or SSH command is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GW = str(Path(sys.executable).with_name("gw"))


def test_gw_help_prints_nothing_on_stderr() -> None:
    proc = subprocess.run([GW, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
    assert proc.stderr == ""


def test_loading_every_plugin_does_not_import_asyncssh() -> None:
    code = ("import sys; from gw.cli import build_cli; build_cli(); "
            "print('asyncssh' in sys.modules)")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_importing_the_ssh_bridge_emits_no_warning() -> None:
    # -W error turns any warning raised while importing into a failure.
    proc = subprocess.run([sys.executable, "-W", "error", "-c", "import gw_ssh.bridge, gw_ssh.keys"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_third_party_warnings_stay_off_gw_stderr_but_gw_own_remain(tmp_path: Path) -> None:
    code = ("import warnings; from gw.cli import quiet_third_party_warnings; quiet_third_party_warnings(); "
            "import types, sys; m = types.ModuleType('somelib'); exec(\"import warnings\\n"
            "def f():\\n    warnings.warn('third-party noise', DeprecationWarning)\", m.__dict__); m.f(); "
            "warnings.warn_explicit('gw says', UserWarning, 'x.py', 1, module='gw.runtime')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "third-party noise" not in proc.stderr
    assert "gw says" in proc.stderr
