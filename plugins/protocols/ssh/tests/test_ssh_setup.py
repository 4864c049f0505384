"""Setting a listener up: ``gw ssh keygen`` creates gw's host key, and a listener whose key (or upstream key,
known_hosts ...) is missing stops the gateway with an error that says what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from gw.cli import build_cli
from gw.errors import ConfigError
from gw.runtime import Runtime

CONFIG = """\
[identity.dev]
use = "jwt"
issuer = "gw"
audience = "gw"
secret_env = "GW_SSH_SETUP_SECRET"

[pipelines.hosts]
stages = []

[[listeners]]
name = "web-1"
protocol = "ssh"
listen = "127.0.0.1:2222"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"
shell = "record"
sftp = "allow"

[listeners.upstream]
host = "127.0.0.1"
port = 22
user = "deploy"
key_file = "deploy_ed25519"
known_hosts = "known_hosts"
"""


async def _open_error(path: Path) -> str:
    rt = Runtime.build(path)
    with pytest.raises(ConfigError) as err:
        await rt.listeners["web-1"].handler.open()
    return str(err.value)


async def test_keygen_creates_the_host_key_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    os.environ.setdefault("GW_SSH_SETUP_SECRET", "setup-secret-0123456789abcdef0123")
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG)
    message = await _open_error(config)
    assert "listeners[0].host_key_file: host key file" in message and "does not exist" in message
    assert f"create it with: gw ssh keygen -c {config} --listener web-1" in message

    runner = CliRunner()
    result = runner.invoke(build_cli(), ["ssh", "keygen", "-c", str(config), "--listener", "web-1"])
    assert result.exit_code == 0, result.output
    key = tmp_path / ".gw" / "ssh_host_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "[127.0.0.1]:2222 ssh-ed25519 AAAA" in result.output
    first = key.read_bytes()
    again = runner.invoke(build_cli(), ["ssh", "keygen", "-c", str(config)])
    assert again.exit_code == 0 and "exists; kept" in again.output and key.read_bytes() == first
    unknown = runner.invoke(build_cli(), ["ssh", "keygen", "-c", str(config), "--listener", "nope"])
    assert unknown.exit_code != 0 and "no ssh listener named 'nope'" in unknown.output

    key.chmod(0o644)
    assert "chmod 600" in await _open_error(config)
    key.chmod(0o600)
    assert "listeners[0].upstream.key_file: gw's key for the target:" in await _open_error(config)
    (tmp_path / "deploy_ed25519").write_bytes(first)
    assert "listeners[0].upstream.known_hosts: known_hosts file" in await _open_error(config)


def test_gw_check_warns_that_recorded_shells_bypass_the_exec_rules(tmp_path: Path) -> None:
    os.environ.setdefault("GW_SSH_SETUP_SECRET", "x" * 40)
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(build_cli(), ["check", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "warning: listener 'web-1': shell = \"record\" lets agents type command lines" in result.output
    config.write_text(CONFIG.replace('shell = "record"', 'shell = "deny"'))
    quiet = CliRunner().invoke(build_cli(), ["check", str(config)], catch_exceptions=False)
    assert "warning" not in quiet.output


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_*", "PATH", "BASH_ENV", "ENV", "PROMPT_COMMAND"])
def test_accept_env_refuses_variables_that_load_code(tmp_path: Path, name: str) -> None:
    os.environ.setdefault("GW_SSH_SETUP_SECRET", "x" * 40)
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.replace('sftp = "allow"', f'sftp = "allow"\naccept_env = ["LANG", "{name}"]'))
    with pytest.raises(ConfigError, match="is never passed to the target"):
        Runtime.build(config)
