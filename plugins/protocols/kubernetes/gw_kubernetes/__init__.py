"""gw's Kubernetes protocol: ``protocol = "kubernetes"`` listeners put gw between kubectl and one API server.

Every API request is a :class:`gw.model.Command` (the API server's verb, ``namespace/resource/name`` objects,
a kubectl-like text); the agent's gw token is the kubeconfig's bearer token; refusals are ``metav1.Status``
objects kubectl prints; Secret values are redacted; exec and attach run over WebSocket with their channels
masked and recorded.  The proxy machinery is the shared gw-httpproxy library; this plugin is its Kubernetes
dialect.  See docs/plugins/kubernetes.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import KubernetesHandler
from .options import KubernetesListenerOptions

__all__ = ["KubernetesHandler", "KubernetesListenerOptions"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(KubernetesHandler)


@hookimpl
def gw_register_commands(register: Callable[[Any], None]) -> None:
    from .cli import kubeconfig, tls

    register(kubeconfig)
    register(tls)
