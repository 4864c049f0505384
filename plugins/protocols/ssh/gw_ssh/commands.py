"""Classifying an exec command line for the stages: which programs it runs, what paths it names, which facts
(pipes, sudo, redirections ...) hold.  Pure functions, no I/O.

The verb is the program that does the work: wrappers that only change *how* a program runs (``sudo``, ``env``,
``nice``, ``timeout`` ...) are looked through, so ``sudo systemctl restart nginx`` has the verb ``systemctl``
and an approval rule on ``verb = "systemctl"`` holds it.  Every program of the line -- wrappers, each command of
a pipeline or list, programs inside ``$(...)``, backticks and ``sh -c '...'`` -- is listed in
``Command.attributes["verbs"]``, which guard matches as well, and ``sudo``/``doas``/``su``/``pkexec`` add the
flag ``privileged``.  A line the shell lexer cannot split (an unbalanced quote) gets the flag ``unparsed``, its
first word as verb and no objects: rules on ``text`` still see it.

This is a classifier for policy, not a shell: the target's shell decides what really runs.  Aliases, functions,
``eval``, variables holding commands and scripts piped to an interpreter are opaque to it; guard rules on
``text`` (a regular expression over the whole line) cover what the structure misses.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

MAX_OBJECTS = 32
_MAX_DEPTH = 4
_OPERATOR_CHARS = ";&|<>()\n"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PRIVILEGED = frozenset({"sudo", "doas", "su", "pkexec", "run0"})
#: Stands in for a command substitution while the line around it is split (its body is classified apart).
_PLACEHOLDER = " __substitution__ "
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "fish"})

#: Wrappers: programs that run the next word as a program.  The value lists their options that take an argument
#: (skipped together with it); ``None`` marks wrappers whose first operand is not the program (``timeout 5 ...``).
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-U", "-T", "-r", "-t", "-R"}), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "-C", "-S", "--unset", "--chdir"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u"}), 0),
    "nohup": (frozenset(), 0),
    "time": (frozenset({"-f", "-o", "--format", "--output"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "exec": (frozenset({"-a"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "xargs": (frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter"}), 0),
    "setsid": (frozenset(), 0),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "watch": (frozenset({"-n", "-d", "--interval"}), 0),
    "flock": (frozenset({"-w", "-E", "--timeout"}), 1),
    "chrt": (frozenset(), 1),
    "taskset": (frozenset(), 1),
    "pkexec": (frozenset({"--user"}), 0),
    "run0": (frozenset({"-u", "--user", "-D", "--chdir"}), 0),
}


@dataclass(frozen=True, slots=True)
class Classification:
    """What :func:`classify` found in a command line."""

    verb: str
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    flags: frozenset[str]


def classify(text: str) -> Classification:
    """Classify one exec command line (see the module docstring)."""
    found = _Found()
    _classify(text, found, depth=0)
    verbs = tuple(dict.fromkeys(found.verbs))
    verb = found.primary or (verbs[0] if verbs else "")
    return Classification(verb, verbs, tuple(dict.fromkeys(found.objects))[:MAX_OBJECTS], frozenset(found.flags))


class _Found:
    __slots__ = ("flags", "objects", "primary", "verbs")

    def __init__(self) -> None:
        self.verbs: list[str] = []
        self.objects: list[str] = []
        self.flags: set[str] = set()
        self.primary = ""


def _program(word: str) -> str:
    return posixpath.basename(word) or word


def _looks_like_path(word: str) -> bool:
    if "://" in word or not word or word.startswith("-"):
        return False
    return word.startswith(("/", "./", "../", "~")) or "/" in word


def _classify(text: str, found: _Found, *, depth: int) -> None:
    if depth > _MAX_DEPTH:
        found.flags.add("unparsed")
        return
    spans = _substitutions(text)
    main = text
    for start, end in reversed(spans):
        main = main[:start] + _PLACEHOLDER + main[end:]
    lexer = shlex.shlex(main, posix=True, punctuation_chars=_OPERATOR_CHARS)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        found.flags.add("unparsed")
        words = text.split()
        if words and not found.primary:
            found.primary = _program(words[0])
            found.verbs.append(found.primary)
        return
    simple: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token and all(c in _OPERATOR_CHARS for c in token):
            if "<" in token or ">" in token:
                found.flags.add("redirect")
                target = tokens[i + 1] if i + 1 < len(tokens) else ""
                duplicates_fd = token.endswith("&") and (target.isdigit() or target == "-")  # 2>&1
                if target and not duplicates_fd and not all(c in _OPERATOR_CHARS for c in target):
                    found.objects.append(target)
                    i += 1
            else:
                _simple_command(simple, found, depth)
                simple = []
                _separator(token, found)
            i += 1
            continue
        if token.isdigit() and i + 1 < len(tokens) and tokens[i + 1][:1] in ("<", ">"):
            i += 1  # a file descriptor number before a redirection (2>&1)
            continue
        simple.append(token)
        i += 1
    _simple_command(simple, found, depth)
    for start, end in spans:
        found.flags.add("substitution")
        inner = text[start:end]
        _classify(inner[2:-1] if inner.startswith("$(") else inner[1:-1], found, depth=depth + 1)


def _separator(token: str, found: _Found) -> None:
    if "(" in token or ")" in token:
        found.flags.add("subshell")
    stripped = token.replace("(", "").replace(")", "")
    if not stripped:
        return
    if "||" in stripped or "&&" in stripped or ";" in stripped or "\n" in stripped:
        found.flags.add("multi_command")
    if "|" in stripped.replace("||", ""):
        found.flags.add("pipeline")
    if "&" in stripped.replace("&&", "").replace("|&", ""):
        found.flags.add("background")


def _simple_command(words: list[str], found: _Found, depth: int) -> None:
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        found.flags.add("env_assignment")
        i += 1
    wrappers: list[str] = []
    while i < len(words):
        program = _program(words[i])
        if program == _PLACEHOLDER.strip():
            found.flags.add("computed_program")  # ``$(which rm) -rf x``: known only at run time
            return
        found.verbs.append(program)
        if program in _PRIVILEGED:
            found.flags.add("privileged")
        wrapper = _WRAPPERS.get(program)
        if wrapper is None:
            if not found.primary:
                found.primary = program
            _arguments(program, words[i + 1:], found, depth)
            return
        wrappers.append(program)
        i = _skip_wrapper_options(words, i + 1, wrapper)
    if wrappers and not found.primary:
        found.primary = wrappers[0]  # a wrapper with nothing after it (``sudo -i``) is itself the program


def _skip_wrapper_options(words: list[str], i: int, wrapper: tuple[frozenset[str], int]) -> int:
    with_argument, operands = wrapper
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if word.startswith("-") and len(word) > 1:
            i += 2 if word in with_argument else 1
            continue
        if _ASSIGNMENT.match(word):  # env NAME=value program
            i += 1
            continue
        break
    return i + operands


def _arguments(program: str, args: list[str], found: _Found, depth: int) -> None:
    if program == "su" or program in _SHELLS:
        for j, arg in enumerate(args):
            if arg == "-c" or (arg.startswith("-") and not arg.startswith("--") and arg.endswith("c")
                               and program in _SHELLS):
                if j + 1 < len(args):
                    found.flags.add("nested_shell")
                    _classify(args[j + 1], found, depth=depth + 1)
                return
    for arg in args:
        if _looks_like_path(arg):
            found.objects.append(arg)


def _substitutions(text: str) -> list[tuple[int, int]]:
    """Spans of ``$(...)`` and backtick command substitutions (outside single quotes), outermost only."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 1
        elif c == "'" and not quote:
            quote = "'"
        elif c == '"':
            quote = "" if quote == '"' else '"'
        elif c == "$" and text.startswith("$(", i) and not text.startswith("$((", i):
            depth, j = 1, i + 2
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            out.append((i, j))
            i = j
            continue
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                break
            out.append((i, end + 1))
            i = end + 1
            continue
        i += 1
    return out
