"""The plugin manager and the registry of named things plugins provide.

A fresh :class:`pluggy.PluginManager` is built per process or test (no global state).  Entry points of group
``gw`` are loaded; ``GW_DISABLE_PLUGINS`` (comma list) blocks plugins by name and ``GW_TRACE_PLUGINS=1`` traces
every hook call to stderr.  ``check_pending()`` runs after loading, so a misspelt hookimpl is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pluggy import HookImpl, Result

from . import hookspecs
from .errors import PluginError
from .types import did_you_mean

GROUP = "gw"

KINDS = ("protocols", "identity_providers", "stages", "storage", "detectors", "commands", "offers")


def disabled_plugins() -> set[str]:
    return {name.strip() for name in os.environ.get("GW_DISABLE_PLUGINS", "").split(",") if name.strip()}


def make_plugin_manager(*, load_entrypoints: bool = True, extra: Iterable[tuple[object, str]] = ()
                        ) -> pluggy.PluginManager:
    """Build a plugin manager with gw's hookspecs, the installed plugins and ``extra`` (plugin, name) pairs."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(GROUP)
    for plugin, name in extra:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    if os.environ.get("GW_TRACE_PLUGINS") == "1":
        _trace(pm)
    pm.check_pending()
    return pm


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in impls)
        print(f"gw: hook {hook_name}({', '.join(kwargs)}) -> [{names}]", file=sys.stderr)

    def after(outcome: Result[Any], hook_name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]
              ) -> None:
        exc = outcome.exception
        if exc is not None:
            print(f"gw: hook {hook_name} raised {exc!r}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


@dataclass(slots=True)
class Registered:
    name: str
    obj: Any
    plugin: str


@dataclass
class Registry:
    """Everything plugins registered, by kind and name."""

    pm: pluggy.PluginManager
    items: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in KINDS})

    @classmethod
    def build(cls, pm: pluggy.PluginManager) -> Registry:
        registry = cls(pm)
        plugins = pm.get_plugins()
        for kind in KINDS:
            name = f"gw_register_{kind}"
            for impl in getattr(pm.hook, name).get_hookimpls():
                plugin_name = pm.get_name(impl.plugin) or "?"

                def register(obj: Any, *, _kind: str = kind, _plugin: str = plugin_name) -> None:
                    registry._add(_kind, obj, _plugin)

                # Call through pluggy (so GW_TRACE_PLUGINS sees it), one plugin at a time, so each
                # registration is attributed to the plugin that made it.
                others = [p for p in plugins if p is not impl.plugin]
                pm.subset_hook_caller(name, remove_plugins=others)(register=register)
        return registry

    def _add(self, kind: str, obj: Any, plugin: str) -> None:
        name = getattr(obj, "name", None)
        if not name or not isinstance(name, str):
            raise PluginError(f"plugin {plugin!r} registered a {kind} entry without a name: {obj!r}")
        table = self.items[kind]
        if name in table and table[name].obj is not obj:
            raise PluginError(
                f"{kind} name {name!r} is registered twice: by plugin {table[name].plugin!r} and by "
                f"plugin {plugin!r}; disable one with GW_DISABLE_PLUGINS"
            )
        table[name] = Registered(name, obj, plugin)

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.items[kind][name].obj
        except KeyError:
            raise PluginError(self.missing_message(kind, name)) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def missing_message(self, kind: str, name: str) -> str:
        label = {"protocols": "protocol", "identity_providers": "identity provider", "stages": "stage",
                 "storage": "storage backend", "detectors": "detector", "commands": "command",
                 "offers": "offer"}[kind]
        known = ", ".join(self.names(kind)) or "none"
        blocked = sorted(disabled_plugins())
        close = did_you_mean(name, self.names(kind))
        if close:
            return f"unknown {label} {name!r}: {close}; available: {known}"
        if blocked:
            hint = f" (GW_DISABLE_PLUGINS blocks: {', '.join(blocked)})"
        else:
            hint = f"; install the plugin that provides it (e.g. pip install gw-{name})"
        return f"unknown {label} {name!r}{hint}; available: {known}"

    def plugins(self) -> list[dict[str, Any]]:
        """Describe each loaded plugin: name, distribution version, what it registers."""
        dists: dict[int, Any] = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            dists[id(plugin)] = dist
        out = []
        for plugin in self.pm.get_plugins():
            pname = self.pm.get_name(plugin) or "?"
            found = dists.get(id(plugin))
            provides = {
                kind: sorted(r.name for r in self.items[kind].values() if r.plugin == pname)
                for kind in KINDS
            }
            out.append({
                "name": pname,
                "distribution": found.project_name if found is not None else None,
                "version": found.version if found is not None else None,
                "provides": {k: v for k, v in provides.items() if v},
            })
        return sorted(out, key=lambda p: p["name"])

