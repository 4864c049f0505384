"""Every hookspec has a documented section in docs/plugin-hooks.md, and every documented hook exists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gw import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin-hooks.md"


def hookspec_names() -> set[str]:
    return {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gw_")}


def documented() -> set[str]:
    return set(re.findall(r"^### (gw_\w+)\s*$", DOC.read_text(), flags=re.M))


def test_every_hookspec_is_documented() -> None:
    missing = hookspec_names() - documented()
    assert not missing, f"hookspecs without a section in {DOC.name}: {sorted(missing)}"


def test_every_documented_hook_exists() -> None:
    stale = documented() - hookspec_names()
    assert not stale, f"{DOC.name} documents hooks that do not exist: {sorted(stale)}"


def test_every_hookspec_has_a_docstring() -> None:
    for name in hookspec_names():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name
