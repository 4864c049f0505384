"""Fixtures for the console tests (the helpers live in console_env.py, importable by the test modules)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # --import-mode=importlib does not put test directories on sys.path
    sys.path.insert(0, str(HERE))

from console_env import Gateway, direct, start_gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path)
    try:
        yield gw
    finally:
        gw.process.stop()
        direct(f"drop table if exists {gw.table}")
