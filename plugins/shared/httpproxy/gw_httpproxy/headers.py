"""Header rules of a reverse proxy: what is hop-by-hop, what the upstream gets, what stages may record.

The codec hands headers over as ``(lower-case name, value)`` byte pairs; everything here works on that shape
and builds plain lists for the codec to send.  Header names in sets are lower-case bytes.

:class:`ForwardingRules` is computed once per listener configuration.  A protocol that needs more (the
Kubernetes plugin's impersonation headers, a forced ``Accept: application/json``) edits the list
:meth:`ForwardingRules.upstream_request` returns; names it sets itself belong in ``extra_drop`` so the agent
cannot send them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .scrub import SecretForms

Headers = Sequence[tuple[bytes, bytes]]
HeaderList = list[tuple[bytes, bytes]]

#: RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded (``proxy-connection`` is the
#: old non-standard spelling some clients still send).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"})

#: Request headers that claim what only a proxy knows (the client's address, the original host, scheme, port or
#: path base); gw sets ``X-Forwarded-For``/``-Proto``/``-Host`` itself and never forwards the agent's claims.
PROXY_CLAIMS = frozenset({b"forwarded", b"x-real-ip", b"x-client-ip", b"true-client-ip", b"x-forwarded-port",
                          b"x-forwarded-prefix", b"x-forwarded-server", b"x-forwarded-path", b"x-forwarded-uri",
                          b"x-original-forwarded-for", b"cf-connecting-ip"})

#: Values never shown to stages in clear, whatever the configuration says.
ALWAYS_SECRET = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})
REDACTED = "[redacted]"


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for n, v in headers:
        if n == name:
            return v
    return None


def header_values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def comma_tokens(headers: Headers, name: bytes) -> set[bytes]:
    """Lower-cased comma-separated tokens of every ``name`` header (``Connection: keep-alive, Upgrade``)."""
    out: set[bytes] = set()
    for n, v in headers:
        if n == name:
            out.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return out


@dataclass(frozen=True, slots=True)
class ForwardingRules:
    """Per-listener facts needed to rewrite request and response headers (computed once at start-up)."""

    #: Request headers never forwarded as the agent sent them (gw sets its own or drops them).
    request_drop: frozenset[bytes]
    #: The upstream credential and other configured headers, already expanded.
    injected: tuple[tuple[bytes, bytes], ...]
    #: ``Host`` for the upstream (``127.0.0.1:9000``).
    upstream_host: bytes
    #: Header values that must never reach the client (the injected credentials).
    secrets: tuple[bytes, ...]
    #: Names whose values stages see as ``[redacted]``.
    secret_names: frozenset[bytes]
    #: The secrets' forms per declared response charset (``None``: none declared) and whether escapes are
    #: decoded (text), built on first use.
    forms: dict[tuple[str | None, bool], SecretForms]

    @classmethod
    def build(cls, *, token_header: str, injected: Iterable[tuple[str, str]], upstream_host: str,
              secrets: Iterable[bytes], secret_headers: Iterable[str],
              extra_drop: Iterable[str] = ()) -> ForwardingRules:
        injected_pairs = tuple((n.lower().encode("ascii"), v.encode("latin-1")) for n, v in injected)
        drop = set(HOP_BY_HOP)
        # The agent's token, framing and routing headers are gw's to set; x-forwarded-for is appended to.
        drop.update({token_header.lower().encode("ascii"), b"host", b"expect", b"content-length",
                     b"accept-encoding", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
        # Claims about the client or the path only a proxy may make: an upstream that trusts them for
        # allow-lists or routing (Forwarded host, X-Forwarded-Prefix as path base) would act on the agent's say.
        drop.update(PROXY_CLAIMS)
        # The agent cannot override the injected credential by sending a header of the same name.
        drop.update(n for n, _ in injected_pairs)
        drop.update(n.lower().encode("ascii") for n in extra_drop)
        names = set(ALWAYS_SECRET)
        names.add(token_header.lower().encode("ascii"))
        names.update(n.lower().encode("ascii") for n in secret_headers)
        names.update(n for n, _ in injected_pairs)
        secrets = tuple(secrets)
        return cls(request_drop=frozenset(drop), injected=injected_pairs,
                   upstream_host=upstream_host.encode("ascii"), secrets=secrets,
                   secret_names=frozenset(names), forms={})

    def secret_forms(self, charset: str | None = None, *, text: bool = True) -> SecretForms | None:
        """What to look for in a response declaring ``charset`` (a codec name), or None without secrets.
        ``text``: the body is text, where escaped spellings of a secret are read as the secret."""
        if not self.secrets:
            return None
        key = (charset, text)
        forms = self.forms.get(key)
        if forms is None:
            if len(self.forms) > 64:  # charsets are few; an upstream sending many distinct names is odd
                self.forms.clear()
            forms = self.forms[key] = SecretForms(self.secrets, charset, escapes=text)
        return forms

    def upstream_request(self, headers: Headers, *, client_ip: str, scheme: str, framing: HeaderList,
                         upgrade: bytes | None) -> HeaderList:
        """Headers for the upstream request: hop-by-hop and the agent's token removed, ``Host`` rewritten,
        the credential injected, ``X-Forwarded-*`` added, body framing as gw chose it."""
        listed = comma_tokens(headers, b"connection")
        drop = self.request_drop
        out: HeaderList = [(b"host", self.upstream_host)]
        forwarded_for: bytes | None = None
        original_host = b""
        for name, value in headers:
            if name in drop or name in listed:
                if name == b"x-forwarded-for":
                    forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
                elif name == b"host":
                    original_host = value
                continue
            if b"_" in name and name.replace(b"_", b"-") in drop:
                # CGI, PHP and WSGI servers read X_Api_Key as X-Api-Key: the same header by another spelling.
                continue
            out.append((name, value))
        out.extend(self.injected)
        ip = client_ip.encode("ascii", "replace")
        out.append((b"x-forwarded-for", forwarded_for + b", " + ip if forwarded_for else ip))
        out.append((b"x-forwarded-proto", scheme.encode("ascii")))
        if original_host:
            out.append((b"x-forwarded-host", original_host))
        # gw relays bodies to masking, recording and the secret scrubber: ask for them uncompressed.
        out.append((b"accept-encoding", b"identity"))
        out.extend(framing)
        if upgrade is not None:
            if upgrade.strip().lower() == b"websocket":
                # gw reads WebSocket frames to mask and record them; it implements no extension
                # (permessage-deflate would hide the payloads), so none is offered.
                out = [(n, v) for n, v in out if n != b"sec-websocket-extensions"]
            out.append((b"connection", b"upgrade"))
            out.append((b"upgrade", upgrade))
        return out

    def client_response(self, headers: Headers, *, keep_length: bool, upgrade: bool,
                        extra: HeaderList) -> HeaderList:
        """Headers for the client: hop-by-hop removed (``Upgrade`` kept on a 101), ``Content-Length`` kept
        only when gw relays the body unchanged in length, injected credentials blanked wherever echoed."""
        listed = comma_tokens(headers, b"connection")
        out: HeaderList = []
        for name, value in headers:
            if name in HOP_BY_HOP or name in listed:
                if upgrade and name in (b"upgrade", b"connection"):
                    out.append((name, value))
                continue
            if name == b"content-length" and not keep_length:
                continue
            out.append((name, value))
        scrubber = self.secret_forms()
        # The values are looked at together first: ordinarily none holds anything like a secret, and one
        # search of them all costs what one of each would.
        if scrubber is not None and scrubber.may_need_scrub(b"\n".join([v for _, v in out])):
            out = [(name, bytes(scrubber.scrub(value))) for name, value in out]
        out.extend(extra)
        return out

    def redacted(self, headers: Headers) -> list[list[str]]:
        """``[[name, value], ...]`` for stages to record, secret values replaced by ``[redacted]``."""
        secret = self.secret_names
        return [[n.decode("latin-1"), REDACTED if n in secret else v.decode("latin-1")] for n, v in headers]


def bearer_token(headers: Headers, name: bytes) -> str | None:
    """The identity token in header ``name``: ``Bearer TOKEN`` (the scheme is required on Authorization and
    optional on a custom header).  None when the header is missing, repeated or of another scheme."""
    values = header_values(headers, name)
    if len(values) != 1:
        return None
    value = values[0].strip()
    scheme, _, rest = value.partition(b" ")
    if scheme.lower() == b"bearer":
        token = rest.strip()
    elif name == b"authorization":
        return None
    else:
        token = value
    if not token:
        return None
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return None
