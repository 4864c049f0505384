"""What an enforcement stage implements.

A stage sees only the protocol-neutral vocabulary of :mod:`gw.model`.  Every method has a no-op default, and
the pipeline calls only the methods a stage overrides, so a stage pays nothing for what it does not do.

Order of calls for one command (the pipeline owns it, see :mod:`gw.pipeline`):

1. :meth:`Stage.check` of every stage in configured order, until one denies (approval holds happen here);
2. :meth:`Stage.decided` of every stage with the combined verdict -- the audit record is written here, before
   the command is forwarded; if it raises, the command is refused (fail closed);
3. the protocol forwards the command; :meth:`Stage.rows` / :meth:`Stage.stream` filters see the result
   (transforming filters first, in configured order, then observing ones);
4. :meth:`Stage.completed` with the :class:`~gw.model.Outcome`, exactly once per command (core completes a
   command its protocol abandoned, see :class:`gw.pipeline.CommandRun`).

What a stage keeps about one command in flight goes in :meth:`Stage.state`, which core drops at completion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

from .model import Channel, Column, Command, Outcome, Session, Verdict
from .services import Services
from .types import StrictModel

T = TypeVar("T")


#: The sources of a column whose lineage was not worked out (no stage of the pipeline wants sources): it may
#: derive from any column of any table.
UNKNOWN_SOURCES: tuple[str, ...] = ("*.*.*",)

#: A command's bound parameter values as a person may be shown them: text or None, in order, or an object of
#: named arguments (:meth:`Stage.conceal`).
ParamValues: TypeAlias = list[str | None] | dict[str, str | None]


class StageOptions(StrictModel):
    """Base of a stage's options model; unknown keys are an error."""

    use: str


class ProtocolContext(Protocol):
    """What a protocol hands ``SessionRuntime.decide``: a :class:`CommandContext` without ``conceal``."""

    async def notice(self, message: str) -> None:
        """Show an informational message to the client without ending the command (PostgreSQL
        NoticeResponse, SSH stderr line ...)."""


class CommandContext(ProtocolContext, Protocol):
    """What stages get while a command is being decided.  ``notice`` (the protocol's) and ``conceal`` (core's)
    are always there; a protocol may offer more, which stages look for with ``getattr`` (fail closed without):

    * ``async measure() -> gw.model.Measurement``: run the command so that nothing commits yet and count the
      rows it changes (PostgreSQL: inside a savepoint, or a transaction gw opens in autocommit).  Asking again
      returns the same count without a second execution.  When the combined verdict allows the command the
      protocol keeps what it measured (commits in autocommit) and relays the held-back answer; otherwise it
      rolls the write back.  :func:`gw_rules.first_match_measured` is how ``rows_over`` rules use it.
    * ``async discard()``: roll back a measured write now (before a long approval hold); the next ``measure``
      runs the command again.
    * ``cancel_reason: str``: set by the protocol before it cancels a decision in progress, saying why
      (``client_disconnected``, ``client_cancelled``, ``token_expired``, ``revoked``, ``session_max``,
      ``shutdown``), so a stage holding the command can record it.
    """

    def conceal(self, command: Command, values: ParamValues) -> ParamValues:
        """``values`` after every :meth:`Stage.conceal` of the pipeline deciding this command, in order."""


class RowFilter(Protocol):
    """Transforms (or observes) tabular rows one at a time.  ``values`` holds text values as UTF-8 bytes
    (``None`` for SQL NULL); return the row to pass on (the same list when nothing changed)."""

    def row(self, values: list[bytes | None]) -> list[bytes | None]: ...


class ColumnEdits(Protocol):
    """What a row filter does to the rows of one result, said column by column, so that a protocol can apply it
    to a batch of rows (the DataRows of one received chunk) in one pass instead of one :meth:`RowFilter.row`
    call per row.  Rows edited this way must come out exactly as ``row`` would make them.

    * ``constant``: column index -> what every non-NULL value of that column becomes (None: NULL).  NULLs
      stay NULL.
    * ``edited``: the columns whose values :meth:`edit` sees (disjoint from ``constant``); every other column
      passes untouched.
    """

    @property
    def constant(self) -> Mapping[int, bytes | None]: ...

    @property
    def edited(self) -> tuple[int, ...]: ...

    def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
        """One batch: ``values`` holds the ``edited`` columns' values of its rows, row after row
        (``len(edited)`` per row, None for NULL); ``replaced`` is how many values of the batch ``constant``
        replaced.  Returns position in ``values`` -> new value, for the values that change."""
        ...


@runtime_checkable
class ColumnwiseRowFilter(RowFilter, Protocol):
    """A row filter that can also say what it does as :class:`ColumnEdits`, for the rows that come next (None:
    not for them; a protocol asks again for each batch, so a filter may offer edits from some row on, as
    record's does once it has kept its rows).  Protocols that see many rows per read use it (PostgreSQL
    DataRows); others call ``row``.  A pipeline's chain of filters offers one when every filter does and at
    most one of them touches a column."""

    def columnwise(self) -> ColumnEdits | None: ...


class StreamFilter(Protocol):
    """Transforms (or observes) a byte stream (SSH output, HTTP body)."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Stage:
    """Base class of every enforcement stage.  Subclasses set ``name`` and ``Options``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[StageOptions]] = StageOptions
    #: True for stages whose row/stream filters change data (mask); they run before observers (record).
    transforms: ClassVar[bool] = False
    #: True for stages whose row filters read where each column's values come from (``Column.sources`` and
    #: ``fields``: mask).  Working that out can cost a protocol SQL lineage and catalog lookups per result, so
    #: it may skip it unless a stage of the pipeline sets this; columns then carry :data:`UNKNOWN_SOURCES`
    #: (anything: a filter that matches on sources without asking fails closed).
    wants_sources: ClassVar[bool] = False

    def __init__(self, options: Any, services: Services, *, pipeline: str = "", index: int = 0) -> None:
        self.options = options
        self.services = services
        self.pipeline = pipeline
        self.index = index

    async def open(self) -> None:
        """Called once before the first session (connect to storage, start background tasks)."""

    async def close(self) -> None:
        """Called once at shutdown."""

    # -- sessions -------------------------------------------------------------------------------------------
    async def session_started(self, session: Session) -> None:
        """A client authenticated and was admitted."""

    async def session_refused(self, listener: str, protocol: str, client_address: str, claimed_user: str,
                              reason: str, message: str) -> None:
        """A client was refused before a session began (bad token, group not allowed ...)."""

    async def session_ended(self, session: Session, reason: str) -> None:
        """The session ended; ``reason`` is a :class:`~gw.model.SessionEnd` value, possibly with detail
        after a colon (``error: ...``; ``SessionEnd.of(reason)`` recovers it)."""

    # -- commands -------------------------------------------------------------------------------------------
    def state(self, command: Command, factory: Callable[[], T]) -> T:
        """This stage's state for ``command`` (made by ``factory`` on first use), kept from its decision to
        its completion and dropped by core after :meth:`completed`: per-command state lives here, not in
        dictionaries of the stage's own."""
        slot = command.stage_state
        if self not in slot:
            slot[self] = factory()
        return cast(T, slot[self])

    def state_if_any(self, command: Command, kind: type[T]) -> T | None:
        """This stage's state for ``command`` if :meth:`state` made one, else None."""
        value = command.stage_state.get(self)
        return value if isinstance(value, kind) else None

    def evaluate(self, command: Command) -> Verdict | None:
        """Pure decision without side effects (used by ``gw policy explain``).  ``None`` means no opinion."""
        return None

    def explain(self, command: Command) -> str | None:
        """What this stage would do with ``command`` besides deciding (``gw policy explain``): the audit
        record it writes, the result columns it masks ...  ``None``: nothing to say."""
        return None

    async def check(self, command: Command, context: CommandContext) -> Verdict | None:
        """Decide about a command before it is forwarded; may wait (approval holds).  Defaults to
        :meth:`evaluate`."""
        return self.evaluate(command)

    def conceal(self, command: Command, values: ParamValues) -> ParamValues:
        """``command``'s bound parameter values (text or None, in order; a dict of named arguments) as a person
        may be shown them (approvers): this stage replaces any it would hide from the agent in results.  Return
        the same shape.  Default: unchanged.  Stages that show parameters call ``context.conceal``."""
        return values

    async def decided(self, command: Command, verdict: Verdict) -> None:
        """The combined verdict is known.  Raising here refuses an allowed command (fail closed)."""

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        """A filter for this result's rows, or None when the stage has nothing to do with it."""
        return None

    def stream(self, command: Command, channel: Channel, content_type: str = "") -> StreamFilter | None:
        """A filter for a byte stream of this command (:class:`~gw.model.Channel`: ``channel.direction`` says
        whether the agent sent it or is shown it), or None."""
        return None

    async def completed(self, command: Command, outcome: Outcome) -> None:
        """The command finished (or was refused); ``outcome`` is final."""

