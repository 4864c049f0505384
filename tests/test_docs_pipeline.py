"""docs/pipeline.md is the pipeline file's reference: every key any installed plugin or core accepts must be in it.

The options models are the source of truth (unknown keys are an error, and that error points users at
docs/pipeline.md), so a key added to a model without a line in the reference fails here, naming the key and
the model it comes from.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path

from gw.config import GatewaySection, PipelineSection
from gw.plugins import Registry, make_plugin_manager
from gw.protocol import ListenerOptions
from gw.store import StorageOptions
from gw_rules import Rule
from pydantic import BaseModel

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = DOCS / "pipeline.md"

#: Registry kinds whose classes carry an ``Options`` model that the pipeline file fills in.
OPTION_KINDS = ("protocols", "identity_providers", "stages", "storage")


def nested_models(annotation: object) -> Iterator[type[BaseModel]]:
    """Pydantic models inside a field's type: ``UpstreamOptions``, ``list[Rule]``, ``TLS | None``,
    ``Annotated[list[ColumnOption], ...]``, ``dict[str, Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from nested_models(arg)


def model_keys(model: type[BaseModel], where: str, seen: set[type[BaseModel]]) -> Iterator[tuple[str, str]]:
    """``(key, where it comes from)`` for every field of ``model`` and of the models its fields contain."""
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        key = field.alias or name  # what the file says (``schema`` for a field named ``schema_``)
        yield key, f"{where}.{key}"
        for inner in nested_models(field.annotation):
            yield from model_keys(inner, f"{where}.{name}", seen)


def registry() -> Registry:
    return Registry.build(make_plugin_manager())


def bundled(reg: Registry, kind: str) -> list[str]:
    """Names of ``kind`` registered by the plugins of this repository (plugins/...), not by others installed
    beside them (the plugin template .ci/run installs as a third party would, a user's own plugins)."""
    plugins = DOCS.parent / "plugins"
    return [name for name in reg.names(kind)
            if Path(inspect.getfile(reg.get(kind, name))).resolve().is_relative_to(plugins)]


def all_keys() -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    core: dict[str, type[BaseModel]] = {"[gateway]": GatewaySection, "[storage]": StorageOptions,
                                       "[pipelines.NAME]": PipelineSection, "[[listeners]]": ListenerOptions,
                                       "rule": Rule}
    for where, model in core.items():
        keys.extend(model_keys(model, where, set()))
    reg = registry()
    for kind in OPTION_KINDS:
        for name in bundled(reg, kind):
            cls = reg.get(kind, name)
            keys.extend(model_keys(cls.Options, f"{kind}:{name}", set()))
    return keys


def documented_keys() -> set[str]:
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", REFERENCE.read_text(encoding="utf-8")))


def test_walk_reaches_nested_models() -> None:
    """Guard against a walk that silently finds nothing: nested upstream tables, rules and mask rule tables."""
    found = {where for _, where in all_keys()}
    for expected in ("protocols:postgres.upstream.sslmode", "protocols:postgres.upstream.roles.groups",
                     "protocols:http.upstream.basic_auth.password_env", "stages:guard.deny.except_groups",
                     "stages:mask.columns.column", "storage:sqlite.synchronous", "[gateway].drain_timeout"):
        assert expected in found, f"the options walk no longer reaches {expected}"


def test_every_pipeline_key_is_documented() -> None:
    documented = documented_keys()
    missing = sorted({f"`{key}` ({where})" for key, where in all_keys() if key not in documented})
    assert not missing, (f"{len(missing)} pipeline file key(s) are not in docs/pipeline.md as `key`:\n  "
                         + "\n  ".join(missing))


def test_every_plugin_has_a_linked_page() -> None:
    """Each plugin's group in the reference links its own page, and that page exists."""
    text = REFERENCE.read_text(encoding="utf-8")
    reg = registry()
    problems = []
    for kind in OPTION_KINDS:
        for name in bundled(reg, kind):
            if f"(plugins/{name}.md)" not in text:
                problems.append(f"{kind} {name!r}: no link to plugins/{name}.md")
            elif not (DOCS / "plugins" / f"{name}.md").is_file():
                problems.append(f"{kind} {name!r}: docs/plugins/{name}.md does not exist")
    assert not problems, "\n".join(problems)


def test_nested_models_unwraps_type_forms() -> None:
    class Inner(BaseModel):
        x: int

    forms: list[object] = [Inner, list[Inner], Inner | None, typing.Optional[Inner],  # noqa: UP045
                           typing.Annotated[list[Inner], "meta"], dict[str, Inner], str, list[str]]
    found = [list(nested_models(f)) for f in forms]
    assert found == [[Inner]] * 6 + [[], []]
