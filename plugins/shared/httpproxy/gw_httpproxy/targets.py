"""The request target policy checks, and the one the upstream receives: they must be the same path.

Rules match ``objects`` (the path) with globs, so gw normalises the request target (RFC 3986 section 6.2.2:
percent-encodings of unreserved characters decoded, other percent-encodings upper-cased, dot segments
removed), collapses repeated slashes, and forwards exactly that normalised path: ``/api/v1/./customers//42``
and ``/api/v1/%63ustomers/42`` are both checked and forwarded as ``/api/v1/customers/42``.

What an upstream could read as a *different* path than the one checked is refused (400) rather than guessed:

* encoded slashes and backslashes (``%2F``, ``%5C``, ``\\``): an upstream that decodes them routes elsewhere
  (``allow_encoded_slash`` lets them through for APIs that need them, GitLab project paths);
* double encoding (``%252f``, ``%252e%252e``): an upstream or framework that decodes twice sees ``/`` or ``..``;
* path parameters (``;``, ``%3B``): Tomcat and other servlet containers drop ``;...`` from each segment, so
  ``/api/..;/admin`` is ``/admin`` to them (``allow_path_params`` accepts them, never after ``.`` or ``..``);
* percent-encoded bytes that are not UTF-8 (overlong ``%C0%AF`` for ``/``), control characters (``%00``,
  ``%0A``), malformed escapes, fragments and non-ASCII bytes.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%(..)", re.DOTALL)
_HEX = frozenset("0123456789abcdefABCDEF")
_ENCODED_SLASH = re.compile(r"%(2[fF]|5[cC])")
_DOUBLE_ENCODED = re.compile(r"%25[0-9a-fA-F]{2}")
_ENCODED_SEMICOLON = re.compile(r"%3[bB]")


class BadTarget(ValueError):
    """The request target cannot be checked safely; the message tells the client what to change."""

    def __init__(self, message: str, *, status: int = 400, reason: str = "bad_request_target") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Target(NamedTuple):
    """A request target after normalisation: what policy sees and what the upstream receives."""

    path: str
    query: str
    #: True when normalisation changed the path the client sent (recorded as the ``path_normalized`` flag).
    normalized: bool

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def objects(self) -> tuple[str, ...]:
        """The paths rules match: the path, and with ``allow_path_params`` also the path servlet containers
        act on (every ``;...`` parameter dropped), so a rule on ``/admin`` covers ``/admin;x=1``."""
        objects = [self.path]
        if ";" in self.path:
            stripped = "/".join(seg.split(";", 1)[0] for seg in self.path.split("/"))
            if stripped != self.path:
                objects.append(stripped)
        if "%" in self.path:
            # Servers that fold Unicode compatibility forms (IIS "best fit", NFKC) read the fullwidth
            # /api/v1/%EF%BD%81dmin as /api/v1/admin: rules see that reading too.
            decoded = unquote(self.path, errors="strict")
            folded = unicodedata.normalize("NFKC", decoded)
            if folded != decoded:
                objects.append(quote(folded, safe="/;=:@!$&'()*+,~-._"))
        return tuple(objects)


def _decode_unreserved(match: re.Match[str]) -> str:
    hexpair = match.group(1)
    if hexpair[0] not in _HEX or hexpair[1] not in _HEX:
        raise BadTarget(f"the request path has a malformed percent-encoding %{hexpair!r}; encode '%' as %25")
    byte = int(hexpair, 16)
    if byte < 0x20 or byte == 0x7F:
        raise BadTarget(f"the request path contains an encoded control character (%{hexpair.upper()})")
    if byte in _UNRESERVED:
        return chr(byte)
    return "%" + hexpair.upper()


def _check_utf8(path: str) -> None:
    """Percent-encoded bytes must spell UTF-8: overlong forms (``%C0%AF``) decode to ``/`` on old servers."""
    if "%" not in path:
        return
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadTarget("the request path contains percent-encoded bytes that are not UTF-8 (such as the "
                        "overlong %C0%AF); encode characters as UTF-8") from None


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


def _check_path_params(path: str, allowed: bool) -> None:
    if ";" not in path and not _ENCODED_SEMICOLON.search(path):
        return
    if not allowed:
        raise BadTarget("the request path contains a ';' path parameter (or %3B); gw refuses them because "
                        "servers such as Tomcat drop them and would act on a path policy never checked "
                        "(/api/..;/admin is /admin to them). Send the path without ';' (listener option "
                        "allow_path_params)", reason="path_params")
    for segment in path.split("/"):
        head = segment.split(";", 1)[0]
        if ";" in segment and head.replace("%2E", ".").replace("%2e", ".") in ("", ".", ".."):
            raise BadTarget("the request path has a ';' parameter on a '.' or '..' segment (..;); gw refuses "
                            "it because servers resolve it as a dot segment", reason="path_params")


def normalize_target(raw: bytes, *, allow_encoded_slash: bool, allow_path_params: bool = False) -> Target:
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
    if not allow_encoded_slash and ("\\" in path or _ENCODED_SLASH.search(path)):
        raise BadTarget("the request path contains an encoded slash or a backslash (%2F, %5C, \\); gw "
                        "refuses them because the upstream could route to a path policy never checked "
                        "(listener option allow_encoded_slash)", reason="encoded_slash")
    if "%" not in path and "/." not in path and "//" not in path and ";" not in path:
        return Target(path, query, False)  # the common case: nothing to decode or resolve
    if _DOUBLE_ENCODED.search(path):
        raise BadTarget("the request path contains a double percent-encoding (%25 followed by hex digits, "
                        "such as %252F); gw refuses it because an upstream that decodes twice would act on a "
                        "path policy never checked. Encode the path once", reason="double_encoding")
    _check_path_params(path, allow_path_params)
    normalized = _remove_dot_segments(_PERCENT.sub(_decode_unreserved, path))
    _check_utf8(normalized)
    return Target(normalized, query, normalized != path)
