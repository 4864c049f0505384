"""The pipeline file: pydantic models, loading, and errors that name file + key path.

Core validates the shape it owns (``[gateway]``, which plugin each table uses, how pipelines and listeners
refer to each other).  Each plugin validates its own options with its own model, reached through the registry:
core never knows a stage's options.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import tomli
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .types import (
    Address,
    ByteSize,
    Duration,
    Port,
    StrictModel,
    did_you_mean,
    format_duration,
    format_size,
    parse_address,
    parse_duration,
    parse_size,
)

__all__ = [
    "Address",
    "ByteSize",
    "ConfigError",
    "Duration",
    "LoadedConfig",
    "Port",
    "StrictModel",
    "format_duration",
    "format_loc",
    "format_size",
    "load_config",
    "parse_address",
    "parse_duration",
    "parse_size",
    "validate_model",
    "validation_error",
]

_Strict = StrictModel


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


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return next((m for m in map(_model_in, typing.get_args(tp)) if m is not None), None)


def _keys_at(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    """The keys the model accepts at ``loc`` (a table's path), for "did you mean" on an unknown key."""
    cur = model
    for part in loc:
        field = cur.model_fields.get(part) if cur is not None and isinstance(part, str) else None
        if field is not None:  # else a list index or a table name (identity.NAME): same model
            cur = _model_in(field.annotation)
    return list(cur.model_fields) if cur is not None else []


def validation_error(err: ValidationError, *, file: str | None, prefix: str = "",
                     model: type[BaseModel] | None = None) -> ConfigError:
    problems = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and (p in ("str", "int", "float", "bool")
                                                                   or p.startswith(("function-", "list[", "dict["))))]
        path = format_loc(loc, prefix)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = did_you_mean(str(loc[-1]), _keys_at(model, loc[:-1])) if loc else ""
            msg = f"unknown key: {close}" if close else "unknown key (check its spelling against docs/pipeline.md)"
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
        raise validation_error(err, file=file, prefix=prefix, model=model) from None


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
            close = did_you_mean(listener.pipeline, model.pipelines)
            raise ConfigError(f"pipeline {listener.pipeline!r} is not defined under [pipelines] "
                              f"({close + ' ' if close else ''}defined: {known})", file=file, path=f"{where}.pipeline")
        idents = [listener.identity] if isinstance(listener.identity, str) else listener.identity
        if not idents:
            raise ConfigError("name at least one identity provider", file=file, path=f"{where}.identity")
        for ident in idents:
            if ident not in model.identity:
                known = ", ".join(sorted(model.identity)) or "none defined"
                close = did_you_mean(ident, model.identity)
                raise ConfigError(f"identity provider {ident!r} is not defined as an [identity.{ident}] table "
                                  f"({close + ' ' if close else ''}defined: {known})", file=file, path=f"{where}.identity")
        host, port = parse_address(listener.listen)
        if port and (host, port) in addresses:
            raise ConfigError(f"address {listener.listen} is already used by listener "
                              f"{addresses[(host, port)]!r}", file=file, path=f"{where}.listen")
        addresses[(host, port)] = listener.name
