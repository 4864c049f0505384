"""Typed errors shared by core and plugins.  Messages are written for the person or agent who reads them."""

from __future__ import annotations


class GwError(Exception):
    """Base of every error gw raises on purpose."""


class ConfigError(GwError):
    """The pipeline file is wrong.  ``str()`` names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None) -> None:
        self.file = file
        self.path = path
        self.detail = message
        where = ""
        if file:
            where = f"{file}: "
        if path:
            where += f"{path}: "
        super().__init__(f"{where}{message}")


class PluginError(GwError):
    """A plugin is missing, misbehaves, or two plugins register the same name."""


class AuthenticationError(GwError):
    """A credential was refused.  ``str()`` is safe to show the client; ``reason`` is a short code for audit."""

    def __init__(self, message: str, *, reason: str = "invalid_token") -> None:
        self.reason = reason
        super().__init__(message)


class AccessDenied(AuthenticationError):
    """The identity is valid but may not use this listener (``allow_groups``, ``deny_subjects`` ...)."""

    def __init__(self, message: str, *, reason: str = "not_allowed") -> None:
        super().__init__(message, reason=reason)


class StoreError(GwError):
    """The storage backend could not do what was asked (disk full, database down ...)."""
