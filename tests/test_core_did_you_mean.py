"""Operator errors suggest what was meant: unknown keys, plugin names, detectors, listener names (difflib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gw.errors import ConfigError
from gw.runtime import Runtime
from gw.testing import write_pipeline

BASE = """
[identity.static]
use = "static"
users = {{ alice = ["agents"] }}

[pipelines.p]
stages = [{stage}]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
{extra}
"""


def build(tmp_path: Path, pm: Any, *, stage: str = '{ use = "upper" }', extra: str = "") -> Runtime:
    return Runtime.build(write_pipeline(tmp_path, BASE.format(stage=stage, extra=extra)), pm=pm)


def test_a_misspelt_plugin_name_suggests_the_installed_one(tmp_path: Path, inline_pm: Any) -> None:
    with pytest.raises(ConfigError) as e:
        build(tmp_path, inline_pm, stage='{ use = "uper" }')
    assert "did you mean 'upper'?" in str(e.value)
    assert e.value.path == "pipelines.p.stages[0].use"
    assert "pip install" not in str(e.value)


def test_a_misspelt_key_suggests_the_key_at_that_place(tmp_path: Path, inline_pm: Any) -> None:
    with pytest.raises(ConfigError) as e:
        build(tmp_path, inline_pm, extra='alow_groups = ["agents"]')
    assert "listeners[0].alow_groups: unknown key: did you mean 'allow_groups'?" in str(e.value)
    path = write_pipeline(tmp_path, "[gateway]\ndrain_timeot = \"5s\"\n")
    with pytest.raises(ConfigError, match="gateway.drain_timeot: unknown key: did you mean 'drain_timeout'"):
        Runtime.build(path, pm=inline_pm)


def test_a_key_nothing_resembles_keeps_the_plain_message(tmp_path: Path, inline_pm: Any) -> None:
    with pytest.raises(ConfigError) as e:
        build(tmp_path, inline_pm, extra="zzz = 1")
    assert "unknown key (check its spelling" in str(e.value) and "did you mean" not in str(e.value)


def test_listener_and_pipeline_names_are_suggested(tmp_path: Path, inline_pm: Any) -> None:
    rt = build(tmp_path, inline_pm)
    with pytest.raises(ConfigError, match="no listener named 'line'; did you mean 'lines'"):
        rt.listener("line")
    text = BASE.format(stage='{ use = "upper" }', extra="").replace('pipeline = "p"', 'pipeline = "pp"')
    with pytest.raises(ConfigError, match="did you mean 'p'"):
        Runtime.build(write_pipeline(tmp_path, text), pm=inline_pm)
