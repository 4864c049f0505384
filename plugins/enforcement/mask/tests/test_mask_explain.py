"""The mask plan gw policy explain shows: per column of the result the protocol found (Command.attributes
RESULT_COLUMNS), masked or not and by which rule or detectors; the rules alone when nothing is known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gw.model import RESULT_COLUMNS, Column, Command

Build = Callable[[str], Any]
OPTIONS = ('columns = ["ssn", { column = "*.email", strategy = "partial" }], json_paths = ["$.secret"], '
           'detectors = ["us_ssn", "email"]')


def _with(command: Command, shape: object) -> Command:
    return replace(command, attributes={RESULT_COLUMNS: shape})


def test_each_column_says_whether_and_how_it_is_masked(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(OPTIONS)
    columns = (
        Column("id", type_name="int4", sources=("public.people.id",)),
        Column("x", type_name="text", sources=("public.people.ssn",)),
        Column("email", type_name="varchar", sources=("public.people.email",)),
        Column("note", type_name="text", sources=("public.people.note",)),
        Column("doc", type_name="jsonb", sources=("public.people.doc",)),
        Column("born", type_name="date", sources=("public.people.ssn",)),
    )
    plan = stage.explain(_with(new_command(), columns)).splitlines()
    assert plan == [
        "result columns:",
        "id (int4): not masked (no rule; int4 values are not searched by detectors)",
        "x (text) from public.people.ssn: masked by rule ssn (redact)",
        "email (varchar): masked by rule *.email (partial)",
        "note (text): no rule; values searched by detectors us_ssn, email",
        "doc (jsonb): no rule; values searched by JSON paths and detectors us_ssn, email",
        "born (date) from public.people.ssn: masked by rule ssn (redact), as NULL (a masked text would not "
        "decode as this type)",
    ]


def test_what_cannot_be_known_is_said(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(OPTIONS)
    unknown = stage.explain(_with(new_command(), "decided by the database when the statement runs"))
    assert unknown.startswith("masks result columns matching ssn, *.email")
    assert unknown.endswith("which columns of this result: decided by the database when the statement runs")
    assert stage.explain(_with(new_command(), ())) == "the statement returns no rows: no result column to mask"
    # columns known from the text alone carry no types: the plan says so
    text_only = stage.explain(_with(new_command(), (Column("ssn", sources=("public.people.ssn",)),)))
    assert text_only.splitlines() == [
        "result columns (from the statement's text; their types are known when it runs):",
        "ssn: masked by rule ssn (redact)"]
    # a protocol whose results are not tables: the rules
    assert stage.explain(new_command()).startswith("masks result columns matching ssn, *.email; JSON paths")


def test_a_stage_without_rules_has_nothing_to_say(mask_stage: Build, new_command: Any) -> None:
    assert mask_stage().explain(_with(new_command(), (Column("ssn", type_name="text"),))) is None


def test_the_plan_is_the_one_the_data_path_applies(mask_stage: Build, new_command: Any) -> None:
    """Whatever the plan calls masked, the row filter masks; what it calls not masked passes as it is."""
    stage = mask_stage(OPTIONS)
    columns = [Column("id", type_name="int4", sources=("public.people.id",)),
               Column("x", type_name="text", sources=("public.people.ssn",)),
               Column("note", type_name="text", sources=("public.people.note",))]
    plan = stage.explain(_with(new_command(), tuple(columns))).splitlines()[1:]
    command = new_command()
    row = stage.rows(command, columns).row([b"7", b"123-45-6789", b"call ann@example.com"])
    assert "not masked" in plan[0] and row[0] == b"7"
    assert "masked by rule ssn" in plan[1] and row[1] == b"***"
    assert "searched by detectors" in plan[2] and b"ann@example.com" not in row[2]
