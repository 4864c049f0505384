"""``gw kubeconfig`` (a kubeconfig that points kubectl at a kubernetes listener) and ``gw tls selfsigned``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click
from gw.cli import config_option, load_runtime

from .certs import write_selfsigned
from .options import KubernetesListenerOptions


def _server(opts: KubernetesListenerOptions) -> str:
    host, port = opts.address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if opts.tls else 'http'}://{host}:{port}"


@click.command("kubeconfig")
@config_option
@click.option("--listener", "listener_name", required=True, metavar="NAME", help="A kubernetes listener.")
@click.option("--token", required=True, envvar="GW_TOKEN", metavar="TOKEN",
              help="The agent's gw token (default: $GW_TOKEN); it becomes the kubeconfig's bearer token.")
@click.option("--server", metavar="URL", help="The address kubectl uses (default: the listener's own).")
@click.option("--namespace", "-n", metavar="NS", help="The context's default namespace.")
@click.option("--name", default="gw", show_default=True, help="Name of the cluster, user and context.")
def kubeconfig(config: Path, listener_name: str, token: str, server: str | None, namespace: str | None,
               name: str) -> None:
    """Print a kubeconfig for listener NAME: its address, its certificate as the CA, TOKEN as the bearer
    token.  ``gw kubeconfig -c gw.toml --listener cluster --token "$T" > ~/.kube/config``"""
    rt = load_runtime(config)
    lr = rt.listener(listener_name)
    opts = lr.options
    if not isinstance(opts, KubernetesListenerOptions):
        raise click.ClickException(f"listener {listener_name!r} is a {opts.protocol} listener, not kubernetes")
    cluster: dict[str, object] = {"server": server or _server(opts)}
    if opts.tls is not None:
        cert = rt.config.resolve_path(opts.tls.cert)
        try:
            pem = cert.read_bytes()
        except OSError as e:
            raise click.ClickException(f"cannot read the listener's certificate {cert}: {e}") from None
        cluster["certificate-authority-data"] = base64.b64encode(pem).decode("ascii")
    else:
        click.echo(f"warning: listener {listener_name!r} has no tls: kubectl does not send bearer tokens over "
                   "plain HTTP; add tls = {{ cert, key }} (gw tls selfsigned writes a pair)", err=True)
    context: dict[str, object] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": name, "cluster": cluster}],
           "users": [{"name": name, "user": {"token": token}}],
           "contexts": [{"name": name, "context": context}], "current-context": name, "preferences": {}}
    # JSON is YAML: kubectl reads it as it is, and no YAML library is needed to write it.
    click.echo(json.dumps(doc, indent=2))


@click.group("tls")
def tls() -> None:
    """Certificates for TLS listeners."""


@tls.command("selfsigned")
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate (PEM).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (PEM, mode 0600).")
@click.option("--host", "hosts", multiple=True, required=True, metavar="NAME",
              help="A host name or IP address clients use (repeat for several).")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650), help="Validity.")
def selfsigned_cmd(cert_path: Path, key_path: Path, hosts: tuple[str, ...], days: int) -> None:
    """Write a self-signed certificate and key for a listener's tls = { cert, key } (clients trust the
    certificate itself as their CA; gw kubeconfig embeds it)."""
    try:
        write_selfsigned(cert_path, key_path, hosts, days=days)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {cert_path} and {key_path} for {', '.join(hosts)}")
