"""Fixtures of the apikey tests: a pipeline file with an apikey provider over either key store (gw's real
SQLite storage backend, or a key file), opened as ``gw serve`` would open it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_apikey import ApiKeyProvider

STORAGE = """
[gateway]
data_dir = ".gw"

[storage]
use = "sqlite"

[identity.ci-keys]
use = "apikey"
{options}
"""

FILE = """
[gateway]
data_dir = ".gw"

[identity.ci-keys]
use = "apikey"
file = "keys/apikeys.json"
{options}
"""


@pytest.fixture(params=["storage", "file"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every provider test runs against both key stores."""
    return str(request.param)


@pytest.fixture
def pipeline(tmp_path: Path, backend: str) -> Callable[..., Path]:
    """``pipeline(options='prefix = "ci_"')`` writes the pipeline file for the current backend."""
    def write(options: str = "", extra: str = "") -> Path:
        template = STORAGE if backend == "storage" else FILE
        return write_pipeline(tmp_path, template.format(options=options) + extra)

    return write


@pytest.fixture
def opened() -> Callable[..., Any]:
    """``async with opened(path) as (runtime, provider):`` -- the runtime open with its store and identity
    providers, as ``gw serve`` opens them (without listeners)."""
    @asynccontextmanager
    async def open_(path: Path, name: str = "ci-keys") -> AsyncIterator[tuple[Runtime, ApiKeyProvider]]:
        rt = Runtime.build(path)
        async with rt.opened(serving=False, identity=True):
            provider = rt.identity[name]
            assert isinstance(provider, ApiKeyProvider)
            yield rt, provider

    return open_


def storage_files(directory: Path) -> list[Path]:
    """Every file gw wrote under ``directory`` (the database with its -wal/-shm, key files, lock files)."""
    return [p for p in directory.rglob("*") if p.is_file() and p.suffix != ".toml"]


@pytest.fixture
def stored_bytes(tmp_path: Path) -> Callable[[], dict[str, bytes]]:
    return lambda: {str(p): p.read_bytes() for p in storage_files(tmp_path)}
