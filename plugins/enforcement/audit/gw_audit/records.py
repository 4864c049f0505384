"""What an audit record holds: one builder per record type, and the indexed fields ``gw audit list`` filters on.

Records are plain JSON objects (see docs/plugins/audit.md for every field).  They are built from the
protocol-neutral model only, so the same record format serves every protocol.  Sensitive material stays out:
bind parameters only with ``include_params``, statement text cut at ``max_text`` characters (with a hash of the
whole text), and values found by the ``redact`` detectors replaced by ``***`` before anything is persisted.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gw.detect import Detector
from gw.model import Command, Decision, Identity, Outcome, Session, Verdict, now

#: The stream every audit record goes to; chains are told apart by the indexed ``chain`` field.
STREAM = "audit"
#: Record format version (``v``), bumped when a field changes meaning.
FORMAT = 1

VERDICT_WORDS = {Decision.ALLOW: "allowed", Decision.DENY: "denied", Decision.PENDING: "pending"}

REDACTED = "***"

Record = dict[str, Any]
Index = dict[str, str]


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON (str keys, finite numbers, lists), so hashing and storing it cannot fail and it
    reads back exactly as it was hashed."""
    # The plain types first, by exact type: the abstract-class checks below cost several times more, and
    # every record's notes and attributes pass through here.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if _depth <= 16:
        if kind is list or kind is tuple:
            return [json_safe(v, _depth + 1) for v in value]
        if kind is dict:
            return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, _depth)
    if _depth > 16:
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v, _depth + 1) for v in value), key=str)
    if isinstance(value, Sequence):
        return [json_safe(v, _depth + 1) for v in value]
    return str(value)


class Redactor:
    """Replaces what the configured detectors find (SSNs, card numbers ...) with ``***``.

    It runs on every statement, so detectors that declare a ``prefilter`` (a compiled regular expression
    matching somewhere in every text in which ``find`` can find something, as gw-mask's built-ins do) are
    grouped by it: each distinct prefilter is searched once per text, and the detectors behind it run only
    when it matched.  A typical statement (``... WHERE id = 42``) then costs one C-speed search, not a
    validation pass per detector.  Detectors without a prefilter always run."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        groups: dict[re.Pattern[str] | None, list[Callable[[str], Iterable[tuple[int, int]]]]] = {}
        for d in self.detectors:
            prefilter = getattr(d, "prefilter", None)
            if not (isinstance(prefilter, re.Pattern) and isinstance(prefilter.pattern, str)):
                prefilter = None
            groups.setdefault(prefilter, []).append(d.find)
        self._groups = tuple((p.search if p is not None else None, tuple(finds)) for p, finds in groups.items())

    def _spans(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for search, finds in self._groups:
            if search is None or search(text) is not None:
                for find in finds:
                    spans.extend(find(text))
        return spans

    def __call__(self, text: str) -> str:
        if not self.detectors or not text:
            return text
        spans = sorted(self._spans(text))
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in spans:
            if end <= pos:
                continue
            out.append(text[pos:max(pos, start)])
            out.append(REDACTED)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-safe value."""
        if not self.detectors:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value


class RecordBuilder:
    """Builds the records of one audit stage (its options decide what is kept)."""

    def __init__(self, *, include_params: bool, max_text: int, redactor: Redactor) -> None:
        self.include_params = include_params
        self.max_text = max_text
        self.redact = redactor

    def _text(self, text: str) -> Record:
        fields: Record = {}
        if len(text) > self.max_text:
            fields["text_truncated"] = True
            fields["text_length"] = len(text)
            fields["text_sha256"] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            text = text[: self.max_text]
        fields["text"] = self.redact(text)
        return fields

    def _who(self, session: Session) -> Record:
        identity = session.identity
        return {
            "session": session.id, "listener": session.listener, "protocol": session.protocol,
            "subject": identity.subject, "groups": list(identity.groups), "provider": identity.provider,
            # what the client claimed to be is the client's text, like a command's
            "client": session.client_address, "claimed_user": self.redact(session.claimed_user),
            "upstream": session.upstream,
        }

    def command(self, gateway: str, pipeline: str, command: Command, verdict: Verdict) -> tuple[Record, Index]:
        """The record written before the command is forwarded (or refused)."""
        word = VERDICT_WORDS[verdict.decision]
        record: Record = {
            "v": FORMAT, "type": "command", "time": now(), "gateway": gateway, "pipeline": pipeline,
            **self._who(command.session),
            "seq": command.seq, "language": command.language, "kind": str(command.kind),
            "verb": self.redact(command.verb), "objects": [self.redact(o) for o in command.objects],
            "flags": sorted(command.flags),
            **self._text(command.text),
            "verdict": word, "code": verdict.code.value if verdict.code is not None else None,
            "stage": verdict.stage or None, "rule": verdict.rule or None,
            "reason": self.redact(verdict.reason) or None,
            "request_id": verdict.request_id, "approved_by": list(verdict.approved_by),
        }
        if self.include_params:
            record["params"] = self.redact.deep(json_safe(command.params))
        measured = command.attributes.get("measured") if command.attributes else None
        if isinstance(measured, dict):
            # The row count the database reported for a rows_over rule (None: unknown, with the reason).
            record["measured_rows"] = measured.get("rows")
            if measured.get("reason"):
                record["measured_reason"] = self.redact(str(measured["reason"]))
        session = command.session
        index = {"type": "command", "subject": session.identity.subject, "session": session.id,
                 "listener": session.listener, "verdict": word}
        return record, index

    def outcome(self, gateway: str, command: Command, outcome: Outcome) -> tuple[Record, Index]:
        """What happened to the command: rows, tag, error, duration, notes from stages (mask counts ...)."""
        session = command.session
        record: Record = {
            "v": FORMAT, "type": "outcome", "time": now(), "gateway": gateway,
            "session": session.id, "seq": command.seq, "listener": session.listener,
            "subject": session.identity.subject,
            "status": outcome.status, "rows": outcome.rows, "tag": outcome.tag,
            "error_code": outcome.error_code,
            "error_message": self.redact(outcome.error_message) if outcome.error_message else None,
            "duration": json_safe(outcome.duration), "notes": self.redact.deep(json_safe(outcome.notes)),
            "notices": len(outcome.notices),
        }
        return record, {"type": "outcome", "session": session.id}

    def session_start(self, gateway: str, session: Session) -> tuple[Record, Index]:
        record: Record = {
            "v": FORMAT, "type": "session_start", "time": now(), "gateway": gateway, **self._who(session),
            "started_at": session.started_at, "token_expires_at": session.identity.expires_at,
            "attributes": self.redact.deep(json_safe(session.attributes)),
        }
        return record, self._session_index(session)

    def session_end(self, gateway: str, session: Session, reason: str) -> tuple[Record, Index]:
        t = now()
        record: Record = {
            "v": FORMAT, "type": "session_end", "time": t, "gateway": gateway, **self._who(session),
            "reason": reason, "duration": json_safe(max(0.0, t - session.started_at)),
        }
        return record, self._session_index(session)

    def session_refused(self, gateway: str, *, listener: str, protocol: str, client_address: str,
                        claimed_user: str, reason: str, message: str) -> tuple[Record, Index]:
        """A client refused before a session began; ``claimed_user`` is what it said, never verified."""
        record: Record = {
            "v": FORMAT, "type": "session_refused", "time": now(), "gateway": gateway, "listener": listener,
            "protocol": protocol, "client": client_address, "claimed_user": self.redact(claimed_user),
            "reason": reason,
            "message": self.redact(message),
        }
        return record, {"type": "session", "listener": listener}

    def event(self, gateway: str, event: str, identity: Identity, details: Mapping[str, Any],
              client_address: str = "") -> tuple[Record, Index]:
        """Something a person did outside a proxied session: a console login, a decision taken there."""
        record: Record = {
            "v": FORMAT, "type": "event", "event": event, "time": now(), "gateway": gateway,
            "subject": identity.subject, "groups": list(identity.groups), "provider": identity.provider,
            "client": client_address, "details": self.redact.deep(json_safe(dict(details))),
        }
        return record, {"type": "event", "subject": identity.subject}

    @staticmethod
    def _session_index(session: Session) -> Index:
        return {"type": "session", "session": session.id, "subject": session.identity.subject,
                "listener": session.listener}
