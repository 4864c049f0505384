"""``gw keys``: create, list and revoke the API keys of an apikey identity provider.

``create`` prints only the key on stdout, so ``KEY=$(gw keys create ...)`` works; what was created goes to
stderr.  The key is shown once: gw keeps only its verifier.  The commands open the store but not the identity
providers, so they need no other provider's secrets (a jwt provider's ``secret_env``).
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import click
from gw.cli import config_option, format_time, json_option, print_json, print_table, with_runtime
from gw.config import format_duration, parse_duration
from gw.runtime import Runtime

from .provider import ApiKeyProvider, KeyManagementError
from .records import ApiKey


def operator() -> str:
    """Who runs the command, for ``created_by`` / ``revoked_by`` (informational: the OS user name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def providers_of(rt: Runtime) -> dict[str, ApiKeyProvider]:
    return {n: p for n, p in rt.identity.items() if isinstance(p, ApiKeyProvider)}


def choose_provider(rt: Runtime, name: str | None) -> ApiKeyProvider:
    """The provider named by ``--provider``, or the only apikey provider of the file."""
    found = providers_of(rt)
    if name is not None:
        provider = rt.identity.get(name)
        if provider is None:
            known = ", ".join(sorted(rt.identity)) or "none"
            raise KeyManagementError(f"{rt.config.path}: no [identity.{name}] table (identity providers: {known})")
        if not isinstance(provider, ApiKeyProvider):
            raise KeyManagementError(f"identity provider {name!r} is {provider.name!r}, not an apikey provider"
                                     + (f"; apikey providers: {', '.join(sorted(found))}" if found else ""))
        return provider
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise KeyManagementError(f"{rt.config.path} has no apikey identity provider; add one such as\n"
                                 "  [identity.ci-keys]\n  use = \"apikey\"")
    raise KeyManagementError(f"several apikey providers ({', '.join(sorted(found))}); choose one with "
                             "--provider NAME")


provider_option = click.option("--provider", "provider_name", metavar="NAME",
                               help="The [identity.NAME] apikey provider (default: the only one).")


@click.group(name="keys")
def keys_group() -> None:
    """API keys for service identities (CI jobs, scripts): create, list, revoke."""


@keys_group.command("create")
@config_option
@provider_option
@click.option("--sub", "subject", required=True, help="Subject of the key (the service's identity).")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group (repeatable).")
@click.option("--ttl", default=None, help="Lifetime, e.g. 30d, 12h (default: the provider's default_ttl).")
@click.option("--description", default="", help="What the key is for (shown by gw keys list).")
def create(config: Path, provider_name: str | None, subject: str, groups: tuple[str, ...], ttl: str | None,
           description: str) -> None:
    """Create a key and print it (once) on stdout.

    \b
    Example:
      KEY=$(gw keys create -c pipeline.toml --sub ci-nightly --group etl --ttl 30d)
      PGPASSWORD=$KEY psql "host=gw.example.com port=15432 user=ci-nightly dbname=orders"
    """
    lifetime = None
    if ttl is not None:
        try:
            lifetime = parse_duration(ttl)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--ttl") from None

    async def make(rt: Runtime) -> tuple[str, ApiKey, str]:
        provider = choose_provider(rt, provider_name)
        text, record = await provider.create_key(subject, list(groups), lifetime, description=description,
                                                 created_by=operator())
        return text, record, provider.instance_name

    text, record, name = with_runtime(config, make)
    click.echo(text)
    span = format_duration(parse_duration(round(record.expires - record.created)))
    click.echo(f"created API key {record.id} of provider {name}: subject {record.subject}, groups "
               f"{', '.join(record.groups) or '(none)'}, expires {format_time(record.expires)} UTC (in {span}).\n"
               "This is the only time the key is shown: gw keeps only its hash. Store it in your secret "
               "manager now.", err=True)


@keys_group.command("list")
@config_option
@provider_option
@click.option("--active", is_flag=True, help="Only keys that are neither revoked nor expired.")
@json_option
def list_cmd(config: Path, provider_name: str | None, active: bool, as_json: bool) -> None:
    """List keys (never their secrets): id, subject, groups, status, expiry, last use."""
    async def collect(rt: Runtime) -> list[tuple[str, ApiKey]]:
        chosen = ([choose_provider(rt, provider_name)] if provider_name is not None
                  else list(providers_of(rt).values()) or [choose_provider(rt, None)])
        return [(p.instance_name, k) for p in chosen for k in await p.list_keys()]

    now = time.time()
    found = [(name, k) for name, k in with_runtime(config, collect) if not active or k.status(now) == "active"]
    if as_json:
        print_json([k.to_json(now, name) for name, k in found])
        return
    rows = [(k.id, name, k.subject, ",".join(k.groups) or "-", k.status(now), format_time(k.created),
             format_time(k.expires), format_time(k.last_used), k.description or "-") for name, k in found]
    print_table(rows, ["id", "provider", "subject", "groups", "status", "created", "expires", "last used",
                       "description"])


@keys_group.command("revoke")
@config_option
@provider_option
@click.argument("key_ids", metavar="ID...", nargs=-1, required=True)
def revoke(config: Path, provider_name: str | None, key_ids: tuple[str, ...]) -> None:
    """Revoke keys by id (as gw keys list shows it); the whole key is accepted too.

    New connections with a revoked key are refused at once; open sessions end at the provider's next
    revocation check.  Revocation cannot be undone: create a new key instead.
    """
    async def apply(rt: Runtime) -> None:
        provider = choose_provider(rt, provider_name)
        for value in key_ids:
            key, changed = await provider.revoke_key(value, revoked_by=operator())
            if changed:
                click.echo(f"revoked API key {key.id} (subject {key.subject}); new connections with it are "
                           "refused")
            else:
                click.echo(f"API key {key.id} (subject {key.subject}) was already revoked at "
                           f"{format_time(key.revoked_at)} UTC")

    with_runtime(config, apply)
