"""The ``kubernetes`` protocol handler: the shared proxy (gw_httpproxy) with the Kubernetes dialect."""

from __future__ import annotations

from typing import ClassVar

from gw.model import Command, ObjectSyntax, Session
from gw_httpproxy import ProxyHandler, normalize_target

from .classify import classify
from .dialect import KubernetesDialect
from .options import KubernetesListenerOptions
from .paths import parse_request


class KubernetesHandler(ProxyHandler):
    """Listener for ``protocol = "kubernetes"``."""

    name = "kubernetes"
    Options: ClassVar[type[KubernetesListenerOptions]] = KubernetesListenerOptions
    dialect = KubernetesDialect()

    def classify(self, text: str, *, session: Session) -> Command:
        """``gw policy explain "DELETE /api/v1/namespaces/prod/pods/web-1"``: the command this request would
        be (a method and an API path, as kubectl -v=6 shows them)."""
        method, _, target = text.strip().partition(" ")
        if not method or not target.strip():
            raise ValueError("expected METHOD PATH, for example: DELETE /api/v1/namespaces/prod/pods/web-1")
        parsed = normalize_target(target.strip().encode("ascii", "replace"), allow_encoded_slash=False)
        method = method.upper()
        spec = classify(parse_request(method, parsed.path, parsed.query), method, parsed.path_and_query)
        return Command(session, 0, spec.text, "kubernetes", spec.kind, spec.verb, spec.objects, spec.flags,
                       attributes=dict(spec.attributes), verbs=spec.verbs,
                       object_syntax=spec.object_syntax or ObjectSyntax.PATH)
