"""``gw approvals``: the real command in a subprocess against a gateway holding a command, and every
subcommand's output and errors through click."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import gw.cli
import gw.cliutil
import pluggy
import pytest
import trio
from approve_doubles import CANONICAL, LineClient, pipeline_text
from click.testing import CliRunner
from gw.plugins import Registry
from gw.runtime import Runtime
from gw.testing import issue_token, running_gateway, write_pipeline
from gw_approve.cli import approvals
from gw_approve.ledger import ApprovalLedger
from gw_approve.records import ApprovalRequest

SECRET = "approve-tests-secret-0123456789abcdef"  # HS256 needs >= 32 bytes

JWT = """[identity.tokens]
use = "jwt"
issuer = "https://gw.test"
audience = "gw"
secret_env = "GW_APPROVE_TEST_SECRET"
"""


def shared_store() -> str:
    """A store two processes share: the real sqlite backend when installed, else the file-backed double
    (one variant only: each ``gw`` subprocess costs most of a second)."""
    if importlib.util.find_spec("gw_sqlite") is not None:
        return 'use = "sqlite"'
    return 'use = "memory"\npath = "state/approvals.json"'


async def gw_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    exe = str(Path(sys.executable).with_name("gw"))
    done = await trio.run_process([exe, *args], capture_stdout=True, capture_stderr=True, check=False,
                                  env={**os.environ, **env})
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_gw_approvals_approve_subprocess_releases_a_held_command(
        tmp_path: Path, doubles: pluggy.PluginManager, doubles_distribution: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("gw_jwt") is None:
        pytest.skip("the jwt identity plugin (gw_jwt) is not installed")
    monkeypatch.setenv("GW_APPROVE_TEST_SECRET", SECRET)
    path = write_pipeline(tmp_path, pipeline_text(CANONICAL, shared_store(), str(tmp_path / "data"),
                                                  identity=JWT))
    env = {**doubles_distribution, "GW_APPROVE_TEST_SECRET": SECRET, "GW_CONFIG": str(path)}
    async with running_gateway(path, pm=doubles) as gw:
        rt = gw.runtime
        alice_token = issue_token(rt, "alice", ["agents"])
        alice = await LineClient.connect(gw.port("orders"), alice_token)
        await alice.send("DELETE FROM t")
        notice = await alice.readline()
        rid = notice.split("Request ")[1].split()[0]
        assert notice.endswith(f"gw approvals approve {rid} -c {shlex.quote(str(rt.config.path))} (expires in 10m)")

        code, out, err = await gw_cli(env, "approvals", "approve", rid, "--token", alice_token)
        assert code == 1 and f"alice made request {rid} and cannot approve it" in err
        bob_token = issue_token(rt, "bob", ["agents", "readers"])
        code, out, err = await gw_cli(env, "approvals", "approve", rid, "--token", bob_token)
        assert code == 1
        assert f"you are in groups agents, readers; approvers for request {rid} must be in dba" in err
        code, out, err = await gw_cli(env, "approvals", "list", "--json")
        assert code == 0 and [r["id"] for r in json.loads(out)] == [rid]

        dana_token = issue_token(rt, "dana", ["dba"])
        code, out, err = await gw_cli({**env, "GW_TOKEN": dana_token}, "approvals", "approve", rid,
                                      "--reason", "ticket 42")
        assert (code, err) == (0, "")
        assert out.strip() == f"approved {rid}: the held command of alice runs now"
        assert (await alice.reply()).ran
        await alice.aclose()
        shown = (await ApprovalLedger(rt.store).require(rid)).to_json(time.time())
        assert shown["status"] == "approved" and shown["approvals"][0]["who"] == "dana"
        assert shown["approvals"][0]["reason"] == "ticket 42"


# -- every subcommand through click -----------------------------------------------------------------------------


@pytest.fixture
def cli_file(tmp_path: Path, doubles: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pipeline file with a file-backed store, and the CLI's registry pointed at the test doubles."""
    monkeypatch.setattr(gw.cliutil, "_registry", Registry.build(doubles))
    stage = CANONICAL.replace('mode = "hold"', 'mode = "retry", max_grant = "2h"')
    return write_pipeline(tmp_path, pipeline_text(stage, 'use = "memory"\npath = "approvals.json"',
                                                  str(tmp_path / "data")))


def seed(path: Path, pm: pluggy.PluginManager, *requests: dict[str, Any]) -> list[str]:
    """Store requests as the stage would have made them; returns their ids."""
    async def main() -> list[str]:
        rt = Runtime.build(path, pm=pm)
        async with rt.opened():
            ledger = ApprovalLedger(rt.store)  # type: ignore[arg-type]
            now = time.time()
            ids = []
            for i, extra in enumerate(requests):
                request = ApprovalRequest(
                    id="", listener="orders", pipeline="agents", session="s1", subject="alice",
                    groups=("agents",), client_address="127.0.0.1:5000", text=f"delete from t{i}",
                    language="sql", kind="write", verb="delete", objects=(f"public.t{i}",), flags=("no_where",),
                    rule='{ kind = "write" }', message="", mode="retry", approvers=("dba",), min_approvals=1,
                    created=now + i, expires=now + 600, use_within=600.0)
                ids.append((await ledger.open_request(request.evolve(**extra))).id)
            return ids

    return trio.run(main)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(approvals, list(args), env=env, catch_exceptions=False)


def test_list_and_show(cli_file: Path, doubles: pluggy.PluginManager) -> None:
    pending, old = seed(cli_file, doubles, {}, {"expires": time.time() - 1})
    c = str(cli_file)
    result = invoke("list", "-c", c)
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "LISTENER", "SUBJECT", "APPROVALS", "EXPIRES", "ROWS",
                              "COMMAND"]
    assert row.startswith(f"{pending}  pending") and "alice" in row and "0/1" in row and "delete from t0" in row
    listed = json.loads(invoke("list", "-c", c, "--json").output)
    assert [r["id"] for r in listed] == [pending]
    assert listed[0]["flags"] == ["no_where"] and listed[0]["objects"] == ["public.t0"]
    assert [r["id"] for r in json.loads(invoke("list", "-c", c, "--json", "--all").output)] == [old, pending]
    expired = json.loads(invoke("list", "-c", c, "--json", "--status", "expired").output)
    assert [(r["id"], r["status"]) for r in expired] == [(old, "expired")]
    bad = CliRunner().invoke(approvals, ["list", "-c", c, "--status", "bogus"])
    assert bad.exit_code == 2 and "'bogus' is not one of" in bad.output

    shown = invoke("show", "-c", c, pending).output
    assert f"id:             {pending}" in shown and "command:        delete from t0" in shown
    assert "approvers:      dba (1 needed)" in shown
    assert json.loads(invoke("show", "-c", c, "--json", pending).output)["id"] == pending
    missing = CliRunner().invoke(approvals, ["show", "-c", c, "zzzzzzzzzz"])
    assert missing.exit_code == 1
    assert "there is no approval request 'zzzzzzzzzz'; list the pending ones with: gw approvals list" in \
        missing.output


def test_approve_and_deny(cli_file: Path, doubles: pluggy.PluginManager) -> None:
    first, second, third = seed(cli_file, doubles, {}, {}, {"min_approvals": 2})
    c = str(cli_file)
    no_token = CliRunner().invoke(approvals, ["approve", "-c", c, first], env={"GW_TOKEN": ""})
    assert no_token.exit_code == 1 and "give your approver token with --token TOKEN or in $GW_TOKEN" in \
        no_token.output
    out = invoke("approve", "-c", c, first, "--token", "dana").output.strip()
    assert out == f"approved {first}: alice may now send the statement again; it runs once (within 10m)"
    again = CliRunner().invoke(approvals, ["approve", "-c", c, first, "--token", "erin"])
    assert again.exit_code == 1 and f"request {first} was already approved by dana" in again.output

    no_reason = CliRunner().invoke(approvals, ["deny", "-c", c, second, "--token", "dana"])
    assert no_reason.exit_code == 2 and "Missing option '--reason'" in no_reason.output
    out = invoke("deny", "-c", c, second, "--reason", "not today", env={"GW_TOKEN": "dana"}).output
    assert out.strip() == f"denied {second} (alice: delete from t1)"
    shown = json.loads(invoke("show", "-c", c, "--json", second).output)
    assert (shown["status"], shown["decided_by"], shown["reason"]) == ("denied", "dana", "not today")

    out = invoke("approve", "-c", c, third, "--token", "dana").output.strip()
    assert out == f"recorded your approval of {third}; it needs 1 more from other members of dba"


def test_grants(cli_file: Path, doubles: pluggy.PluginManager) -> None:
    c = str(cli_file)
    bad = CliRunner().invoke(approvals, ["grant", "-c", c, "--user", "alice", "--listener", "orders",
                                         "--for", "soon", "--token", "dana"])
    assert bad.exit_code == 2 and "expected a duration" in bad.output
    too_long = CliRunner().invoke(approvals, ["grant", "-c", c, "--user", "alice", "--listener", "orders",
                                              "--for", "3h", "--token", "dana"])
    assert too_long.exit_code == 1 and "longer than max_grant (2h)" in too_long.output
    out = invoke("grant", "-c", c, "--user", "alice", "--listener", "orders", "--for", "30m", "--token", "dana",
                 "--reason", "incident 9").output
    assert out.startswith("granted alice on listener orders until ")
    grant_id = out.split("(grant ")[1].split(";")[0]
    listed = json.loads(invoke("grants", "-c", c, "--json").output)
    assert [(g["id"], g["state"], g["granted_by"], g["reason"]) for g in listed] == [
        (grant_id, "active", "dana", "incident 9")]
    assert "active" in invoke("grants", "-c", c).output
    assert invoke("revoke-grant", "-c", c, grant_id, "--token", "erin").output.strip() == \
        f"revoked grant {grant_id} (alice on orders)"
    assert json.loads(invoke("grants", "-c", c, "--json").output) == []
    assert json.loads(invoke("grants", "-c", c, "--json", "--all").output)[0]["state"] == "revoked"


def test_a_listener_without_approve_stage_takes_no_grants(tmp_path: Path, doubles: pluggy.PluginManager,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gw.cliutil, "_registry", Registry.build(doubles))
    path = write_pipeline(tmp_path, pipeline_text("", 'use = "memory"', str(tmp_path)))
    result = CliRunner().invoke(approvals, ["grant", "-c", str(path), "--user", "alice", "--listener", "orders",
                                            "--for", "1h", "--token", "dana"])
    assert result.exit_code == 1
    assert "listener 'orders' has no approve stage in its pipeline 'agents', so a grant would change nothing" in \
        result.output


def test_policy_explain_reports_approval_required(cli_file: Path) -> None:
    base = ["policy", "explain", "-c", str(cli_file), "--listener", "orders", "--user", "alice", "--group", "agents"]
    held = CliRunner().invoke(gw.cli.cli, [*base, "delete from t"])
    assert held.exit_code == 2, held.output
    assert 'approve: pending (rule { kind = "write", flags = ["no_where"] }): needs approval by a member of dba' \
        in held.output
    assert held.output.strip().endswith("decision: approval required")
    fine = CliRunner().invoke(gw.cli.cli, [*base, "delete from t where id = 1"])
    assert fine.exit_code == 0 and "approve: -" in fine.output and "no rule matched" not in fine.output


def test_revoked_people_cannot_decide(cli_file: Path, doubles: pluggy.PluginManager) -> None:
    text = cli_file.read_text().replace('allow_groups = ["agents"]',
                                        'allow_groups = ["agents"]\ndeny_subjects = ["dana"]')
    cli_file.write_text(text)
    (rid,) = seed(cli_file, doubles, {})
    result = CliRunner().invoke(approvals, ["approve", "-c", str(cli_file), rid, "--token", "dana"])
    assert result.exit_code == 1
    assert "subject 'dana' is denied on listener 'orders'" in result.output
    assert "cannot decide this listener's requests" in result.output
    assert invoke("approve", "-c", str(cli_file), rid, "--token", "erin").exit_code == 0
