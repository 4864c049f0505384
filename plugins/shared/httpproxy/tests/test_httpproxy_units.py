"""The pure parts of the proxy library: target normalisation, the secret scrubber (fed at every split), header
rules, sizes."""

from __future__ import annotations

import pytest
from gw_httpproxy.headers import ForwardingRules, bearer_token
from gw_httpproxy.scrub import SecretForms, SecretScrubber
from gw_httpproxy.targets import BadTarget, normalize_target
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize("raw, path, query, normalized", [
    (b"/api/v1/customers", "/api/v1/customers", "", False),
    (b"/api/v1/customers/?a=1&b=%2F", "/api/v1/customers/", "a=1&b=%2F", False),
    (b"/api/./v1//customers/../customers/42", "/api/v1/customers/42", "", True),
    (b"/api/%76%31/%7euser/a%2a", "/api/v1/~user/a%2A", "", True),
    (b"/../../etc/passwd", "/etc/passwd", "", True),
    (b"/a/b/..", "/a/", "", True),
    (b"/a/.", "/a/", "", True),
    (b"http://example.com/x/y?z=1", "/x/y", "z=1", False),
    (b"http://example.com?z=1", "/", "z=1", False),
    (b"*", "*", "", False),
])
def test_targets_normalise(raw: bytes, path: str, query: str, normalized: bool) -> None:
    target = normalize_target(raw, allow_encoded_slash=False)
    assert (target.path, target.query, target.normalized) == (path, query, normalized)


@pytest.mark.parametrize("raw, reason", [
    (b"/a%2Fb", "encoded_slash"), (b"/a%5cb", "encoded_slash"), (b"/a\\b", "encoded_slash"),
    (b"/a%zz", "bad_request_target"), (b"/a%00", "bad_request_target"), (b"/a#frag", "bad_request_target"),
    (b"ftp://x/y", "bad_request_target"), (b"example.com:443", "bad_request_target"),
    ("/caf\u00e9".encode(), "bad_request_target"),
])
def test_unsafe_targets_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BadTarget) as err:
        normalize_target(raw, allow_encoded_slash=False)
    assert err.value.reason == reason


def test_encoded_slash_can_be_allowed() -> None:
    assert normalize_target(b"/groups/a%2fb", allow_encoded_slash=True).path == "/groups/a%2Fb"


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "%2e", "%41"]), max_size=8))
def test_normalised_paths_have_no_dot_segments(segments: list[str]) -> None:
    path = normalize_target(("/" + "/".join(segments)).encode(), allow_encoded_slash=False).path
    assert path.startswith("/")
    assert "/./" not in path + "/" and "/../" not in path + "/" and "//" not in path
    assert normalize_target(path.encode(), allow_encoded_slash=False).path == path



SECRETS = [b"Bearer s3cret-token-value", b"s3cret-token-value"]


@given(st.binary(max_size=60), st.binary(max_size=60), st.data())
def test_scrubber_blanks_secrets_at_any_split(prefix: bytes, suffix: bytes, data: st.DataObject) -> None:
    secret = data.draw(st.sampled_from(SECRETS))
    body = prefix + secret + suffix
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=5)))
    scrubber = SecretScrubber(SecretForms(SECRETS, escapes=True))
    out = b""
    last = 0
    for cut in [*cuts, len(body)]:
        out += scrubber.feed(body[last:cut])
        last = cut
    out += scrubber.finish()
    assert len(out) == len(body)
    assert b"s3cret-token-value" not in out


def test_scrubber_passes_clean_data_through_without_holding_it() -> None:
    scrubber = SecretScrubber(SecretForms(SECRETS, escapes=True))
    assert scrubber.feed(b'{"items": [1, 2, 3]}\n') == b'{"items": [1, 2, 3]}\n'
    assert scrubber.feed(b"ends with Bear") == b"ends with "
    assert scrubber.feed(b"d") == b"Beard"
    assert scrubber.finish() == b""


RULES = ForwardingRules.build(token_header="Authorization", injected=[("Authorization", "Bearer up")],
                              upstream_host="10.0.0.1:9000", secrets=[b"Bearer up"],
                              secret_headers=["X-Api-Key"])


def test_upstream_request_headers() -> None:
    headers = [(b"host", b"gw:8080"), (b"authorization", b"Bearer agent"),
               (b"connection", b"keep-alive, x-hop"),
               (b"x-hop", b"1"), (b"te", b"trailers"), (b"x-forwarded-for", b"1.2.3.4"), (b"accept", b"*/*"),
               (b"content-length", b"5"), (b"expect", b"100-continue"), (b"accept-encoding", b"br")]
    out = RULES.upstream_request(headers, client_ip="127.0.0.1", scheme="http",
                                 framing=[(b"content-length", b"5")], upgrade=None)
    assert out == [(b"host", b"10.0.0.1:9000"), (b"accept", b"*/*"), (b"authorization", b"Bearer up"),
                   (b"x-forwarded-for", b"1.2.3.4, 127.0.0.1"), (b"x-forwarded-proto", b"http"),
                   (b"x-forwarded-host", b"gw:8080"), (b"accept-encoding", b"identity"),
                   (b"content-length", b"5")]


def test_proxy_claims_and_underscore_spellings_of_managed_headers_are_dropped() -> None:
    rules = ForwardingRules.build(token_header="Authorization", injected=[("X-Api-Key", "k3y-value")],
                                  upstream_host="u", secrets=[b"k3y-value"], secret_headers=[])
    headers = [(b"x_api_key", b"agent's"), (b"forwarded", b"for=10.0.0.1;host=admin"), (b"x-real-ip", b"10.0.0.1"),
               (b"x_forwarded_for", b"10.0.0.1"), (b"x-forwarded-prefix", b"/admin"), (b"x_custom", b"kept")]
    out = rules.upstream_request(headers, client_ip="127.0.0.1", scheme="http", framing=[], upgrade=None)
    assert (b"x-api-key", b"k3y-value") in out and (b"x_custom", b"kept") in out
    assert not {n for n, _ in out} & {b"x_api_key", b"forwarded", b"x-real-ip", b"x_forwarded_for",
                                     b"x-forwarded-prefix"}
    assert (b"x-forwarded-for", b"127.0.0.1") in out


def test_client_response_headers_and_redaction() -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"10"), (b"connection", b"close"),
               (b"x-echo", b"got Bearer up"), (b"set-cookie", b"a=b")]
    out = RULES.client_response(headers, keep_length=False, upgrade=False, extra=[(b"x-gw-request-id", b"r")])
    assert out == [(b"content-type", b"text/plain"), (b"x-echo", b"got *********"), (b"set-cookie", b"a=b"),
            (b"x-gw-request-id", b"r")]
    assert RULES.redacted([(b"x-api-key", b"k"), (b"cookie", b"c"), (b"accept", b"*/*")]) == [
        ["x-api-key", "[redacted]"], ["cookie", "[redacted]"], ["accept", "*/*"]]


@pytest.mark.parametrize("headers, name, token", [
    ([(b"authorization", b"Bearer abc")], b"authorization", "abc"),
    ([(b"authorization", b"bearer   abc ")], b"authorization", "abc"),
    ([(b"authorization", b"Basic abc")], b"authorization", None),
    ([(b"authorization", b"abc")], b"authorization", None),
    ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], b"authorization", None),
    ([(b"x-gw-token", b"abc")], b"x-gw-token", "abc"),
    ([(b"x-gw-token", b"Bearer abc")], b"x-gw-token", "abc"),
    ([], b"authorization", None),
])
def test_bearer_token(headers: list[tuple[bytes, bytes]], name: bytes, token: str | None) -> None:
    assert bearer_token(headers, name) == token


def test_client_response_values_are_scrubbed_one_by_one() -> None:
    """The values are searched together first (one search for the common case, no secret anywhere), but
    scrubbed each on its own: a secret in one value, as sent or escaped, is blanked; the others, including
    two neighbours that spell it only when joined, are kept as they are."""
    headers = [(b"x-a", b"plain"), (b"x-b", b"Bearer%20up"), (b"x-c", b"Bearer"), (b"x-d", b" up"),
               (b"x-e", b"got Bearer up")]
    out = RULES.client_response(headers, keep_length=True, upgrade=False, extra=[])
    assert out == [(b"x-a", b"plain"), (b"x-b", b"***********"), (b"x-c", b"Bearer"), (b"x-d", b" up"),
                   (b"x-e", b"got *********")]
    clean = [(b"x-a", b"plain"), (b"x-c", b"Bearer"), (b"x-d", b" up")]
    assert RULES.client_response(clean, keep_length=True, upgrade=False, extra=[]) == clean
