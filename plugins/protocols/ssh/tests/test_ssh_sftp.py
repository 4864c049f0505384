"""sftp through gw with the real OpenSSH sftp client: transfers work, each file operation is decided and
audited; sftp and forwarding are refused where they must be."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Gateway


def sftp(gateway: Gateway, batch: str, *, listener: str = "web-1", subject: str = "agent-7"
         ) -> subprocess.CompletedProcess[bytes]:
    args = gateway.ssh_args(None, listener=listener)
    # sftp takes ssh's options, but -P for the port.  -b (stop at the first failing command) turns BatchMode
    # on unless an earlier -o BatchMode=no wins (ssh keeps the first value of an option).
    options = [a for a in args[1:-1] if a != "-p" and not a.isdigit()]
    command = ["sftp", "-P", str(gateway.port(listener)), *options, "-b", "-", args[-1]]
    return subprocess.run(command, input=batch.encode(), capture_output=True, timeout=60,
                          env=gateway.env(gateway.token(subject, ["agents"])), check=False)


def test_upload_and_download_work_and_every_operation_is_audited(gateway: Gateway, target_dir: Path) -> None:
    local = target_dir / "local.bin"
    local.write_bytes(os.urandom(700_000))
    remote = target_dir / "remote.bin"
    back = target_dir / "back.bin"
    result = sftp(gateway, f"put {local} {remote}\nget {remote} {back}\nmkdir {target_dir}/d\n"
                           f"rename {remote} {target_dir}/d/r.bin\nls {target_dir}/d\nrm {target_dir}/d/r.bin\n"
                           f"rmdir {target_dir}/d\n", subject="sftp-user")
    assert result.returncode == 0, result.stderr
    assert remote.exists() is False and back.read_bytes() == local.read_bytes()
    records = [r for r in gateway.audit(limit=60) if r["subject"] == "sftp-user"]
    seen = {(r["verb"], tuple(r["objects"])): r for r in records}
    write = seen[("write", (str(remote),))]
    assert write["kind"] == "write" and write["language"] == "sftp" and "create" in write["flags"]
    assert write["outcome"]["notes"]["bytes_written"] == 700_000
    assert seen[("read", (str(remote),))]["outcome"]["notes"]["bytes_read"] == 700_000
    assert seen[("rename", (str(remote), f"{target_dir}/d/r.bin"))]["kind"] == "write"
    for verb, path in (("mkdir", f"{target_dir}/d"), ("remove", f"{target_dir}/d/r.bin"),
                       ("rmdir", f"{target_dir}/d")):
        assert seen[(verb, (path,))]["outcome"]["status"] == "ok"
    assert any(r["verb"] == "sftp" and r["kind"] == "exec" for r in records)


def test_a_refused_file_operation_is_answered_by_gw_and_never_reaches_the_target(gateway: Gateway,
                                                                                   target_dir: Path) -> None:
    protected = target_dir / "protected"
    protected.mkdir()
    (protected / "f.txt").write_text("keep me")
    result = sftp(gateway, f"rm {protected}/f.txt\n", subject="sftp-denied")
    assert result.returncode != 0
    assert b"gw policy refused this command (write, remove)" in result.stderr
    assert (protected / "f.txt").read_text() == "keep me"
    record = next(r for r in gateway.audit() if r["subject"] == "sftp-denied" and r["verb"] == "remove")
    assert record["verdict"] == "denied" and record["objects"] == [f"{protected}/f.txt"]


def test_sftp_refused_where_the_listener_denies_it(gateway: Gateway, target_dir: Path) -> None:
    result = sftp(gateway, "ls /\n", listener="locked")
    assert result.returncode != 0
    assert b"sftp is not allowed on listener 'locked'" in result.stderr


def test_port_forwarding_is_refused_and_says_why(gateway: Gateway) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    local = port.getsockname()[1]
    port.close()
    args = gateway.ssh_args("sleep 1", options=["-L", f"127.0.0.1:{local}:127.0.0.1:{gateway.sshd.port}"])
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=gateway.env(gateway.token()))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", local), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        conn.settimeout(5)
        assert conn.recv(100) == b""  # the tunnel never opens: no SSH banner of the target comes through
        conn.close()
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert b"administratively prohibited: gw refuses port forwarding" in err
    assert b"bypasses the gateway" in err


def test_remote_and_agent_forwarding_are_refused_with_a_notice(gateway: Gateway, tmp_path: Path) -> None:
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not agent_socket.exists():  # ssh -A asks for agent forwarding only when an agent runs
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = gateway.env(gateway.token())
        env["SSH_AUTH_SOCK"] = str(agent_socket)
        result = subprocess.run(gateway.ssh_args("echo ran", options=["-R", "127.0.0.1:0:127.0.0.1:22", "-A"]),
                                capture_output=True, stdin=subprocess.DEVNULL, env=env, timeout=30, check=False)
    finally:
        agent.terminate()
        agent.wait(5)
    assert result.returncode == 0 and result.stdout == b"ran\n"
    assert b"gw: remote port forwarding" in result.stderr
    assert b"gw: agent forwarding (ssh -A) is refused" in result.stderr
