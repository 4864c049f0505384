"""``gw storage prune`` and ``gw storage info`` against a real database (click's runner, in process)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result
from gw.cli import build_cli
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_sqlite.schema import SCHEMA_VERSION


def gw(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def seed(config: Path, old: int, new: int) -> None:
    """Write ``old`` records aged 100 days and ``new`` fresh ones to two streams."""
    async def main() -> None:
        rt = Runtime.build(config)
        async with rt.opened():
            assert rt.store is not None
            await rt.store.append("audit", [{"i": i} for i in range(old + new)])
            await rt.store.append("recordings", [{"i": 0}])
            path = rt.store.path
        conn = sqlite3.connect(str(path))
        conn.execute("UPDATE entries SET ts = ts - 8640000 WHERE stream = 'audit' AND seq <= ?", (old,))
        conn.commit()
        conn.close()

    trio.run(main)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_pipeline(tmp_path, '[storage]\nuse = "sqlite"\nretention = "90d"\n')


def test_prune_applies_retention_to_every_stream(config: Path) -> None:
    seed(config, old=3, new=2)
    out = gw("storage", "prune", "-c", str(config))
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line.split()[1] for line in out.output.splitlines()[2:] if line.strip()}
    assert lines["audit"] == "3" and lines["recordings"] == "0" and lines["total:"] == "3"
    again = gw("storage", "prune", "-c", str(config), "--json")
    assert json.loads(again.output)["streams"] == [{"stream": "audit", "deleted": 0},
                                                   {"stream": "recordings", "deleted": 0}]
    info = json.loads(gw("storage", "info", "-c", str(config), "--json").output)
    assert info["backend"] == "sqlite" and info["retention"] == "90d"
    assert info["details"]["schema_version"] == SCHEMA_VERSION
    assert [(s["stream"], s["last_seq"]) for s in info["streams"]] == [("audit", 5), ("recordings", 6)]


def test_older_than_overrides_retention(config: Path) -> None:
    seed(config, old=2, new=2)
    out = gw("storage", "prune", "-c", str(config), "--older-than", "0s", "--json")
    assert {s["stream"]: s["deleted"] for s in json.loads(out.output)["streams"]} == {"audit": 4, "recordings": 1}
    bad = gw("storage", "prune", "-c", str(config), "--older-than", "soon")
    assert bad.exit_code == 1 and "bad retention 'soon'" in bad.output


def test_prune_without_retention_says_what_to_set(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path, '[storage]\nuse = "sqlite"\n')
    out = gw("storage", "prune", "-c", str(config))
    assert out.exit_code == 1
    assert "storage.retention is not set" in out.output and "--older-than" in out.output


def test_a_file_without_storage(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path, "[gateway]\n")
    out = gw("storage", "info", "-c", str(config))
    assert out.exit_code == 1 and "has no [storage] table" in out.output


def test_human_readable_info(config: Path) -> None:
    seed(config, old=0, new=1)
    out = gw("storage", "info", "-c", str(config))
    assert out.exit_code == 0
    assert "backend: sqlite" in out.output and "retention: 90d" in out.output
    assert "synchronous: full" in out.output and "audit" in out.output
