"""The responses gw itself writes (the default dialect's): JSON bodies agents can read, and the status code for
each refusal.

Every body has ``error`` (what happened and what to do next) and ``reason`` (a stable short code); requests
that became a command also carry ``request_id`` (``SESSION-SEQ``, as in the audit trail).  A protocol whose
clients expect another shape (Kubernetes: a ``metav1.Status``) builds its own body in its
:class:`~gw_httpproxy.dialect.ProxyDialect` and keeps the status mapping of :func:`verdict_status`.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from gw.model import DenyCode, Verdict

#: How each refusal maps to a status.  Approval timeouts are 403, not 504: a 5xx invites automatic retries,
#: and each retry would file a fresh approval request with the humans who did not answer the first.
_DENY_STATUS = {
    DenyCode.POLICY: 403,
    DenyCode.APPROVAL_REQUIRED: 403,
    DenyCode.APPROVAL_DENIED: 403,
    DenyCode.APPROVAL_TIMEOUT: 403,
    DenyCode.UNAVAILABLE: 503,
    DenyCode.INTERNAL: 500,
}

REASON_PHRASES = {100: b"Continue", 101: b"Switching Protocols", 400: b"Bad Request", 401: b"Unauthorized",
                  403: b"Forbidden", 405: b"Method Not Allowed", 408: b"Request Timeout",
                  413: b"Content Too Large", 431: b"Request Header Fields Too Large",
                  500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
                  503: b"Service Unavailable", 504: b"Gateway Timeout"}


def json_body(message: str, reason: str, request_id: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"error": message, "reason": reason}
    if request_id is not None:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def verdict_status(verdict: Verdict) -> int:
    return _DENY_STATUS.get(verdict.code or DenyCode.POLICY, 403)


def verdict_body(verdict: Verdict, request_id: str) -> bytes:
    """``{"error", "reason", "rule", "stage", "request_id", "approval_id"}`` for a refused command."""
    code = (verdict.code or DenyCode.POLICY).value
    message = verdict.reason or "gw refused this request by policy"
    return json_body(message, code, request_id, rule=verdict.rule or None, stage=verdict.stage or None,
                     approval_id=verdict.request_id)


def bearer_challenge(error: str | None) -> bytes:
    """``WWW-Authenticate`` value (RFC 6750 section 3): no ``error`` when no token was presented."""
    return b'Bearer realm="gw"' if error is None else f'Bearer realm="gw", error="{error}"'.encode("ascii")


def standard_phrase(status: int) -> bytes:
    """The reason phrase RFC 9110 gives ``status`` (gw replaces an upstream's own phrase with it when masking
    applies: clients ignore phrases, and an upstream may put anything in one)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""
