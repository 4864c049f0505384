"""The ``notify`` webhook, against a real HTTP server on loopback started by each test."""

from __future__ import annotations

import functools
import json
import logging
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
import trio
from gw_approve.cli import approve_request

SECRET = "T000/B000/XXXXSECRETXXXX"


class Webhook:
    """An HTTP/1.1 endpoint answering each POST with the next status of ``statuses`` (then 200); with
    ``hang``, it reads requests and never answers."""

    def __init__(self, statuses: list[int] | None = None, *, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                self.paths.append(event.target.decode())
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        self.received.append(json.loads(body))
        self.arrived.set()
        if self.hang:
            await trio.sleep_forever()
        status = self.statuses.pop(0) if self.statuses else 200
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
            ("content-length", "0"), ("connection", "close")])) + conn.send(h11.EndOfMessage()))

    async def wait_for(self, count: int, timeout: float = 5) -> None:
        with trio.fail_after(timeout):
            while len(self.received) < count:
                self.arrived = trio.Event()
                await self.arrived.wait()


@asynccontextmanager
async def serving(hook: Webhook) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, hook.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/services/{SECRET}"
        nursery.cancel_scope.cancel()


def stage_with(url: str, mode: str = "retry", **extra: str) -> str:
    keys = "".join(f", {k} = {v}" for k, v in extra.items())
    return (f'{{ use = "approve", approvers = ["dba"], mode = "{mode}", notify = "{url}", '
            f'notify_backoff = "50ms", poll_interval = "50ms"{keys}, '
            'require = [{ kind = "write", flags = ["no_where"], name = "bulk-write" }] }')


async def test_each_new_request_is_posted_and_a_failure_is_retried(approve_gateway: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gw.approve")
    hook = Webhook([503])
    async with serving(hook) as url, approve_gateway(stage_with(url)) as h:
        alice = await h.client("alice")
        reply = await alice.run("delete from payments")
        assert reply.code == "approval_required"
        await hook.wait_for(2)
        first, second = hook.received
        assert first == second, "a retry posts the same payload"
        rid = reply.request_id
        assert second["id"] == rid and second["event"] == "approval.requested"
        assert (second["subject"], second["listener"], second["command"], second["rule"], second["status"]) == (
            "alice", "orders", "delete from payments", "bulk-write", "pending")
        assert second["approvers"] == ["dba"] and second["min_approvals"] == 1
        assert second["approve_command"] == f"gw approvals approve {rid} -c {shlex.quote(str(h.runtime.config.path))}"
        assert "match_key" not in second
        assert hook.paths == [f"/services/{SECRET}"] * 2
        slack = first["text"]  # Slack shows ``text``; structured fields ride along
        assert slack.startswith(f"gw approval request {rid}: alice wants to run `delete from payments` on "
                                "listener orders (rule bulk-write). Approvers: dba.")
        with trio.fail_after(2):
            while h.stage.notifier.counts["delivered"] < 1:
                await trio.sleep(0.01)
        assert h.stage.notifier.counts == {"delivered": 1, "failed": 0, "dropped": 0}
        assert "(HTTP 503); retry 1 of 4" in caplog.text
        assert SECRET not in caplog.text, "the webhook URL's secret path must never be logged"
        await alice.aclose()


async def test_slack_text_does_not_hide_the_command(approve_gateway: Any) -> None:
    """A request's command text is stored as ``text``; in the payload ``text`` is Slack's summary and the
    command moves to ``command``."""
    hook = Webhook()
    async with serving(hook) as url, approve_gateway(stage_with(url)) as h:
        alice = await h.client("alice")
        await alice.run("delete from t")
        await hook.wait_for(1)
        assert hook.received[0]["text"].startswith("gw approval request ")
        assert hook.received[0]["command"] == "delete from t"
        await alice.aclose()


async def test_a_hanging_webhook_never_delays_the_decision(approve_gateway: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    hook = Webhook(hang=True)
    async with serving(hook) as url, approve_gateway(stage_with(url, "hold", notify_timeout='"0.2s"',
                                                                notify_attempts="2")) as h:
        alice = await h.client("alice")
        await alice.send("delete from t")
        notice = await alice.readline()
        rid = notice.split("Request ")[1].split()[0]
        await approve_request(h.runtime, rid, token="dana")
        assert (await alice.reply()).ran
        await hook.wait_for(2)
        with trio.fail_after(3):
            while h.stage.notifier.counts["failed"] < 1:
                await trio.sleep(0.02)
        assert "after 2 attempt(s); giving up" in caplog.text
        await alice.aclose()


async def test_a_client_error_is_not_retried(approve_gateway: Any) -> None:
    hook = Webhook([400])
    async with serving(hook) as url, approve_gateway(stage_with(url)) as h:
        alice = await h.client("alice")
        await alice.run("delete from t")
        with trio.fail_after(3):
            while h.stage.notifier.counts["failed"] < 1:
                await trio.sleep(0.02)
        await trio.sleep(0.2)
        assert len(hook.received) == 1
        await alice.aclose()


async def test_an_unreachable_webhook_is_retried_then_given_up(approve_gateway: Any) -> None:
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with approve_gateway(stage_with(f"http://127.0.0.1:{port}/hook", notify_attempts="3")) as h:
        alice = await h.client("alice")
        assert (await alice.run("delete from t")).code == "approval_required"
        with trio.fail_after(3):
            while h.stage.notifier.counts["failed"] < 1:
                await trio.sleep(0.02)
        await alice.aclose()
