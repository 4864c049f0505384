"""What an exec command line runs, as the pipeline sees it.

:mod:`gw_shellanalysis` reads the line with a real shell grammar (every program it runs, wrappers and nested
shells included; ``unknown`` for what gw cannot reduce to fixed programs and arguments).  The target then says
where the line's paths lead: gw asks it, over an sftp session of its own on the upstream connection, for the
account's home directory (where sshd starts the command, so relative paths resolve against it) and for the
physical path of every absolute path's exact leading directory (so a symbolic link made earlier is followed).
Objects are the paths as written (normalised) plus where they lead; a rule on either matches.

Some programs speak a file-transfer protocol on their standard streams (the server side of legacy
``scp -O``, ``rsync --server``, git's pack transports): their output is carried unchanged, like sftp's file
contents, and what they may read or write under a named directory is an object too (``dir/*``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import gw_shellanalysis
from gw_shellanalysis import (
    Analysis,
    ShellContext,
    escape,
    is_exact,
    normalise,
    static_directory,
    unescape,
)

#: Most distinct directories gw asks the target about per command.
MAX_RESOLVED = 32
#: Programs whose standard streams carry a file-transfer protocol when they run alone.
_TRANSFER = frozenset({"scp", "rsync", "git-upload-pack", "git-receive-pack", "git-upload-archive"})
#: The sftp server program run as an exec command: an sftp session without the subsystem.
SFTP_SERVERS = frozenset({"sftp-server", "internal-sftp"})
_COMPOUND = frozenset({"pipeline", "multi_command", "background", "redirect", "substitution", "subshell"})


@dataclass(frozen=True, slots=True)
class Plan:
    """An exec command line, read and resolved."""

    analysis: Analysis
    objects: tuple[str, ...]
    #: The transfer program whose streams pass unfiltered (``scp``, ``rsync`` ...), or None.
    transfer: str | None = None
    #: The analysis's verbs, plus the names of the programs that programs run by path lead to.
    verbs: tuple[str, ...] = ()

    @property
    def sftp_server(self) -> bool:
        a = self.analysis
        return not a.unknown and len(a.verbs) == 1 and a.verbs[0] in SFTP_SERVERS and not (a.flags & _COMPOUND)


def classify(text: str, context: ShellContext | None = None) -> Analysis:
    # Looked up when called: the analyser is imported by the first command, not when the plugin loads.
    return gw_shellanalysis.analyse(text, context)


def transfer_program(text: str, analysis: Analysis) -> str | None:
    """The transfer program a line runs alone (``scp -f``/``scp -t``, ``rsync --server`` ...), or None."""
    if analysis.unknown or len(analysis.verbs) != 1 or analysis.flags & _COMPOUND:
        return None
    verb = analysis.verbs[0]
    if verb not in _TRANSFER:
        return None
    words = text.split()
    if verb == "scp":
        clusters = [w[1:] for w in words[1:] if w.startswith("-") and not w.startswith("--")]
        return "scp" if any("f" in c or "t" in c for c in clusters) else None
    if verb == "rsync":
        return "rsync" if "--server" in words else None
    return verb


def with_contents(objects: tuple[str, ...]) -> tuple[str, ...]:
    """A transfer may read or write anything under the paths it names."""
    out = list(objects)
    for o in objects:
        if o != "*":
            out.append(o.rstrip("/") + "/*")
    return tuple(dict.fromkeys(out))


class PathQuestions(Protocol):
    """What a plan needs to ask the target: implemented by the upstream connection."""

    async def resolve_paths(self, paths: Sequence[str], *, limit: float = ...) -> list[str | None]: ...

    async def expand_globs(self, patterns: Sequence[str], *, limit: float = ..., most: int = ...
                           ) -> list[list[str] | None]: ...

    async def directories(self, paths: Sequence[str], *, limit: float = ...) -> list[str]: ...


async def only_trees(objects: tuple[str, ...], target: PathQuestions) -> tuple[str, ...]:
    """Drop ``X/*`` (what is under ``X``) where the target says ``X`` is a file: moving, copying or archiving
    a file touches nothing under it.  Where ``X`` does not exist yet (a destination) it is kept only if the
    command names a directory that exists (moving that one makes ``X`` a tree); always kept where the target
    cannot say."""
    bases = [(o, unescape(o[:-2])) for o in objects if o.endswith("/*") and len(o) > 2]
    exact = [(o, b) for o, b in bases if b is not None][:MAX_RESOLVED]
    if not exact:
        return objects
    kinds = dict(zip((o for o, _ in exact), await target.directories([b for _, b in exact])))
    trees = any(k in ("dir", "unknown") for k in kinds.values())
    drop = {o for o, k in kinds.items() if k == "file" or (k == "missing" and not trees)}
    return tuple(o for o in objects if o not in drop)


async def resolve(objects: tuple[str, ...], target: PathQuestions, physical: tuple[str, ...] = ()
                  ) -> tuple[str, ...]:
    """``objects`` plus, for each absolute one, the same path with its exact leading directory replaced by
    where the target says it leads; ``physical`` are paths as written (with ``..``) to resolve the same way
    (their answers are added, not the paths themselves)."""
    extra: list[str] = []
    globs = [o for o in objects if o.startswith("/") and not is_exact(o)][:MAX_RESOLVED]
    if globs:
        # a glob may match a symbolic link (cat /srv/li*/x): where its matches lead counts too
        for matches in await target.expand_globs(globs):
            if matches is None:
                extra.append("*")  # the target could not say, or too many: any path
            else:
                extra.extend(escape(m) for m in matches)
    splits: list[tuple[str, str, str]] = []
    for o in (*objects, *physical, *extra):
        if o.startswith("/"):
            directory, rest = static_directory(o)
            splits.append((o, directory, rest))
    directories = list(dict.fromkeys(d for _, d, _ in splits))[:MAX_RESOLVED * 4]
    if not directories:
        return tuple(dict.fromkeys((*objects, *(e for e in extra if e == "*"))))
    answers = dict(zip(directories, await target.resolve_paths(directories)))
    out = list(objects) + [e for e in extra if e == "*"]
    for _, directory, rest in splits:
        leads_to = answers.get(directory)
        if leads_to is None or leads_to == directory:
            continue
        out.append(normalise(escape(leads_to).rstrip("/") + ("/" + rest if rest else "")))
    return tuple(dict.fromkeys(out))


async def program_names(analysis: Analysis, target: PathQuestions) -> tuple[str, ...]:
    """The verbs, plus the name each program run by path really has on the target: ``/tmp/x``, a link to
    ``/usr/bin/rm`` made by an earlier command, adds ``rm``."""
    exact = [p for p in (unescape(q) for q in analysis.programs) if p is not None][:MAX_RESOLVED]
    verbs = list(analysis.verbs)
    if exact:
        for physical in await target.resolve_paths(exact):
            name = posixpath.basename(physical.rstrip("/")) if physical else ""
            if name and name not in verbs:
                verbs.append(name)
    return tuple(verbs)
