"""Telling approvers about new requests through a webhook, without ever delaying a decision.

The stage only drops a payload into a bounded in-memory queue (never blocks, never raises).  A trio system
task owned by the notifier posts each payload in its own child task, retrying transient failures with
exponential backoff, so one slow or failing endpoint delays nobody: not the held command, not the next
notification.  Stages have no nursery of their own, and a system task lives exactly as long as the trio run
that serves the gateway, which is the lifetime wanted here; :meth:`WebhookNotifier.aclose` gives queued
deliveries a short grace period at shutdown and then cancels them.

The webhook URL usually embeds a secret (Slack's does), so logs name only its scheme and host.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio
from gw.text import escape_visible

from .records import ApprovalRequest
from .text import clock, human_duration, params_text, snippet

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("gw.approve.notify")

#: Payloads waiting for delivery; beyond this, new ones are dropped (and logged) rather than held in memory.
QUEUE_SIZE = 256
#: Longest pause between two attempts of one delivery.
MAX_BACKOFF = 60.0


def request_payload(request: ApprovalRequest, config: str = "") -> dict[str, Any]:
    """The JSON posted for a new request: Slack's ``text`` (a readable summary) plus the request's structured
    fields, with the command text under ``command`` (``text`` belongs to Slack)."""
    approvers = ", ".join(request.approvers)
    where = f" -c {shlex.quote(config)}" if config else ""
    need = "" if request.min_approvals == 1 else f" ({request.min_approvals} approvals needed)"
    params = f" with parameters {snippet(params_text(request.params))}" if request.params else ""
    rows = f" It changes {escape_visible(request.rows_note)}." if request.rows_note else ""
    summary = (f"gw approval request {request.id}: {escape_visible(request.subject)} wants to run "
               f"`{snippet(request.text)}`{params} on listener {request.listener} "
               f"(rule {escape_visible(request.rule)})."
               f"{rows} Approvers: {approvers}{need}. "
               f"Approve: gw approvals approve {request.id}{where} | deny: gw approvals deny {request.id}{where} "
               "--reason ... "
               f"| expires {clock(request.expires)} (in {human_duration(request.expires - request.created)}).")
    fields = request.to_json(request.created)
    fields["command"] = fields.pop("text")
    return {"text": summary, "event": "approval.requested", **fields,
            "approve_command": f"gw approvals approve {request.id}{where}",
            "deny_command": f"gw approvals deny {request.id}{where} --reason REASON"}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


class WebhookNotifier:
    """Delivers payloads to one webhook URL in the background, retrying with backoff."""

    def __init__(self, url: str, *, attempts: int, backoff: float, timeout: float,
                 spawn: Callable[..., None]) -> None:
        self.url = url
        self._spawn = spawn
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._send: trio.MemorySendChannel[dict[str, Any]] | None = None
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        #: Outcomes, for operators' logs and for tests: ``delivered`` / ``failed`` / ``dropped`` counts.
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0}

    def _start(self) -> trio.MemorySendChannel[dict[str, Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE_SIZE)
        self._send = send
        self._spawn(self._run, receive, name=f"gw approve webhook {_where(self.url)}")
        return send

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue a payload for delivery; returns at once, whatever the endpoint does."""
        send = self._send if self._send is not None else self._start()
        try:
            send.send_nowait(payload)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.counts["dropped"] += 1
            log.error("approve: webhook queue for %s is full or closed; notification for request %s dropped "
                      "(approvers can still see it with gw approvals list)", _where(self.url),
                      payload.get("id", "?"))

    async def aclose(self, grace: float = 2.0) -> None:
        """Stop taking payloads, let queued deliveries finish for up to ``grace`` seconds, then cancel."""
        if self._send is None:
            return
        self._send.close()
        with trio.move_on_after(grace):
            await self._done.wait()
        self._scope.cancel()

    async def _run(self, receive: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        import httpx  # about 5 MB with what it pulls in: imported when a webhook is configured, not at start

        try:
            with self._scope:
                async with httpx.AsyncClient(timeout=self.timeout) as client, trio.open_nursery() as nursery, \
                        receive:
                    async for payload in receive:
                        nursery.start_soon(self._deliver, client, payload)
        except Exception:  # logged here with the webhook named; the task ends quietly
            log.exception("approve: webhook notifier for %s stopped", _where(self.url))
        finally:
            self._done.set()

    async def _deliver(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
        import httpx

        delay = self.backoff
        rid = payload.get("id", "?")
        for attempt in range(1, self.attempts + 1):
            retry = True
            try:
                response = await client.post(self.url, json=payload)
                if response.is_success:
                    self.counts["delivered"] += 1
                    log.debug("approve: webhook accepted request %s", rid)
                    return
                problem = f"HTTP {response.status_code}"
                # Other 4xx answers say the request itself is wrong: sending it again cannot help.
                retry = response.status_code >= 500 or response.status_code in (408, 425, 429)
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if not retry or attempt == self.attempts:
                self.counts["failed"] += 1
                log.error("approve: webhook %s failed for request %s (%s) after %d attempt(s); giving up. "
                          "Approvers can still see it with gw approvals list", _where(self.url), rid, problem,
                          attempt)
                return
            log.warning("approve: webhook %s failed for request %s (%s); retry %d of %d in %s",
                        _where(self.url), rid, problem, attempt, self.attempts - 1, human_duration(delay))
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
