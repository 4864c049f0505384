"""Command-line options of the programs gw looks into, parsed the way getopt does.

A wrapper (``sudo``, ``env``, ``timeout`` ...) runs another program named after its options, so gw must know
which of its options take an argument to find that program: ``sudo --user root rm x`` runs ``rm``, not
``root``.  Options gw does not know make the line ``unknown`` (fail closed): an option it misreads could hide
the program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """What a program accepts before its operands (getopt_long with ``+``: options end at the first operand).

    ``short`` are single-letter flags, ``short_arg`` letters taking an argument (``-uroot`` or ``-u root``),
    ``short_opt`` letters whose argument is optional and attached only (``-i{}``).  Long options likewise;
    an unambiguous prefix of a long option is accepted, as getopt does.  ``numeric`` accepts ``-10`` (nice).
    ``plus``: ``+x`` options exist (shells' ``+o``).
    """

    short: str = ""
    short_arg: str = ""
    short_opt: str = ""
    long: frozenset[str] = frozenset()
    long_arg: frozenset[str] = frozenset()
    long_opt: frozenset[str] = frozenset()
    numeric: bool = False
    plus: bool = False
    #: Options may follow operands (GNU permutation); only for programs that take no program operand.
    permute: bool = False


@dataclass(slots=True)
class Parsed:
    """Options in the order given, as (name, value) with ``-x`` / ``--long`` names, then the operands."""

    options: list[tuple[str, str | None]] = field(default_factory=list)
    operands: list[int] = field(default_factory=list)
    #: Why the options could not be read (an unknown option, a computed word); None when they could.
    problem: str | None = None

    def has(self, *names: str) -> bool:
        return any(n in names for n, _ in self.options)

    def values(self, *names: str) -> list[str | None]:
        return [v for n, v in self.options if n in names]


def _long_name(spec: OptionSpec, name: str) -> tuple[str, str] | None:
    """Resolve a (possibly abbreviated) long option to (full name, kind: flag|arg|opt)."""
    table = [(n, "flag") for n in spec.long] + [(n, "arg") for n in spec.long_arg] + \
            [(n, "opt") for n in spec.long_opt]
    for full, kind in table:
        if full == name:
            return full, kind
    matches = [(full, kind) for full, kind in table if full.startswith(name)]
    if len({m[0] for m in matches}) == 1:
        return matches[0]
    return None


def parse_options(words: Sequence[str | None], spec: OptionSpec, program: str) -> Parsed:
    """Parse ``words`` (the arguments after the program name; None for a word gw cannot know) against
    ``spec``.  Stops at the first operand (or ``--``) unless ``spec.permute``."""
    out = Parsed()
    i = 0
    n = len(words)
    while i < n:
        word = words[i]
        if word is None:
            if spec.permute:
                out.operands.append(i)
                i += 1
                continue
            out.problem = f"an argument of {program} before its operands is computed when the line runs"
            return out
        if word == "--":
            out.operands.extend(range(i + 1, n))
            return out
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            resolved = _long_name(spec, name)
            if resolved is None:
                out.problem = f"{program} option --{name} is not one gw knows"
                return out
            full, kind = resolved
            if kind == "flag":
                if eq:
                    out.problem = f"{program} option --{full} takes no value"
                    return out
                out.options.append((f"--{full}", None))
            elif kind == "opt":
                out.options.append((f"--{full}", value if eq else None))
            else:
                if eq:
                    out.options.append((f"--{full}", value))
                else:
                    if i + 1 >= n:
                        out.problem = f"{program} option --{full} lacks its value"
                        return out
                    value2 = words[i + 1]
                    if value2 is None:
                        out.problem = f"the value of {program} --{full} is computed when the line runs"
                        return out
                    out.options.append((f"--{full}", value2))
                    i += 1
            i += 1
            continue
        if spec.numeric and len(word) > 1 and word[0] == "-" and word[1:].isdigit():
            out.options.append(("-" + word[1:], None))
            i += 1
            continue
        if (word.startswith("-") or (spec.plus and word.startswith("+"))) and len(word) > 1:
            sign = word[0]
            j = 1
            while j < len(word):
                c = word[j]
                if c in spec.short_arg:
                    value = word[j + 1:]
                    if not value:
                        if i + 1 >= n:
                            out.problem = f"{program} option {sign}{c} lacks its value"
                            return out
                        next_word = words[i + 1]
                        if next_word is None:
                            out.problem = f"the value of {program} {sign}{c} is computed when the line runs"
                            return out
                        value = next_word
                        i += 1
                    out.options.append((f"{sign}{c}", value))
                    break
                if c in spec.short_opt:
                    out.options.append((f"{sign}{c}", word[j + 1:] or None))
                    break
                if c in spec.short:
                    out.options.append((f"{sign}{c}", None))
                    j += 1
                    continue
                out.problem = f"{program} option {sign}{c} is not one gw knows"
                return out
            i += 1
            continue
        if not spec.permute:
            out.operands.extend(range(i, n))
            return out
        out.operands.append(i)
        i += 1
    return out


def spec(short: str = "", short_arg: str = "", short_opt: str = "", long: str = "", long_arg: str = "",
         long_opt: str = "", **kw: bool) -> OptionSpec:
    """Compact constructor: long option names as space-separated strings."""
    return OptionSpec(short, short_arg, short_opt, frozenset(long.split()), frozenset(long_arg.split()),
                      frozenset(long_opt.split()), **kw)
