"""``gw audit list`` and ``gw audit sessions``: filters, order, tables and JSON, from records the audit stage
wrote to a real SQLite file (the CLI runs in process through click's runner, and once as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result
from gw.cli import build_cli
from gw.model import Kind, Outcome, Verdict


def gw(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


@pytest.fixture
def trail(tmp_path: Path, open_runtime: Any, new_session: Any, new_command: Any) -> dict[str, Any]:
    """alice on orders: 3 commands (one failed upstream); bob on billing: 2 (one denied); one refused client."""
    sessions: dict[str, Any] = {}

    async def write() -> None:
        async with open_runtime() as rt:
            audit = rt.pipelines["p"].stages[0]
            alice = sessions["alice"] = new_session("alice", ("agents", "oncall"), "orders")
            bob = sessions["bob"] = new_session("bob", ("agents",), "billing")
            for s in (alice, bob):
                await audit.session_started(s)
            steps = [
                (alice, 1, "select * from orders", Verdict.allow(), Outcome(rows=12, tag="SELECT 12", duration=0.0031)),
                (bob, 1, "DROP TABLE invoices", Verdict.deny("DDL needs a DBA", stage="guard", rule="ddl"),
                 Outcome(status="denied")),
                (alice, 2, "select * from nope", Verdict.allow(),
                 Outcome(status="error", error_code="42P01", error_message='relation "nope" does not exist')),
                (bob, 2, "select 1", Verdict.allow(), Outcome(rows=1, tag="SELECT 1", duration=0.5)),
                (alice, 3, "update orders set x = 1", Verdict.allow(), None),  # still running
            ]
            for session, seq, text, verdict, outcome in steps:
                cmd = new_command(session, seq, text, Kind.UNKNOWN)
                await audit.decided(cmd, verdict)
                if outcome is not None:
                    await audit.completed(cmd, outcome)
            await audit.session_ended(bob, "token_expired")
            await audit.session_refused(listener="orders", protocol="postgres", client_address="10.1.1.1:999",
                                        claimed_user="root", reason="invalid_token", message="token expired")

    trio.run(write)
    return {"config": str(tmp_path / "pipeline.toml"), **sessions}


def listed(trail: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    out = gw("audit", "list", "-c", trail["config"], "--json", *args)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)  # type: ignore[no-any-return]


def test_newest_first_with_outcomes(trail: dict[str, Any]) -> None:
    rows = listed(trail)
    assert [r["text"] for r in rows] == ["update orders set x = 1", "select 1", "select * from nope",
                                         "DROP TABLE invoices", "select * from orders"]
    assert all(isinstance(r["id"], int) for r in rows) and rows[0]["id"] > rows[1]["id"]
    latest, bob_ok, failed, denied, first = rows
    assert latest["outcome"] is None
    assert (bob_ok["outcome"]["rows"], bob_ok["outcome"]["tag"]) == (1, "SELECT 1")
    assert (failed["outcome"]["error_code"], failed["outcome"]["status"]) == ("42P01", "error")
    assert (denied["verdict"], denied["stage"], denied["rule"]) == ("denied", "guard", "ddl")
    assert first["groups"] == ["agents", "oncall"] and first["time"].endswith("+00:00")
    assert isinstance(first["ts"], float)
    assert [r["text"] for r in listed(trail, "--limit", "2")] == ["update orders set x = 1", "select 1"]


@pytest.mark.parametrize("args, texts", [
    (["--user", "bob"], ["select 1", "DROP TABLE invoices"]),
    (["--listener", "orders"], ["update orders set x = 1", "select * from nope", "select * from orders"]),
    (["--verdict", "denied"], ["DROP TABLE invoices"]),
    (["--user", "alice", "--verdict", "denied"], []),
    (["--user", "nobody"], []),
    (["--chain", "gw-test", "--limit", "1"], ["update orders set x = 1"]),
])
def test_filters(trail: dict[str, Any], args: list[str], texts: list[str]) -> None:
    assert [r["text"] for r in listed(trail, *args)] == texts


def test_session_filter(trail: dict[str, Any]) -> None:
    assert [r["seq"] for r in listed(trail, "--session", trail["alice"].id)] == [3, 2, 1]


def test_readable_table(trail: dict[str, Any]) -> None:
    out = gw("audit", "list", "-c", trail["config"])
    lines = out.output.splitlines()
    assert lines[0].split() == ["ID", "TIME", "(UTC)", "SUBJECT", "GROUPS", "LISTENER", "SESSION", "STATEMENT",
                                "VERDICT", "RESULT", "DURATION"]
    assert len(lines) == 6
    assert "alice" in lines[5] and "agents,oncall" in lines[5] and "SELECT 12, 12 rows" in lines[5]
    assert "3.1ms" in lines[5]
    assert 'error 42P01: relation "nope" does not exist' in lines[3]
    assert "denied" in lines[4] and "500.0ms" in lines[2]
    none = gw("audit", "list", "-c", trail["config"], "--user", "nobody")
    assert none.output.strip() == "no audited commands match"
    bad = gw("audit", "list", "-c", trail["config"], "--verdict", "maybe")
    assert bad.exit_code == 2 and "'maybe' is not one of" in bad.output


def test_sessions(trail: dict[str, Any]) -> None:
    out = gw("audit", "sessions", "-c", trail["config"], "--json")
    events = [(e["type"], e.get("subject"), e.get("reason")) for e in json.loads(out.output)]
    assert events == [("session_refused", None, "invalid_token"), ("session_end", "bob", "token_expired"),
                      ("session_start", "bob", None), ("session_start", "alice", None)]
    table = gw("audit", "sessions", "-c", trail["config"], "--user", "bob").output.splitlines()
    assert len(table) == 3 and "end" in table[1] and "token_expired" in table[1]
    refused = gw("audit", "sessions", "-c", trail["config"]).output.splitlines()[1]
    assert "refused" in refused and "(claimed root)" in refused and "10.1.1.1:999" in refused


def test_config_from_the_environment_in_a_real_process(trail: dict[str, Any]) -> None:
    gw_bin = str(Path(sys.executable).with_name("gw"))
    done = subprocess.run([gw_bin, "audit", "list", "--json", "--limit", "1"], capture_output=True, text=True, check=False,
                          env={**os.environ, "GW_CONFIG": trail["config"]}, timeout=30)
    assert done.returncode == 0, done.stderr
    assert [r["text"] for r in json.loads(done.stdout)] == ["update orders set x = 1"]
    missing = subprocess.run([gw_bin, "audit", "list"], capture_output=True, text=True, timeout=30, check=False,
                             env={k: v for k, v in os.environ.items() if k != "GW_CONFIG"})
    assert missing.returncode == 2 and "--config" in missing.stderr


def test_a_file_without_storage(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text("[gateway]\n")
    out = gw("audit", "list", "-c", str(config))
    assert out.exit_code == 1 and "has no [storage] table" in out.output
