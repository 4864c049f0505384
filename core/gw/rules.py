"""Rules that match commands, shared by every stage that decides (guard, approve) and every protocol.

A rule matches when all its keys match: ``kind``, ``verb`` (string or list), ``objects`` (globs; any object
matching any glob), ``flags`` (all present), ``text`` (regex, searched), ``groups`` (identity in at least one) and
``except_groups`` (identity in none).  Verbs and kinds compare case-insensitively, so ``verb = "DELETE"`` serves
both SQL and HTTP; a verb with glob characters (``*``, ``?``, ``[``) is a pattern (``verb = "delete_*"`` matches
the MCP tools ``delete_customer`` and ``delete_order``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from .model import Command, Kind

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

    def matches(self, command: Command) -> bool:
        kinds, verbs, verb_re, obj_re, flags, text = self._compiled
        if kinds is not None and command.kind.value not in kinds:
            return False
        if verbs is not None and not self._verb_matches(verbs, verb_re, command):
            return False
        if obj_re is not None and not any(self._object_matches(obj_re, o.lower()) for o in command.objects):
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


def first_match(rules: list[Rule], command: Command) -> Rule | None:
    for rule in rules:
        if rule.matches(command):
            return rule
    return None
