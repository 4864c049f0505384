"""A write's blast radius as PostgreSQL counts it (the protocol side of ``rows_over`` rules).

gw runs the statement so that nothing commits yet -- after ``BEGIN`` when the client is in autocommit, after a
``SAVEPOINT`` inside the client's transaction -- reads the row count of its CommandComplete tag, and holds its
answer back.  The pipeline then decides: allowed, gw keeps the write (``COMMIT`` / ``RELEASE SAVEPOINT``: one
extra round trip, no second execution) and relays the answer it held, RETURNING rows included; refused or held
for approval, gw rolls it back before anything committed.

Only a statement whose tag counts exactly what it changes is measured: one INSERT, UPDATE, DELETE or MERGE with
no side effects gw can see.  Anything else -- several statements, a data-modifying WITH, a function that may
write, COPY FROM, a prepared statement's PREPARE -- has a count gw cannot learn before it commits, and
``rows_over`` treats it as over every limit (fail closed).  Rows changed by triggers and by ON DELETE CASCADE
are not in the tag, so they are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gw.model import Command, Kind

from .messages import rows_from_tag

#: The statement verbs whose CommandComplete tag counts the rows they change.
MEASURABLE = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE", "merge": "MERGE"}
#: Flags that do not make a count doubtful (``no_where`` only says how many rows the syntax selects).
_HARMLESS_FLAGS = frozenset({"no_where"})
#: gw's savepoint inside a client's transaction.  Quoted with a space, so no client-made name can be it.
SAVEPOINT = '"gw measure"'


def unmeasurable(command: Command) -> str | None:
    """Why gw cannot learn the statement's row count before it commits, or None when it can."""
    if command.kind is not Kind.WRITE:
        return f"a {command.kind.value} statement, not a write gw can count"
    if "multi_statement" in command.flags:
        return "several statements in one message"
    if command.verb not in MEASURABLE:
        what = "COPY FROM" if command.verb == "copy" else (command.verb.upper() or "this statement")
        return f"{what} changes rows gw cannot count before they commit"
    doubtful = sorted(command.flags - _HARMLESS_FLAGS)
    if doubtful:
        return f"the statement has effects its row count does not show ({', '.join(doubtful)})"
    if any(v not in (command.verb, "select") for v in command.verbs):
        return "the statement writes in more than one way"
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """The statements around a measured write: ``begin`` before it, ``keep`` to make it stay, ``undo`` to
    roll it back.  In autocommit gw opens the transaction; in the client's own transaction, a savepoint."""

    begin: str
    keep: str
    undo: str


AUTOCOMMIT = Plan("BEGIN", "COMMIT", "ROLLBACK")
IN_TRANSACTION = Plan(f"SAVEPOINT {SAVEPOINT}", f"RELEASE SAVEPOINT {SAVEPOINT}",
                      f"ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}")


def counted(verb: str, tags: Sequence[str]) -> int | None:
    """The row count of the statement's one CommandComplete tag, when it is the tag of ``verb``."""
    if len(tags) != 1:
        return None
    word = tags[0].split(" ", 1)[0]
    if word != MEASURABLE.get(verb):
        return None
    return rows_from_tag(tags[0])
