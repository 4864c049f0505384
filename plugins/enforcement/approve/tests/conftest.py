"""Fixtures of the approve stage's tests.  The test doubles live in approve_doubles.py (importable by the
tests, and by a ``gw`` subprocess through a fake distribution, see :func:`doubles_distribution`)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import pytest
from gw.testing import RunningGateway, running_gateway, write_pipeline

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # --import-mode=importlib does not put test directories on sys.path
    sys.path.insert(0, str(HERE))

from approve_doubles import CANONICAL, Doubles, LineClient, pipeline_text


def sqlite_available() -> bool:
    return importlib.util.find_spec("gw_sqlite") is not None


@pytest.fixture(params=[
    pytest.param("memory", id="memory-store"),
    pytest.param("sqlite", id="sqlite-store", marks=pytest.mark.skipif(
        not sqlite_available(), reason="the sqlite storage plugin (gw_sqlite) is not installed")),
])
def storage(request: pytest.FixtureRequest) -> str:
    """The ``[storage]`` table body: the in-memory double, and the real sqlite backend when installed."""
    return 'use = "memory"' if request.param == "memory" else 'use = "sqlite"'


@pytest.fixture
def doubles(gw_plugin_manager: pluggy.PluginManager, gw_register: Callable[[object, str], None]
            ) -> pluggy.PluginManager:
    """The plugin manager with the test doubles registered."""
    gw_register(Doubles(), "approve-test-doubles")
    return gw_plugin_manager


@dataclass
class Harness:
    """A running gateway serving the line protocol on listener ``orders``."""

    gw: RunningGateway
    path: Path

    @property
    def runtime(self) -> Any:
        return self.gw.runtime

    @property
    def port(self) -> int:
        return self.gw.port("orders")

    async def client(self, token: str) -> LineClient:
        return await LineClient.connect(self.port, token)

    @property
    def stage(self) -> Any:
        return self.runtime.pipelines["agents"].stages[0]


@pytest.fixture
def approve_gateway(tmp_path: Path, doubles: pluggy.PluginManager, storage: str) -> Callable[..., Any]:
    """``async with approve_gateway(STAGE) as h:`` serves the line protocol with ``STAGE`` (default: the
    issue's canonical approve stage) as its whole pipeline."""

    @asynccontextmanager
    async def start(stage: str = CANONICAL) -> AsyncIterator[Harness]:
        path = write_pipeline(tmp_path, pipeline_text(stage, storage, str(tmp_path / "data")))
        async with running_gateway(path, pm=doubles) as gw:
            yield Harness(gw, path)

    return start


@pytest.fixture
def doubles_distribution(tmp_path: Path) -> dict[str, str]:
    """Environment for a ``gw`` subprocess that loads the test doubles as an installed plugin: a minimal
    ``.dist-info`` whose entry point names ``approve_doubles:plugin``, found through ``PYTHONPATH``."""
    site = tmp_path / "site"
    info = site / "gw_approve_test_doubles-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gw-approve-test-doubles\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[gw]\napprove-test-doubles = approve_doubles:plugin\n")
    return {"PYTHONPATH": f"{site}:{HERE}"}
