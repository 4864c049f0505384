"""A fresh install behaves: gw's stderr carries no third-party warnings, and the heavy libraries a plugin
needs only for what it serves (asyncssh, the MCP SDK, httpx, psycopg, the shell analyser, prometheus_client) are
imported only when a listener, sink, webhook, store, admin endpoint or command that uses them is configured or run: loading every plugin costs no memory for
them."""

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


#: What a plugin imports only once something that uses it is configured or run.
HEAVY = ("asyncssh", "mcp", "mcp_types", "httpx", "psycopg", "gw_shellanalysis.analysis", "prometheus_client")


def test_loading_and_registering_every_plugin_imports_no_heavy_library() -> None:
    # Registering is what gw serve does with every installed plugin before it reads the pipeline file.
    code = ("import sys; from gw.plugins import Registry, make_plugin_manager; "
            "registry = Registry.build(make_plugin_manager()); "
            "assert {'mcp', 'postgres', 'kubernetes'} <= set(registry.names('protocols')); "
            "from gw.cli import build_cli; build_cli(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_shell_analyser_is_imported_by_its_first_use() -> None:
    code = ("import sys; from gw_ssh.commands import classify; from gw_kubernetes.classify import classify as k; "
            "before = 'gw_shellanalysis.analysis' in sys.modules; "
            "print(before, classify('rm -rf /tmp/x').verbs, 'gw_shellanalysis.analysis' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False ('rm',) True"


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
