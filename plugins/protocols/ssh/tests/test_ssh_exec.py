"""exec through gw with the real OpenSSH client and a real sshd: output, exit statuses and signals, audit,
guard, approval holds and masking."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gw_ssh._asyncssh import asyncssh

if TYPE_CHECKING:
    from conftest import Gateway


def test_command_runs_on_the_target_and_is_audited_with_the_identity(gateway: Gateway) -> None:
    result = gateway.ssh("uname -a", token=gateway.token("agent-7", ["agents"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout == subprocess.run(["uname", "-a"], capture_output=True, check=False).stdout
    record = gateway.audit_command("uname -a")
    assert record["subject"] == "agent-7" and record["groups"] == ["agents"] and record["provider"] == "dev"
    assert record["verdict"] == "allowed" and record["protocol"] == "ssh" and record["listener"] == "web-1"
    assert record["kind"] == "exec" and record["verb"] == "uname" and record["claimed_user"] == "agent-7"
    assert record["upstream"] == f"{gateway.sshd.user}@127.0.0.1:{gateway.sshd.port}"
    assert record["outcome"]["status"] == "ok" and record["outcome"]["tag"] == "exit 0"


def test_exit_status_stdout_and_stderr_arrive_intact(gateway: Gateway) -> None:
    result = gateway.ssh("echo to-stdout; echo to-stderr >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"to-stdout\n"
    assert b"to-stderr\n" in result.stderr
    outcome = gateway.audit_command("echo to-stdout; echo to-stderr >&2; exit 3")["outcome"]
    assert outcome["tag"] == "exit 3" and outcome["error_code"] == "exit 3"


def test_a_signal_that_kills_the_command_is_relayed(gateway: Gateway) -> None:
    direct = subprocess.run(["ssh", "-F", "/dev/null", "-p", str(gateway.sshd.port), "-i", str(gateway.sshd.upstream_key),
                             "-o", f"UserKnownHostsFile={gateway.directory / 'known_hosts'}", "-o", "BatchMode=yes",
                             f"{gateway.sshd.user}@127.0.0.1", "kill -KILL $$"], capture_output=True, timeout=20, check=False)
    through_gw = gateway.ssh("kill -KILL $$")
    assert through_gw.returncode == direct.returncode == 255

    async def exit_signal() -> tuple[object, object]:
        async with asyncssh.connect("127.0.0.1", gateway.port(), username="agent-7", password=gateway.token(),
                                    known_hosts=str(gateway.known_hosts), client_keys=None, agent_path=None,
                                    config=None, preferred_auth="password") as conn:
            result = await conn.run("kill -TERM $$", check=False)
            return result.exit_status, result.exit_signal

    status, sig = asyncio.run(exit_signal())
    assert status == -1 and sig is not None and sig[0] == "TERM"
    assert gateway.audit_command("kill -TERM $$")["outcome"]["tag"] == "signal TERM"


def test_stdin_is_relayed_with_flow_control(gateway: Gateway) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, more than any window or buffer on the way
    result = gateway.ssh("sha256sum", input=data)
    import hashlib

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_large_output_arrives_complete(gateway: Gateway) -> None:
    result = gateway.ssh("head -c 3000000 /dev/zero | tr '\\0' 'x'")
    assert result.returncode == 0
    assert result.stdout == b"x" * 3_000_000


def test_guard_rule_refuses_with_a_clear_message_and_exit_status(gateway: Gateway, target_dir: Path) -> None:
    victim = target_dir / "keep"
    victim.mkdir()
    result = gateway.ssh(f"rm -rf {victim}")
    assert result.returncode == 126
    assert b"gw policy refused this command (exec, rm)" in result.stderr
    assert b'text = "rm\\\\s+-rf"' in result.stderr  # the rule as written in the pipeline file (TOML escapes)
    assert victim.exists()
    record = gateway.audit_command(f"rm -rf {victim}")
    assert record["verdict"] == "denied" and record["stage"] == "guard" and record["code"] == "policy"
    assert record["outcome"]["status"] == "denied"


def test_approval_holds_the_command_until_an_approver_approves(gateway: Gateway) -> None:
    command = "echo systemctl restart nginx-$PPID"
    proc = subprocess.Popen(gateway.ssh_args(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=gateway.env(gateway.token()))
    try:
        deadline = time.monotonic() + 15
        request = None
        while request is None:
            pending = json.loads(gateway.gw("approvals", "list", "--json"))
            request = next((r for r in pending if r["text"] == command), None)
            assert time.monotonic() < deadline, "no approval request appeared"
            time.sleep(0.1)
        time.sleep(0.3)
        assert proc.poll() is None, "the command ran without approval"
        dba = gateway.token("dana", ["dba"])
        approve = subprocess.run([gateway.gw_bin, "approvals", "approve", request["id"], "--token", dba, "-c",
                                  str(gateway.config)], capture_output=True, text=True, timeout=30,
                                 env=gateway.process.env, check=False)
        assert approve.returncode == 0, approve.stderr
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith(b"systemctl restart nginx-")
    assert b"gw: approval required" in err and request["id"].encode() in err
    assert gateway.audit_command(command)["approved_by"] == ["dana"]


def test_card_numbers_in_output_are_masked_even_when_split_across_reads(gateway: Gateway, target_dir: Path) -> None:
    secret = target_dir / "cards.txt"
    secret.write_text("order 17 paid with 4111 1111 1111 1111 by ssn 123-45-6789\n")
    result = gateway.ssh(f"cat {secret}")
    assert result.returncode == 0
    assert result.stdout == b"order 17 paid with *** by ssn ***\n"
    split = gateway.ssh("printf 'card 4111 1111 '; sleep 0.3; printf '1111 1111 end\\n'; printf '4111111111111111' >&2")
    assert split.stdout == b"card *** end\n"
    assert b"***" in split.stderr and b"4111" not in split.stderr
    outcome = gateway.audit_command(f"cat {secret}")["outcome"]
    assert outcome["notes"]["masked"]["detected"] == {"credit_card": 1, "us_ssn": 1}
