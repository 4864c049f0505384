"""Shell command-line analysis shared by gw's protocol plugins that run commands (SSH exec today; Kubernetes
exec next): text in, what it runs out.

A library, not a plugin (it registers no entry point).  :func:`analyse` parses a command line with a
maintained bash grammar (tree-sitter-bash) and reduces it to the vocabulary rules match on: every program it
runs (``verbs``; wrappers such as ``sudo``/``env``/``xargs``/``find -exec`` looked through, ``sh -c`` bodies
read), the paths it names (``objects``: normalised, resolved against the working directory, globs kept as
globs), ``flags``, and ``kind``: ``exec``, or ``unknown`` when gw cannot reduce the line to fixed programs and
fixed arguments (``reasons`` say why).  It never runs anything.  See docs/plugins/ssh.md for the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import Analysis, ShellContext
from .paths import escape, is_exact, normalise, static_directory, unescape

if TYPE_CHECKING:
    from .analysis import MAX_TEXT, analyse


def __getattr__(name: str) -> Any:
    # The analyser (the grammar, the program tables: a few megabytes) is imported on first use, so a plugin
    # that only escapes paths, or a gateway whose shell listener is not configured, does not carry it.
    if name in ("MAX_TEXT", "analyse"):
        from . import analysis

        value = getattr(analysis, name)
        globals()[name] = value  # later look-ups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["MAX_TEXT", "Analysis", "ShellContext", "analyse", "escape", "is_exact", "normalise",
           "static_directory", "unescape"]
