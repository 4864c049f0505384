"""Prepared statements and portals of one session, as the server holds them.

gw judges a protocol ``Execute`` (and an SQL ``EXECUTE``) by the text of the statement it runs, so that text
must be the server's, never the client's claim.  The rules:

* A ``Parse`` (or SQL ``PREPARE``) makes a *pending* entry.  Messages of the same batch (up to the next Sync)
  may use it: if the server rejects the Parse it skips the rest of the batch, so nothing runs on the pending
  text.  A message of a *later* batch waits until the server has answered (ParseComplete or an error).
* An entry becomes *established* only on the server's confirmation.  When the server rejects it (a
  ``prepared statement "s2" already exists``) the name keeps what it had before; a rejected Parse of the
  unnamed statement leaves none (the server drops the unnamed statement before parsing).
* ``Close``, ``DEALLOCATE``, ``DISCARD ALL``, ``CLOSE`` and ``DECLARE`` remove names as soon as they are
  sent (when the server refuses one, gw only refuses a name the server still knows: fail closed).
* ``Bind``, ``Describe`` and ``Execute`` of a name that is not in the table are refused by the protocol.

The mask stage's result side and the approve stage read the same table (``ProxySession.names``):
:meth:`NameTable.statement` and :meth:`NameTable.portal` give what a name stands for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gw_sqlanalysis import Classification
    from gw_sqlanalysis.names import NameOp

    from .messages import Bind, FieldDescription

#: Entries gw remembers per kind and session.  The upstream holds the real ones; gw's copies only carry text
#: and classification, so a client that never closes them cannot grow gw without bound.  An evicted name is
#: then refused (the client may Parse it again).
MAX_REMEMBERED = 10_000

#: ``batch`` of an entry created by an SQL statement (PREPARE): a later message always waits for its answer.
SQL_BATCH = -1


class State(enum.Enum):
    PENDING = "pending"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class Statement:
    """A prepared statement: its text as the server holds it, classified once."""

    name: str
    text: str
    param_types: tuple[int, ...] = ()
    classification: Classification | None = None
    fields: tuple[FieldDescription, ...] | None = None
    state: State = State.ESTABLISHED
    #: The Sync batch of the Parse that made it (:data:`SQL_BATCH` for SQL PREPARE).
    batch: int = 0
    #: What the name stood for before (kept while this entry is pending).
    prior: Statement | None = None
    #: Made by SQL PREPARE (its Execute parameters are SQL expressions, not Bind values).
    sql: bool = False
    #: What running it does to names (:func:`gw_sqlanalysis.names.name_operations`), once computed.
    name_ops: list[NameOp] | None = None
    name_ops_known: bool = False
    #: The session's standard_conforming_strings when the server lexed the text (None: gw cannot be sure).
    standard_strings: bool | None = None


@dataclass(slots=True, eq=False)
class Portal:
    name: str
    statement: Statement | None
    bind: Bind | None
    #: The portal's row description (from a Describe), once known; ``()`` when it returns no rows.
    fields: tuple[FieldDescription, ...] | None = None
    describing: bool = False
    state: State = State.ESTABLISHED
    batch: int = 0
    prior: Portal | None = None


class NameTable:
    """The session's statements and portals (see the module docstring)."""

    __slots__ = ("batch", "portals", "statements")

    def __init__(self) -> None:
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, Portal] = {}
        #: Incremented at each Sync the client sends.
        self.batch = 0

    # -- lookups --------------------------------------------------------------------------------------------
    def statement(self, name: str) -> Statement | None:
        """What ``name`` stands for (established, or pending from a Parse gw forwarded); None if unknown."""
        return self.statements.get(name)

    def portal(self, name: str) -> Portal | None:
        return self.portals.get(name)

    def must_wait(self, entry: Statement | Portal) -> bool:
        """True when ``entry`` is pending from an earlier batch: its fate decides what a message means."""
        return entry.state is State.PENDING and entry.batch != self.batch

    # -- changes the client asks for ------------------------------------------------------------------------
    def sync(self) -> None:
        self.batch += 1

    def parse(self, name: str, text: str, param_types: tuple[int, ...] = (), *, sql: bool = False) -> Statement:
        st = Statement(name, text, param_types, state=State.PENDING, batch=SQL_BATCH if sql else self.batch,
                       prior=self.statements.get(name), sql=sql)
        _put(self.statements, name, st)
        return st

    def bind(self, name: str, statement: Statement, bind: Bind) -> Portal:
        portal = Portal(name, statement, bind, state=State.PENDING, batch=self.batch,
                        prior=self.portals.get(name))
        _put(self.portals, name, portal)
        return portal

    def declare(self, name: str, query: str) -> Portal:
        """SQL DECLARE name CURSOR FOR query: a portal (pending until ``DECLARE CURSOR`` completes)."""
        statement = Statement("", query, sql=True)
        portal = Portal(name, statement, None, state=State.PENDING, batch=SQL_BATCH, prior=self.portals.get(name))
        _put(self.portals, name, portal)
        return portal

    def close(self, kind: str, name: str) -> None:
        (self.statements if kind == "S" else self.portals).pop(name, None)

    def deallocate(self, name: str | None) -> None:
        """SQL DEALLOCATE name (None: ALL)."""
        if name is None:
            self.statements.clear()
        else:
            self.statements.pop(name, None)

    def close_portal(self, name: str | None) -> None:
        """SQL CLOSE / DECLARE (a cursor is a portal): the name no longer means what gw knew."""
        if name is None:
            self.portals.clear()
        else:
            self.portals.pop(name, None)

    def forget(self) -> None:
        """Something ran that may have changed names out of gw's sight (server-side code, an unreadable text)."""
        self.statements.clear()
        self.portals.clear()

    # -- the server's answers -------------------------------------------------------------------------------
    def settle(self, entry: Statement | Portal, ok: bool, *, skipped: bool = False) -> None:
        """The server confirmed (``ok``) or rejected ``entry``; ``skipped``: it never looked at it (an earlier
        error of the batch)."""
        if entry.state is not State.PENDING:
            return
        table: dict[str, Statement] | dict[str, Portal]
        table = self.statements if isinstance(entry, Statement) else self.portals
        if ok:
            entry.state = State.ESTABLISHED
            entry.prior = None
            return
        entry.state = State.FAILED
        if table.get(entry.name) is entry:
            prior = entry.prior if skipped or entry.name else None
            while prior is not None and prior.state is State.FAILED:
                prior = prior.prior
            if prior is None:
                del table[entry.name]
            else:
                table[entry.name] = prior  # type: ignore[assignment]


def _put(table: dict, name: str, value: object) -> None:  # type: ignore[type-arg]
    table.pop(name, None)
    table[name] = value
    if len(table) > MAX_REMEMBERED:
        del table[next(iter(table))]  # the oldest; a message naming it is then refused


__all__ = ["MAX_REMEMBERED", "NameTable", "Portal", "State", "Statement"]
