"""What an HTTP request is as a :class:`gw.model.Command`: the method decides the kind, the path is the object.

``kind`` is ``read`` for GET/HEAD/OPTIONS, ``write`` for POST/PUT/PATCH/DELETE and ``unknown`` for anything
else (fail closed: an unfamiliar method is never assumed harmless).  With ``method_override = "honour"`` the
method is the one the request asks the upstream to act as.
"""

from __future__ import annotations

from gw.model import Kind
from gw_httpproxy import CommandSpec, ProxyDialect, RequestView, Target, normalize_target

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def command_kind(method: str) -> Kind:
    if method in READ_METHODS:
        return Kind.READ
    if method in WRITE_METHODS:
        return Kind.WRITE
    return Kind.UNKNOWN


def command_text(method: str, target: Target) -> str:
    """``METHOD path?query`` -- what audit shows and what ``text`` rules search."""
    return f"{method} {target.path_and_query}"


def parse_command_text(text: str) -> tuple[str, Target]:
    """The inverse of :func:`command_text`, for ``gw policy explain "DELETE /api/v1/customers/42"``."""
    method, _, target = text.strip().partition(" ")
    if not method or not target:
        raise ValueError("expected METHOD PATH, for example: DELETE /api/v1/customers/42")
    raw = target.strip().encode("ascii", "replace")
    return method.upper(), normalize_target(raw, allow_encoded_slash=True, allow_path_params=True)


class HttpDialect(ProxyDialect):
    """Method and path; gw's replies are ``{"error", "reason", ...}`` JSON (the library's defaults)."""

    language = "http"

    def command(self, request: RequestView) -> CommandSpec:
        method = request.effective_method
        return CommandSpec(text=command_text(method, request.target), kind=command_kind(method), verb=method,
                           objects=request.target.objects)
