"""A write's blast radius measured by the server: run it inside a savepoint, read the affected-row count, and
roll it back when it exceeds a limit -- before anything commits.

This is the protocol side of the ``rows_over`` rule condition (the pipeline decides; the database counts).
In autocommit gw opens a transaction itself and commits what it measured when the count is within the limit,
so a write within the limit runs once; inside the client's transaction it uses a savepoint and leaves the
transaction to the client.  A write gw cannot roll back -- one touching a table whose engine is not
transactional (MyISAM, Aria, MEMORY, CSV ...), or a table (view ...) whose engine it cannot learn -- is not
run at all: its count is unknown, and unknown matches ``rows_over`` (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .constants import ServerStatus
from .upstream import UpstreamConnection

#: Engines whose changes a ROLLBACK undoes.  Aria is crash-safe but not transactional in this sense.
TRANSACTIONAL_ENGINES = frozenset({"innodb", "rocksdb", "tokudb"})
SAVEPOINT = "gw_measure"


@dataclass(frozen=True)
class Measurement:
    """``rows`` changed by the write (None: gw could not learn it, treat as over any limit); ``committed``:
    the write is done (within the limit) and its answer can go to the client; ``answer``: the server's raw
    answer packets to the write when it ran; ``reason``: why the count is unknown."""

    rows: int | None
    committed: bool
    answer: list[bytes]
    reason: str = ""


def _quote(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "''") + "'"


async def engines(up: UpstreamConnection, objects: Sequence[str], database: str | None) -> dict[str, str | None]:
    """``schema.table`` -> storage engine (lower case), None for a view or a table gw cannot find."""
    out: dict[str, str | None] = {}
    for obj in objects:
        schema, _, table = obj.rpartition(".")
        schema = schema or (database or "")
        if not table or table == "*":
            out[obj] = None
            continue
        result = await up.query("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                f"{_quote(schema)} AND TABLE_NAME = {_quote(table)}")
        engine = result.rows[0][0] if result.rows else None
        out[obj] = engine.decode("ascii", "replace").lower() if engine else None
    return out


@dataclass
class Pending:
    """A write run by :func:`run` and not yet kept or undone: ``rows`` it changed (None: unknown, ``reason``
    says why), the server's ``answer`` packets, and whether gw opened the transaction (``in_transaction``
    False) or used a savepoint in the client's.  ``open`` is False when there is nothing to keep or undo."""

    rows: int | None
    answer: list[bytes]
    in_transaction: bool
    open: bool
    reason: str = ""


async def run(up: UpstreamConnection, statement: bytes, objects: Sequence[str], *,
              database: str | None = None) -> Pending:
    """Run the COM_QUERY payload ``statement`` (a single write) so that nothing commits yet and count its rows.
    A write that fails changed nothing (``open`` False, its ERR in ``answer``)."""
    found = await engines(up, objects, database)
    for obj, engine in found.items():
        if engine not in TRANSACTIONAL_ENGINES:
            why = f"engine {engine}" if engine else "not a base table gw can find"
            return Pending(None, [], False, False, f"{obj} cannot be rolled back ({why}): gw cannot measure the "
                                                   "write before it commits")
    if not found:
        return Pending(None, [], False, False, "the write names no table gw can check")
    in_transaction = bool(up.status & ServerStatus.IN_TRANS)
    await up.query(f"SAVEPOINT {SAVEPOINT}" if in_transaction else "START TRANSACTION")
    try:
        from .codec import encode_packet

        await up.send(encode_packet(statement, 0))
        answer = await up.next_packet()
        if answer.first == 0xFF or answer.first != 0x00:
            raise _Undo(answer.raw)
        from .messages import OK

        ok = OK.decode(answer.payload, up.capabilities)
    except _Undo as e:
        await _undo(up, in_transaction)
        return Pending(None, [e.raw], in_transaction, False, "the write failed")
    except BaseException:
        await _undo(up, in_transaction)
        raise
    return Pending(ok.affected_rows, [answer.raw], in_transaction, True)


async def keep(up: UpstreamConnection, pending: Pending) -> None:
    if pending.open:
        pending.open = False
        await up.query(f"RELEASE SAVEPOINT {SAVEPOINT}" if pending.in_transaction else "COMMIT")


async def undo(up: UpstreamConnection, pending: Pending) -> None:
    if pending.open:
        pending.open = False
        await _undo(up, pending.in_transaction)


async def measure(up: UpstreamConnection, statement: bytes, objects: Sequence[str], limit: int, *,
                  database: str | None = None) -> Measurement:
    """Run the COM_QUERY payload ``statement`` (a single write) measured against ``limit``.

    Over the limit (or unknown), nothing stays changed; within it, the write stays (committed in autocommit,
    still inside the client's transaction otherwise)."""
    pending = await run(up, statement, objects, database=database)
    if not pending.open:
        return Measurement(None, False, pending.answer, pending.reason)
    if pending.rows is None or pending.rows > limit:
        await undo(up, pending)
        return Measurement(pending.rows, False, pending.answer)
    await keep(up, pending)
    return Measurement(pending.rows, True, pending.answer)


#: The statement verbs whose affected-row count is what they change.
MEASURABLE = frozenset({"insert", "update", "delete", "replace"})


def unmeasurable(kind: str, verb: str, flags: frozenset[str], verbs: Sequence[str]) -> str | None:
    """Why gw cannot learn a MySQL statement's row count before it commits, or None when it can."""
    if kind != "write":
        return f"a {kind} statement, not a write gw can count"
    if "multi_statement" in flags:
        return "several statements in one message"
    if verb not in MEASURABLE:
        return f"{verb.upper() or 'this statement'} changes rows gw cannot count before they commit"
    doubtful = sorted(flags - {"no_where"})
    if doubtful:
        return f"the statement has effects its row count does not show ({', '.join(doubtful)})"
    if any(v not in (verb, "select") for v in verbs):
        return "the statement writes in more than one way"
    return None


class _Undo(Exception):
    def __init__(self, raw: bytes) -> None:
        self.raw = raw


async def _undo(up: UpstreamConnection, in_transaction: bool) -> None:
    """Undo the measured write (an UpstreamError here ends the session: gw cannot vouch for its state)."""
    if in_transaction:
        await up.query(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        await up.query(f"RELEASE SAVEPOINT {SAVEPOINT}")
    else:
        await up.query("ROLLBACK")
