"""Turning an HTTP request into the protocol-neutral fields of a :class:`gw.model.Command`.

Policy rules match ``objects`` (the path) with globs, so the path gw checks must be the path the upstream
acts on.  gw therefore normalises the request target (RFC 3986 section 6.2.2: percent-encodings of unreserved
characters decoded, other percent-encodings upper-cased, dot segments removed) and also collapses repeated
slashes, then forwards exactly that normalised path.  ``/api/v1/./customers//42`` and
``/api/v1/%63ustomers/42`` are both checked and forwarded as ``/api/v1/customers/42``.  Encoded slashes and
backslashes are refused by default because an upstream that decodes them would route to a path the rule never
saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gw.model import Kind

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Methods whose request gw may resend on a fresh upstream connection when a kept-alive one turned out to be
#: closed before any response byte arrived (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%(..)", re.DOTALL)
_HEX = frozenset("0123456789abcdefABCDEF")


class BadTarget(ValueError):
    """The request target cannot be checked safely; the message tells the client what to change."""

    def __init__(self, message: str, *, status: int = 400, reason: str = "bad_request_target") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """A request target after normalisation: what policy sees and what the upstream receives."""

    path: str
    query: str
    #: True when normalisation changed the path the client sent (recorded as the ``path_normalized`` flag).
    normalized: bool

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def _decode_unreserved(match: re.Match[str]) -> str:
    hexpair = match.group(1)
    if hexpair[0] not in _HEX or hexpair[1] not in _HEX:
        raise BadTarget(f"the request path has a malformed percent-encoding %{hexpair!r}; encode '%' as %25")
    byte = int(hexpair, 16)
    if byte == 0:
        raise BadTarget("the request path contains an encoded NUL byte (%00)")
    if byte in _UNRESERVED:
        return chr(byte)
    return "%" + hexpair.upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, on a path that starts with ``/``; repeated slashes collapse to one."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        elif seg == "" and not last:
            continue
        else:
            out.append(seg)
    return "/" + "/".join(out)


def normalize_target(raw: bytes, *, allow_encoded_slash: bool) -> Target:
    """Parse and normalise an origin-form (``/a/b?q``), absolute-form (``http://h/a``) or asterisk-form
    (``*``) request target.  Raises :class:`BadTarget`."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadTarget("the request target contains non-ASCII bytes; percent-encode them") from None
    if "#" in text:
        raise BadTarget("the request target contains a fragment ('#'); clients must not send fragments")
    if text == "*":
        return Target("*", "", False)
    if not text.startswith("/"):
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise BadTarget(f"unsupported request target {text[:80]!r}; send a path such as /api/v1/items")
        slash = rest.find("/")
        query_at = rest.find("?")
        if slash == -1 or (query_at != -1 and query_at < slash):
            text = "/" + (rest[query_at:] if query_at != -1 else "")
        else:
            text = rest[slash:]
    path, _, query = text.partition("?")
    if not allow_encoded_slash and ("\\" in path or re.search(r"%(2[fF]|5[cC])", path)):
        raise BadTarget("the request path contains an encoded slash or a backslash (%2F, %5C, \\); gw "
                        "refuses them because the upstream could route to a path policy never checked "
                        "(listener option allow_encoded_slash)", reason="encoded_slash")
    normalized = _remove_dot_segments(_PERCENT.sub(_decode_unreserved, path)) if (
        "%" in path or "/." in path or "//" in path) else path
    return Target(normalized, query, normalized != path)


def command_kind(method: str) -> Kind:
    """``read`` for GET/HEAD/OPTIONS, ``write`` for POST/PUT/PATCH/DELETE, ``unknown`` for anything else
    (fail closed: an unfamiliar method is never assumed harmless)."""
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
    return method.upper(), normalize_target(raw, allow_encoded_slash=True)
