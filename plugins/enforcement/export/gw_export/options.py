"""``{ use = "export", to = "...", format = "json" | "cef", ... }``: where the audit trail goes and how."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from gw.config import Duration
from gw.stage import StageOptions
from pydantic import Field, field_validator, model_validator

EXPECTED = ('expected "syslog+tcp://HOST:PORT", "syslog+udp://HOST:PORT", "https://HOST/PATH" or '
            '"file:///PATH"')

#: syslog facilities by name (RFC 5424 section 6.2.1).
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
              "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``to``: ``kind`` is ``syslog+tcp``, ``syslog+udp``, ``https`` (``http`` on loopback) or ``file``."""

    kind: str
    host: str = ""
    port: int = 0
    url: str = ""
    path: str = ""

    def describe(self) -> str:
        """Credential-free, for logs, metrics labels and ``gw storage info``."""
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind.startswith("syslog"):
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{self.kind}://{host}:{self.port}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(value: str) -> Target:
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = (parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else parts.path
        if not path:
            raise ValueError(f"{EXPECTED}, got {value!r} (no file path)")
        return Target("file", path=path)
    if scheme in ("syslog+tcp", "syslog+udp"):
        try:
            port = parts.port or 514
        except ValueError:
            raise ValueError(f"{EXPECTED}, got {value!r} (bad port)") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.username or parts.query:
            raise ValueError(f"{EXPECTED}, got {value!r}")
        return Target(scheme, host=parts.hostname, port=port)
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise ValueError(f"{EXPECTED}, got {value!r} (no host)")
        if parts.username or parts.password:
            raise ValueError("put credentials in headers (with ${ENV} for the token), not in the URL: "
                             "headers = { Authorization = \"Splunk ${SPLUNK_HEC_TOKEN}\" }")
        if scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(f"http:// sends the audit trail (and any token in headers) in the clear; use "
                             f"https://{parts.netloc}{parts.path} (plain http is allowed to loopback only)")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"{EXPECTED}, got {value!r} (bad port)") from None
        return Target(scheme, host=parts.hostname, port=port, url=value.strip())
    raise ValueError(f"{EXPECTED}, got {value!r}")


def expand_env(value: str, environ: dict[str, str], where: str) -> str:
    """``${NAME}`` replaced by the environment variable NAME; a missing one is an error naming it."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise ValueError(f"{where}: environment variable {name} is not set")
        return environ[name]

    return _ENV.sub(sub, value)


class ExportOptions(StageOptions):
    """Options of ``{ use = "export" }``; see docs/plugins/export.md."""

    #: Where events go: ``syslog+tcp://HOST:PORT``, ``syslog+udp://HOST:PORT``, ``https://HOST/PATH`` or
    #: ``file:///PATH``.
    to: str
    #: ``json`` (the ``gw audit list --json`` record plus ``event`` and ``gateway``) or ``cef`` (ArcSight CEF).
    format: Literal["json", "cef"] = "json"
    #: This sink's name in metrics, logs and ``gw storage info``, and the key of its delivery position in the
    #: store; default: ``to`` without its query string.
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/@+-]+$")
    #: HTTP headers (https only); ``${NAME}`` is replaced by the environment variable NAME when gw starts.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Most events per HTTP request, syslog write or file append.
    batch: int = Field(default=100, ge=1, le=10000)
    #: Limit on connecting and on each delivery.
    timeout: Duration = timedelta(seconds=10)
    #: Longest wait between retries while the sink is down (backoff starts at 0.5 s and doubles).
    retry_max: Duration = timedelta(seconds=5)
    #: CA bundle (PEM) that signs the https collector's certificate, instead of the system's.
    ca_file: str | None = None
    #: syslog facility (RFC 5424): ``authpriv`` (10) by default.
    facility: Literal[tuple(FACILITIES)] = "authpriv"  # type: ignore[valid-type]

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: str) -> str:
        parse_target(value)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> ExportOptions:
        kind = parse_target(self.to).kind
        if self.headers and kind not in ("https", "http"):
            raise ValueError("headers apply to https sinks only")
        if self.ca_file and kind not in ("https", "http"):
            raise ValueError("ca_file applies to https sinks only")
        for key, value in self.headers.items():
            if "\n" in key or "\r" in key or "\n" in value or "\r" in value:
                raise ValueError(f"headers.{key}: a header cannot contain a line break")
        return self

    @property
    def target(self) -> Target:
        return parse_target(self.to)
