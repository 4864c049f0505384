"""The guard stage and its options."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from gw.model import Command, DenyCode, Kind, Measurement, Verdict
from gw_rules import Rule, measure, rows_over_explained
from gw.stage import CommandContext, Stage, StageOptions
from pydantic import Field

#: Protocol plugins may list every verb of a command here (a SQL text of several statements, a query that
#: wraps data-modifying CTEs): ``Command.attributes["verbs"]``.  Rules with a ``verb`` key then match when
#: any of them matches, so prefixing a statement cannot hide a denied verb.
VERBS_ATTRIBUTE = "verbs"


class GuardOptions(StageOptions):
    """``{ use = "guard", deny = [ {...}, ... ], message = "..." }``"""

    #: Rules, tried in order; the first that matches refuses the command.
    deny: list[Rule] = Field(default_factory=list)
    #: What the client is told when the matching rule has no ``message`` of its own.  ``{rule}`` is replaced
    #: by the rule's name (or its keys), ``{kind}`` and ``{verb}`` by the command's.
    message: str | None = None


class Guard(Stage):
    """Refuses commands that match a deny rule (PostgreSQL: SQLSTATE 42501, HTTP: 403, SSH: exit status)."""

    name: ClassVar[str] = "guard"
    Options: ClassVar[type[StageOptions]] = GuardOptions
    options: GuardOptions

    def evaluate(self, command: Command) -> Verdict | None:
        """The first matching deny rule's refusal, or None (no opinion) when no rule matches.  A ``rows_over``
        rule cannot be decided without the database: its refusal says so (``gw policy explain``)."""
        for rule in self.options.deny:
            if _matches(rule, command):
                if rule.rows_over is not None:
                    if command.kind in (Kind.READ, Kind.TRANSACTION):
                        continue  # changes no rows
                    return Verdict.deny(f"{rows_over_explained(rule)}; above it: "
                                        f"{self._message(rule, command)}", code=DenyCode.POLICY,
                                        stage=self.name, rule=rule.label())
                return Verdict.deny(self._message(rule, command), code=DenyCode.POLICY, stage=self.name,
                                    rule=rule.label())
        return None

    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        """Like :meth:`evaluate`, with ``rows_over`` rules decided on the count the database reports."""
        measured: Measurement | None = None
        for rule in self.options.deny:
            if not _matches(rule, command):
                continue
            if rule.rows_over is not None:
                if measured is None:
                    measured = await measure(command, context)
                if not measured.over(rule.rows_over):
                    continue
            return Verdict.deny(self._message(rule, command, measured if rule.rows_over is not None else None),
                                code=DenyCode.POLICY, stage=self.name, rule=rule.label())
        return None

    def _message(self, rule: Rule, command: Command, measured: Measurement | None = None) -> str:
        if measured is not None:
            if rule.message:
                return f"{rule.message} ({measured.describe()})"
            what = f"gw policy refused this command ({command.kind.value}, {command.verb or '?'}): "
            if measured.rows is None:
                return (what + f"gw cannot count the rows it would change before they commit ({measured.reason}),"
                        f" so guard rule {rule.label()} of pipeline {self.pipeline!r} refuses it; nothing was "
                        "changed. Send one INSERT, UPDATE, DELETE or MERGE without side effects, or ask a "
                        "gateway operator")
            return (what + f"it would change {measured.describe()}, more than guard rule {rule.label()} of "
                    f"pipeline {self.pipeline!r} allows; nothing was changed. Narrow it (a WHERE that selects "
                    "fewer rows, or several smaller batches), or ask a gateway operator")
        if rule.message:
            return str(rule.message)
        kind, verb = command.kind.value, command.verb or "?"
        if self.options.message:
            return (self.options.message.replace("{rule}", rule.label()).replace("{kind}", kind)
                    .replace("{verb}", verb))
        return (f"gw policy refused this command ({kind}, {verb}): it matches guard rule {rule.label()} of "
                f"pipeline {self.pipeline!r}. Do not retry it as is; use a command the policy allows, or ask "
                "a gateway operator to run it or to change the policy")


def _matches(rule: Rule, command: Command) -> bool:
    if rule.matches(command):
        return True
    if rule.verb is None:
        return False
    verbs = command.attributes.get(VERBS_ATTRIBUTE) if command.attributes else None
    if not verbs or not isinstance(verbs, (tuple, list)):
        return False
    return any(v != command.verb and rule.matches(dataclasses.replace(command, verb=str(v))) for v in verbs)
