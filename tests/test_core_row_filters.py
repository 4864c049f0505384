"""Row filters of a pipeline with several row stages: chained row by row, and as column edits
(gw.stage.ColumnEdits) when every filter offers them and at most one touches a column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gw.model import Column, Command
from gw.pipeline import Pipeline
from gw.stage import ColumnwiseRowFilter, RowFilter, Stage


class Edits:
    def __init__(self, constant: dict[int, bytes | None], edited: tuple[int, ...]) -> None:
        self.constant = constant
        self.edited = edited
        self.calls: list[tuple[list[bytes | None], int]] = []

    def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
        self.calls.append((values, replaced))
        return {i: b"[x]" for i, v in enumerate(values) if v == b"secret"}


class Filter:
    """Offers ``edits`` (None: not now); row by row, does what they say."""

    def __init__(self, edits: Edits | None) -> None:
        self.edits = edits

    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        return values

    def columnwise(self) -> Edits | None:
        return self.edits


class RowOnly:
    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        return values


class Masking(Stage):
    name = "masking"
    transforms = True

    def __init__(self, filt: Any) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.filt = filt

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        return self.filt  # type: ignore[no-any-return]


class Watching(Masking):
    name = "watching"
    transforms = False


def chain(*stages: Stage) -> Any:
    rows = Pipeline("p", stages).rows(None, [Column("a")])  # type: ignore[arg-type]  # the stages ignore it
    assert isinstance(rows, ColumnwiseRowFilter)
    return rows


def test_a_chain_offers_the_edits_of_its_one_filter_that_touches_columns() -> None:
    mask = Edits({0: b"***"}, (1,))
    done = Edits({}, ())
    watcher = Filter(None)
    rows = chain(Masking(Filter(mask)), Watching(watcher))
    assert rows.columnwise() is None  # the observer still wants every row
    watcher.edits = done  # ... until it has what it keeps
    edits = rows.columnwise()
    assert edits is not None and edits is rows.columnwise(), "the same edits while the filters offer the same"
    assert (edits.constant, edits.edited) == ({0: b"***"}, (1,))
    assert edits.edit([b"a", b"secret"], 2) == {1: b"[x]"}
    assert mask.calls == [([b"a", b"secret"], 2)]
    assert done.calls == [([], 0)], "the observer learns that rows went by, and sees no value"


def test_a_chain_of_two_filters_touching_columns_or_one_without_edits_goes_row_by_row() -> None:
    assert chain(Masking(Filter(Edits({0: b"***"}, ()))), Watching(Filter(Edits({}, (0,))))).columnwise() is None
    assert chain(Masking(Filter(Edits({0: b"***"}, ()))), Watching(RowOnly())).columnwise() is None
    untouched = chain(Masking(Filter(Edits({}, ()))), Watching(Filter(Edits({}, ())))).columnwise()
    assert untouched is not None and not untouched.constant and not untouched.edited
