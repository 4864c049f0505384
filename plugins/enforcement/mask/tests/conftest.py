"""Fixtures for the mask stage's tests: stages built from real pipeline files by core's runtime (so option
validation, detector lookup through the registry and error key paths are the real ones), and commands."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest
from gw.model import Command, Identity, Kind, Session
from gw.runtime import Runtime
from gw.testing import write_pipeline

#: The mask entry of the canonical pipeline (issue 3), as written there.
CANONICAL = ('{ use = "mask", strategy = "redact", columns = ["ssn", "*.card_number", "customers.email"], '
             'detectors = ["us_ssn", "credit_card", "email", "iban"] }')

_seq = itertools.count(1)
SESSION = Session(id="sess-mask", listener="db", protocol="postgresql", identity=Identity("agent-7", ("agents",)),
                  client_address="127.0.0.1:5555", upstream="127.0.0.1:5432", started_at=0.0)


def command(text: str = "select 1", session: Session = SESSION) -> Command:
    """A fresh command (new sequence number) in ``session``."""
    return Command(session, next(_seq), text, "sql", Kind.READ, "select")


@pytest.fixture
def build_stages(tmp_path: Path, gw_plugin_manager: pluggy.PluginManager) -> Callable[[str], list[Any]]:
    """``build_stages('{ use = "mask", ... }, { use = ... }')`` -> the instantiated stages of one pipeline."""
    def build(entries: str) -> list[Any]:
        path = write_pipeline(tmp_path, f"[pipelines.p]\nstages = [{entries}]\n")
        return list(Runtime.build(path, pm=gw_plugin_manager).pipelines["p"].stages)
    return build


@pytest.fixture
def mask_stage(build_stages: Callable[[str], list[Any]]) -> Callable[[str], Any]:
    """``mask_stage('strategy = "partial", columns = ["ssn"]')`` -> a built mask stage (ready to use)."""
    def build(options: str = "") -> Any:
        entry = '{ use = "mask"' + (f", {options}" if options else "") + " }"
        return build_stages(entry)[0]
    return build


@pytest.fixture
def canonical() -> str:
    return CANONICAL


@pytest.fixture
def new_command() -> Callable[..., Command]:
    return command
