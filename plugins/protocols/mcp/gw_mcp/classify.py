"""What an MCP request is as a :class:`gw.model.Command`.

* ``tools/call``: verb = the tool's name, text = ``name {arguments as JSON}`` (keys sorted, so the same call is
  the same text), objects = the values of the arguments the operator names in ``objects_from``, kind = the
  listener's ``tool_kinds`` entry, else the tool's annotations (``readOnlyHint`` -> read, ``destructiveHint``
  or a tool that is not read-only -> write), else ``unknown``.  Flags carry the annotations (``read_only``,
  ``destructive``, ``idempotent``, ``open_world``) or ``unannotated``.
* ``resources/read``: verb ``resources/read``, object = the URI, kind read.
* ``prompts/get``: verb ``prompts/get``, object = the prompt's name, kind read.

Classification is fail-closed: a tool whose annotations contradict each other (read-only *and* destructive)
is a write.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from gw.model import Kind

from .options import McpListenerOptions

LANGUAGE = "mcp"


class Spec(NamedTuple):
    text: str
    kind: Kind
    verb: str
    objects: tuple[str, ...]
    flags: frozenset[str]


def arguments_text(arguments: dict[str, Any] | None) -> str:
    return json.dumps(arguments or {}, sort_keys=True, ensure_ascii=False, default=str)


def _object_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for item in value for v in _object_values(item)]
    if isinstance(value, str):
        return [value]
    return [json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)]


def tool_kind(tool: dict[str, Any] | None) -> tuple[Kind, frozenset[str]]:
    annotations = (tool or {}).get("annotations")
    if not isinstance(annotations, dict) or not annotations:
        return Kind.UNKNOWN, frozenset({"unannotated"})
    flags: set[str] = set()
    read_only = annotations.get("readOnlyHint")
    destructive = annotations.get("destructiveHint")
    if read_only is True:
        flags.add("read_only")
    if destructive is True:
        flags.add("destructive")
    if annotations.get("idempotentHint") is True:
        flags.add("idempotent")
    if annotations.get("openWorldHint") is True:
        flags.add("open_world")
    if destructive is True or read_only is False:
        return Kind.WRITE, frozenset(flags)
    if read_only is True:
        return Kind.READ, frozenset(flags)
    return Kind.UNKNOWN, frozenset(flags | {"unannotated"})


def tool_call(options: McpListenerOptions, name: str, arguments: dict[str, Any] | None,
              tool: dict[str, Any] | None) -> Spec:
    kind, flags = tool_kind(tool)
    configured = options.kind_for(name)
    if configured is not None:
        kind = configured
    objects: list[str] = []
    for arg in options.object_arguments(name):
        objects.extend(_object_values((arguments or {}).get(arg)))
    return Spec(f"{name} {arguments_text(arguments)}", kind, name, tuple(objects), flags)


def resource_read(uri: str) -> Spec:
    return Spec(f"resources/read {uri}", Kind.READ, "resources/read", (uri,), frozenset())


def prompt_get(name: str, arguments: dict[str, Any] | None) -> Spec:
    return Spec(f"prompts/get {name} {arguments_text(arguments)}", Kind.READ, "prompts/get", (name,),
                frozenset())


def named_params(arguments: dict[str, Any] | None) -> dict[str, str | None]:
    """Arguments as approvers read them: strings as they are, anything else as JSON."""
    out: dict[str, str | None] = {}
    for key, value in (arguments or {}).items():
        if value is None or isinstance(value, str):
            out[str(key)] = value
        else:
            out[str(key)] = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return out
