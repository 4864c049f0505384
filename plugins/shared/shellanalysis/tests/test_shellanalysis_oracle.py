"""The analysis against bash itself: every line of a corpus runs under the real bash, traced with strace, in a
scratch directory, with a harmless stub program ``gwprobe`` on the PATH.  Whenever gw calls a line ``exec``
(it claims to know every program), every program bash actually executed must be among its verbs.  A line gw
calls ``unknown`` is refused or held by policy, so it may hide programs.

The corpus is the shell-grammar class of the SSH issue and its variants: quoting, escapes, line continuations,
comments, compound commands, substitutions, wrappers and their options, nested shells, here-documents.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gw.model import Kind
from gw_shellanalysis import ShellContext, analyse

P = "gwprobe"

#: How a program name can be written (each must still run gwprobe, or be unknown).
SPELLINGS = [P, f"'{P}'", f'"{P}"', "g'w'probe", '"gw""probe"', f"\\{P}", "gw\\probe", "gwpro\\\nbe",
             "$'\\x67wprobe'", "$'\\147wprobe'", '$"gwprobe"', "gw$''probe", 'gw""probe', "command gwprobe",
             "env gwprobe", "env - gwprobe", "env -i A=1 gwprobe", "env -u HOME gwprobe", "env -S 'gwprobe'",
             "nice gwprobe", "nice -n 3 gwprobe", "nice -5 gwprobe", "nohup gwprobe", "timeout 5 gwprobe",
             "timeout -s TERM -k 1 5 gwprobe", "stdbuf -o0 gwprobe", "setsid gwprobe", "time gwprobe",
             "time -p gwprobe", "exec gwprobe", "builtin command gwprobe", "flock /tmp/gw-oracle.lock gwprobe",
             "ionice -c3 gwprobe", "taskset -c 0 gwprobe", "chrt -o 0 gwprobe", "/usr/bin/env gwprobe",
             "x=1 gwprobe", "PS9=1 gwprobe"]

#: Where a program can appear in a line.
CONTEXTS = ["{p} a", "true; {p} a", "false || {p} a", "true && {p} a", "echo x | {p} a", "{p} a &", "{{ {p} a; }}",
            "( {p} a )", "if true; then {p} a; fi", "if false; then :; else {p} a; fi",
            "for i in 1; do {p} a; done", "while true; do {p} a; break; done", "until false; do {p} a; break; done",
            "case x in x) {p} a;; esac", "! {p} a", "echo $({p} a)", "echo `{p} a`", "cat <({p} a)",
            "f() {{ {p} a; }}; f", "function g {{ {p} a; }}; g", "echo a#; {p} a", "echo '#'; {p} a",
            "echo \"$({p} a)\"", "x=$({p} a)", "cat <<EOF\n$({p} a)\nEOF", "cat <<EOF\nx `{p} a` y\nEOF",
            "cat <<EOF\n${{x:-$({p} a)}}\nEOF", "cat <<-EOF\n\t`{p} a`\n\tEOF", "sh -c '{p} a'", "bash -c '{p} a'",
            "sh -c -- '{p} a'", "bash -ec '{p} a'", "sh -c \"sh -c '{p} a'\"", "coproc {p} a",
            "echo a | xargs {p}", "echo a | xargs -I{{}} {p} {{}}", "echo a | xargs -n 1 -P 2 {p}",
            "find /etc/hostname -exec {p} {{}} \\;", "find /etc/hostname -exec {p} {{}} +",
            "flock /tmp/gw-oracle.lock -c '{p} a'", "trap '{p} a' EXIT", "echo $'\\''; {p} a",
            "echo \"a\\\"\"; {p} a", "true\n{p} a", "true;{p} a", "{p} a;", "echo ${{x:-$({p} a)}}",
            "[[ $({p} a) ]]", "echo $(( $(echo 1) + 1 )); {p} a", "time {{ {p} a; }}", "echo x > >({p} a)",
            "select i in a; do {p} a; break; done </dev/null", "exec 3>&1; {p} a", "{{ {p} a; }} 2>/dev/null",
            "echo ${{x:={p}}} | cat; {p} a", "x=$({p} a) true", "declare y=$({p} a)", "export z=$({p} a)",
            ": ${{q:-$({p} a)}}", "echo ${{x/$({p} a)/z}}", "while false; do :; done; {p} a",
            "if false; then :; elif true; then {p} a; fi", "case a in b) ;; *) {p} a;; esac",
            "cat <<'EOF'\n$({p} a)\nEOF\n{p} a", "a=( $({p} a) )", "[ -n \"$({p} a)\" ]",
            "{p} a <<< \"$({p} a)\"", "echo \"`{p} a`\"", "echo '`{p} a`'; {p} a", "echo \\`{p} a\\`"]

#: What can separate two commands (and what a grammar might misread there).
SEPARATORS = ["; ", "\n", " && ", " || ", " | ", " & ", ";\n", "\n\n", " ;", "\t;\t", "\n#c\n", " # c\n",
              "\r\n", " |& ", "\n\t", "; #\n"]

CORPUS = [c.format(p=s) for c in CONTEXTS for s in SPELLINGS[:6]] + [
    f"true{sep}{s} a" for sep in SEPARATORS for s in SPELLINGS]


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        if os.environ.get("GW_REQUIRE_SERVICES"):
            pytest.fail("strace is not installed (the shell-analysis oracle runs bash under it)")
        pytest.skip("strace is not installed")
    return path


def _executed(strace: str, line: str, scratch: Path, bindir: Path) -> set[str]:
    trace = scratch / "trace"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(scratch), "LC_ALL": "C"}
    subprocess.run([strace, "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", str(trace),
                    "/bin/bash", "-c", line], cwd=scratch, env=env, capture_output=True, timeout=20,
                   stdin=subprocess.DEVNULL, check=False)
    names = set()
    for entry in trace.read_text().splitlines():
        m = re.search(r'execve\("([^"]+)".*\)\s*=\s*0\s*$', entry)
        if m:
            names.add(os.path.basename(m.group(1)))
    return names


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    strace = _strace()
    d = tmp_path_factory.mktemp("oracle")
    bindir = d / "bin"
    bindir.mkdir()
    stub = bindir / P
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    scratch = d / "scratch"
    scratch.mkdir()
    return strace, scratch, bindir


@pytest.mark.parametrize("line", list(dict.fromkeys(CORPUS)))
def test_every_program_bash_runs_is_a_verb_unless_the_line_is_unknown(oracle: tuple[str, Path, Path],
                                                                     line: str) -> None:
    strace, scratch, bindir = oracle
    analysis = analyse(line, ShellContext(cwd=str(scratch), home=str(scratch)))
    if analysis.kind is Kind.UNKNOWN:
        return
    ran = _executed(strace, line, scratch, bindir) - {"bash"}
    missed = ran - set(analysis.verbs)
    assert not missed, f"{line!r}: bash ran {sorted(missed)}, gw saw {list(analysis.verbs)}"


def test_the_oracle_sees_programs() -> None:
    """The oracle itself works: it sees gwprobe where bash runs it (else every check above would pass)."""
    strace = _strace()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "bin").mkdir()
        (d / "bin" / P).write_text("#!/bin/sh\nexit 0\n")
        (d / "bin" / P).chmod(0o755)
        assert P in _executed(strace, "true; g'w'probe x", d, d / "bin")
        assert P not in _executed(strace, f"echo {P}", d, d / "bin")
