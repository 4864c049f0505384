"""A row filter's column edits applied to a run of DataRows at once: the same rows as filtering each row, the
constants and the filter's changes spliced in, malformed rows refused as one row at a time refuses them."""

from __future__ import annotations

from typing import Any

import pytest
from gw_postgres import messages as m
from gw_postgres.errors import RemoteProtocolError
from gw_postgres.rowbatch import RowBatch, RowShapeChanged, row_batch
from hypothesis import given
from hypothesis import strategies as st

VALUE = st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"secret", "caf\u00e9 secret".encode()]))


class Edits:
    """Columns in ``constant`` become their constant; values of ``edited`` columns holding ``secret`` become
    NULL when ``null`` else ``[x]``."""

    def __init__(self, constant: dict[int, bytes | None], edited: tuple[int, ...], null: bool) -> None:
        self.constant = constant
        self.edited = edited
        self.null = null
        self.calls: list[tuple[list[bytes | None], int]] = []

    def edit(self, values: list[bytes | None], replaced: int) -> dict[int, bytes | None]:
        self.calls.append((list(values), replaced))
        return {i: None if self.null else b"[x]" for i, v in enumerate(values) if v is not None and b"secret" in v}

    def row(self, values: list[bytes | None]) -> list[bytes | None]:
        out = list(values)
        for i, c in self.constant.items():
            if out[i] is not None:
                out[i] = c
        for i in self.edited:
            v = out[i]
            if v is not None and b"secret" in v:
                out[i] = None if self.null else b"[x]"
        return out

    def columnwise(self) -> Edits:
        return self


@st.composite
def runs(draw: Any) -> tuple[list[list[bytes | None]], Edits]:
    width = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(VALUE, min_size=width, max_size=width), min_size=1, max_size=8))
    roles = draw(st.lists(st.sampled_from(["pass", "constant", "edited"]), min_size=width, max_size=width))
    constants = {i: draw(st.sampled_from([b"***", None, b""])) for i, r in enumerate(roles) if r == "constant"}
    edited = tuple(i for i, r in enumerate(roles) if r == "edited")
    return rows, Edits(constants, edited, draw(st.booleans()))


@given(runs())
def test_a_run_comes_out_as_each_row_filtered(run: tuple[list[list[bytes | None]], Edits]) -> None:
    rows, edits = run
    width = len(rows[0])
    buf = b"junk" + b"".join(m.encode_data_row(r) for r in rows) + b"Z"
    batch = row_batch(edits, width)
    assert batch is not None
    out = batch.apply(buf, 4, len(buf) - 1)
    expected = [edits.row(r) for r in rows]
    if expected == rows:
        assert out is None  # nothing changed: the protocol relays the bytes as they came
    else:
        assert out == b"".join(m.encode_data_row(r) for r in expected)
    # one call for the run: the edited columns' values row after row, and the constants counted
    ((values, replaced),) = edits.calls
    assert values == [r[i] for r in rows for i in edits.edited]
    assert replaced == sum(1 for r in rows for i in edits.constant if r[i] is not None)


def test_a_row_of_another_width_is_left_to_the_filter_before_it_sees_anything() -> None:
    edits = Edits({0: b"***"}, (1,), False)
    batch = RowBatch(edits, edits, 2)
    buf = m.encode_data_row([b"a", b"b"]) + m.encode_data_row([b"a"])
    with pytest.raises(RowShapeChanged):
        batch.apply(buf, 0, len(buf))
    assert edits.calls == []


def refused_or_passed(body: bytes, width: int) -> None:
    """A run holding the DataRow ``body`` between two good rows: refused (RemoteProtocolError) or left to the
    filter (RowShapeChanged) exactly when filtering that row alone would not treat it as a row of ``width``
    values; the filter is not called for a run it refuses."""
    edits = Edits({0: b"***"}, (width - 1,) if width > 1 else (), False)
    good = m.encode_data_row([b"x"] * width)
    buf = good + m.frame(m.BackendType.DATA_ROW, body) + good
    batch = RowBatch(edits, edits, width)
    try:
        values, _ = m.data_row_offsets(body)
    except RemoteProtocolError:
        with pytest.raises((RemoteProtocolError, RowShapeChanged)):
            batch.apply(buf, 0, len(buf))
        assert edits.calls == []
        return
    if len(values) != width:
        with pytest.raises(RowShapeChanged):
            batch.apply(buf, 0, len(buf))
        assert edits.calls == []
    else:
        assert batch.apply(buf, 0, len(buf)) is not None


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x01", b"\x00\x01\x00\x00", b"\x00\x01\x00\x00\x00\x05ab",
                                  b"\x00\x01\xff\xff\xff\xfe", b"\x00\x01\x00\x00\x00\x01ab",
                                  b"\x00\x01\xff\xff\xff\xffx", b"\x00\x01\x00\x00\x00\x02ab"])
def test_malformed_rows_are_refused(body: bytes) -> None:
    refused_or_passed(body, 1)


@given(st.binary(max_size=40), st.integers(1, 4))
def test_any_bytes_are_refused_as_one_row_at_a_time_refuses_them(body: bytes, width: int) -> None:
    refused_or_passed(body, width)
