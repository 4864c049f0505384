"""What a Kubernetes API request is as a :class:`gw.model.Command`.

* ``verb``: the API server's own verb (:mod:`gw_kubernetes.paths`): ``get``, ``list``, ``watch``, ``create``,
  ``update``, ``patch``, ``delete``, ``deletecollection``, ``exec``, ``attach``, ``portforward``, ``proxy``,
  ``log``; an exec also carries every program its command line runs in ``verbs`` (``exec``, ``sh``, ``rm``).
* ``kind``: ``read`` for get/list/watch/log and for the access-review queries kubectl sends
  (``kubectl auth can-i``), ``write`` for the other verbs, ``exec`` for exec/attach/portforward/proxy, ``admin``
  for any change to RBAC, CRDs, admission webhooks, API services, CSRs, nodes and for what hands out power
  (service account tokens, pod bindings, node proxy), ``unknown`` for what gw cannot read.
* ``objects``: ``namespace/resource/name`` (``prod/pods/web-1``); ``_cluster`` stands for the namespace of
  cluster-scoped objects (``_cluster/nodes/n1``).  A collection is a glob (``prod/pods/*``, and ``*/pods/*``
  across all namespaces), so a rule naming one object also covers the request that lists, watches or deletes
  the collection it is in; deleting namespace ``prod`` also names ``prod/*``.  Resources outside the built-in
  groups are written ``resource.group`` (``certificates.cert-manager.io``), as kubectl writes them.  An exec
  adds the paths its command line names.
* ``text``: what kubectl would have been told (``delete pods/web-1 -n prod``,
  ``exec pods/web-1 -n prod -c app -- cat /etc/hostname``).
"""

from __future__ import annotations

import shlex
from typing import Any

from gw.model import Kind, ObjectSyntax
from gw_httpproxy import CommandSpec
from gw_shellanalysis import escape

from .paths import ApiRequest

CLUSTER = "_cluster"
READ_VERBS = frozenset({"get", "list", "watch", "log"})
EXEC_VERBS = frozenset({"exec", "attach", "portforward", "proxy"})
#: Groups whose every change is an administrative act (who may do what; what the API itself is).
ADMIN_GROUPS = frozenset({"rbac.authorization.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io",
                          "apiregistration.k8s.io", "certificates.k8s.io"})
#: Core resources whose changes are administrative.
ADMIN_RESOURCES = frozenset({"nodes", "bindings", "persistentvolumes", "namespaces"})
#: Subresources that hand out power: minting tokens, scheduling onto a node, a node's kubelet API.
ADMIN_SUBRESOURCES = frozenset({("serviceaccounts", "token"), ("pods", "binding"), ("nodes", "proxy"),
                                ("pods", "eviction"), ("certificatesigningrequests", "approval")})
#: Queries sent with POST that change nothing (``kubectl auth can-i``, ``kubectl auth whoami``).
REVIEW_RESOURCES = frozenset({("authorization.k8s.io", "selfsubjectaccessreviews"),
                              ("authorization.k8s.io", "selfsubjectrulesreviews"),
                              ("authorization.k8s.io", "subjectaccessreviews"),
                              ("authorization.k8s.io", "localsubjectaccessreviews"),
                              ("authentication.k8s.io", "selfsubjectreviews"),
                              ("authentication.k8s.io", "tokenreviews")})
#: Cluster-scoped resources: a collection of them without a namespace is ``_cluster/...``, not every
#: namespace's.
CLUSTER_SCOPED = frozenset({"nodes", "namespaces", "persistentvolumes", "clusterroles", "clusterrolebindings",
                            "customresourcedefinitions", "storageclasses", "priorityclasses", "csidrivers",
                            "csinodes", "volumeattachments", "ingressclasses", "runtimeclasses",
                            "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                            "validatingadmissionpolicies", "validatingadmissionpolicybindings",
                            "apiservices", "certificatesigningrequests", "componentstatuses",
                            "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews",
                            "selfsubjectreviews", "tokenreviews", "flowschemas", "prioritylevelconfigurations"})


def builtin_group(group: str) -> bool:
    """Core and the groups Kubernetes itself serves (``apps``, ``batch``, ``*.k8s.io``)."""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def resource_name(request: ApiRequest) -> str:
    """``pods``, ``deployments``; ``certificates.cert-manager.io`` outside the built-in groups."""
    if builtin_group(request.group):
        return request.resource
    return f"{request.resource}.{request.group}"


def command_kind(request: ApiRequest) -> Kind:
    if request.unrecognised:
        return Kind.UNKNOWN
    if request.non_resource:
        return Kind.READ
    verb = request.verb
    if request.resource == "nodes" and verb == "proxy":
        return Kind.ADMIN
    if verb in READ_VERBS:
        return Kind.READ
    if verb in EXEC_VERBS:
        return Kind.EXEC
    if verb == "create" and (request.group, request.resource) in REVIEW_RESOURCES:
        return Kind.READ
    if request.group in ADMIN_GROUPS or (request.group == "" and request.resource in ADMIN_RESOURCES) or \
            (request.resource, request.subresource) in ADMIN_SUBRESOURCES:
        return Kind.ADMIN
    if request.subresource == "ephemeralcontainers":
        return Kind.EXEC  # a new container in a running pod runs whatever it is given
    return Kind.WRITE


def _namespace_part(request: ApiRequest) -> str:
    if request.namespace is not None:
        return escape(request.namespace)
    if request.name is not None or request.resource in CLUSTER_SCOPED:
        return CLUSTER
    return "*"  # a namespaced collection across every namespace (kubectl -A)


def command_objects(request: ApiRequest) -> tuple[str, ...]:
    if request.unrecognised or request.non_resource:
        return (escape(request.proxy_path or "/"),) if request.proxy_path else ()
    base = f"{_namespace_part(request)}/{escape(resource_name(request))}"
    if request.name is None:
        return (f"{base}/*",)
    obj = f"{base}/{escape(request.name)}"
    out = [obj]
    if request.subresource:
        out.append(f"{obj}/{escape(request.subresource)}")
    if request.resource == "namespaces" and request.group == "" and request.verb not in READ_VERBS:
        out.append(f"{escape(request.name)}/*")  # what is in the namespace goes with it
    return tuple(out)


def _scope_text(request: ApiRequest) -> str:
    if request.namespace is not None:
        return f" -n {shlex.quote(request.namespace)}"
    if request.name is None and request.resource not in CLUSTER_SCOPED:
        return " -A"
    return ""


def command_text(request: ApiRequest, method: str, path_and_query: str) -> str:
    """kubectl-like: ``list pods -n prod``, ``delete pods/web-1 -n prod``, ``get /version``."""
    if request.unrecognised:
        return f"{method} {path_and_query}"
    if request.non_resource:
        return f"get {path_and_query}"
    what = resource_name(request)
    if request.name is not None:
        what += f"/{request.name}"
    if request.subresource:
        what += f"/{request.subresource}"
    text = f"{request.verb} {shlex.quote(what)}{_scope_text(request)}"
    selector = request.values("labelSelector")
    if selector and selector[0]:
        text += f" -l {shlex.quote(selector[0])}"
    if request.verb == "proxy" and request.proxy_path:
        text += f" {shlex.quote(request.proxy_path)}"
    return text


def classify(request: ApiRequest, method: str, path_and_query: str) -> CommandSpec:
    """The command of a request (exec and attach get their argv from :func:`classify_exec`)."""
    if request.verb in ("exec", "attach") and not request.unrecognised:
        return classify_exec(request)
    attributes: dict[str, Any] = {"api_group": request.group, "api_version": request.version}
    if request.non_resource:
        attributes["non_resource"] = True
    if request.verb == "portforward":
        attributes["ports"] = request.values("ports")
    return CommandSpec(text=command_text(request, method, path_and_query), kind=command_kind(request),
                       verb=request.verb, objects=command_objects(request), attributes=attributes,
                       object_syntax=ObjectSyntax.PATH)


def classify_exec(request: ApiRequest) -> CommandSpec:
    """``exec pods/web-1 -n prod -c app -- rm -rf /data``: the argv is read as a shell command line (what a
    ``sh -c`` runs included), so ``verb = "rm"`` and ``objects = ["/data/*"]`` rules apply as over SSH."""
    argv = request.values("command")
    container = (request.values("container") or [""])[0]
    base = f"{request.verb} pods/{request.name}" if request.resource == "pods" else \
        f"{request.verb} {resource_name(request)}/{request.name}"
    text = base + _scope_text(request)
    if container:
        text += f" -c {shlex.quote(container)}"
    flags: set[str] = set()
    verbs = [request.verb]
    objects = list(command_objects(request))
    attributes: dict[str, Any] = {"container": container, "tty": request.flag("tty"),
                                  "stdin": request.flag("stdin"), "api_group": request.group}
    if argv:
        line = shlex.join(argv)
        text += f" -- {line}"
        attributes["argv"] = argv
        from gw_shellanalysis import analyse  # the shell analyser is loaded by the first exec

        analysis = analyse(line)
        verbs.extend(v for v in analysis.verbs if v not in verbs)
        objects.extend(o for o in analysis.objects if o not in objects)
        flags.update(analysis.flags)
        if analysis.unknown:
            # Still kind exec (a rule on kind = "exec" must see every exec); the flag says gw could not
            # reduce the line to fixed programs, for rules that hold or refuse such lines.
            flags.add("unparsed")
            attributes["unknown"] = list(analysis.reasons)
        if analysis.interactive:
            attributes["interactive"] = list(analysis.interactive)
    if request.flag("tty"):
        flags.add("tty")
    return CommandSpec(text=text, kind=Kind.EXEC, verb=request.verb, objects=tuple(objects),
                       flags=frozenset(flags), attributes=attributes, verbs=tuple(verbs),
                       object_syntax=ObjectSyntax.PATH)
