"""Requests that ask the upstream to act as another method or on another path than the request line says.

Many frameworks let a request name the method the application should see: the ``X-HTTP-Method-Override``,
``X-HTTP-Method`` and ``X-Method-Override`` headers (Rack, Express's method-override, ASP.NET, Google APIs),
and a ``_method`` parameter in the query (Express, Laravel) or in a form body (Rails, Laravel, Symfony).  IIS
and Symfony honour ``X-Original-URL`` / ``X-Rewrite-URL`` as the path.  An upstream that honours them acts on
a request policy never checked: a ``POST`` that deletes.

``method_override = "refuse"`` (the default) answers such a request with 400.  ``"honour"`` classifies it as
the method it names (so rules on ``DELETE`` apply to the ``POST`` that asks for ``DELETE``) and forwards it
unchanged; conflicting or malformed overrides are refused either way.  Path overrides are always refused: the
path is what every rule is written against.  A form body's ``_method`` cannot be seen before the request is
decided, so :class:`FormOverrideScanner` watches the body as it streams and the proxy abandons the upstream
request (it never receives the complete body) when one appears.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from .headers import Headers

METHOD_OVERRIDE_HEADERS = (b"x-http-method-override", b"x-http-method", b"x-method-override")
PATH_OVERRIDE_HEADERS = (b"x-original-url", b"x-rewrite-url", b"x-override-url")
_OVERRIDE_HEADERS = frozenset(METHOD_OVERRIDE_HEADERS + PATH_OVERRIDE_HEADERS)
#: Form content types whose bodies frameworks read a ``_method`` field from (JSON too, see :func:`is_form`).
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class OverrideRefused(ValueError):
    """The request asks for a method or path override gw does not accept; the message says what to do."""

    def __init__(self, message: str, reason: str = "method_override") -> None:
        super().__init__(message)
        self.status = 400
        self.reason = reason


def _query_methods(query: str) -> list[str]:
    values = []
    for pair in re.split("[&;]", query):  # some frameworks (older Rack) also split on ';'
        pair = pair.strip()
        name, _, value = pair.partition("=")
        if unquote_plus(name).strip().lower() == "_method":
            values.append(unquote_plus(value))
    return values


def requested_method(headers: Headers, query: str, *, mode: str) -> str | None:
    """The method the request asks the upstream to act as (upper-case), or None when it asks for none.
    Raises :class:`OverrideRefused` in ``refuse`` mode, for conflicting or malformed overrides, and for path
    overrides."""
    named: list[tuple[str, str]] = []
    for name, value in headers:
        if b"_" in name:  # CGI, PHP and WSGI read X_HTTP_METHOD_OVERRIDE as X-HTTP-Method-Override
            name = name.replace(b"_", b"-")
        if name in _OVERRIDE_HEADERS:  # one set lookup per header on the common path
            if name in PATH_OVERRIDE_HEADERS:
                raise OverrideRefused(f"the request carries {name.decode('latin-1')}, which some servers use as "
                                      "the path instead of the request line; gw refuses it because policy is "
                                      "checked on the request line's path. Send the path in the request line",
                                      reason="path_override")
            named.append((name.decode("latin-1"), value.decode("latin-1")))
    if query and ("_" in query or "%" in query):
        named += [("_method", v) for v in _query_methods(query)]
    if not named:
        return None
    where = ", ".join(sorted({n for n, _ in named}))
    if mode != "honour":
        raise OverrideRefused(f"the request asks the upstream to act as another method ({where}); gw refuses "
                              "method overrides because the upstream would act on a method policy never "
                              "checked. Send the method itself (for example DELETE instead of POST with "
                              "X-HTTP-Method-Override: DELETE), or ask the operator for method_override = "
                              "\"honour\"")
    methods = {v.strip().upper() for _, v in named}
    if len(methods) != 1:
        raise OverrideRefused(f"the request names different methods in {where}; send one method")
    (method,) = methods
    if not _TOKEN.fullmatch(method):
        raise OverrideRefused(f"the method override in {where} is not a method name; send one such as DELETE")
    return method


def is_form(content_type: bytes | None) -> bool:
    """Whether a request body of this type may carry a ``_method`` field a framework reads: forms, and JSON
    (Laravel reads its input, JSON included, for ``_method``)."""
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in FORM_TYPES or media == b"application/json" or media.endswith(b"+json")


#: A ``_method`` *field* (not ``payment_method``): after the start or ``&``/``;`` in a urlencoded form,
#: ``name="_method"`` in a multipart part's headers, a ``"_method"`` key in JSON; escapes included.
_FIELD = re.compile(rb'(?:^|[&;])\s*(?:_|%5f)method\s*(?:=|&|;|$)'
                    rb'|name\s*=\s*"?(?:_|%5f)method(?:"|\s*[;\r\n])'
                    rb'|"(?:_|\\u005f)method"\s*:', re.IGNORECASE | re.MULTILINE)
#: How much of the previous piece is kept so a field split across two pieces is still seen.
_OVERLAP = 64


class FormOverrideScanner:
    """Looks for a ``_method`` field in a body fed piece by piece (a field split across two pieces is still
    found); :meth:`feed` returns True once one appeared."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b"&"  # the body's start counts as a field boundary

    def feed(self, data: bytes | bytearray) -> bool:
        window = self._tail + bytes(data)
        # Keep what a field name may still continue: the last bytes, and any run of whitespace before them
        # (PHP drops leading spaces of field names).
        spaces = len(window) - len(window.rstrip(b" \t\r\n"))
        self._tail = window[-(min(spaces, 1 << 16) + _OVERLAP):]
        return _FIELD.search(window) is not None


FORM_OVERRIDE_MESSAGE = ("the request body has a _method field, which frameworks such as Rails and "
                         "Laravel read as the method to act as; gw refuses it because policy was checked on the "
                         "request line's method, and the upstream did not receive the request. Send the method "
                         "itself")
