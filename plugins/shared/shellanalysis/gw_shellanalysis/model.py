"""What an analysis returns, and what it is told about the place the line runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from gw.model import Kind


@dataclass(frozen=True, slots=True)
class ShellContext:
    """Where the line will run, as far as the caller knows it.

    ``cwd``: the directory the shell starts in (an SSH exec starts in the account's home directory); None
    when unknown, and then relative paths become patterns under any directory (``*/notes.txt``).
    ``home``: ``$HOME`` and ``~``; ``user``: the account's name (``~user`` of that name is ``home``).
    ``interactive_programs``: further program names to report in :attr:`Analysis.interactive` (the
    caller's extension of the built-in list of shells, interpreters, pagers and editors).
    """

    cwd: str | None = None
    home: str | None = None
    user: str | None = None
    interactive_programs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Analysis:
    """A command line reduced to what it runs.

    ``kind`` is ``exec`` when every program of the line and its arguments are fixed text gw could read,
    ``unknown`` otherwise (``reasons`` say why, in words for the agent).  ``verb`` is the program that does
    the work in the first command (wrappers such as ``sudo`` looked through); ``verbs`` every program the
    line runs, wrappers, nested shells and substitutions included, in order.  ``objects`` are the paths the
    line names, absolute and normalised, in the glob syntax of :mod:`gw_shellanalysis.paths` (a part gw
    cannot know is a wildcard).  ``interactive`` names what would make the command an interactive session
    (a shell, an interpreter reading its program from stdin, a pager or editor with shell escapes).
    """

    kind: Kind
    verb: str
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    flags: frozenset[str]
    reasons: tuple[str, ...] = ()
    interactive: tuple[str, ...] = ()
    #: Symbolic links the line itself creates: (link path, target), both patterns.
    links: tuple[tuple[str, str], ...] = field(default=())
    #: Absolute paths with ``..`` after a name, as written (``//`` and ``.`` collapsed): the kernel takes
    #: ``..`` after the real directory a link leads to, so only the target can say where they lead.  A
    #: caller that can ask the target adds the answers to ``objects``.
    physical: tuple[str, ...] = field(default=())
    #: Programs the line runs by path (absolute patterns).  A caller that can ask the target where a path
    #: leads adds the name of the program a link points to to ``verbs`` (``/tmp/x`` -> ``/usr/bin/rm``).
    programs: tuple[str, ...] = field(default=())

    @property
    def unknown(self) -> bool:
        return self.kind is Kind.UNKNOWN
