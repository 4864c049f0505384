"""Interactive shells with a pty through gw, driven by pexpect like a person at a terminal: terminal type,
size and window changes relayed, output masked and recorded, and the asciicast export replays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pexpect
import pytest

if TYPE_CHECKING:
    from conftest import Gateway


def _latest_session(gateway: Gateway, subject: str) -> dict[str, object]:
    sessions = json.loads(gateway.gw("sessions", "list", "--json", "--user", subject, "--limit", "5"))
    assert sessions, f"no recorded session of {subject}"
    return dict(sessions[0])


def test_interactive_shell_is_relayed_recorded_and_exports_as_asciicast(gateway: Gateway, target_dir: Path) -> None:
    secret = target_dir / "card.txt"
    secret.write_text("card 5555 5555 5555 4444\n")
    env = gateway.env(gateway.token("shell-user", ["agents"]))
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(gateway.ssh_args(None, tty=True)[0], gateway.ssh_args(None, tty=True)[1:], env=env,
                          dimensions=(30, 100), timeout=15)
    try:
        child.sendline("export PS1='gw-test> '; stty -echo")
        child.expect("gw-test> ")
        child.sendline("echo $TERM $((6*7)); stty size")
        child.expect(r"xterm-256color 42\r\n30 100")
        child.sendline(f"cat {secret}")
        child.expect(r"card \*\*\*")
        assert b"5555" not in child.before + child.after
        child.setwinsize(40, 120)
        child.sendline("stty size")
        child.expect("40 120")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4

    session = _latest_session(gateway, "shell-user")
    record = next(r for r in gateway.audit(session=str(session["id"])) if r["text"] == "shell")
    assert record["verb"] == "shell" and record["outcome"]["tag"] == "exit 4"
    cast = target_dir / "session.cast"
    gateway.gw("sessions", "export", str(session["id"]), "--format", "asciicast", "-o", str(cast))
    lines = cast.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
    assert header["env"]["TERM"] == "xterm-256color"
    events = [json.loads(line) for line in lines[1:]]
    assert [e[2] for e in events if e[1] == "r"] == ["120x40"]
    screen = "".join(e[2] for e in events if e[1] == "o")
    assert "card ***" in screen and "5555" not in screen and "40 120" in screen
    asciinema = Path(sys.executable).with_name("asciinema")
    if not asciinema.exists():
        pytest.skip("asciinema is not installed (pip install asciinema) to check the replay")
    replay = subprocess.run([str(asciinema), "cat", str(cast)], capture_output=True, timeout=30, check=False)
    assert replay.returncode == 0, replay.stderr
    assert b"card ***" in replay.stdout


def test_shell_refused_where_the_listener_denies_shells(gateway: Gateway) -> None:
    result = gateway.ssh(None, listener="locked", tty=True)
    assert result.returncode == 126
    assert b"interactive shells are not allowed on listener 'locked'" in result.stderr
    assert b"ssh HOST 'COMMAND'" in result.stderr


def test_exec_with_a_pty_reports_its_terminal(gateway: Gateway) -> None:
    result = gateway.ssh("tty >/dev/null && echo has-tty; stty size", tty=True)
    assert result.returncode == 0
    assert b"has-tty" in result.stdout
