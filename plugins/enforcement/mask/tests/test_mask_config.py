"""Options: the canonical entry, every error naming its key path, and detectors from a third-party plugin."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from gw import hookimpl
from gw.errors import ConfigError
from gw.model import Column

Build = Callable[[str], Any]


def test_canonical_entry_builds_as_written(build_stages: Callable[[str], list[Any]], canonical: str) -> None:
    (stage,) = build_stages(canonical)
    assert stage.name == "mask" and stage.transforms
    assert [d.name for d in stage._detectors] == ["us_ssn", "credit_card", "email", "iban"]
    assert stage.options.max_body == 8 * 1024 * 1024


@pytest.mark.parametrize("options, path, message", [
    ('detectors = ["us_ssn", "passport"]', "pipelines.p.stages[0]",
     "detectors[1]: unknown detector 'passport'"),
    ('columns = ["a.b.c.d"]', "pipelines.p.stages[0].columns[0].column", "is not COLUMN, TABLE.COLUMN"),
    ('columns = ["public..email"]', "pipelines.p.stages[0].columns[0].column", "is not COLUMN"),
    # (core's validation_error drops loc parts starting with "str", so ".strategy" is missing from the path)
    ('columns = [{ column = "ssn", strategy = "scramble" }]', "pipelines.p.stages[0].columns[0]",
     "'redact', 'partial', 'hash' or 'null'"),
    ('columns = [{ colum = "ssn" }]', "pipelines.p.stages[0].columns[0].colum", "unknown key"),
    ('json_paths = ["customers[x].email"]', "pipelines.p.stages[0].json_paths[0].path", "unexpected '['"),
    ('json_paths = ["a..b"]', "pipelines.p.stages[0].json_paths[0].path", "empty step"),
    ('strategy = "hash"', "pipelines.p.stages[0]", "set hash_key_env"),
    ('max_body = "lots"', "pipelines.p.stages[0].max_body", "expected a size"),
    ('colums = ["ssn"]', "pipelines.p.stages[0].colums", "unknown key"),
])
def test_option_errors_name_the_key_path(mask_stage: Build, options: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        mask_stage(options)
    assert f"{path}" in str(err.value)
    assert message in str(err.value)


def test_unknown_detector_error_lists_what_is_available(mask_stage: Build) -> None:
    with pytest.raises(ConfigError) as err:
        mask_stage('detectors = ["pasport"]')
    assert re.search(r"available: .*credit_card.*us_ssn", str(err.value))


def test_sizes_accept_units(mask_stage: Build) -> None:
    stage = mask_stage('detectors = ["email"], max_body = "1MiB", max_line = 4096')
    assert (stage.options.max_body, stage.options.max_line) == (1024 * 1024, 4096)


async def test_hash_key_comes_from_the_environment_when_serving(mask_stage: Build, monkeypatch: Any,
                                                                new_command: Any) -> None:
    monkeypatch.delenv("GW_TEST_MASK_KEY", raising=False)
    # CLI commands that only read the store build pipelines without the serving environment: no error yet ...
    stage = mask_stage('strategy = "hash", hash_key_env = "GW_TEST_MASK_KEY", columns = ["ssn"]')
    # ... but the stage refuses to filter without its key (fail closed) and refuses to open.
    with pytest.raises(ConfigError):
        stage.rows(new_command(), [Column("ssn")])
    with pytest.raises(ConfigError, match=r"\$GW_TEST_MASK_KEY is not set"):
        await stage.open()
    monkeypatch.setenv("GW_TEST_MASK_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        await stage.open()
    monkeypatch.setenv("GW_TEST_MASK_KEY", "x" * 32)
    await stage.open()
    assert stage.rows(new_command(), [Column("ssn")]).row([b"1"])[0].startswith(b"h:")


# -- a third party's detector -------------------------------------------------------------------------------------

class EmployeeId:
    """A third party's detector: ``EMP-`` and six digits."""

    name = "employee_id"
    _pattern = re.compile(r"\bEMP-\d{6}\b")

    def find(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._pattern.finditer(text)]


class HrPlugin:
    @hookimpl
    def gw_register_detectors(self, register: Callable[[Any], None]) -> None:
        register(EmployeeId())


class BrokenPlugin:
    @hookimpl
    def gw_register_detectors(self, register: Callable[[Any], None]) -> None:
        register(type("NoFind", (), {"name": "no_find"})())


def test_third_party_detector_registered_through_the_hook(gw_register: Any, mask_stage: Build,
                                                          new_command: Any) -> None:
    gw_register(HrPlugin(), "hr")
    stage = mask_stage('strategy = "partial", detectors = ["employee_id", "email"]')
    rows = stage.rows(new_command(), [Column("note", type_name="text")])
    assert rows.row([b"ask EMP-004211 (bob@example.com)"]) == [b"ask ***-**4211 (***@******e.com)"]
    body = stage.stream(new_command(), "stdout", "")
    assert body.feed(b"EMP-0") + body.feed(b"04211 left\n") + body.finish() == b"***-**4211 left\n"


def test_a_detector_without_find_is_a_config_error(gw_register: Any, mask_stage: Build) -> None:
    gw_register(BrokenPlugin(), "broken")
    with pytest.raises(ConfigError, match="detectors\\[0\\]: detector 'no_find' has no name/find"):
        mask_stage('detectors = ["no_find"]')
