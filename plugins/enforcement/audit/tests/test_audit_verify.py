"""Tampering with the SQLite file directly (as someone with access to the disk would) and ``gw audit verify``
naming the record that was altered, inserted or deleted."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gw_audit.cli
import pytest
import trio
from click.testing import CliRunner, Result
from gw.cli import build_cli
from gw.model import Kind
from gw_audit.chain import GENESIS, record_hash
from gw_audit.verify import Anchor, ChainReport, verify_store


async def write_trail(open_runtime: Any, new_session: Any, new_command: Any, ctx: Any, commands: int = 6) -> None:
    """A session start, then ``commands`` commands: records 1 .. commands + 1 of chain gw-test."""
    async with open_runtime() as rt:
        pipeline = rt.pipelines["p"]
        session = new_session()
        await pipeline.session_started(session)
        for i in range(1, commands + 1):
            await pipeline.decide(new_command(session, i, f"select {i}", Kind.READ), ctx)


async def verify(open_runtime: Any, anchor: Anchor | None = None) -> ChainReport:
    async with open_runtime() as rt:
        [report] = await verify_store(rt.store, anchor=anchor)
        return report


def load(conn: sqlite3.Connection, seq: int) -> dict[str, Any]:
    return json.loads(conn.execute("SELECT data FROM entries WHERE seq = ?", (seq,)).fetchone()[0])


def save(conn: sqlite3.Connection, seq: int, record: dict[str, Any]) -> None:
    conn.execute("UPDATE entries SET data = ? WHERE seq = ?", (json.dumps(record), seq))


def make_room(conn: sqlite3.Connection, at: int) -> None:
    """Renumber records from ``at`` on, so a forged record can be slipped in at ``at``."""
    conn.execute("UPDATE entries SET seq = seq + 100 WHERE seq >= ?", (at,))
    conn.execute("UPDATE entry_fields SET seq = seq + 100 WHERE seq >= ?", (at,))


@pytest.fixture
async def trail(open_runtime: Any, new_session: Any, new_command: Any, ctx: Any,
                db: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
    await write_trail(open_runtime, new_session, new_command, ctx)
    return db()


async def test_an_intact_trail_verifies(trail: sqlite3.Connection, open_runtime: Any) -> None:
    report = await verify(open_runtime)
    assert report.ok and report.complete and report.verified == 7
    assert (report.first_position, report.last_position) == (1, 7)
    assert report.head == load(trail, 7)["hash"] and load(trail, 1)["prev"] == GENESIS


async def test_an_altered_record_is_named(trail: sqlite3.Connection, open_runtime: Any) -> None:
    trail.execute("UPDATE entries SET data = json_set(data, '$.text', 'select 42') WHERE seq = 4")
    report = await verify(open_runtime)
    assert not report.ok and report.problem_id == 4 and report.verified == 3
    assert report.problem is not None
    assert report.problem.startswith("record 4 (position 4, ") and "was altered" in report.problem


async def test_an_altered_record_with_a_recomputed_hash_breaks_the_next_link(
        trail: sqlite3.Connection, open_runtime: Any) -> None:
    record = load(trail, 4)
    record["verdict"] = "denied"
    record["hash"] = record_hash(record)
    save(trail, 4, record)
    report = await verify(open_runtime)
    assert report.problem_id == 5 and report.problem is not None
    assert "record 5 (position 5" in report.problem and "does not link to record 4" in report.problem


async def test_a_deleted_record_is_named(trail: sqlite3.Connection, open_runtime: Any) -> None:
    trail.execute("DELETE FROM entries WHERE seq IN (3, 4)")
    report = await verify(open_runtime)
    assert report.problem_id == 5 and report.problem is not None
    assert report.problem.startswith("chain positions 3-4 deleted: missing between record 2 (position 2) and "
                                     "record 5")


@pytest.mark.parametrize("forge", ["linked", "naive"])
async def test_an_inserted_record_is_named(trail: sqlite3.Connection, open_runtime: Any, forge: str) -> None:
    make_room(trail, 4)
    fake = load(trail, 104)
    fake["text"] = "select 'forged'"
    if forge == "linked":  # chained onto record 3 with a valid hash, like the real record 4
        fake["prev"] = load(trail, 3)["hash"]
        fake["hash"] = record_hash(fake)
    trail.execute("INSERT INTO entries (seq, stream, ts, data) VALUES (4, 'audit', ?, ?)",
                  (time.time(), json.dumps(fake)))
    report = await verify(open_runtime)
    assert report.problem_id == 4 and report.problem is not None
    assert report.problem.startswith("record 4 (position 4, ") and report.verified == 3
    if forge == "linked":
        assert "was inserted: it is not part of the chain (record 104 (position 4, " in report.problem
        assert "holds the same position and record 105 links to that one" in report.problem
    else:
        assert "was inserted: it is not part of the chain (record 104 links directly to record 3)" in report.problem


async def test_a_pruned_start_is_reported(trail: sqlite3.Connection, open_runtime: Any) -> None:
    trail.execute("UPDATE entries SET ts = ts - 8640000 WHERE seq <= 3")
    async with open_runtime() as rt:
        assert await rt.store.prune("audit", time.time() - 86400) == 3
    report = await verify(open_runtime)
    assert report.ok and not report.complete
    assert (report.first_id, report.first_position, report.verified) == (4, 4, 4)


async def test_deleting_the_newest_records_needs_an_anchor(trail: sqlite3.Connection,
                                                           open_runtime: Any) -> None:
    head = (await verify(open_runtime)).head
    assert head is not None
    trail.execute("DELETE FROM entries WHERE seq >= 6")
    assert (await verify(open_runtime)).ok  # records alone cannot show it
    report = await verify(open_runtime, Anchor.parse(f"7:{head[:16]}"))
    assert not report.ok and report.problem is not None
    assert "ends at position 5, before the anchored position 7" in report.problem
    assert (await verify(open_runtime, Anchor.parse(f"5:{load(trail, 5)['hash']}"))).ok
    wrong = await verify(open_runtime, Anchor.parse("5:" + "ab" * 8))
    assert wrong.problem is not None and "anchored position 5 has hash" in wrong.problem


async def test_a_restarted_gateway_continues_its_chain(trail: sqlite3.Connection, open_runtime: Any,
                                                       new_session: Any, new_command: Any, ctx: Any) -> None:
    await write_trail(open_runtime, new_session, new_command, ctx, commands=2)
    report = await verify(open_runtime)
    assert report.ok and report.verified == 10
    assert load(trail, 8)["prev"] == load(trail, 7)["hash"]


def test_anchor_syntax() -> None:
    assert Anchor.parse("12:ABCDEF0123456789") == Anchor(12, "abcdef0123456789")
    for bad in ("12", "x:abcdef012345", "3:abc", "3:zzzzzzzzzzzzzzzz"):
        with pytest.raises(ValueError, match="POSITION:HASH"):
            Anchor.parse(bad)


# -- the command line ---------------------------------------------------------------------------------------


def gw(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def test_cli_verify(tmp_path: Path, open_runtime: Any, new_session: Any, new_command: Any, ctx: Any,
                    db: Callable[[], sqlite3.Connection]) -> None:
    config = str(tmp_path / "pipeline.toml")
    trio.run(write_trail, open_runtime, new_session, new_command, ctx)
    ok = gw("audit", "verify", "-c", config)
    assert ok.exit_code == 0
    assert ok.output.startswith("OK: chain 'gw-test': 7 records verified (positions 1-7); head 7:")
    head = ok.output.split("head ")[1].split()[0]
    assert gw("audit", "verify", "-c", config, "--anchor", head).exit_code == 0

    db().execute("UPDATE entries SET data = json_set(data, '$.subject', 'bob') WHERE seq = 3")
    failed = gw("audit", "verify", "-c", config)
    assert failed.exit_code == 1
    assert failed.output.startswith("FAILED: chain 'gw-test': record 3 (position 3, ")
    assert "was altered" in failed.output and "2 records before it verified" in failed.output
    as_json = json.loads(gw("audit", "verify", "-c", config, "--json").output)
    assert as_json[0]["ok"] is False and as_json[0]["problem_id"] == 3

    assert gw("audit", "verify", "-c", config, "--chain", "other").exit_code == 1
    bad = gw("audit", "verify", "-c", config, "--anchor", "nope")
    assert bad.exit_code == 2 and "POSITION:HASH" in bad.output


def test_cli_verify_reports_a_pruned_start(tmp_path: Path, open_runtime: Any, new_session: Any,
                                           new_command: Any, ctx: Any, db: Callable[[], sqlite3.Connection]) -> None:
    config = str(tmp_path / "pipeline.toml")
    trio.run(write_trail, open_runtime, new_session, new_command, ctx)
    db().execute("UPDATE entries SET ts = ts - 8640000 WHERE seq <= 2")
    assert gw("storage", "prune", "-c", config, "--older-than", "30d").exit_code == 0
    out = gw("audit", "verify", "-c", config)
    assert out.exit_code == 0
    assert "5 records verified (positions 3-7)" in out.output
    assert "the stored chain starts at position 3 (record 3," in out.output and "pruned by retention" in out.output


def test_cli_verify_of_an_empty_store(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text('[storage]\nuse = "sqlite"\n')
    out = gw("audit", "verify", "-c", str(config))
    assert out.exit_code == 0 and out.output.strip() == "OK: no audit records yet"


def test_cli_verify_of_a_record_that_is_no_longer_json(tmp_path: Path, open_runtime: Any, new_session: Any,
                                                       new_command: Any, ctx: Any,
                                                       db: Callable[[], sqlite3.Connection]) -> None:
    trio.run(write_trail, open_runtime, new_session, new_command, ctx)
    db().execute("UPDATE entries SET data = 'garbage' WHERE seq = 5")
    out = gw("audit", "verify", "-c", str(tmp_path / "pipeline.toml"))
    assert out.exit_code == 1
    assert "record 5 of stream 'audit' is not a JSON object in the database (the file was edited" in out.output


async def test_verify_reports_progress_page_by_page(trail: sqlite3.Connection, open_runtime: Any) -> None:
    seen: list[tuple[int, int]] = []
    async with open_runtime() as rt:
        reports = await verify_store(rt.store, page=3, progress=lambda read, newest: seen.append((read, newest)))
    assert reports[0].ok and seen == [(3, 7), (6, 7), (7, 7)]


def test_cli_verify_shows_progress_on_a_terminal_only(tmp_path: Path, open_runtime: Any, new_session: Any,
                                                      new_command: Any, ctx: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = str(tmp_path / "pipeline.toml")
    trio.run(write_trail, open_runtime, new_session, new_command, ctx)
    quiet = CliRunner().invoke(build_cli(), ["audit", "verify", "-c", config], catch_exceptions=False)
    assert "verifying" not in quiet.stderr
    monkeypatch.setattr(gw_audit.cli, "_progress_shown", lambda: True)
    shown = CliRunner().invoke(build_cli(), ["audit", "verify", "-c", config], catch_exceptions=False)
    assert shown.exit_code == 0 and "verifying: 7 records read (newest position 7)" in shown.stderr
    assert shown.stdout.startswith("OK: chain 'gw-test': 7 records verified")
