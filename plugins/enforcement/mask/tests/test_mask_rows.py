"""Tabular results: which columns are masked, how values stay valid for their type, counts, and speed.

Columns are built the way protocol plugins describe them: ``sources`` from the wire (PostgreSQL's table OID +
column number) and from SQL lineage (``upper(ssn) AS x`` derives from ``public.people.ssn``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from gw import hookimpl
from gw.model import Column, Outcome

Build = Callable[[str], Any]

SSN = b"123-45-6789"
CARD_NOTE = b"paid with 4111 1111 1111 1111, thanks"
LOOKALIKE_NOTE = b"order ref 4111 1111 1111 1112"


def text(name: str, *sources: str, type_name: str = "text", binary: bool = False) -> Column:
    return Column(name, type_name=type_name, binary=binary, sources=tuple(sources))


async def test_acceptance_alias_expression_and_free_text(mask_stage: Build, canonical: str,
                                                         new_command: Any) -> None:
    """``select ssn as x, upper(ssn), note from people``: x and upper(ssn) masked through their source, a
    card inside the free-text note masked by the detector, a Luhn-invalid number left alone."""
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    cmd = new_command("select ssn as x, upper(ssn), note from people")
    columns = [text("x", "public.people.ssn"), text("upper", "public.people.ssn"),
               text("note", "public.people.note")]
    rows = stage.rows(cmd, columns)
    assert rows is not None
    assert rows.row([SSN, SSN, CARD_NOTE]) == [b"***", b"***", b"paid with ***, thanks"]
    assert rows.row([SSN, None, LOOKALIKE_NOTE]) == [b"***", None, LOOKALIKE_NOTE]
    outcome = Outcome()
    await stage.completed(cmd, outcome)
    assert outcome.notes["masked"] == {"columns": 3, "detected": {"credit_card": 1}}


@pytest.mark.parametrize("pattern, column, masked", [
    # a bare name: the source column (any table), or the output name
    ("ssn", text("x", "public.people.ssn"), True),
    ("ssn", text("ssn"), True),
    ("ssn", text("ssn", "public.people.tax_id"), True),  # output name matches too
    ("ssn", text("ssn_hint", "public.people.hint"), False),
    ("SSN", text("x", "public.people.ssn"), True),  # case-insensitive
    ("ss?", text("x", "public.people.ssn"), True),  # globs
    # table.column: any schema
    ("*.card_number", text("c", "billing.payments.card_number"), True),
    ("*.card_number", text("card_number", "billing.payments.card_last4"), False),  # output name is not enough
    ("customers.email", text("e", "public.customers.email"), True),
    ("customers.email", text("email", "public.staff.email"), False),
    ("cust*.email", text("e", "crm.customers_eu.email"), True),
    # fully qualified
    ("public.customers.email", text("e", "public.customers.email"), True),
    ("public.customers.email", text("e", "archive.customers.email"), False),
    # Column.table/column set by the protocol instead of sources
    ("customers.email", Column("e", table="public.customers", column="email", type_name="text"), True),
    ("customers.email", Column("e", table="customers", column="email", type_name="text"), True),
    # unknown lineage fails closed: qualified patterns fall back to the output name
    ("customers.email", text("email"), True),
    ("customers.email", text("e", "email"), True),  # table unknown
    ("public.customers.email", text("e", "customers.email"), True),  # schema unknown
    # several sources (concat(name, ssn)): any one masks the value
    ("ssn", text("label", "public.people.name", "public.people.ssn"), True),
])
def test_column_pattern_semantics(mask_stage: Build, new_command: Any, pattern: str, column: Column,
                                  masked: bool) -> None:
    stage = mask_stage(f'columns = ["{pattern}"]')
    rows = stage.rows(new_command(), [column])
    assert (rows is not None) is masked
    if masked:
        assert rows.row([b"v"]) == [b"***"]


def test_no_applicable_rule_means_no_filter(mask_stage: Build, canonical: str, new_command: Any) -> None:
    """The protocol then forwards the result bytes untouched (the hot path)."""
    stage = mask_stage('columns = ["ssn"]')
    assert stage.rows(new_command(), [text("name", "public.people.name"), text("id", type_name="int4")]) is None
    with_detectors = mask_stage(canonical[len('{ use = "mask", '):-2])
    numbers_only = [Column("id", type_name="int8"), Column("at", type_name="timestamptz")]
    assert with_detectors.rows(new_command(), numbers_only) is None


def test_unchanged_rows_are_passed_through_without_copying(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage('detectors = ["credit_card"]')
    rows = stage.rows(new_command(), [text("note")])
    values: list[bytes | None] = [b"nothing to see"]
    assert rows.row(values) is values
    masked_input: list[bytes | None] = [CARD_NOTE]
    assert rows.row(masked_input) == [b"paid with ***, thanks"]
    assert masked_input == [CARD_NOTE], "the protocol's row is not modified in place"


def test_rows_are_scanned_together_and_only_findings_rewrite(mask_stage: Build, new_command: Any) -> None:
    """Detector scans of a row are judged at once (one quick check over its text values); a finding in any of
    them, ASCII or not, is still masked, and the other values are the very same objects."""
    stage = mask_stage('columns = ["ssn"], detectors = ["us_ssn", "credit_card", "email", "iban"]')
    rows = stage.rows(new_command(), [text("id", type_name="int4"), text("name"), text("ssn"), text("note")])
    plain: list[bytes | None] = [b"7", b"name 1234567", b"123-45-6789", b"free text note number 1234567"]
    out = rows.row(plain)
    assert out == [b"7", b"name 1234567", b"***", b"free text note number 1234567"]
    assert out[1] is plain[1] and out[3] is plain[3]
    assert rows.row([b"7", b"name 1", None, CARD_NOTE]) == [b"7", b"name 1", None, b"paid with ***, thanks"]
    assert rows.row([b"7", b"mail ann@example.com", None, None]) == [b"7", b"mail ***", None, None]
    # digits of another script (which the quick check does not know): the detectors still run
    other = "ssn 1٢٣ ٤٥ ٦٧٨٩".encode()
    assert rows.row([b"7", other, None, b"x"]) == [b"7", b"ssn ***", None, b"x"]
    # every digit another script's (SQL's translate() makes that of any text): found and masked all the same
    moved = "ssn ١٢٣-٤٥-٦٧٨٩, card ４１１１ １１１１ １１１１ １１１１".encode()
    assert rows.row([b"7", moved, None, b"x"]) == [b"7", b"ssn ***, card ***", None, b"x"]


@pytest.mark.parametrize("column, expected", [
    (text("c", "t.ssn", type_name="varchar"), b"***"),
    (text("c", "t.ssn", type_name="character varying(11)"), b"***"),
    (text("c", "t.ssn", type_name="bpchar"), b"***"),
    (text("c", "t.ssn", type_name="int4"), None),  # "***" would break int4 decoding in the client
    (text("c", "t.ssn", type_name="numeric"), None),
    (text("c", "t.ssn", type_name="date"), None),
    (text("c", "t.ssn", type_name="bytea"), None),
    (text("c", "t.ssn", type_name="_text"), None),  # an array literal must stay an array literal
    (text("c", "t.ssn", type_name="xml"), None),
    (text("c", "t.ssn", type_name="text", binary=True), None),  # binary encodings are not rewritten
    (text("c", "t.ssn", type_name="int8", binary=True), None),
    (text("c", "t.ssn", type_name="jsonb"), b'"***"'),  # still a JSON document
])
def test_masked_values_stay_valid_for_their_type(mask_stage: Build, new_command: Any, column: Column,
                                                 expected: bytes | None) -> None:
    stage = mask_stage('columns = ["ssn"]')
    assert stage.rows(new_command(), [column]).row([b"12"]) == [expected]


def test_detectors_on_binary_and_structured_text_null_the_value(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage('detectors = ["credit_card"]')
    columns = [text("b", binary=True), text("arr", type_name="_text"), text("n", type_name="int8")]
    rows = stage.rows(new_command(), columns)
    assert rows.row([CARD_NOTE, b"{" + CARD_NOTE + b"}", b"4111111111111111"]) == [
        None, None, b"4111111111111111"]  # numbers are not scanned (use a column rule for them)
    assert rows.row([b"plain", b"{a,b}", b"1"]) == [b"plain", b"{a,b}", b"1"]


def test_json_columns_are_masked_as_documents(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage('columns = ["ssn"], json_paths = ["contacts[*].email"], detectors = ["credit_card"]')
    rows = stage.rows(new_command(), [text("profile", "public.people.profile", type_name="jsonb")])
    doc = (b'{"ssn": "123-45-6789", "contacts": [{"email": "a@b.io", "kind": "work"}], '
           b'"note": "card 4111111111111111", "n": 4111111111111111}')
    assert rows.row([doc]) == [(b'{"ssn":"***","contacts":[{"email":"***","kind":"work"}],'
                               b'"note":"card ***","n":null}')]
    untouched = b'{"a": 1}'
    assert rows.row([untouched])[0] is untouched


def test_strategies_per_rule_and_for_detections(mask_stage: Build, new_command: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("GW_TEST_MASK_KEY", "0123456789abcdef0123")
    stage = mask_stage('strategy = "partial", hash_key_env = "GW_TEST_MASK_KEY", '
                       'columns = ["ssn", { column = "*.email", strategy = "hash" }, '
                       '{ column = "salary", strategy = "null" }], '
                       'detectors = [{ detector = "credit_card", strategy = "null" }, "email"]')
    columns = [text("ssn", "hr.people.ssn"), text("mail", "hr.people.email"), text("salary", "hr.people.salary"),
               text("note", "hr.people.note")]
    rows = stage.rows(new_command(), columns)
    out = rows.row([SSN, b"alice@example.com", b"100", b"4111111111111111 / alice@example.com"])
    assert out[0] == b"***-**-6789"
    assert out[1] is not None and out[1].startswith(b"h:")
    assert out[2] is None
    # null for a detected span inside text redacts; the e-mail detection uses the stage's partial strategy
    assert out[3] == b"*** / *****@******e.com"
    again = stage.rows(new_command(), columns).row([SSN, b"alice@example.com", b"1", b""])
    assert again[1] == out[1], "hash tokens are stable, so agents can still join on them"


async def test_counts_accumulate_per_command_and_become_the_outcome_note(mask_stage: Build, canonical: str,
                                                                         new_command: Any) -> None:
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    cmd, other = new_command("select a; select b"), new_command("select c")
    columns = [text("ssn", "public.people.ssn"), text("note")]
    for _ in range(2):  # a multi-statement command has several results
        rows = stage.rows(cmd, columns)
        rows.row([SSN, b"a@b.io and c@d.io"])
        rows.row([None, b"DE89 3704 0044 0532 0130 00"])
    stage.rows(other, columns).row([SSN, None])
    assert stage.counts(cmd).as_note() == {"columns": 2, "detected": {"email": 4, "iban": 2}}
    outcome = Outcome()
    await stage.completed(cmd, outcome)
    assert outcome.notes["masked"] == {"columns": 2, "detected": {"email": 4, "iban": 2}}
    assert stage.counts(other).as_note() == {"columns": 1, "detected": {}}, "each command counts its own"
    unmasked = Outcome()
    await stage.completed(new_command("select 1"), unmasked)
    assert "masked" not in unmasked.notes


def test_performance_sanity_100k_rows(mask_stage: Build, canonical: str, new_command: Any) -> None:
    """Reports rows/s for a typical masked result (no timing assertion: timings never decide pass/fail)."""
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    columns = [Column("id", type_name="int4", sources=("public.customers.id",)),
               text("name", "public.customers.name"), text("ssn", "public.customers.ssn"),
               text("email", "public.customers.email", type_name="varchar"), text("note", "public.customers.note")]
    data: list[list[bytes | None]] = [
        [str(i).encode(), b"Customer %d" % i, SSN, b"c%d@example.com" % i,
         CARD_NOTE if i % 10 == 0 else b"called about order %d, all fine" % i]
        for i in range(100_000)]
    cmd = new_command()
    rows = stage.rows(cmd, columns)
    started = time.perf_counter()
    for values in data:
        rows.row(values)
    elapsed = time.perf_counter() - started
    print(f"\nmask: {len(data) / elapsed:,.0f} rows/s (5 columns: 2 masked by rule, 2 scanned by 4 detectors)")
    assert stage.counts(cmd).as_note() == {"columns": 200_000, "detected": {"credit_card": 10_000}}


def test_text_types_extend_what_counts_as_text(mask_stage: Build, new_command: Any) -> None:
    plain = mask_stage('columns = ["contact"], detectors = ["email"]')
    custom = Column("contact", type_name="email_address", sources=("crm.people.contact",))
    note = Column("note", type_name="email_address")
    assert plain.rows(new_command(), [custom, note]).row([b"a@b.io", b"x a@b.io"]) == [None, b"x a@b.io"]
    extended = mask_stage('columns = ["contact"], detectors = ["email"], text_types = ["EMAIL_ADDRESS"]')
    assert extended.rows(new_command(), [custom, note]).row([b"a@b.io", b"x a@b.io"]) == [b"***", b"x ***"]


# -- the columnwise form: a batch of rows at a time ------------------------------------------------------------

def apply_columnwise(rows: Any, batch: list[list[bytes | None]]) -> list[list[bytes | None]]:
    """What a protocol does with :meth:`MaskingRows.columnwise` (gw.stage.ColumnEdits) for one batch."""
    edits = rows.columnwise()
    assert edits is not None
    width = len(edits.edited)
    values = [row[i] for row in batch for i in edits.edited]
    replaced = sum(1 for row in batch for i in edits.constant if row[i] is not None)
    changes = edits.edit(values, replaced)
    out = []
    for r, row in enumerate(batch):
        new = list(row)
        for i, constant in edits.constant.items():
            if new[i] is not None:
                new[i] = constant
        for slot, i in enumerate(edits.edited):
            if r * width + slot in changes:
                new[i] = changes[r * width + slot]
        out.append(new)
    return out


#: Values that hold something a detector finds (ASCII or not), look-alikes, and plain text.
TRICKY = [None, b"", b"plain", b"name 1234567", SSN, CARD_NOTE, LOOKALIKE_NOTE, b"mail ann@example.com",
          b"DE89 3704 0044 0532 0130 00", "ssn 1\u0662\u0663 \u0664\u0665 \u0666\u0667\u0668\u0669".encode(),
          "caf\u00e9 123-45-6789 \u00fc".encode(), "\u540d\u524d 4111111111111111".encode(),
          "\u540d\u524d\u540d\u524d\u540d\u524d".encode(), b"+1 415 555 2671", b"\xff\xfe 123-45-6789",
          b'{"ssn": "123-45-6789", "n": 1}']

COLUMNWISE_CASES = [
    # the bench's shape: two columns by rule (constant), two scanned by the joinable built-ins
    ('columns = ["ssn", "email"], detectors = ["us_ssn", "credit_card", "email", "iban"]',
     [text("id", type_name="int4"), text("name"), text("ssn"), text("email"), text("note")]),
    # value-dependent strategies, NULL strategy, a non-text masked column, a binary scanned one, JSON
    (('strategy = "partial", hash_key_env = "GW_TEST_MASK_KEY", '
      'columns = ["ssn", { column = "email", strategy = "hash" }, { column = "salary", strategy = "null" }, '
      '"pin"], json_paths = ["ssn"], detectors = [{ detector = "credit_card", strategy = "null" }, "email"]'),
     [text("ssn"), text("email"), text("salary"), text("pin", type_name="int4"), text("note"),
      text("b", binary=True), text("doc", type_name="jsonb")]),
    # detectors only, one of them without a prefilter (so without a quick check: every value is scanned)
    ('detectors = ["us_ssn", "three_digits"]', [text("a"), text("b", type_name="_text")]),
]


class ThreeDigits:
    """A third party's detector without a prefilter."""

    name = "three_digits"

    def find(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[0-9]{3}", text)]


class ThreeDigitsPlugin:
    @hookimpl
    def gw_register_detectors(self, register: Callable[[Any], None]) -> None:
        register(ThreeDigits())


@pytest.mark.parametrize("options, columns", COLUMNWISE_CASES)
def test_columnwise_masks_exactly_what_row_masks(mask_stage: Build, new_command: Any, monkeypatch: Any,
                                                  gw_register: Any, options: str, columns: list[Column]) -> None:
    """For every batch, applying the columnwise edits gives the rows ``row`` gives, with the same counts: a
    value a rule or detector masks row by row is masked in a batch too (NULLs, non-ASCII text, other scripts'
    digits, findings in one row among many without)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    monkeypatch.setenv("GW_TEST_MASK_KEY", "0123456789abcdef0123")
    gw_register(ThreeDigitsPlugin(), "three_digits")
    stage = mask_stage(options)
    width = len(columns)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.lists(st.sampled_from(TRICKY), min_size=width, max_size=width), max_size=30))
    def check(batch: list[list[bytes | None]]) -> None:
        by_row, by_batch = new_command(), new_command()
        one_by_one = stage.rows(by_row, columns)
        expected = [one_by_one.row(list(row)) for row in batch]
        assert apply_columnwise(stage.rows(by_batch, columns), batch) == expected
        assert stage.counts(by_batch).as_note() == stage.counts(by_row).as_note()

    check()


def test_columnwise_constants_and_candidates(mask_stage: Build, new_command: Any) -> None:
    """Redact and null rules are constants the protocol puts in itself; only values a detector may find
    something in are scanned, and a batch without any is judged in one pass."""
    stage = mask_stage('columns = ["ssn", { column = "salary", strategy = "null" }, "pin"], '
                       'detectors = ["us_ssn", "email"]')
    columns = [text("ssn"), text("salary"), text("pin", type_name="int4"), text("name"), text("note")]
    edits = stage.rows(new_command(), columns).columnwise()
    assert edits.constant == {0: b"***", 1: None, 2: None} and edits.edited == (3, 4)
    assert edits.edit([b"name 1", b"note 2", None, b"x"], 3) == {}
    found = edits.edit([b"name 1", b"note 2", None, b"mail a@b.io", "\u00fc 1\u0662\u0663-45-6789".encode(), b""], 0)
    assert found == {3: b"mail ***", 4: "\u00fc ***".encode()}
