"""``gw token``: issue development tokens (``gw token issue``), look inside any token (``gw token decode``).

``issue`` prints only the token on stdout, so ``TOKEN=$(gw token issue ...)`` works; every problem goes to
stderr with a non-zero exit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import jwt
from gw.cli import config_option, json_option, load_runtime, print_json
from gw.config import parse_duration
from gw.errors import ConfigError
from gw.identity import IdentityProvider
from gw.runtime import Runtime

from .provider import decode_unverified, dumps, utc


@click.group(name="token")
def token_group() -> None:
    """Issue development tokens and inspect tokens."""


def _issuing_provider(rt: Runtime, name: str | None) -> IdentityProvider:
    """The provider named by ``--identity``, or the only one able to issue tokens."""
    if name is not None:
        provider = rt.identity.get(name)
        if provider is None:
            known = ", ".join(sorted(rt.identity)) or "none"
            raise click.ClickException(f"{rt.config.path}: no [identity.{name}] table (identity providers: "
                                       f"{known})")
        if not getattr(provider, "can_issue_tokens", False):
            raise click.ClickException(
                f"identity provider {name!r} ({provider.name}) cannot issue tokens: only a jwt provider with "
                "secret_env signs its own; get this provider's tokens from its identity provider")
        return provider
    issuers = sorted(n for n, p in rt.identity.items() if getattr(p, "can_issue_tokens", False))
    if len(issuers) == 1:
        return rt.identity[issuers[0]]
    if not issuers:
        raise click.ClickException(
            f"no identity provider in {rt.config.path} can issue tokens; add one such as\n"
            "  [identity.dev]\n  use = \"jwt\"\n  issuer = \"gw-dev\"\n  audience = \"gw\"\n"
            "  secret_env = \"GW_DEV_SECRET\"")
    raise click.ClickException(f"several identity providers can issue tokens ({', '.join(issuers)}); choose "
                               "one with --identity NAME")


def _parse_claims(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``k=v`` pairs; a valid JSON value (``3``, ``true``, ``["a"]``) keeps its type, else a string."""
    claims: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--claim")
        try:
            claims[key] = json.loads(raw)
        except ValueError:
            claims[key] = raw
    return claims


@token_group.command("issue")
@config_option
@click.option("--identity", "identity", metavar="NAME",
              help="The [identity.NAME] provider to sign with (default: the only one that can).")
@click.option("--sub", "subject", required=True, help="Subject of the token (who the agent is).")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group (repeatable).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, e.g. 15m, 1h, 8h.")
@click.option("--claim", "claims", multiple=True, metavar="KEY=VALUE",
              help="An extra claim (repeatable); JSON values keep their type.")
def issue(config: Path, identity: str | None, subject: str, groups: tuple[str, ...], ttl: str,
          claims: tuple[str, ...]) -> None:
    """Print a token signed by a jwt provider with secret_env (development and tests).

    \b
    Example:
      export GW_DEV_SECRET=$(openssl rand -hex 32)
      TOKEN=$(gw token issue -c examples/quickstart.toml --sub agent-7 --group agents --ttl 1h)
    """
    try:
        lifetime = parse_duration(ttl).total_seconds()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from None
    if lifetime <= 0:
        raise click.BadParameter("must be longer than zero", param_hint="--ttl")
    extra = _parse_claims(claims)
    rt = load_runtime(config)
    provider = _issuing_provider(rt, identity)
    try:
        token = provider.issue_token(subject, list(groups), lifetime, extra or None)
    except (ConfigError, ValueError, NotImplementedError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(token)


@token_group.command("decode")
@click.argument("token", required=False)
@json_option
def decode(token: str | None, as_json: bool) -> None:
    """Show the header and claims of TOKEN (or stdin) WITHOUT verifying it.

    Use it to see why a token is refused (issuer, audience, expiry, groups); whether gw accepts a token is
    decided only by the gateway.
    """
    text = (token if token is not None and token != "-" else sys.stdin.read()).strip()
    try:
        header, claims = decode_unverified(text)
    except jwt.PyJWTError as e:
        raise click.ClickException(f"not a readable JWT: {e}") from None
    if as_json:
        print_json({"verified": False, "header": header, "claims": claims})
        return
    click.echo("UNVERIFIED -- signature and claims were NOT checked")
    click.echo(f"header: {dumps(header)}")
    click.echo(f"claims: {dumps(claims)}")
    for name in ("iat", "nbf", "exp"):
        if name in claims:
            click.echo(f"{name}: {utc(claims[name])}")
    exp = claims.get("exp")
    if isinstance(exp, (int, float)):
        left = exp - time.time()
        click.echo(f"expires in {left:.0f}s" if left > 0 else f"expired {-left:.0f}s ago")
