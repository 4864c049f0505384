"""Builds a running gateway from a pipeline file: the store, identity providers, pipelines and listeners.

``Runtime.build`` validates everything (plugin options included) without touching the outside world, which
is what ``gw check`` prints; ``open`` connects (creates the database, fetches keys ...); ``close`` releases.
CLI commands use the same runtime, so ``gw audit list`` reads exactly the store ``gw serve`` writes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pluggy
import trio

from .config import LoadedConfig, load_config, validate_model
from .errors import AccessDenied, AuthenticationError, ConfigError, PluginError
from .identity import Credential, IdentityProvider
from .model import Command, Identity, Kind, Session, SessionEnd
from .pipeline import Pipeline, SessionRuntime
from .plugins import Registry, make_plugin_manager
from .protocol import ListenerOptions, ProtocolHandler
from .services import Services
from .stage import Stage
from .store import Store
from .tasks import Background
from .types import did_you_mean

__all__ = ["GatewayServices", "ListenerRuntime", "Plan", "Runtime", "Services", "Spec"]

log = logging.getLogger("gw.runtime")
T = TypeVar("T")


@dataclass(frozen=True)
class Spec:
    """One plugin table of the file, validated by its plugin's options model (not built)."""

    cls: Any
    options: Any
    #: Its key path (``pipelines.agents.stages[1]``).
    path: str


@dataclass(frozen=True)
class Plan:
    """A pipeline file, every plugin table validated (:meth:`Runtime.validate`); nothing built or opened."""

    config: LoadedConfig
    store: Spec | None
    identity: dict[str, Spec]
    pipelines: dict[str, list[Spec]]
    listeners: dict[str, Spec]


@dataclass
class GatewayServices:
    """Core's implementation of :class:`gw.services.Services` (what plugins may use)."""

    config: LoadedConfig
    registry: Registry
    gateway_name: str
    store: Store | None = None
    background: Background = field(default_factory=Background)
    #: This process's index under ``gw serve --workers`` (None: a single gateway process).
    worker: int | None = None
    #: The runtime's listeners (set by :class:`Runtime`; plugins use :meth:`sessions` and :meth:`listeners`).
    _listeners: dict[str, ListenerRuntime] = field(default_factory=dict, repr=False)

    def sessions(self) -> Iterator[SessionRuntime]:
        for lr in list(self._listeners.values()):
            yield from list(lr.sessions)

    def listeners(self) -> dict[str, str]:
        return {name: lr.options.pipeline for name, lr in self._listeners.items() if lr.options.pipeline}

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

    async def reconfigure(self, options: ListenerOptions) -> list[str]:
        """Apply reloaded options to the next session, unless a key the protocol reads only at start
        (``handler.restart_keys``) changed: then nothing is applied and a log line says a restart is
        needed."""
        if options == self.options:
            return []
        changed = {k for k in type(options).model_fields if getattr(options, k) != getattr(self.options, k)}
        frozen = sorted(changed & self.handler.restart_keys)
        if frozen:
            log.warning("listener %s: %s changed; that needs a restart of gw serve (its options were not "
                        "reloaded)", self.name, ", ".join(frozen))
            return [f"listener {self.name}: {', '.join(frozen)} need a restart (options not applied)"]
        old, self.options = self.options, options
        try:
            await self.handler.reconfigure(old)
        except Exception as e:  # noqa: BLE001 -- a handler refusing the new options keeps the old ones
            self.options = old
            log.error("listener %s refused its reloaded options, the old ones stay: %s", self.name, e)
            return [f"listener {self.name}: options refused ({e})"]
        return [f"listener {self.name} options reloaded"]

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
            await self.runtime.session_gone(rt, reason)
        self.runtime.pm.hook.gw_session_ended(session=rt.session, reason=reason)


class Runtime:
    """Everything a pipeline file describes, built from the installed plugins."""

    def __init__(self, config: LoadedConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.pm = registry.pm
        name = config.model.gateway.name or socket.gethostname()
        self.services = GatewayServices(config=config, registry=registry, gateway_name=name)
        self.store: Store | None = None
        self.identity: dict[str, IdentityProvider] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.listeners: dict[str, ListenerRuntime] = self.services._listeners
        self.shutting_down = trio.Event()
        #: Stages a reload replaced, with the sessions that began before it (closed when those have ended).
        self._retired: list[tuple[set[SessionRuntime], list[Stage]]] = []
        self._identity_open = False
        #: Where each plugin object was configured (``pipelines.agents.stages[1]``), for error messages.
        self._where: dict[int, str] = {}
        self._offers: dict[str, Any] = {}

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def build(cls, config: LoadedConfig | str | Path, *, pm: pluggy.PluginManager | None = None) -> Runtime:
        """Validate the whole file (:meth:`validate`) and build its plugin objects (no I/O)."""
        if not isinstance(config, LoadedConfig):
            config = load_config(config)
        rt = cls(config, Registry.build(pm if pm is not None else make_plugin_manager()))
        plan = rt.validate(config)
        if plan.store is not None:
            rt.store = rt.services.store = rt._make(plan.store, lambda s: s.cls(s.options, rt.services))
        rt.identity = {n: rt._make_provider(n, s) for n, s in plan.identity.items()}
        rt.pipelines = {n: Pipeline(n, [rt._make_stage(n, i, s) for i, s in enumerate(specs)])
                        for n, specs in plan.pipelines.items()}
        for spec in plan.listeners.values():
            lr = rt._make(spec, lambda s: ListenerRuntime(rt, s.options, s.cls))
            rt.listeners[lr.name] = lr
            rt._where[id(lr.handler)] = spec.path
        return rt

    def validate(self, config: LoadedConfig) -> Plan:
        """Check every plugin table of ``config`` with its plugin's options model.  Builds nothing."""
        def spec(kind: str, table: dict[str, Any], key: str, path: str) -> Spec:
            cls = self._plugin(kind, table.get(key, ""), f"{path}.{key}")
            return Spec(cls, validate_model(cls.Options, table, file=str(config.path), prefix=path), path)

        raw, storage = config.raw, config.raw.get("storage")
        store = spec("storage", storage, "use", "storage") if storage is not None else None
        identity = {n: spec("identity_providers", t, "use", f"identity.{n}")
                    for n, t in raw.get("identity", {}).items()}
        pipelines = {n: [spec("stages", st, "use", f"pipelines.{n}.stages[{i}]")
                         for i, st in enumerate(t.get("stages", []))] for n, t in raw.get("pipelines", {}).items()}
        listeners = [spec("protocols", t, "protocol", f"listeners[{i}]")
                     for i, t in enumerate(raw.get("listeners", []))]
        for found in listeners:
            if found.options.pipeline is None and found.cls.needs_pipeline:
                raise ConfigError("required key is missing (the pipeline of stages this listener's commands "
                                  "pass)", file=str(config.path), path=f"{found.path}.pipeline")
        return Plan(config, store, identity, pipelines, {s.options.name: s for s in listeners})

    def _make(self, spec: Spec, build: Callable[[Spec], T]) -> T:
        """Build one plugin object; what its constructor refuses becomes a :class:`ConfigError` at its
        path."""
        try:
            obj = build(spec)
        except (ValueError, ConfigError) as e:
            raise self._plugin_error(e, spec.path) from None
        self._where[id(obj)] = spec.path
        return obj

    def _make_provider(self, name: str, spec: Spec) -> IdentityProvider:
        provider: IdentityProvider = self._make(spec, lambda s: s.cls(name, s.options, self.services))
        return provider

    def _make_stage(self, pipeline: str, index: int, spec: Spec) -> Stage:
        stage: Stage = self._make(spec, lambda s: s.cls(s.options, self.services, pipeline=pipeline,
                                                        index=index))
        return stage

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

    # -- lifetime -------------------------------------------------------------------------------------------
    async def open(self, *, serving: bool = True, identity: bool = True) -> None:
        """Open the store, (when ``identity``) identity providers and (when ``serving``) pipelines and
        protocol handlers.  If one fails, what was opened is closed again and a :class:`ConfigError` names
        the failing table's key path (``listeners[0]: could not start (... tls.cert ...)``)."""
        objects: list[Any] = [self.store] if self.store is not None else []
        self._identity_open = identity or serving
        if self._identity_open:
            objects += self.identity.values()
        if serving:
            objects += [s for p in self.pipelines.values() for s in p.stages]
            objects += [lr.handler for lr in self.listeners.values()]
        opened: list[Any] = []
        try:
            for obj in objects:
                await self._open_one(obj, opened)
        except ConfigError:
            with trio.CancelScope(shield=True):
                await self.services.background.close()
            raise

    async def _open_one(self, obj: Any, opened: list[Any]) -> None:
        """Open one plugin object and add it to ``opened``; on failure close everything in ``opened`` (newest
        first) and raise a :class:`ConfigError` at the object's key path, never a traceback."""
        try:
            await obj.open()
        except trio.Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 -- whatever a plugin raises becomes a configuration error
            where = self._where.get(id(obj), type(obj).__name__)
            with trio.CancelScope(shield=True):
                await self._close_all(reversed(opened))
            if isinstance(e, ConfigError):
                raise self._plugin_error(e, where) from None
            detail = str(e) or type(e).__name__
            raise ConfigError(f"could not start ({detail})", file=str(self.config.path), path=where) from None
        opened.append(obj)

    async def _close_all(self, objects: Iterable[Any]) -> None:
        """Close plugin objects in the order given; a failure is logged and the others still close."""
        for obj in objects:
            with trio.move_on_after(5) as scope:
                scope.shield = True
                try:
                    await obj.close()
                except Exception:
                    log.exception("%s failed to close", self._where.get(id(obj), type(obj).__name__))

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            await self._close_all(lr.handler for lr in self.listeners.values())
            await self._close_all(s for p in self.pipelines.values() for s in reversed(p.stages))
            for _, stages in self._retired:
                await self._close_all(stages)
            self._retired.clear()
            await self._close_all(self.identity.values() if self._identity_open else ())
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
        their instance (an audit chain never forks); changed ones are built against the running store and
        services and opened before the switch (if one fails to open, those opened are closed and the
        running configuration is kept).  Replaced identity providers are closed at once; replaced stages when
        the last session that began before the reload ends.  Listener options apply to the next session, or,
        when a key the protocol reads only at start changed, are refused with a log line.  Admission rules
        apply at once: sessions whose identity the new rules refuse are terminated with reason ``revoked``.
        Listeners cannot be added, removed or moved without a restart.  Returns the changes, in words.
        """
        plan = self.validate(load_config(self.config.path))
        old_names = {n: (lr.options.protocol, lr.options.listen) for n, lr in self.listeners.items()}
        new_names = {n: (s.options.protocol, s.options.listen) for n, s in plan.listeners.items()}
        if old_names != new_names:
            raise ConfigError("listeners were added, removed, renamed or moved; that needs a restart of "
                              "gw serve (the running configuration is kept)", file=str(self.config.path))
        changes = self._reload_store(plan.store)
        fresh: list[Any] = []  # opened by this reload: closed again if a later one fails
        identity: dict[str, IdentityProvider] = {}
        for name, spec in plan.identity.items():
            old = self.identity.get(name)
            if old is not None and type(old) is spec.cls and old.options == spec.options:
                identity[name] = old
                continue
            identity[name] = self._make_provider(name, spec)
            await self._open_one(identity[name], fresh)
            changes.append(f"identity {name} reloaded")
        pipelines: dict[str, Pipeline] = {}
        for name, specs in plan.pipelines.items():
            previous = self.pipelines[name].stages if name in self.pipelines else ()
            pool = list(previous)
            stages: list[Stage] = []
            for i, spec in enumerate(specs):
                keep = next((s for s in pool if type(s) is spec.cls and s.options == spec.options), None)
                if keep is not None:
                    pool.remove(keep)
                    stages.append(keep)
                    continue
                stages.append(self._make_stage(name, i, spec))
                await self._open_one(stages[-1], fresh)
            if [id(s) for s in stages] != [id(s) for s in previous]:
                changes.append(f"pipeline {name} reloaded")
            pipelines[name] = Pipeline(name, stages)
        # -- the switch: nothing below can fail the reload -------------------------------------------------
        replaced = [p for n, p in self.identity.items() if identity.get(n) is not p]
        kept = {id(s) for p in pipelines.values() for s in p.stages}
        retired = [s for p in self.pipelines.values() for s in p.stages if id(s) not in kept]
        self.config = self.services.config = plan.config
        self.identity, self.pipelines = identity, pipelines
        await self._close_all(replaced if self._identity_open else ())
        live = set(self.sessions())
        if retired and live:
            self._retired.append((live, retired))
        else:
            await self._close_all(retired)
        for name, lr in self.listeners.items():
            changes += await lr.reconfigure(plan.listeners[name].options)
        for rt in list(self.sessions()):
            try:
                rt.listener.admit(rt.session.identity)
            except AccessDenied as e:
                log.info("session %s of %s ends: %s", rt.session.id, rt.session.identity.subject, e)
                rt.terminate(SessionEnd.REVOKED)
        return changes

    def _reload_store(self, spec: Spec | None) -> list[str]:
        """Storage options that are read at each use (``retention``) apply at once; others need a restart."""
        if spec is None and self.store is None:
            return []
        if spec is not None and self.store is not None and type(self.store) is spec.cls:
            if spec.options == self.store.options:
                return []
            same = {"exclude": {"retention"}}
            if spec.options.model_dump(**same) == self.store.options.model_dump(**same):
                self.store.options = spec.options
                return ["storage retention reloaded"]
        log.warning("the [storage] table changed; that needs a restart of gw serve (the running store is "
                    "kept)")
        return ["storage changes need a restart of gw serve and were not applied"]

    async def session_gone(self, rt: SessionRuntime, reason: str) -> None:
        """A session ended: stages a reload replaced see its end too, and close once their last session
        has ended."""
        for group in list(self._retired):
            sessions, stages = group
            if rt not in sessions:
                continue
            sessions.discard(rt)
            await Pipeline("retired", stages).session_ended(rt.session, reason)
            if not sessions:
                self._retired.remove(group)
                await self._close_all(stages)

    def offer(self, name: str) -> Any:
        """What a plugin offers other plugins under ``name`` (``"approvals"``, ``"audit"``,
        ``"recordings"``), built once per runtime (the contracts are in docs/plugin-hooks.md).  Raises
        :class:`PluginError` naming what is installed when no plugin offers it."""
        if name not in self._offers:
            self._offers[name] = self.registry.get("offers", name)(self)
        return self._offers[name]

    def sessions(self) -> Iterator[SessionRuntime]:
        return self.services.sessions()

    def listener(self, name: str) -> ListenerRuntime:
        try:
            return self.listeners[name]
        except KeyError:
            known = ", ".join(sorted(self.listeners)) or "none"
            close = did_you_mean(name, self.listeners)
            raise ConfigError(f"no listener named {name!r}{'; ' + close if close else ''} (listeners: {known})",
                              file=str(self.config.path)) from None

    def _admin_warnings(self, lr: ListenerRuntime) -> list[str]:
        """Groups admitted to ``lr`` that its pipeline lets run ``admin`` statements (file and program access,
        roles, settings ...) without a deny or an approval, other than the pipeline's approvers (and groups
        a deny rule exempts by name)."""

        pipeline = self.pipelines.get(lr.options.pipeline or "")
        if pipeline is None:
            return []
        approvers: set[str] = set()  # and groups a deny rule exempts by name: a deliberate choice
        for stage in pipeline.stages:
            options = getattr(stage, "options", None)
            approvers.update(getattr(options, "approvers", None) or ())
            for rule in getattr(options, "deny", None) or ():
                approvers.update(getattr(rule, "except_groups", None) or ())
        out = []
        for group in lr.options.allow_groups or ():
            if group in approvers:
                continue
            session = Session("check", lr.name, lr.options.protocol, Identity("check", (group,)), "", "", 0.0)
            command = Command(session, 0, "", "", Kind.ADMIN, "")
            try:
                verdicts = pipeline.explain(command)
            except Exception:  # noqa: BLE001, S112 - a stage that cannot explain a synthetic command: no warning
                continue
            if all(v is None or v.allowed and not v.request_id for _, v in verdicts) and not any(
                    v is not None and v.decision.value != "allow" for _, v in verdicts):
                out.append(f"pipeline {lr.options.pipeline!r} lets group {group!r} run admin statements (file and "
                           "program access, roles, settings); deny them, e.g. guard deny = [ { kind = \"admin\", "
                           "except_groups = [<approvers>] } ]")
        return out

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
                 "warnings": lr.handler.warnings() + self._admin_warnings(lr)}
                for lr in self.listeners.values()
            ],
        }
