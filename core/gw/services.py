"""What a plugin may use of the running gateway: the narrow :class:`Services` protocol every plugin object is
given (stages, identity providers, stores).  No back-reference to the runtime: a plugin sees these members and
nothing else, so core can change how it is built without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .model import Session, SessionEnd

if TYPE_CHECKING:  # annotations only: these modules sit above this one
    from .config import LoadedConfig
    from .store import Store


class LiveSession(Protocol):
    """An open session as plugins see it (to re-check or end it)."""

    session: Session
    ended: bool

    def terminate(self, reason: SessionEnd | str) -> None: ...


class Services(Protocol):
    """What plugins may use: the configuration, the store, background tasks, detectors and live sessions."""

    #: The pipeline file as loaded (``config.path`` for messages; ``config.raw`` for key paths).
    config: LoadedConfig
    #: Name of this gateway (audit chains, claims).
    gateway_name: str
    #: The storage backend, or None without a ``[storage]`` table.
    store: Store | None
    #: This process's index under ``gw serve --workers`` (None: a single gateway process).
    worker: int | None

    @property
    def data_dir(self) -> Path: ...

    def resolve_path(self, value: str | Path) -> Path:
        """A path of the file, relative to the file's directory."""

    def require_store(self, who: str) -> Store:
        """The store, or a :class:`~gw.errors.ConfigError` saying that ``who`` needs a ``[storage]`` table."""

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run ``fn(*args)`` in the gateway's nursery (see :mod:`gw.tasks`)."""

    def detector(self, name: str) -> Any: ...

    def detectors(self, names: list[str] | str) -> list[Any]:
        """Detectors by name, or every installed one for ``"all"``."""

    def sessions(self) -> Iterable[LiveSession]:
        """The open sessions of every listener (empty outside ``gw serve``)."""

    def listeners(self) -> Mapping[str, str]:
        """Listener name -> the name of the pipeline it runs (empty outside ``gw serve``)."""
