"""Replaying a recorded SSH session in the console's player, in a real browser: a real OpenSSH ``sshd`` as the
target, real ``ssh`` (token as the password, through sshpass) through gw's ssh listener with the record stage."""

from __future__ import annotations

import getpass
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_env import GW, SECRET_ENV, Gateway, log_in, shot
from gw.testing import GatewayProcess, free_port, require_program, wait_for

PIPELINE = """\
[gateway]
data_dir = ".gw"
drain_timeout = "2s"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-console-replay"
audience = "gw"
secret_env = "{secret_env}"

[pipelines.hosts]
stages = [{{ use = "audit" }}, {{ use = "record", flush_interval = "100ms" }}]

[[listeners]]
name = "web-1"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"
shell = "record"
allow_groups = ["agents"]

[listeners.upstream]
host = "127.0.0.1"
port = {port}
user = "{user}"
key_file = "{key}"
known_hosts = "known_hosts"

[[listeners]]
name = "console"
protocol = "console"
listen = "127.0.0.1:0"
identity = "dev"
allow_groups = ["auditors"]
"""


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path, str]]:
    binary = require_program("sshd")
    d = tmp_path / "sshd"
    d.mkdir()
    host_key = keygen(d / "host_key")
    client_key = keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d / 'pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nLogLevel ERROR\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([binary, "-f", str(d / "sshd_config"), "-D", "-e"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        wait_for(up, timeout=10)
        public = " ".join((d / "host_key.pub").read_text().split()[:2])
        yield port, client_key, f"[127.0.0.1]:{port} {public}\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)


def test_replay_a_recorded_ssh_session_in_the_player(tmp_path: Path, sshd: tuple[int, Path, str],
                                                     browser: object) -> None:
    require_program("ssh")
    sshpass = require_program("sshpass")
    port, key, known = sshd
    (tmp_path / "known_hosts").write_text(known)
    config = tmp_path / "pipeline.toml"
    config.write_text(PIPELINE.format(secret_env=SECRET_ENV, port=port, user=getpass.getuser(), key=key))
    env = {**os.environ, SECRET_ENV: secrets.token_urlsafe(32)}
    keygen_out = subprocess.run([GW, "ssh", "keygen", "-c", str(config)], capture_output=True, text=True,
                                env=env, check=False)
    assert keygen_out.returncode == 0, keygen_out.stderr
    process = GatewayProcess(config, env=env).start()
    try:
        gateway = Gateway(tmp_path, config, process, "")
        marker = f"replay-{secrets.token_hex(4)}"
        out = subprocess.run(
            [sshpass, "-e", "ssh", "-tt", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR", "-p", str(process.port("web-1")),
             "agent-7@127.0.0.1", f"echo {marker}-one; sleep 0.3; echo {marker}-two"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**env, "SSHPASS": gateway.token("agent-7", "agents")}, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        assert f"{marker}-two" in out.stdout
        page = browser.new_page()  # type: ignore[attr-defined]
        log_in(page, gateway, gateway.token("audrey", "auditors"))
        page.get_by_role("link", name="Sessions").click()
        link = page.locator("#recorded-sessions tbody tr", has_text="agent-7").first.locator("a")
        wait_for(lambda: page.reload() or link.count() > 0, timeout=20)
        link.click()
        player = page.locator("#player")
        player.wait_for()
        page.wait_for_selector("#player[data-loaded]", timeout=15000)
        player.get_by_role("button", name="Show all").click()
        screen = player.locator(".screen")
        assert f"{marker}-one" in screen.inner_text() and f"{marker}-two" in screen.inner_text()
        shot(page, "session")
    finally:
        process.stop()
