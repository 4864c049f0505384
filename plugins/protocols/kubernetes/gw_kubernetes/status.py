"""gw's own responses as ``metav1.Status`` objects, which kubectl prints as ``Error from server (Forbidden): ...``.

kubectl decodes an error body of kind ``Status`` and prints ``Error from server (<reason>): <message>``; the
``reason`` must be one of Kubernetes' ``StatusReason`` values for that status code, so gw's own short code
(``policy``, ``approval_denied``, ``missing_token`` ...) goes into ``details.causes`` instead, with the request
id (as in the audit trail) and the approval id where there is one.
"""

from __future__ import annotations

import json
from typing import Any

from gw.model import DenyCode, Verdict
from gw_httpproxy import Reply
from gw_httpproxy.replies import verdict_status

#: HTTP status -> ``metav1.StatusReason``.
STATUS_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                  405: "MethodNotAllowed", 406: "NotAcceptable", 408: "Timeout", 409: "Conflict",
                  413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
                  429: "TooManyRequests", 431: "BadRequest", 500: "InternalError", 501: "BadRequest",
                  502: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def status_body(code: int, message: str, cause: str, *, request_id: str | None = None,
                **extra: Any) -> bytes:
    causes: list[dict[str, str]] = [{"reason": f"gw:{cause}", "message": message}]
    if request_id is not None:
        causes.append({"reason": "gw:request_id", "message": request_id})
    for key, value in extra.items():
        if value is not None:
            causes.append({"reason": f"gw:{key}", "message": str(value)})
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": STATUS_REASONS.get(code, "InternalError" if code >= 500 else "BadRequest"),
            "details": {"causes": causes}, "code": code}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def status_reply(code: int, reason: str, message: str, *, request_id: str | None = None,
                 **extra: Any) -> Reply:
    return Reply(code, status_body(code, message, reason, request_id=request_id, **extra), reason=reason,
                 message=message)


def verdict_message(verdict: Verdict, request_id: str) -> str:
    """What the agent reads: gw's reason, then where to look it up."""
    reason = verdict.reason or "gw refused this request by policy"
    where = [f"request {request_id}"]
    if verdict.rule:
        where.insert(0, f"rule {verdict.rule}")
    if verdict.request_id:
        where.append(f"approval {verdict.request_id}")
    return f"gw: {reason} ({', '.join(where)})"


def verdict_reply(verdict: Verdict, request_id: str) -> Reply:
    code = verdict_status(verdict)
    cause = (verdict.code or DenyCode.POLICY).value
    return status_reply(code, cause, verdict_message(verdict, request_id), request_id=request_id,
                        rule=verdict.rule or None, stage=verdict.stage or None, approval_id=verdict.request_id)
