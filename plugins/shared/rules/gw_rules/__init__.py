"""Rules that match commands, shared by every stage that decides (guard, approve) and every protocol.

A rule matches when all its keys match: ``kind``, ``verb`` (string or list), ``objects`` (globs; any object
matching any glob), ``flags`` (all present), ``text`` (regex, searched), ``groups`` (identity in at least one) and
``except_groups`` (identity in none).  Verbs and kinds compare case-insensitively, so ``verb = "DELETE"`` serves
both SQL and HTTP; a verb with glob characters (``*``, ``?``, ``[``) is a pattern (``verb = "delete_*"`` matches
the MCP tools ``delete_customer`` and ``delete_order``).  Objects compare as the protocol says
(:class:`~gw.model.ObjectSyntax`): SQL names case-insensitively; paths case-sensitively, an object that is
itself a glob matching every rule glob it could match (``cat /etc/sha*ow`` matches ``objects = ["/etc/shadow"]``).

``rows_over = N`` is decided by the database, not by syntax: the rule matches a command that changes more than
N rows, as the protocol measures it while the command is being decided (:func:`first_match_measured`; the
protocol offers ``measure`` on its :class:`~gw.stage.CommandContext`).  Reads and transaction control change
no rows; a write gw cannot measure before it commits matches (fail closed).  :meth:`Rule.matches` checks every
other key (a rule with ``rows_over`` *may* match what it matches).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cached_property
from typing import Any

from gw.model import Command, Kind, Measurement, ObjectSyntax
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Characters that make a ``verb`` value a glob pattern.
_GLOB = re.compile(r"[*?\[]")


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | list[str] | None = None
    verb: str | list[str] | None = None
    objects: str | list[str] | None = None
    flags: str | list[str] | None = None
    text: str | None = None
    groups: list[str] | None = None
    except_groups: list[str] | None = None
    #: Matches a command that changes more than this many rows, as the database counts them.
    rows_over: int | None = Field(default=None, ge=0)
    #: Shown to the client when this rule refuses or holds a command.
    message: str | None = None
    #: A name for audit records and ``gw policy explain`` (default: the rule's keys).
    name: str | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        for k in _as_list(v) or []:
            if k.lower() not in {m.value for m in Kind}:
                raise ValueError(f"unknown kind {k!r}; expected one of {', '.join(m.value for m in Kind)}")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"text is not a valid regular expression: {e}") from None
        return v

    @cached_property
    def _compiled(self) -> tuple[Any, ...]:
        kinds = frozenset(k.lower() for k in _as_list(self.kind) or []) or None
        patterns = [v.lower() for v in _as_list(self.verb) or []]
        verbs = frozenset(v for v in patterns if not _GLOB.search(v)) if patterns else None
        globbed = [v for v in patterns if _GLOB.search(v)]
        verb_re = re.compile("|".join(fnmatch.translate(v) for v in globbed)) if globbed else None
        objects = _as_list(self.objects)
        obj_re = re.compile("|".join(fnmatch.translate(o.lower()) for o in objects)) if objects else None
        flags = frozenset(_as_list(self.flags) or [])
        text = re.compile(self.text, re.IGNORECASE | re.DOTALL) if self.text else None
        return kinds, verbs, verb_re, obj_re, flags, text

    @cached_property
    def _path_globs(self) -> tuple[re.Pattern[str], tuple[tuple[Any, ...], ...]]:
        globs = _as_list(self.objects) or []
        return (re.compile("|".join(fnmatch.translate(o) for o in globs)),
                tuple(_glob_tokens(o) for o in globs))

    def _path_matches(self, obj: str) -> bool:
        exact_re, tokens = self._path_globs
        literal = _unescape_glob(obj)
        if literal is not None:
            return exact_re.match(literal) is not None
        mine = _glob_tokens(obj)
        return any(_globs_intersect(mine, theirs) for theirs in tokens)

    def matches(self, command: Command) -> bool:
        kinds, verbs, verb_re, obj_re, flags, text = self._compiled
        if kinds is not None and command.kind.value not in kinds:
            return False
        if verbs is not None and not self._verb_matches(verbs, verb_re, command):
            return False
        if obj_re is not None:
            if command.object_syntax is ObjectSyntax.PATH:
                if not any(self._path_matches(o) for o in command.objects):
                    return False
            elif not any(self._object_matches(obj_re, o.lower()) for o in command.objects):
                return False
        if flags and not flags <= command.flags:
            return False
        if text is not None and not text.search(command.text):
            return False
        groups = command.session.identity.groups
        if self.groups is not None and not any(g in groups for g in self.groups):
            return False
        if self.except_groups is not None and any(g in groups for g in self.except_groups):
            return False
        return True

    @staticmethod
    def _verb_matches(verbs: frozenset[str], verb_re: re.Pattern[str] | None, command: Command) -> bool:
        for verb in (command.verb, *command.verbs):
            lowered = verb.lower()
            if lowered in verbs or (verb_re is not None and verb_re.match(lowered)):
                return True
        return False

    def _object_matches(self, obj_re: re.Pattern[str], obj: str) -> bool:
        """``obj`` matches a glob; a schema-wide object (``public.*`` from ``GRANT ... ON ALL TABLES IN
        SCHEMA public``, or ``*``) matches every glob that could name a table in that schema."""
        if obj_re.match(obj):
            return True
        if obj == "*":
            return True
        if obj.endswith(".*"):
            schema = obj[:-2]
            for glob in _as_list(self.objects) or []:
                head = glob.lower().rsplit(".", 1)[0] if "." in glob else "*"
                if fnmatch.fnmatchcase(schema, head):
                    return True
        return False

    def label(self) -> str:
        """The rule's name, or its keys in pipeline-file syntax (``{ kind = "ddl", except_groups = [...] }``)."""
        if self.name:
            return self.name
        parts = []
        for key, value in self.model_dump(exclude_none=True, exclude={"message", "name"}).items():
            if isinstance(value, list):
                value = "[" + ", ".join(json.dumps(v) for v in value) + "]"
            else:
                value = json.dumps(value)
            parts.append(f"{key} = {value}")
        return "{ " + ", ".join(parts) + " }"


_STAR = ("*",)
_ANY = ("?",)


def _unescape_glob(pattern: str) -> str | None:
    """The text a path object names when it has no wildcard (``[*]`` is a literal ``*``), else None."""
    if not any(c in "*?[" for c in pattern):
        return pattern
    tokens = _glob_tokens(pattern)
    out = []
    for t in tokens:
        if t[0] == "lit":
            out.append(t[1])
        elif t[0] == "set" and not t[1] and len(t[2]) == 1 and t[2][0][0] == t[2][0][1]:
            out.append(t[2][0][0])
        else:
            return None
    return "".join(out)


def _glob_tokens(pattern: str) -> tuple[tuple[Any, ...], ...]:
    """A glob (fnmatch syntax) as tokens: ``*``, ``?``, (``set``, negated, ranges) or (``lit``, char)."""
    out: list[tuple[Any, ...]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if not out or out[-1] != _STAR:
                out.append(_STAR)
            i += 1
        elif c == "?":
            out.append(_ANY)
            i += 1
        elif c == "[":
            j = i + 1
            negated = j < n and pattern[j] == "!"
            if negated:
                j += 1
            start = j
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(("lit", "["))
                i += 1
                continue
            body = pattern[start:j]
            ranges = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    ranges.append((body[k], body[k + 2]))
                    k += 3
                else:
                    ranges.append((body[k], body[k]))
                    k += 1
            out.append(("set", negated, tuple(ranges)))
            i = j + 1
        else:
            out.append(("lit", c))
            i += 1
    return tuple(out)


def _chars_intersect(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a == _ANY or b == _ANY:
        return True
    if a[0] == "lit" and b[0] == "lit":
        return bool(a[1] == b[1])
    if a[0] == "lit":
        a, b = b, a
    if b[0] == "lit":  # a is a set
        inside = any(lo <= b[1] <= hi for lo, hi in a[2])
        return bool(inside != a[1])
    if a[1] or b[1]:
        return True  # a negated set: assume the sets share a character (a wider match is the safe side)
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a[2] for lo2, hi2 in b[2])


def _globs_intersect(a: tuple[tuple[Any, ...], ...], b: tuple[tuple[Any, ...], ...]) -> bool:
    """Whether some text matches both globs."""
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == _STAR:
            stack.append((i + 1, j))
            if j < len(b):
                stack.append((i, j + 1))
        if j < len(b) and b[j] == _STAR:
            stack.append((i, j + 1))
            if i < len(a):
                stack.append((i + 1, j))
        if i < len(a) and j < len(b) and a[i] != _STAR and b[j] != _STAR and _chars_intersect(a[i], b[j]):
            stack.append((i + 1, j + 1))
    return False


def first_match(rules: list[Rule], command: Command) -> Rule | None:
    """The first rule whose keys match; a ``rows_over`` rule counts as matching (see
    :func:`first_match_measured` for the decision that asks the database)."""
    for rule in rules:
        if rule.matches(command):
            return rule
    return None


#: ``Command.attributes`` key under which the last measurement is kept: ``{"rows": n | None, "reason": ...}``.
MEASURED_ATTRIBUTE = "measured"

#: Kinds that change no rows: a ``rows_over`` rule never matches them.
_NO_ROWS = frozenset({Kind.READ, Kind.TRANSACTION})


def rows_over_explained(rule: Rule) -> str:
    """What ``gw policy explain`` says about a ``rows_over`` rule (it cannot know the count)."""
    return f"rows_over = {rule.rows_over}: decided by the database when the statement runs"


async def measure(command: Command, context: Any) -> Measurement:
    """How many rows ``command`` changes: 0 for reads and transaction control, else what the protocol's
    ``context.measure()`` reports (unknown when the protocol cannot measure)."""
    if command.kind in _NO_ROWS:
        return Measurement(0)
    measurer = getattr(context, "measure", None)
    if measurer is None:
        return Measurement(None, f"the {command.session.protocol} protocol cannot count the rows a command "
                                 "changes before it takes effect")
    result = await measurer()
    if not isinstance(result, Measurement):
        result = Measurement(None, "the protocol gave no row count")
    if isinstance(command.attributes, dict):
        # For the audit record (written after the checks, before the command takes effect).
        command.attributes[MEASURED_ATTRIBUTE] = {"rows": result.rows, "reason": result.reason or None}
    return result


async def first_match_measured(rules: list[Rule], command: Command, context: Any
                               ) -> tuple[Rule | None, Measurement | None]:
    """The first rule that matches, asking the database (once) when a ``rows_over`` rule's other keys match;
    also the measurement, when one was taken."""
    measured: Measurement | None = None
    for rule in rules:
        if not rule.matches(command):
            continue
        if rule.rows_over is None:
            return rule, measured
        if measured is None:
            measured = await measure(command, context)
        if measured.over(rule.rows_over):
            return rule, measured
    return None, measured
