"""The ``[[listeners]]`` table of a ``kubernetes`` listener: the shared proxy's keys (gw_httpproxy.options), plus
what is Kubernetes' own.  Documented key by key in docs/plugins/kubernetes.md."""

from __future__ import annotations

from gw_httpproxy.options import ProxyListenerOptions, UpstreamOptions
from pydantic import Field, field_validator


class KubernetesUpstreamOptions(UpstreamOptions):
    """``[listeners.upstream]``: the API server, gw's credential for it, and impersonation."""

    #: Send ``Impersonate-User`` (the agent's subject) and ``Impersonate-Group`` (its groups) so the cluster's
    #: RBAC applies per agent; gw's own credential then needs the ``impersonate`` verb.
    impersonate: bool = False
    #: gw group -> the cluster group(s) it is sent as (``{ agents = "gw:agents" }``); groups not listed are
    #: sent as they are.  An empty list drops the group.
    group_map: dict[str, str | list[str]] = Field(default_factory=dict)
    #: Prefix for the impersonated user name (``"gw:"`` makes agent ``ci-bot`` the cluster user ``gw:ci-bot``).
    user_prefix: str = ""

    @field_validator("group_map")
    @classmethod
    def _groups(cls, v: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for name, value in v.items():
            for group in [value] if isinstance(value, str) else value:
                if not group or any(c in group for c in "\r\n,"):
                    raise ValueError(f"group_map.{name}: {group!r} is not a group name (no commas or line "
                                     "breaks)")
        return v

    def cluster_groups(self, groups: tuple[str, ...] | list[str]) -> list[str]:
        out: list[str] = []
        for group in groups:
            mapped = self.group_map.get(group, group)
            for g in [mapped] if isinstance(mapped, str) else mapped:
                if g not in out:
                    out.append(g)
        return out


class KubernetesListenerOptions(ProxyListenerOptions):
    """A ``kubernetes`` listener: kubectl in, one API server out."""

    upstream: KubernetesUpstreamOptions
    #: Relay ``kubectl port-forward`` (over WebSocket).  Off: refused with 403.
    allow_portforward: bool = False
    #: Relay the ``proxy`` subresource (``kubectl proxy``-style access to pods, services and nodes).  Off:
    #: refused with 403.
    allow_proxy: bool = False
    #: Redact the values of Secret objects in every response (on by default; turning it off shows agents
    #: Secret values wherever the upstream credential may read them).
    redact_secrets: bool = True
