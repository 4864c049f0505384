"""What an exported event looks like: JSON or CEF, framed for syslog (RFC 5424, octet counting over TCP).

An event is the audit record as ``gw audit list --json`` prints it (``id`` -- its position in the store,
``ts`` -- Unix time, ``time`` -- ISO 8601) plus ``event`` (the record type: ``session_start``, ``command``,
``outcome``, ``session_end``, ``session_refused`` ...) and ``gateway``.  Audit records are already redacted
(detectors' findings replaced by ``***``), so an exported event never carries more than the audit trail.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from gw.store import Entry


def iso(ts: Any) -> str | None:
    if not isinstance(ts, (int, float)):
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def event_of(entry: Entry, gateway: str) -> dict[str, Any]:
    data = entry.data
    out: dict[str, Any] = {"id": entry.seq, **data, "ts": data.get("time"), "time": iso(data.get("time"))}
    out["event"] = data.get("type")
    out["gateway"] = data.get("gateway") or gateway
    return out


def to_json(event: Mapping[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)


# -- CEF (ArcSight Common Event Format, version 0) ---------------------------------------------------------------

def _cef_header(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return (text.replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n")
            .replace("\r", "\\n"))


def _version() -> str:
    try:
        return metadata.version("gw")
    except metadata.PackageNotFoundError:
        return "0"


_VERSION = _version()

#: CEF severity (0-10) and name per event type / verdict.
_SEVERITY = {"denied": 7, "pending": 5, "allowed": 3}
_NAMES = {"session_start": "session started", "session_end": "session ended",
          "session_refused": "client refused", "outcome": "command completed"}


def to_cef(event: Mapping[str, Any]) -> str:
    kind = str(event.get("event") or "event")
    verdict = event.get("verdict")
    if kind == "command":
        signature, name = f"command:{verdict}", f"command {verdict}"
        severity = _SEVERITY.get(str(verdict), 5)
    else:
        signature, name = kind, _NAMES.get(kind, kind.replace("_", " "))
        severity = 6 if kind == "session_refused" else 5 if event.get("status") == "error" else 2
    ext: list[tuple[str, Any]] = []
    ts = event.get("ts")
    if isinstance(ts, (int, float)):
        ext.append(("rt", int(ts * 1000)))
    for key, cef_key in (("subject", "suser"), ("claimed_user", "duser"), ("client", "src"),
                         ("gateway", "dvchost"), ("verdict", "act"), ("reason", "reason"),
                         ("kind", "cat"), ("id", "externalId")):
        value = event.get(key)
        if value not in (None, "", []):
            if cef_key == "src":
                value = str(value).rsplit(":", 1)[0].strip("[]")
            ext.append((cef_key, value))
    custom = (("text", "statement"), ("session", "session"), ("listener", "listener"),
              ("pipeline", "pipeline"), ("stage", "stage"), ("rule", "rule"))
    for i, (key, label) in enumerate(custom, start=1):
        value = event.get(key)
        if value not in (None, "", []):
            ext += [(f"cs{i}", value), (f"cs{i}Label", label)]
    for key, cef_key in (("seq", "cn1"), ("rows", "cn2")):
        value = event.get(key)
        if isinstance(value, int):
            ext += [(cef_key, value), (f"{cef_key}Label", "command seq" if key == "seq" else "rows")]
    extension = " ".join(f"{k}={_cef_value(v)}" for k, v in ext)
    header = "|".join(_cef_header(v) for v in ("gw", "gw", _VERSION, signature, name, severity))
    return f"CEF:0|{header}|{extension}"


def render(event: Mapping[str, Any], fmt: str) -> str:
    return to_cef(event) if fmt == "cef" else to_json(event)


# -- syslog (RFC 5424) -----------------------------------------------------------------------------------------

#: Severity (RFC 5424 section 6.2.1): warning for refusals, notice for session changes, info otherwise.
def syslog_severity(event: Mapping[str, Any]) -> int:
    if event.get("event") == "session_refused" or event.get("verdict") == "denied":
        return 4
    if str(event.get("event", "")).startswith("session"):
        return 5
    return 6


_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def _field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit`` characters, or ``-``."""
    text = _PRINTABLE.sub("_", value)[:limit]
    return text or "-"


def rfc5424(event: Mapping[str, Any], message: str, *, facility: int, hostname: str) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME gw PROCID MSGID - MSG``.  MSG is the UTF-8 event without a byte order mark
    (RFC 5424's MSG-ANY form, as rsyslog and syslog-ng send it): a BOM in front of JSON breaks most parsers."""
    pri = facility * 8 + syslog_severity(event)
    ts = event.get("ts")
    stamp = (datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
             if isinstance(ts, (int, float)) else "-")
    msgid = _field(str(event.get("event") or "-"), 32)
    header = f"<{pri}>1 {stamp} {_field(hostname, 255)} gw {os.getpid()} {msgid} - "
    return header.encode("ascii") + message.encode("utf-8", "surrogatepass")


def octet_counted(frame: bytes) -> bytes:
    """RFC 6587 section 3.4.1: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(frame)).encode("ascii") + b" " + frame
