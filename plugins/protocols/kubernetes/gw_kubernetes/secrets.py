"""Secret values never reach the agent: ``data`` / ``stringData`` of ``Secret`` objects are redacted.

A response to a request on ``secrets`` is JSON (gw asks for it; anything else is refused, fail closed): one
object, a ``SecretList``, a ``Table`` (whose rows may carry the objects), or a watch stream of
``{"type", "object"}`` lines.  In it, every mapping that looks like a Secret (it has ``data`` or
``stringData``) gets each value replaced: ``data`` values by the base64 of :data:`REDACTED` (so the object
stays a valid Secret and ``kubectl get secret -o jsonpath=... | base64 -d`` prints the redaction),
``stringData`` values by :data:`REDACTED`.  The ``kubectl.kubernetes.io/last-applied-configuration``
annotation, which holds a copy of the object as it was applied (values included), is redacted the same way.

Other responses are scanned cheaply for a Secret inside them (a ``List`` of mixed kinds from an aggregated
API): where the bytes name the kind ``Secret``, the body is read as JSON and redacted too.
"""

from __future__ import annotations

import base64
import json
from typing import Any

#: What a secret value becomes (the mask stage's redaction).
REDACTED = "***"
REDACTED_B64 = base64.b64encode(REDACTED.encode()).decode()
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Largest body (or watch line) gw reads to redact; larger is refused rather than passed on.
MAX_BODY = 32 * 1024 * 1024


class SecretRedactionFailed(ValueError):
    """The response could not be read as JSON, so its Secret values could not be redacted."""


def _redact_object(obj: dict[str, Any]) -> int:
    count = 0
    data = obj.get("data")
    if isinstance(data, dict):
        for key in data:
            data[key] = REDACTED_B64
            count += 1
    string_data = obj.get("stringData")
    if isinstance(string_data, dict):
        for key in string_data:
            string_data[key] = REDACTED
            count += 1
    return count


def _redact_annotations(meta: dict[str, Any]) -> int:
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED not in annotations:
        return 0
    value = annotations[LAST_APPLIED]
    try:
        applied = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        applied = None
    if isinstance(applied, dict):
        redact(applied, everything=True)
        annotations[LAST_APPLIED] = json.dumps(applied, separators=(",", ":"))
    else:
        annotations[LAST_APPLIED] = REDACTED
    return 1


def redact(value: Any, *, everything: bool) -> int:
    """Redact in place; returns how many values were replaced.  ``everything``: the response is about
    secrets, so every object with ``data``/``stringData`` is one; otherwise only objects of kind ``Secret``
    and the items of a ``SecretList``."""
    count = 0
    stack: list[tuple[Any, bool]] = [(value, everything)]
    while stack:
        node, secret_context = stack.pop()
        if isinstance(node, list):
            stack.extend((item, secret_context) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("kind")
        is_secret = kind == "Secret" or (secret_context and ("data" in node or "stringData" in node))
        if is_secret:
            count += _redact_object(node)
        meta = node.get("metadata")
        if isinstance(meta, dict) and (is_secret or secret_context):
            count += _redact_annotations(meta)
        inner = secret_context or kind in ("Secret", "SecretList")
        for key, child in node.items():
            if isinstance(child, dict | list) and key not in ("data", "stringData"):
                stack.append((child, inner))
    return count


def _load(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise SecretRedactionFailed(f"a response about Secrets is not JSON gw can read ({e})") from None


class SecretBody:
    """A :class:`gw.stage.StreamFilter` redacting one JSON body (held whole: it is one document)."""

    def __init__(self, *, everything: bool) -> None:
        self.everything = everything
        self.buffer = bytearray()
        self.redacted = 0

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        if len(self.buffer) > MAX_BODY:
            raise SecretRedactionFailed(f"a response about Secrets is larger than {MAX_BODY} bytes; ask for "
                                        "fewer objects (--chunk-size, a label selector)")
        return b""

    def finish(self) -> bytes:
        body = bytes(self.buffer)
        self.buffer.clear()
        if not self.everything and b'"Secret' not in body:
            return body  # nothing of kind Secret or SecretList in it
        if not body.strip():
            return body
        doc = _load(body)
        self.redacted += redact(doc, everything=self.everything)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class SecretWatch:
    """A :class:`gw.stage.StreamFilter` for a watch stream: each complete line (one event) is redacted and
    released at once; a partial line waits for its end."""

    def __init__(self, *, everything: bool) -> None:
        self.everything = everything
        self.pending = bytearray()
        self.redacted = 0

    def _line(self, line: bytes) -> bytes:
        if not line.strip() or (not self.everything and b'"Secret' not in line):
            return line
        doc = _load(line)
        self.redacted += redact(doc, everything=self.everything)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        end = self.pending.rfind(b"\n")
        if end < 0:
            if len(self.pending) > MAX_BODY:
                raise SecretRedactionFailed(f"a watch event is larger than {MAX_BODY} bytes")
            return b""
        complete = bytes(self.pending[:end])
        del self.pending[:end + 1]
        return b"".join(self._line(line) + b"\n" for line in complete.split(b"\n"))

    def finish(self) -> bytes:
        rest = bytes(self.pending)
        self.pending.clear()
        return self._line(rest) if rest else b""
