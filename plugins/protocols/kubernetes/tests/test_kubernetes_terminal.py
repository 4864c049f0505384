"""``kubectl exec -it … sh`` through a pseudo-terminal (pexpect, like a person at a terminal): the shell is
relayed with resizes, its output masked, the session recorded and replayed; and a token that expires ends a
running watch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest


def test_exec_it_shell_is_masked_recorded_and_replayed(cluster: Any) -> None:
    (cluster.dir / "pod-root" / "card.txt").write_text("card 5555 5555 5555 4444\n")
    token = cluster.token("term-user", "agents")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig(token)), "HOME": str(cluster.dir),
           "TERM": "xterm-256color"}
    child = pexpect.spawn(cluster.kubectl, ["exec", "-it", "web-1", "-n", "prod", "--", "sh"], env=env,
                          dimensions=(30, 100), timeout=30)
    try:
        child.sendline("export PS1='pod> '; stty -echo")
        child.expect("pod> ")
        child.sendline("echo $((6*7)); stty size")
        child.expect(r"42\r\n30 100")
        child.sendline("cat card.txt")
        child.expect(r"card \*\*\*")
        assert b"5555" not in child.before + child.after
        child.setwinsize(40, 120)
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect("40 120")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4
    assert cluster.api.execs[-1].tty and (120, 40) in cluster.api.execs[-1].resizes

    record = next(r for r in cluster.audit() if r.get("verb") == "exec")
    assert record["text"] == "exec pods/web-1 -n prod -c app -- sh" and "tty" in record["flags"]
    sessions = json.loads(cluster.gw("sessions", "list", "-c", str(cluster.config), "--json", "--user",
                                     "term-user").stdout)
    session = str(sessions[0]["id"])
    replay = cluster.gw("sessions", "replay", "-c", str(cluster.config), session, "--no-wait")
    assert replay.returncode == 0, replay.stderr
    assert "card ***" in replay.stdout and "5555" not in replay.stdout
    cast = cluster.dir / "session.cast"
    export = cluster.gw("sessions", "export", "-c", str(cluster.config), session, "--format", "asciicast", "-o",
                        str(cast))
    assert export.returncode == 0, export.stderr
    lines = cast.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    assert "120x40" in [e[2] for e in events if e[1] == "r"]
    screen = "".join(e[2] for e in events if e[1] == "o")
    assert "card ***" in screen and "5555" not in screen
    asciinema = Path(sys.executable).with_name("asciinema")
    if not asciinema.exists():
        pytest.skip("asciinema is not installed (pip install asciinema) to check the replay")
    played = subprocess.run([str(asciinema), "cat", str(cast)], capture_output=True, timeout=30, check=False)
    assert played.returncode == 0, played.stderr
    assert b"card ***" in played.stdout


def test_an_expired_token_ends_a_running_watch(cluster: Any) -> None:
    token = cluster.token("short-lived", "agents", ttl=15)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig(token)), "HOME": str(cluster.dir)}
    started = time.monotonic()
    proc = subprocess.Popen([cluster.kubectl, "get", "pods", "-n", "prod", "--watch", "-o", "name",
                             "--request-timeout=0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        out, _err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the watch outlived its token by far")
    assert "pod/web-1" in out
    assert time.monotonic() - started < 50
    sessions = cluster.gw("audit", "sessions", "-c", str(cluster.config), "--json")
    assert "token_expired" in sessions.stdout, sessions.stdout
