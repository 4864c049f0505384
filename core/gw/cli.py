"""The ``gw`` command line.  Core provides ``serve``, ``check`` and ``plugins``; plugins add command groups
through :func:`gw.hookspecs.gw_register_commands` (``gw token``, ``gw audit``, ``gw approvals`` ...).

Commands other than ``serve`` take ``-c/--config`` (default ``$GW_CONFIG``).  Every ``list`` command has
``--json``.  Errors print one precise message and exit non-zero.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from .cliutil import (  # also what plugin command groups import from gw.cli
    command_error,
    config_option,
    format_time,
    json_option,
    load_runtime,
    print_json,
    print_table,
    registry,
    run,
    with_runtime,
)
from .errors import GwError, PluginError
from .runtime import Runtime

__all__ = ["build_cli", "cli", "command_error", "config_option", "format_time", "json_option", "load_runtime",
           "main", "print_json", "print_table", "registry", "run", "with_runtime"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gw", prog_name="gw")
def cli() -> None:
    """gw: identity-aware gateway between AI agents and production systems."""


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path), envvar="GW_CONFIG")
@click.option("--log-level", default=None, help="debug, info, warning or error (default: the file's "
              "gateway.log_level, else info).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="text lines or one JSON object per line (default: the file's gateway.log_format, else "
                   "text).")
@click.option("--name", default=None, metavar="NAME",
              help="This gateway's name (its audit chain) instead of [gateway] name; replicas sharing one "
                   "pipeline file and store each need their own.")
@click.option("--workers", default=None, metavar="N",
              help="Run N worker processes (\"auto\": one per core) accepting on the same listeners "
                   "(SO_REUSEPORT), each with its own audit chain NAME.wI, under a supervisor that restarts "
                   "a worker that dies and passes SIGHUP/SIGTERM on.")
@click.option("--worker-index", type=int, default=None, hidden=True)
def serve(pipeline: Path, log_level: str | None, log_format: str | None, name: str | None,
          workers: str | None, worker_index: int | None) -> None:
    """Serve the listeners of PIPELINE until SIGTERM/SIGINT (SIGHUP re-reads the file)."""
    from .logs import setup_logging
    from .server import Gateway

    rt = load_runtime(pipeline)
    if name is not None:
        if not name.strip():
            raise click.BadParameter("the name cannot be empty", param_hint="--name")
        rt.services.gateway_name = name
    if workers is not None:
        _supervise(pipeline, rt, workers, log_level, log_format, name)
        return
    if worker_index is not None:
        rt.services.gateway_name = f"{rt.services.gateway_name}.w{worker_index}"
        rt.services.worker = worker_index
    gateway_section = rt.config.model.gateway
    setup_logging(log_level or gateway_section.log_level, log_format or gateway_section.log_format)
    gateway = Gateway(rt, reuse_port=worker_index is not None)

    async def main() -> None:
        await gateway.serve(handle_signals=True)

    try:
        run(main)
    except OSError as e:
        raise click.ClickException(str(e.strerror or e)) from None
    except KeyboardInterrupt:
        sys.exit(130)


def _supervise(pipeline: Path, rt: Runtime, workers: str, log_level: str | None, log_format: str | None,
               name: str | None) -> None:
    from .logs import setup_logging
    from .workers import Supervisor, reuse_port_available, worker_command, worker_count

    try:
        count = worker_count(workers)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--workers") from None
    if not reuse_port_available():
        raise click.ClickException("--workers needs SO_REUSEPORT, which this platform does not have; run one "
                                   "gw serve per port instead")
    zero = [lr.name for lr in rt.listeners.values() if lr.options.address[1] == 0]
    if zero:
        raise click.ClickException(f"listener {zero[0]!r} listens on port 0 (any free port), so workers would "
                                   "each get another port; give it a fixed port to use --workers")
    gateway_section = rt.config.model.gateway
    setup_logging(log_level or gateway_section.log_level, log_format or gateway_section.log_format)
    options = [*(["--log-level", log_level] if log_level else []), *(["--log-format", log_format] if log_format
               else []), "--name", rt.services.gateway_name]
    def validate() -> None:
        Runtime.build(pipeline, pm=registry().pm)

    supervisor = Supervisor(lambda i: worker_command(pipeline, i, options), count, validate)
    sys.exit(supervisor.run())


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("-c", "--config", "config", envvar="GW_CONFIG", type=click.Path(dir_okay=False, path_type=Path),
              help="Pipeline file (alternative to the argument; default: $GW_CONFIG).")
@json_option
def check(pipeline: Path | None, config: Path | None, as_json: bool) -> None:
    """Validate PIPELINE, load its plugins and print the assembled listeners and pipelines."""
    path = pipeline or config
    if path is None:
        raise click.UsageError("name the pipeline file: gw check PIPELINE (or -c FILE, or $GW_CONFIG)")
    rt = load_runtime(path)
    summary = rt.describe()
    if as_json:
        print_json(summary)
        return
    click.echo(f"{summary['file']}: OK")
    click.echo(f"  data_dir: {summary['data_dir']}")
    click.echo(f"  storage: {summary['storage'] or '(none)'}")
    for name, use in summary["identity"].items():
        click.echo(f"  identity {name}: {use}")
    for name, stages in summary["pipelines"].items():
        click.echo(f"  pipeline {name}: {' -> '.join(stages) or '(no stages)'}")
    for lst in summary["listeners"]:
        groups = ", ".join(lst["allow_groups"]) if lst["allow_groups"] is not None else "any"
        click.echo(f"  listener {lst['name']}: {lst['protocol']} on {lst['listen']} -> "
                   f"{lst['upstream'] or '-'}; identity {', '.join(lst['identity'])}; "
                   f"pipeline {lst['pipeline']}; groups {groups}")
        for warning in lst.get("warnings", []):
            click.echo(f"  warning: {warning}")


@cli.command(name="plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins: name, version, what each registers."""
    info = registry().plugins()
    if as_json:
        print_json(info)
        return
    rows = []
    for p in info:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["provides"].items()) or "-"
        rows.append((p["name"], p["distribution"] or "-", p["version"] or "-", provides))
    print_table(rows, ["name", "distribution", "version", "provides"], max_width=80)


@cli.command()
@config_option
@click.option("--token", envvar="GW_TOKEN", required=True, help="The token to inspect (default: $GW_TOKEN).")
@json_option
def whoami(config: Path, token: str, as_json: bool) -> None:
    """Print the identity and groups TOKEN resolves to, and the listeners it may use."""
    from .errors import AccessDenied, AuthenticationError
    from .identity import Credential

    async def inspect(rt: Runtime) -> dict[str, Any]:
        credential = Credential("token", token)
        identity = None
        errors: dict[str, str] = {}
        for name, provider in rt.identity.items():
            if not provider.accepts(credential):
                continue
            try:
                identity = await provider.authenticate(credential)
                break
            except AuthenticationError as e:
                errors[name] = str(e)
        listeners = []
        for lr in rt.listeners.values():
            entry: dict[str, Any] = {"name": lr.name, "protocol": lr.options.protocol,
                                     "listen": lr.options.listen}
            if identity is None or identity.provider not in lr.options.identities:
                entry["allowed"] = False
                entry["reason"] = (f"the token is not from this listener's identity provider(s): "
                                   f"{', '.join(lr.options.identities)}")
            else:
                try:
                    lr.admit(identity)
                    entry["allowed"] = True
                except AccessDenied as e:
                    entry["allowed"] = False
                    entry["reason"] = str(e)
            listeners.append(entry)
        out: dict[str, Any] = {"valid": identity is not None, "listeners": listeners}
        if identity is not None:
            out.update(subject=identity.subject, groups=list(identity.groups), provider=identity.provider,
                       expires_at=identity.expires_at)
        else:
            out["errors"] = errors or {"-": "no identity provider accepts this kind of token"}
        return out

    info = with_runtime(config, inspect, identity=True)
    if as_json:
        print_json(info)
    else:
        if info["valid"]:
            click.echo(f"subject:  {info['subject']}")
            click.echo(f"groups:   {', '.join(info['groups']) or '(none)'}")
            click.echo(f"provider: {info['provider']}")
            click.echo(f"expires:  {format_time(info['expires_at'])} UTC")
        else:
            click.echo("token refused:")
            for name, err in info["errors"].items():
                click.echo(f"  {name}: {err}")
        click.echo("listeners:")
        for entry in info["listeners"]:
            verdict = "allowed" if entry["allowed"] else f"refused: {entry['reason']}"
            click.echo(f"  {entry['name']} ({entry['protocol']} on {entry['listen']}): {verdict}")
    if not info["valid"]:
        sys.exit(1)


@cli.group()
def policy() -> None:
    """Test policies before deploying them."""


@policy.command()
@config_option
@click.option("--listener", "listener_name", required=True, help="Listener whose pipeline decides.")
@click.option("--user", "subject", default="policy-explain", show_default=True, help="Subject of the identity.")
@click.option("--group", "groups", multiple=True, help="Group of the identity (repeatable).")
@click.argument("command_text", metavar="COMMAND")
@json_option
def explain(config: Path, listener_name: str, subject: str, groups: tuple[str, ...], command_text: str,
            as_json: bool) -> None:
    """Classify COMMAND as LISTENER would and show each stage's decision.

    Exit status: 0 allowed, 1 denied, 2 needs approval, 3 error.
    """
    import time as _time
    from dataclasses import replace

    import trio

    from .model import RESULT_COLUMNS, Column, Decision, Identity, Session

    try:
        rt = Runtime.build(config, pm=registry().pm)
        lr = rt.listener(listener_name)
        identity = Identity(subject, tuple(groups), provider="policy-explain")
        session = Session(id="explain", listener=lr.name, protocol=lr.options.protocol, identity=identity,
                          client_address="-", upstream=lr.handler.describe_upstream(),
                          started_at=_time.time())
        command = lr.handler.classify(command_text, session=session)
        # What the result will hold, for stages that change results (the mask plan); the protocol may ask the
        # upstream to describe the statement, which never runs it.
        shape: Sequence[Column] | str | None = None
        if any(s.transforms for s in lr.pipeline.stages):
            shape = trio.run(lr.handler.describe_result, command)
        if shape is not None:
            command = replace(command, attributes={**command.attributes, RESULT_COLUMNS: shape})
        decisions = lr.pipeline.plan(command)
    except (GwError, NotImplementedError, ValueError) as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(3)
    final: Decision = Decision.ALLOW
    for stage, verdict, _ in decisions:
        if verdict is not None and verdict.decision is not Decision.ALLOW:
            final = verdict.decision
            break
    result: dict[str, Any] = {
        "listener": lr.name, "pipeline": lr.pipeline.name, "subject": subject, "groups": list(groups),
        "command": command_text, "kind": command.kind.value, "verb": command.verb,
        "objects": list(command.objects), "flags": sorted(command.flags),
        "stages": [{"stage": s.name, "decision": v.decision.value if v else None, "rule": v.rule if v else None,
                    "reason": v.reason if v else None, "does": note} for s, v, note in decisions],
        "decision": {"allow": "allowed", "deny": "denied", "pending": "approval required"}[final.value],
    }
    if isinstance(shape, str):
        result["result_columns"] = shape
    elif shape is not None:
        result["result_columns"] = [{"name": c.name, "type": c.type_name or None, "sources": list(c.sources)}
                                    for c in shape]
    if as_json:
        print_json(result)
    else:
        click.echo(f"classification: kind={result['kind']} verb={result['verb'] or '-'} "
                   f"objects={','.join(result['objects']) or '-'} flags={','.join(result['flags']) or '-'}")
        for entry in result["stages"]:
            line = f"  {entry['stage']}:"
            if entry["decision"]:
                line += f" {entry['decision']}"
                line += f" (rule {entry['rule']})" if entry["rule"] else ""
                line += f": {entry['reason']}" if entry["reason"] else ""
            if entry["does"]:
                does = entry["does"].replace("\n", "\n      ")  # a plan of several lines, indented
                line += f"{';' if entry['decision'] else ''} {does}"
            if line.endswith(":"):
                line += " -"  # no opinion about this command
            click.echo(line)
        click.echo(f"decision: {result['decision']}")
    sys.exit({Decision.ALLOW: 0, Decision.DENY: 1, Decision.PENDING: 2}[final])


def build_cli() -> click.Group:
    """The full CLI: core commands plus every command plugins register."""
    from .storage_cli import storage

    cli.add_command(storage)
    try:
        reg = registry()
    except PluginError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    for r in reg.items["commands"].values():
        if r.name in cli.commands and cli.commands[r.name] is not r.obj:
            click.echo(f"Error: plugin {r.plugin!r} registers command {r.name!r}, which gw already has",
                       err=True)
            sys.exit(1)
        cli.add_command(r.obj)
    return cli


def quiet_third_party_warnings() -> None:
    """Keep warnings raised inside third-party libraries (a dependency's deprecation notices) off gw's
    stderr: they are for the library's developers, and agents and operators read gw's output.  gw's own
    warnings stay.  ``-W`` / ``PYTHONWARNINGS`` take precedence (set them to see everything)."""
    if sys.warnoptions:
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"gw(_[a-z0-9_]+)?(\.|$)")


def main(argv: Iterable[str] | None = None) -> None:
    quiet_third_party_warnings()
    build_cli()(args=list(argv) if argv is not None else None, prog_name="gw")


if __name__ == "__main__":  # pragma: no cover
    main()

