"""Fixtures of the audit stage's tests: a real SQLite store in ``tmp_path``, model objects, and small inline
stages and a detector (registered on a per-test plugin manager) that produce each kind of verdict."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pluggy
import pytest
from gw import hookimpl
from gw.model import Command, Identity, Kind, Session, Verdict
from gw.runtime import Runtime
from gw.stage import Stage
from gw.testing import write_pipeline

GATEWAY = "gw-test"


class DenyDrops(Stage):
    """Denies DDL, like a guard rule would."""

    name = "deny_drops"

    def evaluate(self, command: Command) -> Verdict | None:
        if command.kind is Kind.DDL:
            return Verdict.deny("DDL needs a DBA; ask one", rule="ddl")
        return None


class Approvals(Stage):
    """``hold me`` is pending approval (retry mode); ``approved`` passed an approval by bob."""

    name = "approvals"

    def evaluate(self, command: Command) -> Verdict | None:
        if command.text == "hold me":
            return Verdict.pending("req-1", "needs approval: gw approvals approve req-1", rule="writes")
        if command.text == "approved":
            return Verdict.allow(rule="writes", request_id="req-0", approved_by=("bob",))
        return None


class DigitsDetector:
    """Finds runs of 9 digits (stands in for the mask plugin's us_ssn detector)."""

    name = "nine_digits"

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\b\d{9}\b", text)]


class AuditTestPlugin:
    @hookimpl
    def gw_register_stages(self, register: Callable[[type[Any]], None]) -> None:
        register(DenyDrops)
        register(Approvals)

    @hookimpl
    def gw_register_detectors(self, register: Callable[[Any], None]) -> None:
        register(DigitsDetector())


@pytest.fixture
def audit_pm(gw_plugin_manager: pluggy.PluginManager, gw_register: Callable[..., None]) -> pluggy.PluginManager:
    gw_register(AuditTestPlugin(), "audit-test")
    return gw_plugin_manager


def pipeline_text(stages: str = '{ use = "audit" }', extra: str = "") -> str:
    return (f'[gateway]\nname = "{GATEWAY}"\n\n[storage]\nuse = "sqlite"\n\n'
            f"[pipelines.p]\nstages = [{stages}]\n{extra}")


@pytest.fixture
def open_runtime(tmp_path: Path, audit_pm: pluggy.PluginManager
                 ) -> Callable[..., Any]:
    """``async with open_runtime(stages=...) as rt``: a runtime with open store and pipelines."""
    @asynccontextmanager
    async def opened(stages: str = '{ use = "audit" }', extra: str = "") -> AsyncIterator[Runtime]:
        rt = Runtime.build(write_pipeline(tmp_path, pipeline_text(stages, extra)), pm=audit_pm)
        async with rt.opened(serving=True):
            yield rt

    return opened


def make_session(subject: str = "alice", groups: tuple[str, ...] = ("agents",), listener: str = "orders",
                 **kw: Any) -> Session:
    values: dict[str, Any] = {
        "id": Session.new_id(), "listener": listener, "protocol": "postgres",
        "identity": Identity(subject, groups, provider="dev", expires_at=time.time() + 3600),
        "client_address": "127.0.0.1:50000", "upstream": "127.0.0.1:5432/test", "started_at": time.time(),
        "claimed_user": "agent", "attributes": {"database": "test"},
    }
    values.update(kw)
    return Session(**values)


def make_command(session: Session, seq: int, text: str, kind: Kind = Kind.READ, **kw: Any) -> Command:
    verb = text.split()[0].lower() if text else ""
    return Command(session, seq, text, "sql", kind, verb, **kw)


class NoNotice:
    async def notice(self, message: str) -> None:
        raise AssertionError("the audit stage never talks to the client")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Connections to the test's database file, as another process (or an attacker) would open it."""
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(str(tmp_path / ".gw" / "gw.db"), isolation_level=None, timeout=2)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def new_session() -> Callable[..., Session]:
    return make_session


@pytest.fixture
def new_command() -> Callable[..., Command]:
    return make_command


@pytest.fixture
def ctx() -> NoNotice:
    return NoNotice()
