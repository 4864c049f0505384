"""What gw knows about programs: which run other programs (wrappers), which run code they are given
(shells, interpreters, options such as ``python -c``), which are interactive, and which operands are paths.

Every table here is part of the documented rules (docs/plugins/ssh.md, "How gw reads a command line").
"""

from __future__ import annotations

import re

from .options import OptionSpec, spec

# ---------------------------------------------------------------------------------------------------------------
# Families: python3.12 is python, gawk is awk ...
# ---------------------------------------------------------------------------------------------------------------

_VERSIONED = re.compile(
    r"^(python|pypy|perl|ruby|php|lua|luajit|tclsh|wish|node|nodejs|julia|bash|zsh|ksh|mksh|tcsh|csh|dash|"
    r"pdksh|expect|irb|jruby|php-cgi|pwsh|R|Rscript|gawk|mawk|nawk|awk|sed|gsed|vim|nvim|emacs)"
    r"[-_.]?(\d+([.-]\d+)*)?([mdu]+)?$")


def family(name: str) -> str:
    """``python3.12`` -> ``python``; names without a version are their own family."""
    m = _VERSIONED.match(name)
    return m.group(1) if m else name


# ---------------------------------------------------------------------------------------------------------------
# Shells and interpreters
# ---------------------------------------------------------------------------------------------------------------

#: Shells: ``-c STRING`` is shell code gw reads; without it they read a script file or stdin.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "fish", "csh", "tcsh", "rbash",
                    "yash", "posh", "hush", "elvish", "nu", "xonsh", "pwsh", "es", "rc"})

SHELL_OPTIONS = spec(short="abefhkmnptuvxBCHPTEilrsDc", short_arg="oO", plus=True,
                     long="norc noprofile login posix restricted verbose debugger dump-strings dump-po-strings "
                          "noediting help version wordexp pretty-print protected",
                     long_arg="rcfile init-file")

#: Interpreters: options that take code on the command line (``code``: the program then is ``unknown``),
#: the options gw knows, and whether a program without a script operand reads its code from stdin.
#: ``script``: the first operand is a script file (not code).
INTERPRETERS: dict[str, tuple[OptionSpec, frozenset[str]]] = {
    "python": (spec(short="bBdEhiIOPqsSuvVx", short_arg="cmWXQ", long="help version check-hash-based-pycs",
                    long_arg="check-hash-based-pycs"),
               frozenset({"-c", "-i"})),
    "pypy": (spec(short="bBdEhiIOqsSuvVx", short_arg="cmWX"), frozenset({"-c", "-i"})),
    "perl": (spec(short="aBcfhnpsStTUvwWX", short_arg="eEIMmF", short_opt="0ilxCd"),
             frozenset({"-e", "-E", "-M", "-m", "-x", "-d"})),
    "ruby": (spec(short="acdhlnpsSvwyU", short_arg="eIrCEFK", short_opt="0Wx",
                  long="verbose version help yydebug jit",
                  long_arg="encoding external-encoding internal-encoding disable enable dump"),
             frozenset({"-e", "-r", "-x", "--enable", "--dump"})),
    "irb": (spec(), frozenset({"(always)"})),
    "node": (spec(short="cihv", short_arg="eprC",
                  long="interactive check help version experimental-vm-modules no-warnings enable-source-maps "
                       "trace-warnings",
                  long_arg="eval print require import loader experimental-loader input-type conditions "
                           "env-file title max-old-space-size"),
             frozenset({"-e", "-p", "-r", "-i", "--eval", "--print", "--require", "--import", "--loader",
                        "--experimental-loader", "--interactive", "--env-file"})),
    "nodejs": (spec(), frozenset()),  # filled below (same as node)
    "php": (spec(short="ahHiInqsvlemw", short_arg="cdfrzBRFEtS", long="interactive", long_arg="define"),
            frozenset({"-r", "-a", "-B", "-R", "-F", "-E", "-d", "-z", "-c", "-S", "--interactive", "--define"})),
    "lua": (spec(short="ivEW", short_arg="el"), frozenset({"-e", "-l", "-i"})),
    "luajit": (spec(short="ivEW", short_arg="elbjO"), frozenset({"-e", "-l", "-i", "-b", "-j"})),
    "tclsh": (spec(), frozenset()),
    "wish": (spec(), frozenset()),
    "expect": (spec(short="dDinNv", short_arg="cf", short_opt="b"), frozenset({"-c", "-i"})),
    "julia": (spec(short="hiqvV", short_arg="eEpLtJO", long="version help interactive quiet",
                   long_arg="eval print load project threads optimize startup-file history-file"),
              frozenset({"-e", "-E", "-p", "-L", "-i", "--eval", "--print", "--load", "--interactive"})),
    "R": (spec(short="fhqsv", short_arg="eg", long="vanilla no-save save no-restore slave silent quiet interactive "
                                                  "no-environ no-site-file no-init-file args",
               long_arg="file encoding"),
          frozenset({"-e", "--interactive"})),
    "Rscript": (spec(short="", short_arg="e", long="vanilla verbose no-environ default-packages"), frozenset({"-e"})),
    "gdb": (spec(), frozenset({"(always)"})),
    "lldb": (spec(), frozenset({"(always)"})),
    "dc": (spec(short="hV", short_arg="ef", long="help version", long_arg="expression file"),
           frozenset({"-e", "--expression"})),
    "jshell": (spec(), frozenset({"(always)"})),
    "groovy": (spec(short="ahnpv", short_arg="elcd"), frozenset({"-e"})),
    "scala": (spec(), frozenset({"-e"})),
    "osascript": (spec(), frozenset({"(always)"})),
    "pwsh": (spec(), frozenset({"(always)"})),
    "powershell": (spec(), frozenset({"(always)"})),
    "deno": (spec(), frozenset({"(always)"})),
    "bun": (spec(), frozenset({"(always)"})),
    "ghci": (spec(), frozenset({"(always)"})),
    "erl": (spec(), frozenset({"(always)"})),
    "clisp": (spec(), frozenset({"(always)"})),
    "sbcl": (spec(), frozenset({"(always)"})),
    "guile": (spec(), frozenset({"(always)"})),
    "racket": (spec(), frozenset({"(always)"})),
    "ocaml": (spec(), frozenset({"(always)"})),
    "swipl": (spec(), frozenset({"(always)"})),
    "php-cgi": (spec(), frozenset({"(always)"})),
    "jruby": (spec(), frozenset({"(always)"})),
}
INTERPRETERS["nodejs"] = INTERPRETERS["node"]

#: Clients whose command language has a shell escape (``\!``, ``.shell``, ``system``): their command text
#: is scanned; read from stdin it is unknown.
CLIENT_ESCAPES: dict[str, tuple[OptionSpec, frozenset[str], re.Pattern[str]]] = {
    "psql": (spec(short="aAbeEhHlLnqsSVwWxX0z12", short_arg="cdfFhLoPpRTUvU",
                  long="echo-all no-align echo-errors echo-queries echo-hidden list no-readline quiet single-step "
                       "single-line tuples-only expanded no-psqlrc single-transaction help version "
                       "no-password password csv html",
                  long_arg="command dbname file field-separator host log-file output pset port "
                           "record-separator table-attr username variable set"),
             frozenset({"-c", "--command", "-f", "--file"}),
             re.compile(r"\\!|\\[a-z]+[^\n]*\|| program |\\setenv|\\i|\\ir|\\include", re.IGNORECASE)),
    "mysql": (spec(short="ABCEfGHnNqrstvVwXLT", short_arg="eDhPpSuOo",
                   long="batch skip-column-names silent table vertical xml html force unbuffered raw compress "
                        "no-auto-rehash help version",
                   long_arg="execute database host port socket user password default-character-set "
                            "defaults-file defaults-extra-file init-command pager tee"),
              frozenset({"-e", "--execute", "--init-command", "--pager", "--defaults-file",
                         "--defaults-extra-file"}),
              re.compile(r"\\!|\bsystem\b|\\\||\bpager\b|\btee\b|\bsource\b|\\\.", re.IGNORECASE)),
    "sqlite3": (spec(), frozenset({"-cmd", "-init"}),
                re.compile(r"\.(shell|system|once|output|import|load|read|excel)\b|\|", re.IGNORECASE)),
}
CLIENT_ESCAPES["mariadb"] = CLIENT_ESCAPES["mysql"]

#: Programs that run code from their arguments or stdin whatever their options (their programs are text gw
#: does not read): always ``unknown``.
ALWAYS_CODE = frozenset({"eval", "source", ".", "alias", "enable", "hash", "fc", "bind", "complete", "compgen",
                         "parallel", "sem", "at", "batch", "tmux", "screen", "byobu", "socat", "mapfile",
                         "readarray", "nsenter", "machinectl", "systemd-nspawn", "firejail", "bwrap", "proot",
                         "lxc-attach", "lxc-execute", "run-parts", "perlbug", "unshare", "capsh", "hyperfine",
                         "nix-shell", "nix", "newgrp", "schroot", "ansible", "ansible-console", "fd", "fdfind",
                         "expect", "entr", "lxc", "sandbox", "aa-exec", "vipe",
                         # editors: without a terminal they read their commands (shell escapes included) from stdin
                         "ed", "red", "ex", "vi", "vim", "nvim", "view", "vimdiff", "rvim", "gvim", "emacs",
                         "emacsclient", "nano", "pico", "joe", "jed", "mcedit", "ne", "micro", "kak", "helix",
                         "hx", "sudoedit", "visudo", "vipw", "vigr", "mc"})

#: Interactive programs: refused on listeners with ``shell = "deny"`` (the caller's list adds to it).
#: Shells and interpreters reading stdin are added by the analysis itself.
INTERACTIVE = frozenset({
    # pagers and viewers with shell escapes
    "less", "more", "most", "pg", "man", "info", "pinfo", "lynx", "w3m", "links", "elinks",
    # editors
    "vi", "vim", "nvim", "view", "vimdiff", "rvim", "gvim", "ex", "ed", "red", "emacs", "emacsclient", "nano",
    "pico", "joe", "jed", "mcedit", "ne", "micro", "kak", "helix", "hx", "sudoedit", "visudo", "vipw", "vigr",
    # programs that run a shell or commands typed at them
    "script", "watch", "screen", "tmux", "byobu", "mc", "ranger", "nnn", "ftp", "sftp", "telnet", "ssh",
    "gdb", "lldb", "sqlite3", "psql", "mysql", "mariadb", "mongo", "mongosh", "irb", "ghci", "jshell",
    "expect", "aptitude",
})

#: Wrappers that gain privileges (the flag ``privileged``).
PRIVILEGED = frozenset({"sudo", "doas", "su", "pkexec", "run0", "runuser", "sg", "newgrp", "chroot", "setpriv",
                        "capsh", "ksu", "calife", "super", "sudoedit"})

# ---------------------------------------------------------------------------------------------------------------
# Wrappers: programs that run the program named after their options
# ---------------------------------------------------------------------------------------------------------------

#: name -> (options, operands before the program).  Wrappers with special rules are handled in the analysis
#: (env, sudo, su, xargs, find, watch, flock, timeout, chrt, taskset, time, exec, command, builtin, busybox ...).
WRAPPERS: dict[str, tuple[OptionSpec, int]] = {
    "nohup": (spec(long="help version"), 0),
    "nice": (spec(short_arg="n", long_arg="adjustment", numeric=True), 0),
    "ionice": (spec(short="tPu", short_arg="cn", long="ignore", long_arg="class classdata"), 0),
    "stdbuf": (spec(short_arg="ioe", long_arg="input output error"), 0),
    "setsid": (spec(short="cfw", long="ctty fork wait"), 0),
    "timeout": (spec(short="v", short_arg="sk", long="foreground preserve-status verbose",
                     long_arg="signal kill-after"), 1),
    "chroot": (spec(long="skip-chdir", long_arg="userspec groups"), 1),
    "doas": (spec(short="nLs", short_arg="uC"), 0),
    "pkexec": (spec(long="disable-internal-agent help version", long_arg="user"), 0),
    "run0": (spec(short="", short_arg="uDg", long="no-ask-password background",
                  long_arg="user group chdir setenv unit property description slice nice machine"), 0),
    "runuser": (spec(short="lmp", short_arg="ugGcsw", long="login preserve-environment pty",
                     long_arg="user group supp-group command shell session-command whitelist-environment"), 0),
    "unbuffer": (spec(short="p"), 0),
    "catchsegv": (spec(), 0),
    "fakeroot": (spec(short="u", short_arg="is", long="unknown-is-real", long_arg="lib faked"), 0),
    "numactl": (spec(short="ls", short_arg="iNmpCb", long="localalloc show hardware",
                     long_arg="interleave cpunodebind membind preferred physcpubind"), 0),
    "prlimit": (spec(short="", short_arg="p", long="noheadings raw verbose",
                     long_opt="as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
                              "sigpending stack"), 0),
    "cgexec": (spec(short_arg="g", long="sticky"), 0),
    "strace": (spec(short="cCdDfFhiqrtTvVwxyYZk", short_arg="aboOpPsSuEeXIU", long="follow-forks"), 0),
    "ltrace": (spec(short="bcCfhiLrStTV", short_arg="aAeFlnopsuwxD"), 0),
    "valgrind": (spec(short="qv", long="help version", long_opt="tool leak-check log-file trace-children"), 0),
    "setarch": (spec(short="vRFLBXSTZ3", long="verbose addr-no-randomize"), 1),
    "linux32": (spec(), 0),
    "linux64": (spec(), 0),
    "sudoedit": (spec(), 0),
    "time": (spec(short="pvqa", short_arg="fo", long="portability verbose quiet append",
                  long_arg="format output"), 0),
    "exec": (spec(short="cl", short_arg="a"), 0),
    "command": (spec(short="pvV"), 0),
    "builtin": (spec(), 0),
    "coproc": (spec(), 0),
    "systemd-run": (spec(short="Gqt", short_arg="upEM",
                         long="user system scope wait pty pipe collect quiet no-block remain-after-exit",
                         long_arg="unit property description slice uid gid nice working-directory setenv "
                                  "machine host service-type on-calendar on-active"), 0),
    "systemd-inhibit": (spec(long="list", long_arg="what who why mode"), 0),
    "trickle": (spec(short="hsvV", short_arg="udwtln"), 0),
    "torsocks": (spec(), 0),
    "proxychains": (spec(short="q", short_arg="f"), 0),
    "proxychains4": (spec(short="q", short_arg="f"), 0),
    "caffeinate": (spec(short="dimsu", short_arg="tw"), 0),
    "dbus-launch": (spec(long="exit-with-session sh-syntax csh-syntax"), 0),
    "xvfb-run": (spec(short="as", short_arg="efnpw"), 0),
    "ip": (spec(), 0),
    "daemonize": (spec(short="av", short_arg="cepoEul"), 0),
    "start-stop-daemon": (spec(), 0),
    "sg": (spec(), 1),
    "with-lock-ex": (spec(short="qw"), 1),
    "lckdo": (spec(short="qw"), 1),
    "chpst": (spec(short="vPN0", short_arg="uUeb/nlLmdofpc"), 0),
    "setuidgid": (spec(), 1),
    "envdir": (spec(), 1),
    "softlimit": (spec(short_arg="amdsloprctf"), 0),
    "tini": (spec(short="svlwgp", short_arg="e"), 0),
    "dumb-init": (spec(short="cv", short_arg="r", long="single-child verbose", long_arg="rewrite"), 0),
    "ts": (spec(), 0),
    "sem": (spec(), 0),
    "setpriv": (spec(short="d", long="clear-groups keep-groups init-groups nnp no-new-privs reset-env dump",
                     long_arg="reuid ruid euid regid rgid egid groups inh-caps ambient-caps bounding-set "
                              "securebits pdeathsig selinux-label apparmor-profile landlock-access "
                              "landlock-rule"), 0),
    "eatmydata": (spec(), 0),
    "chronic": (spec(short="ev"), 0),
    "runcon": (spec(short="c", short_arg="urtl", long="compute", long_arg="user role type range"), 1),
    "cpulimit": (spec(short="vzkr", short_arg="lpe", long="verbose lazy kill restore",
                      long_arg="limit pid exe cpu"), 0),
    "direnv": (spec(), 0),
    "dotenv": (spec(short_arg="fev"), 0),
    "pipx": (spec(), 0),
    "uv": (spec(), 0),
    "poetry": (spec(), 0),
    "pipenv": (spec(), 0),
    "bundle": (spec(), 0),
    "npx": (spec(short="yq", short_arg="pc", long="yes no quiet", long_arg="package call"), 0),
    "conda": (spec(), 0),
    "perf": (spec(), 0),
}
#: Runners whose subcommand comes before the program (``uv run CMD``, ``perf stat CMD``).
RUNNER_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "direnv": frozenset({"exec"}), "pipx": frozenset({"run"}), "uv": frozenset({"run", "tool"}),
    "poetry": frozenset({"run"}), "pipenv": frozenset({"run"}), "bundle": frozenset({"exec"}),
    "conda": frozenset({"run"}), "perf": frozenset({"stat", "record", "trace", "top", "sched", "lock", "mem",
                                                    "kmem", "c2c", "ftrace"}),
    "npm": frozenset({"exec", "x"}), "yarn": frozenset({"dlx", "exec"}), "pnpm": frozenset({"exec", "dlx"}),
}

SUDO_OPTIONS = spec(short="AbEHKklnPSBNVvsie", short_arg="CDgpRrTtUu", short_opt="",
                    long="askpass background help list non-interactive preserve-groups stdin bell version "
                         "validate remove-timestamp reset-timestamp shell login edit",
                    long_arg="close-from chdir group prompt chroot role command-timeout type other-user user "
                             "host",
                    long_opt="preserve-env")
#: sudo options that make it run a shell or an editor instead of (or around) the command.
SUDO_SHELL = frozenset({"-s", "--shell", "-i", "--login", "-e", "--edit"})

ENV_OPTIONS = spec(short="0iv", short_arg="uCS", long="ignore-environment null debug help version",
                   long_arg="unset chdir split-string", long_opt="block-signal default-signal ignore-signal "
                                                                "list-signal-handling")
SU_OPTIONS = spec(short="lmpP", short_arg="cgGsw",
                  long="login preserve-environment pty fast",
                  long_arg="command session-command group supp-group shell whitelist-environment")
XARGS_OPTIONS = spec(short="0prtx", short_arg="adEILnPs", short_opt="eil",
                     long="null interactive no-run-if-empty verbose exit show-limits open-tty",
                     long_arg="arg-file delimiter max-args max-procs max-chars process-slot-var",
                     long_opt="eof replace max-lines")
WATCH_OPTIONS = spec(short="bcCeghptwrx", short_arg="nq", short_opt="d",
                     long="beep color no-color errexit chgexit no-title precise exec no-wrap no-rerun help version",
                     long_arg="interval equexit", long_opt="differences")
FLOCK_OPTIONS = spec(short="sexunoFhV", short_arg="wEc",
                     long="shared exclusive unlock nonblock nb close no-fork verbose help version",
                     long_arg="timeout wait conflict-exit-code command")
CHRT_OPTIONS = spec(short="abdefiormpvhRV", short_arg="TPD", long="all-tasks batch deadline fifo idle other rr "
                                                                  "max pid verbose reset-on-fork help version",
                    long_arg="sched-runtime sched-period sched-deadline")
TASKSET_OPTIONS = spec(short="acphV", long="all-tasks cpu-list pid help version")
FIND_PREFIX = spec(short="HLP", short_arg="DO")
SSH_OPTIONS = spec(short="46AaCfGgKkMNnqsTtVvXxYy", short_arg="BbcDEeFIiJLlmOoPpQRSWw")
SCP_OPTIONS = spec(short="346ABCOpqRrTdftvN", short_arg="cDFiJlosPSX")
SFTP_OPTIONS = spec(short="46AaCfNpqrv", short_arg="BbcDFiJloPRSsX")
#: ssh -o options that run local commands.
SSH_COMMAND_OPTIONS = frozenset({"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand",
                                 "match", "remotecommand", "proxyjump", "include", "securitykeyprovider",
                                 "pkcs11provider", "sshaskpass"})
GIT_OPTIONS = spec(short="hvpP", short_arg="cC",
                   long="version help paginate no-pager no-replace-objects bare literal-pathspecs "
                        "glob-pathspecs noglob-pathspecs icase-pathspecs no-optional-locks",
                   long_arg="git-dir work-tree namespace super-prefix config-env list-cmds",
                   long_opt="exec-path html-path man-path info-path")
#: git subcommand options that run commands: (subcommand, option names).
GIT_CODE = {
    "rebase": frozenset({"-x", "--exec"}),
    "difftool": frozenset({"-x", "--extcmd", "-t", "--tool"}),
    "mergetool": frozenset({"-t", "--tool"}),
    "grep": frozenset({"-O", "--open-files-in-pager"}),
    "clone": frozenset({"-u", "--upload-pack", "--template", "-c", "--config"}),
    "fetch": frozenset({"--upload-pack"}),
    "pull": frozenset({"--upload-pack"}),
    "push": frozenset({"--receive-pack", "--exec"}),
    "ls-remote": frozenset({"--upload-pack", "--exec"}),
    "archive": frozenset({"--exec"}),
    "send-email": frozenset({"--sendmail-cmd", "--smtp-server", "--to-cmd", "--cc-cmd"}),
    "commit": frozenset({"--edit", "-e"}),
}
#: git subcommands that run commands or shell code from their arguments or configuration.
GIT_CODE_COMMANDS = frozenset({"bisect", "submodule", "filter-branch", "filter-repo", "config", "alias",
                               "daemon", "instaweb", "web--browse", "credential", "hook", "-c"})
TAR_CODE = re.compile(r"^--(to-command|use-compress-program|checkpoint-action|rsh-command|info-script|"
                      r"new-volume-script|rmt-command|index-file)|^-[^-]*[IF]")
RSYNC_CODE = re.compile(r"^(-[^-]*e|--rsh|--rsync-path|--filter|-[^-]*f)")

# ---------------------------------------------------------------------------------------------------------------
# Environment variables whose value runs code or changes which program runs
# ---------------------------------------------------------------------------------------------------------------

_DANGEROUS_ENV = re.compile(
    r"^(PATH|LD_[A-Z_]*|BASH_ENV|ENV|BASH_FUNC_.*|PROMPT_COMMAND|PS[0-4]|IFS|SHELLOPTS|BASHOPTS|CDPATH|"
    r"GLOBIGNORE|BASH_XTRACEFD|BASH_LOADABLES_PATH|BASH_COMPAT|EXECIGNORE|FIGNORE|HISTFILE|INPUTRC|"
    r"SHELL|EDITOR|VISUAL|PAGER|MANPAGER|MANOPT|SYSTEMD_PAGER|SYSTEMD_EDITOR|SYSTEMD_LESS|GIT_.*|"
    r"LESS|LESSOPEN|LESSCLOSE|LESSKEY|LESSKEYIN|MORE|BROWSER|TERMINAL|SUDO_ASKPASS|SSH_ASKPASS.*|"
    r"PYTHON[A-Z_]*|PERL[A-Z0-9_]*|RUBY[A-Z_]*|GEM_[A-Z_]*|NODE_[A-Z_]*|NPM_CONFIG_.*|PHP[A-Z_]*|"
    r"LUA_[A-Z_]*|TCLLIBPATH|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|GCONV_PATH|"
    r"TAR_OPTIONS|GREP_OPTIONS|RSYNC_RSH|RSYNC_CONNECT_PROG|CVS_RSH|ZDOTDIR|TMOUT|MAIL|MAILCHECK|MAILPATH|"
    r"SSH_.*|KRB5.*|OPENSSL_CONF|MALLOC_.*|GLIBC_TUNABLES|TZDIR|NLSPATH|LOCPATH|HOSTALIASES|RESOLV_.*|"
    r"XDG_CONFIG_HOME|XDG_CONFIG_DIRS|HOME|PWD|OLDPWD|BASH_ARGV0|POSIXLY_CORRECT|TMPDIR)$")


def dangerous_environment(name: str) -> bool:
    """Variables that make a program load or run code, or change which program a name runs."""
    return bool(_DANGEROUS_ENV.match(name))


# ---------------------------------------------------------------------------------------------------------------
# Operands: which are paths
# ---------------------------------------------------------------------------------------------------------------

#: Programs whose operands are not files (names, numbers, URLs, units ...): only operands that look like
#: paths (``/``, ``~``, ``.``) are objects.
NO_FILES = frozenset({
    "echo", "printf", "kill", "pkill", "killall", "sleep", "usleep", "true", "false", ":", "id", "whoami",
    "groups", "uname", "hostname", "hostnamectl", "date", "uptime", "ps", "pgrep", "pidof", "free", "w", "who",
    "users", "last", "lastb", "nproc", "arch", "systemctl", "service", "journalctl", "loginctl", "timedatectl",
    "localectl", "ip", "ss", "netstat", "ping", "ping6", "traceroute", "tracepath", "mtr", "dig", "nslookup",
    "host", "curl", "wget", "apt", "apt-get", "apt-cache", "yum", "dnf", "zypper", "apk", "pip", "pip3", "npm",
    "yarn", "pnpm", "docker", "podman", "kubectl", "helm", "which", "type", "whereis", "getent", "seq", "expr",
    "test", "[", "[[", "let", "wait", "jobs", "fg", "bg", "disown", "shift", "return", "exit", "break",
    "continue", "set", "shopt", "unset", "export", "declare", "typeset", "local", "readonly", "umask",
    "ulimit", "times", "trap", "read", "getopts", "caller", "logger", "tput", "stty", "reset", "clear", "lscpu",
    "lsblk", "lsusb", "lspci", "lsmod", "dmesg", "vmstat", "iostat", "mpstat", "sar", "top", "htop", "env",
    "printenv", "locale", "tty", "nc", "telnet", "openssl", "base32", "factor", "yes", "tr", "numfmt",
    "systemd-analyze", "resolvectl", "nmcli", "iptables", "nft", "sysctl", "modprobe", "ufw", "firewall-cmd",
    "useradd", "userdel", "usermod", "groupadd", "groupdel", "passwd", "chage", "su", "cd",
})

#: Programs whose first operand is not a file (a pattern, a script, a mode, an owner, a subcommand ...),
#: unless one of the listed options supplies it.
FIRST_NOT_FILE: dict[str, frozenset[str]] = {
    "grep": frozenset({"-e", "-f", "--regexp", "--file"}),
    "egrep": frozenset({"-e", "-f", "--regexp", "--file"}),
    "fgrep": frozenset({"-e", "-f", "--regexp", "--file"}),
    "zgrep": frozenset({"-e", "-f"}),
    "rg": frozenset({"-e", "-f", "--regexp", "--file", "--files"}),
    "ag": frozenset(),
    "ack": frozenset(),
    "jq": frozenset({"-f", "--from-file", "-n"}),
    "yq": frozenset(),
    "chmod": frozenset({"--reference"}),
    "chown": frozenset({"--reference"}),
    "chgrp": frozenset({"--reference"}),
    "openssl": frozenset(),
    "setfacl": frozenset({"-b", "-k", "--remove-all"}),
}

#: Option arity of common programs (options taking a value), so their values are not read as files.
ARITY: dict[str, OptionSpec] = {
    "head": spec(short_arg="nc", long_arg="lines bytes", numeric=True, permute=True),
    "tail": spec(short_arg="ncs", long_arg="lines bytes sleep-interval pid max-unchanged-stats",
                 long_opt="follow", numeric=True, permute=True),
    "sort": spec(short_arg="ktoST", long_arg="key field-separator output buffer-size temporary-directory "
                                              "parallel batch-size compress-program files0-from",
                 long_opt="sort random-source", permute=True),
    "cut": spec(short_arg="bcdf", long_arg="bytes characters delimiter fields output-delimiter", permute=True),
    "uniq": spec(short_arg="fsw", long_arg="skip-fields skip-chars check-chars", long_opt="group all-repeated",
                 permute=True),
    "grep": spec(short="abcDdEFGhHiIlLnoPqrRsTuUvVwxZz", short_arg="eEfmABCdD",
                 long_arg="regexp file max-count after-context before-context context label include exclude "
                          "exclude-from exclude-dir binary-files devices directories group-separator",
                 long_opt="color colour", permute=True),
    "ls": spec(short_arg="ITw", long_arg="ignore hide tabsize width block-size format indicator-style "
                                        "quoting-style sort time time-style", long_opt="color hyperlink",
               permute=True),
    "du": spec(short_arg="BdtX", long_arg="block-size max-depth threshold exclude-from exclude time-style",
               long_opt="time", permute=True),
    "df": spec(short_arg="tBx", long_arg="type block-size exclude-type output", permute=True),
    "stat": spec(short_arg="c", long_arg="format printf", permute=True),
    "date": spec(short_arg="dfr", long_arg="date file reference", permute=True),
    "tr": spec(permute=True),
    "wc": spec(long_arg="files0-from", permute=True),
    "xxd": spec(short_arg="cgloOsn", permute=True),
    "od": spec(short_arg="AjNtSw", permute=True),
    "hexdump": spec(short_arg="enNs", permute=True),
    "sed": spec(short="nErsuzi", short_arg="efl", short_opt="i",
                long="quiet silent regexp-extended separate unbuffered null-data posix debug sandbox "
                     "follow-symlinks",
                long_arg="expression file line-length", long_opt="in-place", permute=True),
    "awk": spec(short="bcCdDghLMnNoOpPrsStV", short_arg="FvfeEilW",
                long="characters-as-bytes traditional copyright lint-old optimize no-optimize posix "
                     "re-interval sandbox use-lc-numeric version help",
                long_arg="field-separator assign file source exec include load",
                long_opt="dump-variables debug lint pretty-print profile", permute=True),
    "tee": spec(short="aip", long="append ignore-interrupts", long_opt="output-error", permute=True),
    "cp": spec(short_arg="St", long_arg="suffix target-directory", long_opt="backup preserve reflink sparse",
               permute=True),
    "mv": spec(short_arg="St", long_arg="suffix target-directory", long_opt="backup", permute=True),
    "ln": spec(short_arg="St", long_arg="suffix target-directory", long_opt="backup", permute=True),
    "rm": spec(long_opt="interactive preserve-root", permute=True),
    "mkdir": spec(short_arg="mZ", long_arg="mode context", permute=True),
    "chmod": spec(long_arg="reference", permute=True),
    "chown": spec(long_arg="reference from", permute=True),
    "install": spec(short_arg="gmoStZ", long_arg="group mode owner suffix target-directory", permute=True),
    "tar": spec(short_arg="fCbgHKLNTVX", long_arg="file directory blocking-factor exclude exclude-from format "
                                                  "group owner mode mtime newer label transform xform "
                                                  "files-from",
                long_opt="verify", permute=True),
    "find": spec(permute=True),
    "git": spec(short_arg="mCcbBFnS", long_arg="message author date file branch format pretty since until "
                                               "grep depth", long_opt="color", permute=True),
    "journalctl": spec(short_arg="uptnSUoDM", permute=True),
    "systemctl": spec(short_arg="tpPHMn", permute=True),
    "ps": spec(short_arg="opUuGgtC", permute=True),
    "curl": spec(short_arg="XHdoOuAeEFTwxbcrKmyYz", permute=True),
    "wget": spec(short_arg="OoPaeUTtwQ", permute=True),
    "jq": spec(short="nrjacsSeC", long_arg="arg argjson slurpfile rawfile indent", permute=True),
    "dd": spec(permute=True),
    "cat": spec(permute=True),
    "diff": spec(short_arg="UCIFxXSL", long_arg="unified context ignore-matching-lines exclude exclude-from "
                                                "label from-file to-file", permute=True),
    "split": spec(short_arg="abClnt", permute=True),
    "zip": spec(short_arg="bxinPt", permute=True),
    "unzip": spec(short_arg="dxP", permute=True),
    "rsync": spec(short_arg="eBfT", permute=True),
    "scp": spec(short_arg="cFiJloPS", permute=True),
    "base64": spec(short_arg="w", permute=True),
    "shred": spec(short_arg="ns", permute=True),
    "truncate": spec(short_arg="rs", long_arg="reference size", permute=True),
    "touch": spec(short_arg="dtr", long_arg="date reference time", permute=True),
    "chattr": spec(short_arg="pv", permute=True),
    "mount": spec(short_arg="tLUoO", permute=True),
    "mkfs": spec(short_arg="tbL", permute=True),
    "dmesg": spec(short_arg="fl", permute=True),
}


def sed_script_problems(script: str) -> tuple[list[str], list[str]]:
    """Scan a sed script: returns (reasons it runs commands, files it reads or writes).

    GNU sed's ``e`` command and ``e`` flag of ``s`` run shell commands; ``w``/``W``/``r``/``R`` name files.
    The scan follows sed's command syntax (addresses, ``s``/``y`` with any delimiter, text arguments); what
    it cannot follow is reported as running commands (fail closed)."""
    reasons: list[str] = []
    files: list[str] = []
    i, n = 0, len(script)

    def skip_regex(j: int, delim: str) -> int:
        while j < n:
            c = script[j]
            if c == "\\":
                j += 2
                continue
            if c == delim:
                return j + 1
            if c == "\n":
                return -1
            j += 1
        return -1

    def rest_of_line(j: int) -> tuple[str, int]:
        end = script.find("\n", j)
        end = n if end < 0 else end
        return script[j:end].strip(), end

    while i < n:
        c = script[i]
        if c in " \t\n;":
            i += 1
            continue
        # addresses: numbers, $, /re/, \cREc, first~step, addr1,addr2, +N, ~N, then optional !
        while i < n:
            c = script[i]
            if c.isdigit() or c in "$~+,":
                i += 1
            elif c == "/":
                i = skip_regex(i + 1, "/")
                if i < 0:
                    return ["a sed address gw cannot read"], files
                while i < n and script[i] in "IM":
                    i += 1
            elif c == "\\" and i + 1 < n:
                i = skip_regex(i + 2, script[i + 1])
                if i < 0:
                    return ["a sed address gw cannot read"], files
            elif c in " \t!":
                i += 1
            else:
                break
        if i >= n:
            break
        c = script[i]
        i += 1
        if c in "{}=dDgGhHlnNpPqQxzF":
            while i < n and script[i].isdigit():  # q5, l 70
                i += 1
            continue
        if c == "#":
            _, i = rest_of_line(i)
            continue
        if c == ":" or c in "btTv":
            while i < n and script[i] not in ";\n}":
                i += 1
            continue
        if c in "aic":
            _, i = rest_of_line(i)
            continue
        if c in "rRwW":
            name, i = rest_of_line(i)
            if c in "wW" and name in ("/dev/stdout", "/dev/stderr"):
                continue
            files.append(name)
            continue
        if c == "e":
            reasons.append("sed's e command runs shell commands")
            _, i = rest_of_line(i)
            continue
        if c in "sy":
            if i >= n:
                return ["a sed command gw cannot read"], files
            delim = script[i]
            if delim in "\n\\":
                return ["a sed command gw cannot read"], files
            j = skip_regex(i + 1, delim)
            j = skip_regex(j, delim) if j > 0 else -1
            if j < 0:
                return ["a sed command gw cannot read"], files
            i = j
            if c == "s":
                while i < n and script[i] not in ";\n}":
                    f = script[i]
                    if f == "e":
                        reasons.append("sed's s///e flag runs the result as a shell command")
                    if f == "w":
                        name, i = rest_of_line(i + 1)
                        files.append(name)
                        break
                    i += 1
            continue
        return [f"sed command {c!r} is not one gw knows"], files
    return reasons, files


_AWK_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def awk_program_problems(program: str) -> tuple[list[str], list[str]]:
    """Scan an awk program: (reasons it runs commands, paths its string literals name)."""
    reasons = []
    code = _AWK_STRING.sub('""', program)
    if re.search(r"\bsystem\s*\(", code):
        reasons.append("awk's system() runs shell commands")
    if "|" in code.replace("||", ""):
        reasons.append("an awk pipe (| getline, print |) runs shell commands")
    if re.search(r"@load|@include", code):
        reasons.append("awk's @load/@include loads code from files")
    if re.search(r"\bENVIRON\b|\bPROCINFO\b", code) and re.search(r"\bsystem\b", code):
        reasons.append("awk program reads code from the environment")
    paths = [m.group(1) for m in _AWK_STRING.finditer(program) if "/" in m.group(1)]
    return reasons, paths


#: Programs that act on whole directory trees: name -> the options that make them recursive (None: always).
RECURSIVE: dict[str, frozenset[str] | None] = {
    "tar": None, "mv": None, "rsync": None, "rg": None, "ag": None, "ack": None, "cpio": None, "pax": None,
    "7z": None, "7za": None, "bsdtar": None, "mount": None, "rclone": None, "restic": None, "borg": None,
    "cp": frozenset({"-r", "-R", "-a", "--recursive", "--archive"}),
    "scp": frozenset({"-r"}),
    "zip": frozenset({"-r", "-R", "--recurse-paths"}),
    "grep": frozenset({"-r", "-R", "--recursive", "--dereference-recursive"}),
    "egrep": frozenset({"-r", "-R"}), "fgrep": frozenset({"-r", "-R"}),
    "diff": frozenset({"-r", "--recursive"}),
    "chmod": frozenset({"-R", "--recursive"}), "chown": frozenset({"-R", "--recursive"}),
    "chgrp": frozenset({"-R", "--recursive"}), "chattr": frozenset({"-R"}), "setfacl": frozenset({"-R"}),
    "rm": frozenset({"-r", "-R", "--recursive"}), "gzip": frozenset({"-r", "--recursive"}),
    "shred": None, "wipe": None,
}


def recursive(name: str, words: list[str | None]) -> bool:
    """Whether this invocation of ``name`` acts on the contents of the directories it names."""
    if name not in RECURSIVE:
        return False
    options = RECURSIVE[name]
    if options is None:
        return True
    for w in words:
        if w is None or not w.startswith("-") or w == "-":
            continue
        if w.startswith("--"):
            if w.split("=")[0] in options:
                return True
        elif any(f"-{c}" in options for c in w[1:]):
            return True
    return False
