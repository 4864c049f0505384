"""End-to-end fixtures for the ssh plugin: a real OpenSSH ``sshd`` on a loopback port as the target, one
``gw serve`` subprocess in front of it (several listeners: the canonical one, and ones whose target is
unreachable or has an unexpected host key), the real OpenSSH client (token via ``SSH_ASKPASS``) and the real
enforcement plugins (jwt, sqlite, audit, guard, approve, mask, record).  Nothing here is a mock.

sshd runs as the current user and logs clients in as that same user (root in CI, with
``PermitRootLogin prohibit-password``), so the target host is this machine.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gw.cli import build_cli, with_runtime
from gw.runtime import Runtime
from gw.testing import GatewayProcess, free_port, require_program

#: The gw command of this environment (the real CLI, for the commands an operator types).
GW = str(Path(sys.executable).with_name("gw"))
SECRET_ENV = "GW_SSH_TEST_SECRET"
SECRET = "ssh-plugin-test-secret-0123456789abcdef"
#: The content of the files the "strict" pipeline protects ({vault}/shadow, {vault}/root/*): seeing it is a bypass.
VAULT_MARKER = "vault-secret-7f3a9c"
os.environ.setdefault(SECRET_ENV, SECRET)


def keygen(path: Path, *extra: str) -> Path:
    """A new ed25519 key pair made by the real ssh-keygen."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path), *extra],
                   check=True, capture_output=True)
    return path


def sign_certificate(ca: Path, key: Path, *, principals: str, validity: str = "+1h", key_id: str = "test-cert",
                     extensions: Sequence[str] = ()) -> Path:
    """A user certificate for ``key.pub`` signed by ``ca`` (ssh-keygen -s), written to ``key-cert.pub``."""
    args = ["ssh-keygen", "-q", "-s", str(ca), "-I", key_id, "-n", principals, "-V", validity]
    for ext in extensions:
        args += ["-O", f"extension:{ext}"]
    subprocess.run([*args, str(key) + ".pub"], check=True, capture_output=True)
    return Path(str(key) + "-cert.pub")


@dataclass
class Sshd:
    """The target: a real sshd on 127.0.0.1:port."""

    port: int
    user: str
    directory: Path
    host_public_key: str
    upstream_key: Path
    proc: subprocess.Popen[bytes]

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    binary = require_program("sshd")
    d = tmp_path_factory.mktemp("sshd")
    host_key = keygen(d / "ssh_host_ed25519_key")
    upstream_key = keygen(d / "gw_upstream_key")
    (d / "authorized_keys").write_text((d / "gw_upstream_key.pub").read_text())
    port = free_port()
    user = getpass.getuser()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers {user}
MaxStartups 300
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = (d / "sshd.log").open("wb")
    proc = subprocess.Popen([binary, "-f", str(d / "sshd_config"), "-D", "-e"], stdout=subprocess.DEVNULL,
                            stderr=log)
    try:
        _wait_port(port)
        public = " ".join((d / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        yield Sshd(port, user, d, public, upstream_key, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


#: The upstream section of the listeners that reach the test sshd as they should.
TARGET = """\
[listeners.upstream]
host = "127.0.0.1"
port = {port}
user = "{user}"
key_file = "{upstream_key}"
known_hosts = "known_hosts"
"""

PIPELINE = """\
[gateway]
data_dir = ".gw"
handshake_timeout = "3s"
drain_timeout = "2s"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-ssh-test"
audience = "gw"
secret_env = "{secret_env}"

[pipelines.hosts]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [{{ kind = "exec", text = "rm\\\\s+-rf" }}, {{ kind = "write", objects = ["*/protected/*"] }}] }},
  {{ use = "approve", approvers = ["dba"], timeout = "1m", poll_interval = "50ms", require = [{{ text = "systemctl\\\\s+restart" }}] }},
  {{ use = "mask", detectors = ["credit_card", "us_ssn"] }},
  {{ use = "record", flush_interval = "100ms" }},
]

[pipelines.strict]
stages = [
  {{ use = "audit" }},
  {{ use = "guard", deny = [
    {{ kind = "unknown" }},
    {{ verb = ["rm", "dd", "mkfs", "shred", "unlink", "truncate"] }},
    {{ objects = ["{vault}/shadow", "{vault}/root/*"] }},
  ] }},
  {{ use = "approve", approvers = ["dba"], mode = "retry", timeout = "1m", require = [{{ verb = ["systemctl", "kill"] }}] }},
  {{ use = "mask", detectors = ["credit_card", "us_ssn"] }},
  {{ use = "record", flush_interval = "100ms" }},
]

[[listeners]]
name = "corpus"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "strict"
host_key_file = ".gw/ssh_host_ed25519"
shell = "deny"
sftp = "allow"
allow_groups = ["agents", "dba", "ops"]

{target}
[[listeners]]
name = "web-1"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"
shell = "record"
sftp = "allow"
authorized_keys = "authorized_keys"
user_ca = "user_ca.pub"
user_ca_groups = ["agents"]
allow_groups = ["agents", "dba", "ops"]

{target}
[[listeners]]
name = "locked"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"

[listeners.upstream]
host = "127.0.0.1"
port = {port}
user = "{user}"
key_env = "GW_SSH_TEST_UPSTREAM_KEY"
known_hosts = "known_hosts"

[[listeners]]
name = "rekeyed"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"

[listeners.upstream]
host = "127.0.0.1"
port = {port}
user = "{user}"
key_file = "{upstream_key}"
known_hosts = "known_hosts_changed"

[[listeners]]
name = "stranger"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"

[listeners.upstream]
host = "127.0.0.1"
port = {port}
user = "{user}"
key_file = "{upstream_key}"
known_hosts = "known_hosts_other"

[[listeners]]
name = "brief"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"
session_max = "2s"

{target}
[[listeners]]
name = "down"
protocol = "ssh"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "hosts"
host_key_file = ".gw/ssh_host_ed25519"

[listeners.upstream]
host = "127.0.0.1"
port = {down_port}
user = "{user}"
key_file = "{upstream_key}"
known_hosts = "known_hosts"
connect_timeout = "3s"
"""


@dataclass
class AgentKeys:
    alice: Path  # in authorized_keys: subject alice, groups ops
    mallory: Path  # in authorized_keys, but in no allowed group
    stranger: Path  # in no file
    ca: Path
    cert_user: Path  # key with a certificate signed by ca


class Gateway:
    """The running ``gw serve`` and helpers to talk to it like an agent would."""

    def __init__(self, directory: Path, config: Path, process: GatewayProcess, sshd: Sshd, keys: AgentKeys) -> None:
        self.directory = directory
        self.config = config
        self.process = process
        self.sshd = sshd
        self.keys = keys
        self.known_hosts = directory / "client_known_hosts"
        self.askpass = directory / "askpass.sh"
        self._runtime = Runtime.build(config)
        #: The real ``gw`` command, for what an operator types.
        self.gw_bin = GW
        self._cli = build_cli()

    keygen = staticmethod(keygen)
    sign_certificate = staticmethod(sign_certificate)

    def port(self, listener: str = "web-1") -> int:
        return self.process.port(listener)

    def token(self, sub: str = "agent-7", groups: Sequence[str] = ("agents",), ttl: float = 600,
              **claims: Any) -> str:
        return str(self._runtime.identity["dev"].issue_token(sub, list(groups), ttl, claims or None))

    def ssh_args(self, command: str | None, *, listener: str = "web-1", user: str = "agent-7",
                 key: Path | None = None, options: Sequence[str] = (), tty: bool = False) -> list[str]:
        args = ["ssh", "-F", "/dev/null", "-p", str(self.port(listener)),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=no", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", "ConnectTimeout=10", "-o", "NumberOfPasswordPrompts=1"]
        if key is not None:
            args += ["-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey", "-i", str(key)]
        else:
            args += ["-o", "PubkeyAuthentication=no"]
        if tty:
            args.append("-tt")
        args += [*options, f"{user}@127.0.0.1"]
        if command is not None:
            args.append(command)
        return args

    def env(self, token: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SSH_AUTH_SOCK")}
        env.update(SSH_ASKPASS=str(self.askpass), SSH_ASKPASS_REQUIRE="force", GW_TEST_TOKEN=token or "")
        return env

    def ssh(self, command: str | None, *, token: str | None = None, input: bytes | None = None,
            timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        """Run the real ssh client against gw (token from :meth:`token` unless a key is given)."""
        if token is None and kw.get("key") is None:
            token = self.token()
        return subprocess.run(self.ssh_args(command, **kw), input=input, capture_output=True, timeout=timeout,
                              env=self.env(token), stdin=None if input is not None else subprocess.DEVNULL,
                              check=False)

    def gw(self, *args: str) -> str:
        """A ``gw`` CLI command against this gateway's pipeline file (in-process); returns its output."""
        result = CliRunner().invoke(self._cli, [*args, "-c", str(self.config)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def audit(self, *, session: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        args = ["audit", "list", "--json", "--limit", str(limit)]
        if session:
            args += ["--session", session]
        return list(json.loads(self.gw(*args)))

    def audit_command(self, text: str, *, timeout: float = 5) -> dict[str, Any]:
        """The newest audit record of ``text``, once its outcome is written."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.audit():
                if record.get("text") == text and record.get("outcome") is not None:
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(f"no completed audit record of {text!r}")
            time.sleep(0.1)

    def audit_events(self, kind: str) -> list[dict[str, Any]]:
        """Raw audit records of a type (session_refused, session_end ...), newest first."""

        async def read(rt: Runtime) -> list[dict[str, Any]]:
            assert rt.store is not None
            index = "session" if kind.startswith("session_") else kind  # audit indexes all session records so
            entries = await rt.store.scan("audit", where={"type": index}, newest_first=True, limit=300)
            return [dict(e.data) for e in entries if e.data.get("type") == kind]

        return with_runtime(self.config, read)


@pytest.fixture(scope="session")
def gateway(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    require_program("ssh")
    d = tmp_path_factory.mktemp("gw")
    keys = AgentKeys(alice=keygen(d / "alice"), mallory=keygen(d / "mallory"), stranger=keygen(d / "stranger"),
                      ca=keygen(d / "user_ca"), cert_user=keygen(d / "carol"))
    (d / "authorized_keys").write_text(
        "# gw test keys\n"
        f"{(d / 'alice.pub').read_text().strip()} subject=alice groups=ops,agents\n"
        f"{(d / 'mallory.pub').read_text().strip()} subject=mallory groups=guests   # not allowed on web-1\n")
    (d / "known_hosts").write_text(sshd.known_hosts_line())
    keygen(d / "other_host_key")
    other_public = " ".join((d / "other_host_key.pub").read_text().split()[:2])
    (d / "known_hosts_changed").write_text(f"[127.0.0.1]:{sshd.port} {other_public}\n")
    (d / "known_hosts_other").write_text(f"[192.0.2.1]:22 {other_public}\n")
    config = d / "pipeline.toml"
    vault = d / "vault"
    (vault / "root").mkdir(parents=True)
    (vault / "shadow").write_text(f"root:{VAULT_MARKER}:19000:0:99999:7:::\n")
    (vault / "root" / "secret").write_text(f"{VAULT_MARKER}\n")
    target = TARGET.format(port=sshd.port, user=sshd.user, upstream_key=sshd.upstream_key)
    config.write_text(PIPELINE.format(secret_env=SECRET_ENV, port=sshd.port, user=sshd.user, target=target,
                                      upstream_key=sshd.upstream_key, down_port=free_port(), vault=vault))
    (d / "askpass.sh").write_text('#!/bin/sh\nprintf "%s\\n" "$GW_TEST_TOKEN"\n')
    (d / "askpass.sh").chmod(0o755)
    result = CliRunner().invoke(build_cli(), ["ssh", "keygen", "-c", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    host_public = " ".join((d / ".gw" / "ssh_host_ed25519.pub").read_text().split()[:2])
    env = {SECRET_ENV: SECRET, "GW_SSH_TEST_UPSTREAM_KEY": sshd.upstream_key.read_text()}
    process = GatewayProcess(config, env=env).start()
    try:
        with open(d / "client_known_hosts", "w") as f:
            f.writelines(f"[127.0.0.1]:{process.port(name)} {host_public}\n"
                         for name in ("web-1", "locked", "rekeyed", "stranger", "down", "corpus", "brief"))
        yield Gateway(d, config, process, sshd, keys)
    finally:
        process.stop()


@pytest.fixture
def target_dir(sshd: Sshd, tmp_path: Path) -> Path:
    """A directory the target (this machine, as the sshd user) and the test both see."""
    return tmp_path


def which(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found
