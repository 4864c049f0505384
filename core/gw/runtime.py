"""Builds a running gateway from a pipeline file: the store, identity providers, pipelines and listeners.

``Runtime.build`` validates everything (plugin options included) without touching the outside world, which
is what ``gw check`` prints; ``open`` connects (creates the database, fetches keys ...); ``close`` releases.
CLI commands use the same runtime, so ``gw audit list`` reads exactly the store ``gw serve`` writes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import trio

from .config import LoadedConfig, load_config, validate_model
from .errors import AccessDenied, AuthenticationError, ConfigError, PluginError
from .identity import Credential, IdentityProvider
from .model import Identity, Session, SessionEnd
from .pipeline import Pipeline, SessionRuntime
from .plugins import Registry, make_plugin_manager
from .protocol import ListenerOptions, ProtocolHandler
from .stage import Stage
from .store import Store
from .tasks import Background

log = logging.getLogger("gw.runtime")


@dataclass
class Services:
    """What plugins may use: the configuration, the registry, the store and the data directory."""

    config: LoadedConfig
    registry: Registry
    gateway_name: str
    store: Store | None = None
    runtime: Runtime | None = None
    background: Background = field(default_factory=Background)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run ``fn(*args)`` as a background task in the gateway's nursery (see :mod:`gw.tasks`): it
        outlives the caller, its errors are logged, and it is cancelled when the gateway closes, after every
        plugin's ``close()``."""
        self.background.spawn(fn, *args, name=name)

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.registry.pm

    def resolve_path(self, value: str | Path) -> Path:
        return self.config.resolve_path(value)

    def require_store(self, who: str) -> Store:
        if self.store is None:
            raise ConfigError(f"{who} needs a [storage] table (for example: [storage] use = \"sqlite\")",
                              file=str(self.config.path), path="storage")
        return self.store

    def detector(self, name: str) -> Any:
        return self.registry.get("detectors", name)

    def detectors(self, names: list[str] | str) -> list[Any]:
        """Detectors by name, or every installed one for ``"all"`` (stages that redact what they persist)."""
        if names == "all":
            return [r.obj for r in self.registry.items["detectors"].values()]
        if isinstance(names, str):
            names = [names]
        return [self.detector(name) for name in names]


class ListenerRuntime:
    """One listener: its options, protocol handler, identity providers and (current) pipeline."""

    def __init__(self, runtime: Runtime, options: ListenerOptions, handler_cls: type[ProtocolHandler]) -> None:
        self.runtime = runtime
        self.options = options
        self.name = options.name
        self.handler = handler_cls(self)
        self.sessions: set[SessionRuntime] = set()
        self.bound: list[tuple[str, int]] = []

    @property
    def pipeline(self) -> Pipeline:
        if self.options.pipeline is None:
            raise ConfigError(f"listener {self.name!r} has no pipeline (its protocol proxies nothing)",
                              file=str(self.runtime.config.path))
        return self.runtime.pipelines[self.options.pipeline]

    @property
    def services(self) -> Services:
        return self.runtime.services

    @property
    def handshake_timeout(self) -> float:
        return self.runtime.config.model.gateway.handshake_timeout.total_seconds()

    @property
    def shutting_down(self) -> trio.Event:
        return self.runtime.shutting_down

    def providers(self) -> list[IdentityProvider]:
        return [self.runtime.identity[name] for name in self.options.identities]

    async def resolve(self, credential: Credential) -> Identity:
        """Authenticate and apply this listener's admission rules, without auditing (``gw whoami``)."""
        error: AuthenticationError | None = None
        identity = None
        tried = False
        for provider in self.providers():
            if not provider.accepts(credential):
                continue
            tried = True
            try:
                identity = await provider.authenticate(credential)
                break
            except AuthenticationError as e:
                error = e
        if identity is None:
            if error is not None:
                raise error
            if not tried:
                raise AuthenticationError(
                    f"the {credential.kind} presented is not in a form the identity providers of listener "
                    f"{self.name!r} understand ({', '.join(self.options.identities)}); present a token "
                    "they issue", reason="unsupported_credential")
            raise AuthenticationError("authentication failed", reason="invalid_token")
        self.admit(identity)
        return identity

    def check_revoked(self, identity: Identity) -> None:
        """Raise :class:`AccessDenied` when revocation rules refuse this identity: the listener's
        ``deny_subjects`` / ``deny_groups`` and its provider's own rules.  Applies to anyone acting through
        this listener, approvers included."""
        provider = self.runtime.identity.get(identity.provider)
        if provider is not None:
            provider.admit(identity)
        opts = self.options
        if identity.subject in opts.deny_subjects:
            raise AccessDenied(f"subject {identity.subject!r} is denied on listener {self.name!r}; ask the "
                               "gateway operator", reason="denied_subject")
        bad = [g for g in identity.groups if g in opts.deny_groups]
        if bad:
            raise AccessDenied(f"group {bad[0]!r} is denied on listener {self.name!r}; ask the gateway "
                               "operator", reason="denied_group")

    def admit(self, identity: Identity) -> None:
        """Raise :class:`AccessDenied` when this identity may not connect to this listener: revoked (see
        :meth:`check_revoked`) or in none of ``allow_groups``."""
        self.check_revoked(identity)
        opts = self.options
        if opts.allow_groups is not None and not identity.in_any(opts.allow_groups):
            have = ", ".join(identity.groups) or "none"
            want = ", ".join(opts.allow_groups)
            raise AccessDenied(
                f"identity {identity.subject!r} is not in a group allowed on listener {self.name!r} "
                f"(has: {have}; needs one of: {want}); request a token with one of those groups",
                reason="group_not_allowed")

    async def authenticate(self, credential: Credential, *, client_address: str,
                           claimed_user: str = "") -> Identity:
        """Turn the client's credential into an admitted identity, or raise
        :class:`~gw.errors.AuthenticationError` (whose message is for the client).  Refusals are audited."""
        try:
            return await self.resolve(credential)
        except AuthenticationError as e:
            await self.refused(client_address=client_address, claimed_user=claimed_user, reason=e.reason,
                               message=str(e))
            raise

    async def refused(self, *, client_address: str, claimed_user: str, reason: str, message: str) -> None:
        """Record a client refused before its session began (stages see ``session_refused``)."""
        log.info("listener %s refused %s (user %r): %s", self.name, client_address, claimed_user, message)
        await self.pipeline.session_refused(listener=self.name, protocol=self.options.protocol,
                                            client_address=client_address, claimed_user=claimed_user,
                                            reason=reason, message=message)
        self.runtime.pm.hook.gw_session_refused(listener=self.name, protocol=self.options.protocol,
                                                reason=reason)

    async def start_session(self, identity: Identity, *, client_address: str, claimed_user: str = "",
                            upstream: str = "", attributes: dict[str, str] | None = None) -> SessionRuntime:
        session = Session(
            id=Session.new_id(), listener=self.name, protocol=self.options.protocol, identity=identity,
            client_address=client_address, upstream=upstream or self.handler.describe_upstream(),
            started_at=time.time(), claimed_user=claimed_user, attributes=dict(attributes or {}),
        )
        rt = SessionRuntime(self, session)
        await self.pipeline.session_started(session)
        self.sessions.add(rt)
        self.runtime.pm.hook.gw_session_started(session=session)
        return rt

    async def session_ended(self, rt: SessionRuntime, reason: str) -> None:
        self.sessions.discard(rt)
        with trio.CancelScope(shield=True):
            await self.pipeline.session_ended(rt.session, reason)
        self.runtime.pm.hook.gw_session_ended(session=rt.session, reason=reason)


class Runtime:
    """Everything a pipeline file describes, built from the installed plugins."""

    def __init__(self, config: LoadedConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.pm = registry.pm
        name = config.model.gateway.name or socket.gethostname()
        self.services = Services(config=config, registry=registry, gateway_name=name)
        self.services.runtime = self
        self.store: Store | None = None
        self.identity: dict[str, IdentityProvider] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.listeners: dict[str, ListenerRuntime] = {}
        self.shutting_down = trio.Event()
        self._retired: list[Stage] = []
        self._identity_open = False
        self._offers: dict[str, Any] = {}
        #: Where each plugin object was configured (``pipelines.agents.stages[1]``), for error messages.
        self._where: dict[int, str] = {}
        #: Plugin objects opened so far, in order (closed in reverse if a later one fails to open).
        self._opened: list[Any] = []

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def build(cls, config: LoadedConfig | str | Path, *, pm: pluggy.PluginManager | None = None) -> Runtime:
        """Validate the whole file with every plugin's options model and instantiate (no I/O)."""
        if not isinstance(config, LoadedConfig):
            config = load_config(config)
        registry = Registry.build(pm if pm is not None else make_plugin_manager())
        rt = cls(config, registry)
        rt._build_store()
        rt._build_identity()
        rt._build_pipelines()
        rt._build_listeners()
        return rt

    def _plugin(self, kind: str, name: str, path: str) -> Any:
        try:
            return self.registry.get(kind, name)
        except PluginError as e:
            raise ConfigError(str(e), file=str(self.config.path), path=path) from None

    def _plugin_error(self, e: Exception, path: str) -> ConfigError:
        """A plugin refused its options: name this file and the most precise key path known."""
        if isinstance(e, ConfigError):
            precise = e.path if e.path and e.path.startswith(path) else path
            return ConfigError(e.detail, file=str(self.config.path), path=precise)
        return ConfigError(str(e), file=str(self.config.path), path=path)

    def _options(self, cls: type[Any], data: Any, path: str) -> Any:
        return validate_model(cls.Options, data, file=str(self.config.path), prefix=path)

    def _build_store(self) -> None:
        table = self.config.raw.get("storage")
        if table is None:
            return
        cls = self._plugin("storage", table.get("use", ""), "storage.use")
        opts = self._options(cls, table, "storage")
        self.store = cls(opts, self.services)
        self.services.store = self.store
        self._where[id(self.store)] = "storage"

    def _build_identity(self) -> None:
        for name, table in self.config.raw.get("identity", {}).items():
            cls = self._plugin("identity_providers", table.get("use", ""), f"identity.{name}.use")
            opts = self._options(cls, table, f"identity.{name}")
            try:
                self.identity[name] = cls(name, opts, self.services)
                self._where[id(self.identity[name])] = f"identity.{name}"
            except (ValueError, ConfigError) as e:
                raise self._plugin_error(e, f"identity.{name}") from None

    def _build_pipelines(self) -> None:
        for name, table in self.config.raw.get("pipelines", {}).items():
            stages: list[Stage] = []
            for i, st in enumerate(table.get("stages", [])):
                path = f"pipelines.{name}.stages[{i}]"
                cls = self._plugin("stages", st.get("use", ""), f"{path}.use")
                opts = self._options(cls, st, path)
                try:
                    stages.append(cls(opts, self.services, pipeline=name, index=i))
                    self._where[id(stages[-1])] = path
                except (ValueError, ConfigError) as e:
                    raise self._plugin_error(e, path) from None
            self.pipelines[name] = Pipeline(name, stages)

    def _build_listeners(self) -> None:
        for i, table in enumerate(self.config.raw.get("listeners", [])):
            path = f"listeners[{i}]"
            cls = self._plugin("protocols", table.get("protocol", ""), f"{path}.protocol")
            opts = self._options(cls, table, path)
            if opts.pipeline is None and cls.needs_pipeline:
                raise ConfigError("required key is missing (the pipeline of stages this listener's commands "
                                  "pass)", file=str(self.config.path), path=f"{path}.pipeline")
            try:
                self.listeners[opts.name] = ListenerRuntime(self, opts, cls)
                self._where[id(self.listeners[opts.name].handler)] = path
            except (ValueError, ConfigError) as e:
                raise self._plugin_error(e, path) from None

    # -- lifetime -------------------------------------------------------------------------------------------
    async def open(self, *, serving: bool = True, identity: bool = True) -> None:
        """Open the store, (when ``identity``) identity providers and (when ``serving``) pipelines and
        protocol handlers."""
        objects: list[Any] = [self.store] if self.store is not None else []
        self._identity_open = identity or serving
        if self._identity_open:
            objects += self.identity.values()
        if serving:
            objects += [s for p in self.pipelines.values() for s in p.stages]
            objects += [lr.handler for lr in self.listeners.values()]
        for obj in objects:
            await self._open_one(obj)

    async def _open_one(self, obj: Any) -> None:
        """Open one plugin object; on failure close what was opened and raise a :class:`ConfigError` naming
        the object's key path (``listeners[0]: cannot read tls.cert ...``), never a traceback."""
        try:
            await obj.open()
        except trio.Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 -- whatever a plugin raises becomes a configuration error
            where = self._where.get(id(obj), type(obj).__name__)
            with trio.CancelScope(shield=True):
                await self._close_opened()
            if isinstance(e, ConfigError):
                raise self._plugin_error(e, where) from None
            detail = str(e) or type(e).__name__
            raise ConfigError(f"could not start ({detail})", file=str(self.config.path), path=where) from None
        self._opened.append(obj)

    async def _close_opened(self) -> None:
        """Close, newest first, what :meth:`open` had opened before something failed."""
        while self._opened:
            obj = self._opened.pop()
            try:
                await obj.close()
            except Exception:
                log.exception("%s failed to close", self._where.get(id(obj), type(obj).__name__))
        await self.services.background.close()

    async def close(self) -> None:
        self._opened.clear()
        with trio.CancelScope(shield=True):
            for lr in self.listeners.values():
                try:
                    await lr.handler.close()
                except Exception:
                    log.exception("listener %s failed to close", lr.name)
            for p in self.pipelines.values():
                await p.close()
            if self._retired:
                await Pipeline("retired", self._retired).close()
            for provider in self.identity.values() if self._identity_open else ():
                try:
                    await provider.close()
                except Exception:
                    log.exception("identity provider %s failed to close", provider.instance_name)
            await self.services.background.close()
            if self.store is not None:
                await self.store.close()

    @asynccontextmanager
    async def opened(self, *, serving: bool = False, identity: bool = True) -> AsyncIterator[Runtime]:
        await self.open(serving=serving, identity=identity)
        try:
            yield self
        finally:
            await self.close()

    async def reload(self) -> list[str]:
        """Re-read the pipeline file and apply it to new commands of existing sessions (SIGHUP).

        The new file is validated completely first; if anything is wrong, :class:`ConfigError` is raised and
        the running configuration is kept.  Stages and identity providers whose options did not change keep
        their instance (an audit chain never forks); changed ones are opened before the switch and the old
        ones closed at shutdown.  Listener admission rules apply at once: sessions whose identity the new
        rules refuse are terminated with reason ``revoked``.  Listeners cannot be added, removed or moved
        without a restart.  Returns a list of human-readable changes.
        """
        new = Runtime.build(load_config(self.config.path), pm=self.pm)
        changes: list[str] = []
        old_names = {n: (lr.options.protocol, lr.options.listen) for n, lr in self.listeners.items()}
        new_names = {n: (lr.options.protocol, lr.options.listen) for n, lr in new.listeners.items()}
        if old_names != new_names:
            raise ConfigError("listeners were added, removed, renamed or moved; that needs a restart of "
                              "gw serve (the running configuration is kept)", file=str(self.config.path))
        if self.config.raw.get("storage") != new.config.raw.get("storage"):
            changes.append("storage changes need a restart and were not applied")
        identity: dict[str, IdentityProvider] = {}
        for name, provider in new.identity.items():
            old = self.identity.get(name)
            if old is not None and type(old) is type(provider) and old.options == provider.options:
                identity[name] = old
            else:
                provider.services = self.services
                await provider.open()
                identity[name] = provider
                changes.append(f"identity {name} reloaded")
        pipelines: dict[str, Pipeline] = {}
        for name, pipeline in new.pipelines.items():
            old_stages = list(self.pipelines[name].stages) if name in self.pipelines else []
            stages: list[Stage] = []
            for stage in pipeline.stages:
                keep = next((s for s in old_stages if type(s) is type(stage) and s.options == stage.options),
                            None)
                if keep is not None:
                    old_stages.remove(keep)
                    stages.append(keep)
                else:
                    stage.services = self.services
                    await stage.open()
                    stages.append(stage)
            self._retired.extend(old_stages)
            previous = self.pipelines[name].stages if name in self.pipelines else ()
            if len(previous) != len(stages) or any(a is not b for a, b in zip(stages, previous)):
                changes.append(f"pipeline {name} reloaded")
            pipelines[name] = Pipeline(name, stages)
        self.config = new.config
        self.services.config = new.config
        self.identity = identity
        self.pipelines = pipelines
        for name, lr in self.listeners.items():
            if lr.options != new.listeners[name].options:
                lr.options = new.listeners[name].options
                changes.append(f"listener {name} options reloaded")
        for rt in list(self.sessions()):
            try:
                rt.listener.admit(rt.session.identity)
            except AccessDenied as e:
                log.info("session %s of %s ends: %s", rt.session.id, rt.session.identity.subject, e)
                rt.terminate(SessionEnd.REVOKED)
        return changes

    def offer(self, name: str) -> Any:
        """What a plugin offers other plugins under ``name`` (``"approvals"``, ``"audit"``,
        ``"recordings"``), built once per runtime (the contracts are in docs/plugin-hooks.md).  Raises
        :class:`PluginError` naming what is installed when no plugin offers it."""
        if name not in self._offers:
            self._offers[name] = self.registry.get("offers", name)(self)
        return self._offers[name]

    def sessions(self) -> Iterator[SessionRuntime]:
        for lr in self.listeners.values():
            yield from list(lr.sessions)

    def listener(self, name: str) -> ListenerRuntime:
        try:
            return self.listeners[name]
        except KeyError:
            known = ", ".join(sorted(self.listeners)) or "none"
            raise ConfigError(f"no listener named {name!r} (listeners: {known})",
                              file=str(self.config.path)) from None

    def describe(self) -> dict[str, Any]:
        """A credential-free summary for ``gw check``."""
        return {
            "file": str(self.config.path),
            "data_dir": str(self.config.data_dir),
            "storage": self.store.name if self.store is not None else None,
            "identity": {n: p.name for n, p in self.identity.items()},
            "pipelines": {n: p.describe() for n, p in self.pipelines.items()},
            "listeners": [
                {"name": lr.name, "protocol": lr.options.protocol, "listen": lr.options.listen,
                 "identity": lr.options.identities, "pipeline": lr.options.pipeline,
                 "allow_groups": lr.options.allow_groups, "upstream": lr.handler.describe_upstream(),
                 "warnings": lr.handler.warnings()}
                for lr in self.listeners.values()
            ],
        }
