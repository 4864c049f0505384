"""`gw policy explain` shows the mask plan of a statement's result: its columns as the PostgreSQL listener
finds them (the upstream describes the statement, which never runs; the catalog and lineage give sources),
masked or not and by which rule or detector.  Without the upstream: the text's lineage, or an honest
"decided by the database when the statement runs"."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw.testing import gw_cli, require_service, write_pipeline

PIPELINE = """
[storage]
use = "sqlite"
path = "gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_TEST_EXPLAIN_SECRET"

[pipelines.agents]
stages = [
  {{ use = "audit" }},
  {{ use = "mask", columns = ["ssn", {{ column = "*.email", strategy = "partial" }}], detectors = ["us_ssn"] }},
]

[[listeners]]
name = "orders"
protocol = "postgres"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"

[listeners.upstream]
host = "127.0.0.1"
port = {port}
database = "test"
user = "postgres"
"""
ENV = {"GW_TEST_EXPLAIN_SECRET": "s" * 32}


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qX", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True, timeout=60)


@pytest.fixture
def table() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    name = f"explain_{secrets.token_hex(4)}"
    _psql(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, ssn text, email varchar(80), born date)")
    try:
        yield name
    finally:
        _psql(f"DROP TABLE IF EXISTS {name}")


def explain(tmp_path: Path, sql: str, *, port: int = 5432, as_json: bool = False) -> subprocess.CompletedProcess[str]:
    path = write_pipeline(tmp_path, PIPELINE.format(port=port), f"pipeline-{port}.toml")
    args = ["policy", "explain", "-c", str(path), "--listener", "orders", "--group", "agents", sql]
    return gw_cli(*args, *(["--json"] if as_json else []), env=ENV, timeout=120)


def test_the_plan_names_each_column_of_the_result(tmp_path: Path, table: str) -> None:
    out = explain(tmp_path, f"select id, upper(ssn) as shout, email, name, born from {table} where id = 1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index("  mask: result columns:")
    assert lines[start + 1:start + 6] == [
        "      id (int4): not masked (no rule; int4 values are not searched by detectors)",
        f"      shout (text) from public.{table}.ssn: masked by rule ssn (redact)",
        "      email (varchar): masked by rule *.email (partial)",
        "      name (text): no rule; values searched by detectors us_ssn",
        "      born (date): not masked (no rule; date values are not searched by detectors)",
    ], out.stdout
    assert lines[-1] == "decision: allowed"
    # SELECT * is expanded from the catalog, as on the data path
    star = explain(tmp_path, f"select * from {table}")
    assert "      ssn (text): masked by rule ssn (redact)" in star.stdout.splitlines(), star.stdout
    # the statement was described, never run: a DELETE explained leaves its rows
    _psql(f"INSERT INTO {table} (id, name) VALUES (1, 'ann')")
    deleted = explain(tmp_path, f"delete from {table} returning ssn")
    assert "      ssn (text): masked by rule ssn (redact)" in deleted.stdout.splitlines(), deleted.stdout
    none = explain(tmp_path, f"delete from {table} where id = 2")
    assert "  mask: the statement returns no rows: no result column to mask" in none.stdout.splitlines()
    count = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAX", "-c",
                            f"select count(*) from {table}"], capture_output=True, text=True, check=True)
    assert count.stdout.strip() == "1"


def test_the_plan_as_json(tmp_path: Path, table: str) -> None:
    out = explain(tmp_path, f"select ssn, name from {table}", as_json=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["result_columns"] == [
        {"name": "ssn", "type": "text", "sources": [f"public.{table}.ssn"]},
        {"name": "name", "type": "text", "sources": [f"public.{table}.name"]},
    ]
    [mask] = [s for s in result["stages"] if s["stage"] == "mask"]
    assert mask["does"].splitlines() == ["result columns:", "ssn (text): masked by rule ssn (redact)",
                                         "name (text): no rule; values searched by detectors us_ssn"]


def test_without_the_upstream_the_text_decides_or_the_plan_says_it_cannot(tmp_path: Path) -> None:
    closed = 9  # the discard port: nothing listens there
    named = explain(tmp_path, "select id, ssn as x from people", port=closed, as_json=True)
    assert named.returncode == 0, named.stderr
    [mask] = [s for s in json.loads(named.stdout)["stages"] if s["stage"] == "mask"]
    assert mask["does"].splitlines() == [
        "result columns (from the statement's text; their types are known when it runs):",
        "id: no rule; values searched by detectors us_ssn",
        "x from public.people.ssn: masked by rule ssn (redact)"]
    star = explain(tmp_path, "select * from people", port=closed, as_json=True)
    result = json.loads(star.stdout)
    assert "cannot reach the upstream database" in result["result_columns"]
    assert result["result_columns"].endswith("decided by the database when the statement runs")
    [mask] = [s for s in result["stages"] if s["stage"] == "mask"]
    assert mask["does"].startswith("masks result columns matching ssn, *.email")
    assert mask["does"].endswith("decided by the database when the statement runs")
