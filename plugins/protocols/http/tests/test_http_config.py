"""The listener table: the issue's canonical example, ${VAR} expansion, basic auth, precise option errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from gw.errors import ConfigError
from gw.model import Identity, Kind, Session
from gw.runtime import Runtime
from gw.testing import free_port, running_gateway

CANONICAL = """
[identity.dev]
use = "http_test_tokens"
tokens = { agent = ["agents"] }

[pipelines.api]
stages = []

[[listeners]]
name = "billing-api"
protocol = "http"
listen = "127.0.0.1:18080"
identity = "dev"
pipeline = "api"

[listeners.upstream]
url = "http://127.0.0.1:9000"
headers = { Authorization = "Bearer ${BILLING_API_TOKEN}" }
"""


async def test_the_canonical_listener_works_as_written(tmp_path: Path, http_pm, upstream, monkeypatch,
                                                       curl) -> None:
    monkeypatch.setenv("BILLING_API_TOKEN", "billing-secret-123")
    port = free_port()
    text = CANONICAL.replace("18080", str(port)).replace("9000", str(upstream.port))
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    async with running_gateway(path, pm=http_pm) as gw:
        assert gw.runtime.describe()["listeners"][0]["upstream"] == f"http://127.0.0.1:{upstream.port}"
        code, out, _ = await curl("-H", "Authorization: Bearer tok-agent", f"http://127.0.0.1:{port}/echo")
    assert code == 0 and b"billing-secret-123" not in out
    assert upstream.last().header("Authorization") == "Bearer billing-secret-123"
    assert "billing-secret-123" not in str(gw.runtime.describe())


async def test_a_missing_variable_is_a_start_error_naming_it(tmp_path: Path, http_pm, monkeypatch) -> None:
    monkeypatch.delenv("BILLING_API_TOKEN", raising=False)
    path = tmp_path / "pipeline.toml"
    path.write_text(CANONICAL.replace("18080", "0"))
    runtime = Runtime.build(path, pm=http_pm)  # validation (gw check) does not need the secret
    with pytest.raises(ConfigError) as err:
        await runtime.open(serving=True)  # what gw serve does first
    await runtime.close()
    message = str(err.value)
    assert "billing-api" in message and "upstream.headers.Authorization" in message
    assert "${BILLING_API_TOKEN}" in message and "export BILLING_API_TOKEN" in message


async def test_basic_auth_is_injected_and_never_shown(http_config, http_pm, upstream, monkeypatch,
                                                       agent) -> None:
    monkeypatch.setenv("HTTP_TEST_PASSWORD", "pa55-word-xyz")
    config = http_config(upstream.url, headers="",
                         upstream='basic_auth = { user = "svc", password_env = "HTTP_TEST_PASSWORD" }')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
        r = await c.get("/echo")
    expected = "Basic " + base64.b64encode(b"svc:pa55-word-xyz").decode()
    assert upstream.last().header("Authorization") == expected
    assert "pa55-word-xyz" not in r.text and base64.b64encode(b"svc:pa55-word-xyz").decode() not in r.text


@pytest.mark.parametrize("listener, upstream_extra, headers, url, expected", [
    ("", "", None, "ftp://127.0.0.1:9000", "listeners[0].upstream.url: expected an http:// or https:// URL"),
    ("", "", None, "http://user:pw@127.0.0.1:9000", "do not put credentials in the URL"),
    ("", "", None, "http://127.0.0.1:9000/?x=1", "cannot carry a query"),
    ("", "", '"Bad Name" = "x"', None, "'Bad Name' is not a valid header name"),
    ("", "", 'Host = "x"', None, "header 'Host' is managed by gw"),
    ("", "", 'A = "${1BAD}"', None, "${1BAD} is not a valid environment variable reference"),
    ("", "verfy = false", None, None, "listeners[0].upstream.verfy: unknown key"),
    ('max_request_body = "lots"', "", None, None, "listeners[0].max_request_body: expected a size"),
    ('token_header = "Content-Length"', "", None, None, "cannot carry the identity token"),
    ('header_timeout = "soon"', "", None, None, "listeners[0].header_timeout: expected a duration"),
    ("", 'basic_auth = { user = "u", password_env = "not a name" }', None, None,
     "expected an environment variable"),
])
def test_option_errors_name_the_key(http_config, http_pm, listener, upstream_extra, headers, url,
                                    expected) -> None:
    extra = {"headers": headers} if headers is not None else {}
    config = http_config(url or "http://127.0.0.1:9000", listener=listener, upstream=upstream_extra, **extra)
    with pytest.raises(ConfigError) as err:
        Runtime.build(config, pm=http_pm)
    assert expected in str(err.value)


def test_sizes_and_durations_accept_units(http_config, http_pm) -> None:
    listener = 'max_request_body = "10MiB"\nmax_header_bytes = 16384\nidle_timeout = "2m"'
    config = http_config("http://127.0.0.1:9000", listener=listener)
    runtime = Runtime.build(config, pm=http_pm)
    opts = runtime.listeners["api"].options
    assert opts.max_request_body == 10 * 1024 * 1024  # type: ignore[attr-defined]
    assert opts.max_header_bytes == 16384  # type: ignore[attr-defined]
    assert opts.idle_timeout.total_seconds() == 120  # type: ignore[attr-defined]


def test_classify_serves_policy_explain(http_config, http_pm) -> None:
    runtime = Runtime.build(http_config("http://127.0.0.1:9000"), pm=http_pm)
    handler = runtime.listeners["api"].handler
    session = Session("s", "api", "http", Identity("agent", ("agents",)), "127.0.0.1:1", "", 0.0)
    cmd = handler.classify("delete /api/v1/./customers/42?force=1", session=session)
    assert (cmd.verb, cmd.kind, cmd.objects, cmd.text) == (
        "DELETE", Kind.WRITE, ("/api/v1/customers/42",), "DELETE /api/v1/customers/42?force=1")
    assert "path_normalized" in cmd.flags
    with pytest.raises(ValueError):
        handler.classify("DELETE", session=session)


def test_gw_check_warns_about_tokens_and_credentials_in_clear(tmp_path, upstream_token_env) -> None:
    """An http listener on a non-loopback address without tls, a credential sent to a remote http://
    upstream, verification off: each is a ``gw check`` warning; a loopback setup gets none."""
    import subprocess
    import sys
    from pathlib import Path

    gw = str(Path(sys.executable).with_name("gw"))
    text = """
[identity.dev]
use = "jwt"
issuer = "i"
audience = "a"
secret_env = "X"

[pipelines.p]
stages = []

[[listeners]]
name = "api"
protocol = "http"
listen = "LISTEN"
identity = "dev"
pipeline = "p"

[listeners.upstream]
url = "URL"
headers = { Authorization = "Bearer ${HTTP_TEST_UPSTREAM_TOKEN}" }
"""
    risky = tmp_path / "risky.toml"
    risky.write_text(text.replace("LISTEN", "0.0.0.0:0").replace("URL", "http://10.1.2.3:9000"))
    quiet = tmp_path / "quiet.toml"
    quiet.write_text(text.replace("LISTEN", "127.0.0.1:0").replace("URL", "http://127.0.0.1:9000"))
    out = subprocess.run([gw, "check", str(risky)], capture_output=True, text=True, check=True).stdout
    assert "identity tokens over plain HTTP on 0.0.0.0:0" in out
    assert "sends its upstream credential to http://10.1.2.3:9000 over plain HTTP" in out
    assert "warning" not in subprocess.run([gw, "check", str(quiet)], capture_output=True, text=True,
                                           check=True).stdout
