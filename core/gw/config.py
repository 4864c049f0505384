"""The pipeline file: pydantic models, loading, and errors that name file + key path.

Core validates the shape it owns (``[gateway]``, which plugin each table uses, how pipelines and listeners
refer to each other).  Each plugin validates its own options with its own model, reached through the registry:
core never knows a stage's options.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """``"10m"``, ``"30s"``, ``"1h"``, ``"30d"``, ``"1h30m"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", value)
        if parts and re.fullmatch(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+", value):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"expected a duration such as \"30s\", \"10m\", \"1h\" or \"30d\", got {value!r}")


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration`: ``timedelta(days=90)`` -> ``"90d"``, 5400 s -> ``"1h30m"``."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, seconds = divmod(seconds, size)
        if n:
            out += f"{int(n)}{unit}"
    if seconds or not out:
        out += f"{seconds:g}s"
    return out


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def parse_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:15432"`` / ``"[::1]:15432"`` / ``":15432"`` -> (host, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not m:
        raise ValueError(f"expected HOST:PORT such as \"127.0.0.1:15432\", got {value!r}")
    host = m.group(1) or m.group(3) or "0.0.0.0"
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def _address(value: str) -> str:
    parse_address(value)
    return value


#: ``HOST:PORT`` (checked, kept as written).
Address = Annotated[str, AfterValidator(_address)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewaySection(_Strict):
    #: Where gw keeps its state (database, recordings, host keys); relative to the pipeline file.
    data_dir: Path = Path(".gw")
    #: How long in-flight sessions may run after SIGTERM/SIGINT before they are cancelled.
    drain_timeout: Duration = timedelta(seconds=10)
    #: Limit on a client's authentication handshake.
    handshake_timeout: Duration = timedelta(seconds=10)
    #: Name of this gateway instance in audit records and of its audit chain (defaults to the host name).
    #: Gateways sharing one store need distinct names (``gw serve --name`` overrides it).
    name: str | None = Field(default=None, min_length=1)
    #: A gateway claims its audit chain in the store; a claim not renewed for this long may be taken over.
    chain_lease: Duration = timedelta(seconds=15)

    @field_validator("chain_lease")
    @classmethod
    def _lease(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("chain_lease must be at least 1s (for example \"15s\")")
        return v
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``text`` (one readable line per event) or ``json`` (one JSON object per line); ``--log-format``
    #: overrides it.
    log_format: Literal["text", "json"] = "text"
    #: ``HOST:PORT`` of the admin endpoint (``/metrics``, ``/healthz``, ``/readyz``), served by the plugin
    #: that implements ``gw_admin_server`` (gw-metrics); unset: no admin endpoint.
    admin_listen: Address | None = None


class PluginTable(BaseModel):
    """A table that names its plugin with ``use``; the plugin validates the rest."""

    model_config = ConfigDict(extra="allow")
    use: str


class PipelineSection(_Strict):
    stages: list[PluginTable] = Field(default_factory=list)


class ListenerTable(BaseModel):
    """The keys core reads from a listener; the protocol plugin's model validates the whole table."""

    model_config = ConfigDict(extra="allow")
    name: str
    protocol: str
    listen: Address
    identity: str | list[str]
    #: Optional here: a protocol that proxies nothing (the console) has none; the runtime requires it for
    #: every protocol whose handler says it needs one.
    pipeline: str | None = None


class GatewayFile(_Strict):
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    storage: PluginTable | None = None
    identity: dict[str, PluginTable] = Field(default_factory=dict)
    pipelines: dict[str, PipelineSection] = Field(default_factory=dict)
    listeners: list[ListenerTable] = Field(default_factory=list)


def format_loc(loc: Sequence[int | str], prefix: str = "") -> str:
    """``("pipelines", "agents", "stages", 2, "timeout")`` -> ``pipelines.agents.stages[2].timeout``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_error(err: ValidationError, *, file: str | None, prefix: str = "") -> ConfigError:
    problems = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and (p in ("str", "int", "float", "bool")
                                                                   or p.startswith(("function-", "list[", "dict["))))]
        path = format_loc(loc, prefix)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against docs/pipeline.md)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        msg = msg.removeprefix("Value error, ")
        problems.append((path, msg))
    if len(problems) == 1:
        return ConfigError(problems[0][1], file=file, path=problems[0][0] or None)
    lines = "\n".join(f"  {p}: {m}" for p, m in problems)
    return ConfigError(f"{len(problems)} problems:\n{lines}", file=file)


def validate_model(model: type[BaseModel], data: Any, *, file: str | None, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, file=file, prefix=prefix) from None


class LoadedConfig:
    """A parsed pipeline file: the raw dict, the validated core model, and where it came from."""

    def __init__(self, path: Path, raw: dict[str, Any], model: GatewayFile) -> None:
        self.path = path
        self.raw = raw
        self.model = model

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str | Path) -> Path:
        """Relative paths in the pipeline file are relative to the file's own directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self.resolve_path(self.model.gateway.data_dir)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate the core shape of a pipeline file (plugin options are checked by the runtime).

    The file is TOML 1.1 (read with tomli), so long inline tables such as a stage's options may span lines:
    ``{ use = "mask", columns = [...],`` newline ``detectors = [...] }``."""
    p = Path(path)
    name = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=name) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", file=name) from None
    try:
        raw = tomli.loads(text)
    except tomli.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=name) from None
    model = validate_model(GatewayFile, raw, file=name, prefix="")
    _check_references(model, name)
    return LoadedConfig(p.resolve(), raw, model)


def _check_references(model: GatewayFile, file: str) -> None:
    names: set[str] = set()
    addresses: dict[tuple[str, int], str] = {}
    for i, listener in enumerate(model.listeners):
        where = f"listeners[{i}]"
        if listener.name in names:
            raise ConfigError(f"listener name {listener.name!r} is used twice", file=file, path=f"{where}.name")
        names.add(listener.name)
        if listener.pipeline is not None and listener.pipeline not in model.pipelines:
            known = ", ".join(sorted(model.pipelines)) or "none defined"
            raise ConfigError(f"pipeline {listener.pipeline!r} is not defined under [pipelines] "
                              f"(defined: {known})", file=file, path=f"{where}.pipeline")
        idents = [listener.identity] if isinstance(listener.identity, str) else listener.identity
        if not idents:
            raise ConfigError("name at least one identity provider", file=file, path=f"{where}.identity")
        for ident in idents:
            if ident not in model.identity:
                known = ", ".join(sorted(model.identity)) or "none defined"
                raise ConfigError(f"identity provider {ident!r} is not defined as an [identity.{ident}] table "
                                  f"(defined: {known})", file=file, path=f"{where}.identity")
        host, port = parse_address(listener.listen)
        if port and (host, port) in addresses:
            raise ConfigError(f"address {listener.listen} is already used by listener "
                              f"{addresses[(host, port)]!r}", file=file, path=f"{where}.listen")
        addresses[(host, port)] = listener.name
