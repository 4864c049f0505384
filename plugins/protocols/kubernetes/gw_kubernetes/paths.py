"""Reading a Kubernetes API request: which verb on which resource, as the API server itself reads it.

The API server's request-info resolver (the thing RBAC decides on) maps a method and a path to a verb:

=========================================  ==========================================================
``GET /api/v1/namespaces/prod/pods/web-1``  ``get``
``GET /api/v1/namespaces/prod/pods``        ``list`` (``watch`` with ``?watch=1``/``true``)
``GET /api/v1/watch/namespaces/prod/pods``  ``watch`` (the old watch prefix)
``POST .../pods``                           ``create``
``PUT .../pods/web-1``                      ``update``
``PATCH .../pods/web-1``                    ``patch``
``DELETE .../pods/web-1``                   ``delete`` (``deletecollection`` without a name)
``.../pods/web-1/exec``                     ``exec`` (likewise ``attach``, ``portforward``, ``proxy``,
                                            ``log``: the subresources that are verbs to gw)
=========================================  ==========================================================

Paths under ``/api/v1`` are the core group; ``/apis/GROUP/VERSION/...`` the others.  Anything else is a
non-resource URL (``/version``, ``/openapi/v2``, ``/healthz``).  What cannot be read this way is
:attr:`ApiRequest.unrecognised` and becomes a command of kind ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

#: Subresources that are verbs of their own to gw (they act on the pod, not on its object).
VERB_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy", "log"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
#: ``/api``, ``/apis`` discovery and the other paths every client reads without naming a resource.
_NON_RESOURCE_READS = ("/version", "/api", "/apis", "/openapi/", "/healthz", "/livez", "/readyz", "/metrics")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One request as the API server resolves it."""

    verb: str
    #: ``""`` for the core group.
    group: str = ""
    version: str = ""
    resource: str = ""
    namespace: str | None = None
    name: str | None = None
    #: A subresource that is not a verb of its own (``status``, ``scale``, ``ephemeralcontainers`` ...).
    subresource: str | None = None
    #: The path below a ``proxy`` subresource (``/metrics`` of ``pods/web-1/proxy/metrics``).
    proxy_path: str = ""
    non_resource: bool = False
    unrecognised: bool = False
    query: tuple[tuple[str, str], ...] = ()

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.query if k == key]

    def flag(self, key: str) -> bool:
        return any(v.lower() in ("1", "true") for v in self.values(key))


def _bad(method: str, path: str) -> ApiRequest:
    return ApiRequest(verb=method.lower(), unrecognised=True, proxy_path=path)


def parse_request(method: str, path: str, query: str) -> ApiRequest:
    """``method`` (upper case) and the normalised ``path`` and ``query`` of a request (gw_httpproxy's
    :class:`~gw_httpproxy.targets.Target`: dot segments and encoded separators already refused)."""
    pairs = tuple((k, v) for k, vs in parse_qs(query, keep_blank_values=True).items() for v in vs)
    segs = [s for s in path.split("/") if s]
    if not segs or segs[0] not in ("api", "apis") or (segs[0] == "api" and len(segs) < 2) or \
            (segs[0] == "apis" and len(segs) < 3):
        if method in ("GET", "HEAD") and any(path == p.rstrip("/") or path.startswith(p)
                                             for p in _NON_RESOURCE_READS):
            return ApiRequest(verb="get", non_resource=True, proxy_path=path, query=pairs)
        return ApiRequest(verb=method.lower(), non_resource=True, unrecognised=True, proxy_path=path,
                          query=pairs)
    if segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    else:
        group, version, rest = segs[1], segs[2], segs[3:]
    if not rest:  # /api/v1, /apis/apps/v1: the group version's resource list
        if method in ("GET", "HEAD"):
            return ApiRequest(verb="get", group=group, version=version, non_resource=True, proxy_path=path,
                              query=pairs)
        return _bad(method, path)
    watch_prefix = rest[0] == "watch"
    if watch_prefix:
        rest = rest[1:]
    namespace: str | None = None
    # As the API server reads it: /namespaces/prod/pods/... is in namespace prod; /namespaces/prod and its
    # own subresources (status, finalize) are the cluster-scoped namespace object "prod".
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return _bad(method, path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    proxy_path = ""
    if sub is not None and len(rest) > 3:
        if sub != "proxy":
            return _bad(method, path)
        proxy_path = "/" + "/".join(rest[3:])
    # A resource name with a suffix such as "web-1:8080" is how proxy addresses a port; keep it as written.
    if sub in VERB_SUBRESOURCES:
        verb = sub
        sub = None
    elif method in ("GET", "HEAD"):
        if name is None:
            verb = "watch" if watch_prefix or any(v.lower() in ("1", "true") for k, v in pairs if k == "watch") \
                else "list"
        else:
            verb = "watch" if watch_prefix else "get"
    elif method in _METHOD_VERBS:
        if watch_prefix:
            return _bad(method, path)
        verb = _METHOD_VERBS[method]
        if verb == "delete" and name is None:
            verb = "deletecollection"
        if verb in ("update", "patch") and name is None:
            return _bad(method, path)
    else:
        return _bad(method, path)
    return ApiRequest(verb=verb, group=group, version=version, resource=resource, namespace=namespace,
                      name=name, subresource=sub, proxy_path=proxy_path, query=pairs)
