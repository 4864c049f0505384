"""Path rules against what really happens: each line of a corpus runs under the real bash, traced with strace,
in a scratch directory holding a protected file ``vault/shadow`` (and a symbolic link to its directory made
beforehand).  Whenever a line really opened the protected file, gw's reading of it -- the analysis, plus
symbolic links resolved on the "target" (this machine, asked the way gw asks a target over sftp) -- must
match the rule ``objects = ["VAULT/shadow"]``, or be ``unknown``.

A line that opened it and that gw says is ``exec`` without a matching object would be a bypass of a path rule.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from gw.model import Command, Identity, Kind, ObjectSyntax, Session
from gw_rules import Rule
from gw_shellanalysis import ShellContext, analyse
from gw_ssh.commands import program_names, resolve

LINES = [
    "cat {v}/shadow", "cat {v}/../vault/shadow", "cat {v}//shadow", "cat {v}/./shadow", "cat {v}/shado?",
    "cat {v}/sha*ow", "cat {v}/[s]hadow", "cat {v}/*", "cat {v}/s*", "cd {v}; cat shadow", "cd {v} && cat ./shadow",
    "cd {s} && cd vault && cat shadow", "cd {s}; cat vault/shadow", "cd /; cat {rel}/shadow",
    "cat ../../../../../../../../..{v}/shadow", "cat {s}/link/shadow", "cat {s}/link/../vault/shadow",
    "cat {s}/link/./shadow", "cd {s}/link && cat shadow", "cd {s}/link/.. && cat vault/shadow",
    "x={v}/shadow; cat $x", "x={v}; cat \"$x/shadow\"", "x=shadow; cat {v}/$x", "for f in {v}/*; do cat $f; done",
    "cat {v}/{{shadow,nothing}}", "cat {v}/shadow{{,}}", "head -c 5 {v}/shadow", "tail -n1 {v}/shadow",
    "grep -r . {v}", "grep root {v}/shadow", "cp {v}/shadow {s}/copy", "tar -cf {s}/a.tar {v}",
    "tar -cf - -C {s} vault | cat >/dev/null",
    "cat < {v}/shadow", "exec 3< {v}/shadow; cat <&3", "while read l; do :; done < {v}/shadow",
    "find {v} -name shadow -exec cat {{}} \\;", "find {s} -type f -exec cat {{}} +",
    "head -c 100 $(echo {v}/shadow)", "env -C {v} cat shadow", "ln -s {v} {s}/l2 && cat {s}/l2/shadow",
    "ln -sf {v}/shadow {s}/l3 && cat {s}/l3", "cat {s}/link/shad\\ow", "cat \"{v}\"/'shadow'",
    "cat $'{v}/shadow'", "base64 {v}/shadow", "od -c {v}/shadow", "wc {v}/shadow", "sort {v}/shadow",
    "awk 1 {v}/shadow", "sed -n p {v}/shadow", "dd if={v}/shadow of=/dev/null status=none", "cat {s}/../{b}/vault/shadow",
    "cd ~ && cat {v}/shadow", "x=({v}/shadow); cat ${{x[0]}}", "set -- {v}/shadow; cat $1", "cat {v}/shadow/",
    "read f <<< {v}/shadow; cat $f", "f=$(echo {v}); cat $f/shadow", "cat {s}/filelink",
    "cd {s}; cat link/shadow", "pushd {v} >/dev/null; cat shadow", "(cd {v}; cat shadow)",
    "cat /proc/self/cwd/vault/shadow", "cd {s} && cat /proc/self/cwd/link/shadow",
    "cat /proc/self/root{v}/shadow", "cat /proc/1/root{v}/shadow", "cat {s}/link/../link/shadow",
    "cat {s}/link//shadow", "cd -P {s}/link/.. && cat vault/shadow", "cd {s}/link; cd ..; cat vault/shadow",
    "cat $(readlink -f {s}/link)/shadow", "cat {s}/li*/shadow", "cat {s}/*/shadow", "cat {s}/filelink{{,}}",
    "exec 5<{v}/shadow; cat /dev/fd/5", "cat /proc/self/cwd/filelink", "d={s}/link; cat $d/shadow",
    "cd {s}/link/../link && cat ./shadow", "ln {v}/shadow {s}/hard && cat {s}/hard",
]


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        if os.environ.get("GW_REQUIRE_SERVICES"):
            pytest.fail("strace is not installed (the path oracle runs bash under it)")
        pytest.skip("strace is not installed")
    return path


class LocalTarget:
    """The machine itself as the target, answering gw's path questions the way gw asks a target over sftp
    (lstat; realpath of what exists; a link's target; a missing name under its resolved parent)."""

    async def resolve_paths(self, paths: Sequence[str], *, limit: float = 5.0) -> list[str | None]:
        return [self._resolve(p, 0) for p in paths]

    async def expand_globs(self, patterns: Sequence[str], *, limit: float = 5.0,
                           most: int = 256) -> list[list[str] | None]:
        return [sorted(glob.glob(p)) for p in patterns]

    async def directories(self, paths: Sequence[str], *, limit: float = 5.0) -> list[str]:
        return ["dir" if os.path.isdir(p) else "file" if os.path.exists(p) else "missing" for p in paths]

    def _resolve(self, path: str, depth: int) -> str | None:
        if depth > 16:
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError:
            return None
        if st is not None and not os.path.islink(path):
            return os.path.realpath(path)
        parent, name = os.path.split(path.rstrip("/") or "/")
        if not name:
            return "/"
        if name in (".", ".."):
            return None
        base = self._resolve(parent or "/", depth + 1)
        if base is None:
            return None
        if st is None:
            return os.path.join(base, name)
        return self._resolve(os.path.join(base, os.readlink(path)), depth + 1)


def _opened(strace: str, line: str, scratch: Path) -> set[str]:
    trace = scratch.parent / "trace"
    # -y prints the file an opened descriptor refers to: "= 3</abs/path>", whatever directory it was opened from
    subprocess.run([strace, "-f", "-qq", "-y", "-e", "trace=open,openat", "-e", "signal=none", "-o", str(trace),
                    "/bin/bash", "-c", line], cwd=scratch, env={"PATH": "/usr/bin:/bin", "HOME": str(scratch)},
                   capture_output=True, timeout=20, stdin=subprocess.DEVNULL, check=False)
    out = set()
    for entry in trace.read_text().splitlines():
        m = re.search(r"=\s*\d+<(.+)>\s*$", entry)
        if m:
            out.add(os.path.realpath(m.group(1)))
    return out


def _session() -> Session:
    return Session("s", "l", "ssh", Identity("agent"), "127.0.0.1", "up", 0.0)


@pytest.mark.parametrize("template", LINES)
def test_a_line_that_opens_the_protected_file_matches_its_rule(template: str, tmp_path: Path) -> None:
    strace = _strace()
    scratch = tmp_path / "s"
    vault = scratch / "vault"
    vault.mkdir(parents=True)
    (vault / "shadow").write_text("secret\n")
    (scratch / "link").symlink_to(vault)
    (scratch / "filelink").symlink_to(vault / "shadow")
    line = template.format(v=vault, s=scratch, b=scratch.name, rel=str(vault).lstrip("/"))
    rule = Rule(objects=[f"{vault}/shadow"])
    analysis = analyse(line, ShellContext(cwd=str(scratch), home=str(scratch), user="u"))

    async def objects() -> tuple[str, ...]:
        target = LocalTarget()
        await program_names(analysis, target)
        return await resolve(analysis.objects, target, analysis.physical)

    resolved = trio.run(objects)
    # gw decides before the line runs: reset what a previous line could have left behind
    for made in ("l2", "l3", "copy"):
        (scratch / made).unlink(missing_ok=True)
    opened = _opened(strace, line, scratch)
    if analysis.kind is Kind.UNKNOWN or str(vault / "shadow") not in opened:
        return  # refused as unknown, or it never opened the file (GNU tar skips reading for /dev/null ...)
    command = Command(_session(), 1, line, "shell", Kind.EXEC, analysis.verb, resolved, analysis.flags,
                      verbs=analysis.verbs, object_syntax=ObjectSyntax.PATH)
    assert rule.matches(command), f"{line!r} opened {vault}/shadow but gw named only {resolved}"


def test_the_path_oracle_sees_opens(tmp_path: Path) -> None:
    """The oracle itself works (else every check above would pass)."""
    strace = _strace()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "f").write_text("x")
    assert str(tmp_path / "s" / "f") in _opened(strace, "cd / && cat $OLDPWD/f", tmp_path / "s")
    assert str(tmp_path / "s" / "f") not in _opened(strace, "echo f", tmp_path / "s")
