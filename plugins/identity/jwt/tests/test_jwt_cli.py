"""``gw token issue`` / ``gw token decode`` through the real CLI, round-tripping through authenticate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import trio
from click.testing import CliRunner, Result
from gw.cli import build_cli
from gw.runtime import Runtime
from gw.testing import write_pipeline
from gw_jwt import JwtProvider
from jwt_testkit import SECRET, token

PIPELINE = """
[gateway]
data_dir = ".gw"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
groups_claim = "groups"

[identity.okta]
use = "jwt"
issuer = "https://example.okta.com/oauth2/default"
audience = "api://gw"
"""


@pytest.fixture
def cli() -> click.Group:
    return build_cli()


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    return write_pipeline(tmp_path, PIPELINE)


def run(cli: click.Group, *args: str, secret: str | None = SECRET) -> Result:
    return CliRunner().invoke(cli, list(args), env={"GW_DEV_SECRET": secret})


async def verify(pipeline: Path, text: str,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    monkeypatch.setenv("GW_DEV_SECRET", SECRET)
    provider = Runtime.build(pipeline).identity["dev"]
    assert isinstance(provider, JwtProvider)
    identity = await provider.authenticate(token(text))
    return identity.subject, identity.groups, dict(identity.claims)


async def test_issue_prints_only_a_token_that_authenticates(cli: click.Group, pipeline: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--identity", "dev", "--sub", "agent-7",
                 "--group", "agents", "--group", "dba", "--ttl", "1h", "--claim", "tier=2",
                 "--claim", "team=payments")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.count(".") == 2
    subject, groups, claims = await verify(pipeline, result.stdout.strip(), monkeypatch)
    assert (subject, groups) == ("agent-7", ("agents", "dba"))
    assert claims["tier"] == 2 and claims["team"] == "payments"
    assert claims["exp"] - claims["iat"] == 3600


async def test_identity_defaults_to_the_only_provider_that_can_issue(cli: click.Group, pipeline: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--sub", "ci-nightly", "--ttl", "5m")
    assert result.exit_code == 0, result.output
    subject, groups, _ = await verify(pipeline, result.stdout.strip(), monkeypatch)
    assert (subject, groups) == ("ci-nightly", ())


def test_config_from_gw_config(cli: click.Group, pipeline: Path) -> None:
    result = CliRunner().invoke(cli, ["token", "issue", "--sub", "a"],
                                env={"GW_DEV_SECRET": SECRET, "GW_CONFIG": str(pipeline)})
    assert result.exit_code == 0, result.output


def test_unset_secret_is_a_clear_error(cli: click.Group, pipeline: Path) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--sub", "a", secret=None)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "identity.dev.secret_env: environment variable GW_DEV_SECRET is not set" in result.stderr
    assert "openssl rand" in result.stderr


def test_provider_that_cannot_issue(cli: click.Group, pipeline: Path) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--identity", "okta", "--sub", "a")
    assert result.exit_code == 1
    assert "identity provider 'okta' (jwt) cannot issue tokens" in result.stderr


def test_unknown_identity(cli: click.Group, pipeline: Path) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--identity", "nope", "--sub", "a")
    assert result.exit_code == 1
    assert "no [identity.nope] table (identity providers: dev, okta)" in result.stderr


def test_no_or_several_issuing_providers(cli: click.Group, tmp_path: Path) -> None:
    only_oidc = write_pipeline(tmp_path, '[identity.okta]\nuse = "jwt"\nissuer = "https://x.example.com"\n'
                                         'audience = "gw"\n', name="a.toml")
    result = run(cli, "token", "issue", "-c", str(only_oidc), "--sub", "a")
    assert result.exit_code == 1 and "can issue tokens; add one such as" in result.stderr
    second = ('[identity.dev2]\nuse = "jwt"\nissuer = "gw-dev2"\naudience = "gw"\n'
              'secret_env = "GW_DEV_SECRET"\n')
    two = write_pipeline(tmp_path, PIPELINE + second, name="b.toml")
    result = run(cli, "token", "issue", "-c", str(two), "--sub", "a")
    assert result.exit_code == 1
    assert "several identity providers can issue tokens (dev, dev2)" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--ttl", "soon"], "Invalid value for --ttl"),
    (["--ttl", "0s"], "must be longer than zero"),
    (["--claim", "novalue"], "is not KEY=VALUE"),
])
def test_bad_options(cli: click.Group, pipeline: Path, args: list[str], words: str) -> None:
    result = run(cli, "token", "issue", "-c", str(pipeline), "--sub", "a", *args)
    assert result.exit_code == 2
    assert words in result.stderr


def test_check_validates_without_the_secret(cli: click.Group, pipeline: Path) -> None:
    result = run(cli, "check", str(pipeline), secret=None)
    assert result.exit_code == 0, result.output
    assert "identity dev: jwt" in result.stdout


def test_decode_is_labelled_unverified(cli: click.Group, pipeline: Path) -> None:
    issued = run(cli, "token", "issue", "-c", str(pipeline), "--sub", "agent-7", "--group", "agents").stdout
    result = run(cli, "token", "decode", issued.strip())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("UNVERIFIED")
    assert '"sub": "agent-7"' in result.stdout and "expires in" in result.stdout
    as_json = json.loads(run(cli, "token", "decode", "--json", issued.strip()).stdout)
    assert as_json["verified"] is False and as_json["claims"]["groups"] == ["agents"]
    from_stdin = CliRunner().invoke(cli, ["token", "decode"], input=issued)
    assert from_stdin.exit_code == 0 and "agent-7" in from_stdin.stdout
    bad = run(cli, "token", "decode", "not-a-token")
    assert bad.exit_code == 1 and "not a readable JWT" in bad.stderr


async def test_shell_substitution_with_the_installed_gw(pipeline: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """TOKEN=$(gw token issue ...) as the README runs it, with the installed console script."""
    gw = str(Path(sys.executable).with_name("gw"))
    script = f'TOKEN=$("{gw}" token issue -c "{pipeline}" --identity dev --sub agent-7 --group agents ' \
             '--ttl 1h) && printf %s "$TOKEN"'
    with trio.fail_after(30):
        done = await trio.run_process(["bash", "-c", script], capture_stdout=True, capture_stderr=True,
                                      check=False, env={"GW_DEV_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    subject, groups, _ = await verify(pipeline, done.stdout.decode(), monkeypatch)
    assert (subject, groups) == ("agent-7", ("agents",))
