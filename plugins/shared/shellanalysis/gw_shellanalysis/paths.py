"""Paths as the target will see them, and globs over them.

Objects are written in the glob syntax rules use (``fnmatch``): ``*`` any text (``/`` included), ``?`` one
character, ``[...]`` a set.  A character that is literally part of a name but special in that syntax is
escaped as a one-character set (``[*]``), so an object is exact unless it says otherwise.  A part of a path
gw cannot know (a variable's value, an unknown working directory, a glob the target's shell expands) is a
wildcard: the object then matches every rule glob it could match.
"""

from __future__ import annotations

import re

_SPECIAL = frozenset("*?[")


def escape(text: str) -> str:
    """``text`` as a glob that matches exactly ``text``."""
    if not any(c in _SPECIAL for c in text):
        return text
    return "".join(f"[{c}]" if c in _SPECIAL else c for c in text)


def is_exact(pattern: str) -> bool:
    """True when ``pattern`` has no wildcard (escaped characters are exact)."""
    return unescape(pattern) is not None


def unescape(pattern: str) -> str | None:
    """The text an exact pattern stands for, or None when it has a wildcard."""
    if not any(c in _SPECIAL for c in pattern):
        return pattern
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "[" and i + 2 < len(pattern) and pattern[i + 2] == "]" and pattern[i + 1] in _SPECIAL:
            out.append(pattern[i + 1])
            i += 3
            continue
        if c in _SPECIAL:
            return None
        out.append(c)
        i += 1
    return "".join(out)


def _components(pattern: str) -> list[str]:
    """Split at ``/`` outside ``[...]`` sets."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "[":
            end = _set_end(pattern, i)
            if end > 0:
                current.append(pattern[i:end + 1])
                i = end + 1
                continue
        if c == "/":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def _set_end(pattern: str, i: int) -> int:
    """Index of the ``]`` closing the set opened at ``i``, or -1 when ``[`` is literal."""
    j = i + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "]":
            return j
        j += 1
    return -1


def normalise(pattern: str) -> str:
    """Collapse ``//``, ``.`` and ``..`` in a path pattern the way the kernel walks the path.

    Absolute patterns and patterns that start with an unknown part (``*/x``) are normalised; other relative
    patterns are returned as they are.  A ``..`` that follows a component holding a ``*`` cannot be undone
    lexically (an unknown value may have held several components), so everything up to it becomes ``*``."""
    parts = _components(pattern)
    out: list[str] = []
    if pattern.startswith("/"):
        rest = parts[1:]
    elif pattern.startswith("*"):
        out, rest = [parts[0]], parts[1:]
    else:
        return pattern
    wild = False
    for part in rest:
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                last = out.pop()
                if "*" in last and not is_exact(last):
                    out = []
                    wild = True
            continue
        out.append(part)
    if wild:
        return "*/" + "/".join(out) if out else "*"
    if pattern.startswith("/"):
        return "/" + "/".join(out)
    return "/".join(out) or "*"


def join(base: str, path: str) -> str:
    """``path`` resolved against directory ``base`` (both patterns; ``*`` is an unknown directory),
    normalised."""
    if path.startswith(("/", "*")):
        return normalise(path)
    return normalise(base.rstrip("/") + "/" + path if base != "/" else "/" + path)


def common_prefix_glob(patterns: list[str]) -> str:
    """One glob matching every pattern in ``patterns`` (their common literal prefix, then ``*``)."""
    if not patterns:
        return "*"
    prefix = patterns[0]
    for p in patterns[1:]:
        n = 0
        while n < len(prefix) and n < len(p) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    cut = min((i for i, c in enumerate(prefix) if c in _SPECIAL), default=len(prefix))
    return prefix[:cut] + "*"


def static_directory(pattern: str) -> tuple[str, str]:
    """Split an absolute pattern into its longest exact leading directory and the rest:
    ``/a/b/c*/d`` -> (``/a/b``, ``c*/d``).  The directory is what a server can resolve."""
    parts = _components(pattern)
    if not pattern.startswith("/"):
        return "", pattern
    exact: list[str] = []
    for i, part in enumerate(parts[1:], start=1):
        if not is_exact(part):
            return "/" + "/".join(unescape(p) or "" for p in exact), "/".join(parts[i:])
        exact.append(part)
    return "/" + "/".join(unescape(p) or "" for p in exact), ""


def climbs(pattern: str) -> bool:
    """``..`` follows a name somewhere in the path (``a/../b``), where a symbolic link makes the kernel's
    answer differ from the lexical one."""
    seen_name = False
    for part in _components(pattern):
        if part == "..":
            if seen_name:
                return True
        elif part not in ("", "."):
            seen_name = True
    return False


def collapse(pattern: str) -> str:
    """``//`` and ``.`` removed, ``..`` kept (what is left for the target to resolve)."""
    parts = [p for p in _components(pattern) if p not in ("", ".")]
    return ("/" if pattern.startswith("/") else "") + "/".join(parts)


_PROCESS = re.compile(r"^/(?:proc/(self|thread-self|\d+|[^/]*\*[^/]*)(?:/task/[^/]+)?|dev/fd)(?=/|$)")


def process_relative(pattern: str, cwds: list[str] | None = None) -> list[str] | None:
    """A path that depends on the process opening it -- another process (gw's own sftp session) would
    resolve it differently -- as the paths it may name: ``/proc/self/cwd/x`` is ``x`` under each of ``cwds``
    (the working directories the line may be in) and ``*/x``; ``/proc/1/root/etc/x`` is ``/etc/x`` and
    ``*/etc/x``; a descriptor (``/proc/self/fd/5``, ``/dev/fd/5``) is any file, except the standard streams
    0-2, whose files the line names where it redirects them.  None for other paths."""
    m = _PROCESS.match(pattern)
    if m is None:
        return None
    own = m.group(1) in ("self", "thread-self")
    rest = pattern[m.end():].lstrip("/")
    if pattern.startswith("/dev/fd"):
        return None if rest.split("/")[0] in ("0", "1", "2") else ["*"]
    head, _, tail = rest.partition("/")
    if head in ("root", "cwd") and tail:
        out = ["*/" + tail]
        if head == "root":
            out.append(normalise("/" + tail))
        elif own:
            out.extend(join(c, tail) for c in cwds or [])
        return out
    if head in ("root", "cwd", "exe", "fd", "map_files"):
        return None if head == "fd" and tail in ("0", "1", "2") else ["*"]
    return None
