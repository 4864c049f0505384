"""``gw keys create / list / revoke`` through the real CLI, against a real SQLite store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import trio
from click.testing import CliRunner, Result
from gw.cli import build_cli
from gw.errors import AuthenticationError
from gw.identity import Credential
from gw.runtime import Runtime
from gw.testing import write_pipeline

PIPELINE = """
[gateway]
data_dir = ".gw"

[storage]
use = "sqlite"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET_UNSET"   # never set here: gw keys must not need other providers' secrets

[identity.ci-keys]
use = "apikey"
{extra}
"""

KEY = re.compile(r"gwk_([0-9A-Za-z]{12})_[0-9A-Za-z]{38}")


@pytest.fixture
def cli() -> click.Group:
    return build_cli()


def run(cli: click.Group, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def authenticate(path: Path, text: str, provider: str = "ci-keys") -> str:
    """Who the key is, or the refusal reason, according to a freshly built gateway runtime."""
    async def check() -> str:
        rt = Runtime.build(path)
        async with rt.opened(serving=False, identity=False):
            try:
                return (await rt.identity[provider].authenticate(Credential("token", text))).subject
            except AuthenticationError as e:
                return e.reason

    return trio.run(check)


def test_create_prints_only_the_key_then_list_and_revoke(cli: click.Group, tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, PIPELINE.format(extra=""))
    created = run(cli, "keys", "create", "-c", str(path), "--sub", "ci-nightly", "--group", "etl", "--group",
                  "readers", "--ttl", "30d", "--description", "nightly ETL")
    assert created.exit_code == 0, created.output
    text = created.stdout.strip()
    match = KEY.fullmatch(text)
    assert match, created.stdout  # stdout is the key and nothing else: KEY=$(gw keys create ...) works
    key_id = match.group(1)
    assert key_id in created.stderr and "ci-nightly" in created.stderr and "only time" in created.stderr
    assert text not in created.stderr
    assert authenticate(path, text) == "ci-nightly"

    listed = run(cli, "keys", "list", "-c", str(path), "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)
    assert entry["id"] == key_id and entry["status"] == "active" and entry["provider"] == "ci-keys"
    assert entry["groups"] == ["etl", "readers"] and entry["description"] == "nightly ETL"
    assert entry["last_used"] is not None
    assert "verifier" not in entry and text[17:] not in listed.stdout
    table = run(cli, "keys", "list", "-c", str(path))
    assert key_id in table.stdout and "active" in table.stdout and "nightly ETL" in table.stdout

    revoked = run(cli, "keys", "revoke", "-c", str(path), key_id)
    assert revoked.exit_code == 0 and f"revoked API key {key_id}" in revoked.stdout
    assert authenticate(path, text) == "revoked"
    again = run(cli, "keys", "revoke", "-c", str(path), f"gwk_{key_id}")
    assert again.exit_code == 0 and "already revoked" in again.stdout
    assert json.loads(run(cli, "keys", "list", "-c", str(path), "--json").stdout)[0]["status"] == "revoked"
    assert json.loads(run(cli, "keys", "list", "-c", str(path), "--json", "--active").stdout) == []


def test_provider_choice(cli: click.Group, tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, PIPELINE.format(extra='\n[identity.ops-keys]\nuse = "apikey"\nprefix = "ops_"'))
    ambiguous = run(cli, "keys", "create", "-c", str(path), "--sub", "x")
    assert ambiguous.exit_code == 1 and "--provider" in ambiguous.stderr and ambiguous.stdout == ""
    wrong = run(cli, "keys", "create", "-c", str(path), "--provider", "dev", "--sub", "x")
    assert wrong.exit_code == 1 and "not an apikey provider" in wrong.stderr
    missing = run(cli, "keys", "create", "-c", str(path), "--provider", "nope", "--sub", "x")
    assert missing.exit_code == 1 and "no [identity.nope] table" in missing.stderr
    ops = run(cli, "keys", "create", "-c", str(path), "--provider", "ops-keys", "--sub", "oncall")
    assert ops.exit_code == 0 and ops.stdout.startswith("ops_")
    assert authenticate(path, ops.stdout.strip(), "ops-keys") == "oncall"
    everything = json.loads(run(cli, "keys", "list", "-c", str(path), "--json").stdout)
    assert [(e["provider"], e["subject"]) for e in everything] == [("ops-keys", "oncall")]


def test_errors_go_to_stderr_with_a_nonzero_exit(cli: click.Group, tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, PIPELINE.format(extra=""))
    for args, message in [
        (["create", "--sub", "x", "--ttl", "soon"], "expected a duration"),
        (["create", "--sub", "x", "--ttl", "2000d"], "max_ttl"),
        (["revoke", "AAAAAAAAAAAA"], "has no API key AAAAAAAAAAAA"),
        (["revoke", "not-a-key"], "not a key id"),
    ]:
        result = run(cli, "keys", *args[:1], "-c", str(path), *args[1:])
        assert result.exit_code != 0 and message in result.stderr, (args, result.output)
        assert result.stdout == ""
    bare = write_pipeline(tmp_path, '[identity.dev]\nuse = "jwt"\nissuer = "i"\naudience = "a"\n'
                                    'secret_env = "X"\n', name="bare.toml")
    result = run(cli, "keys", "list", "-c", str(bare))
    assert result.exit_code == 1 and "no apikey identity provider" in result.stderr
