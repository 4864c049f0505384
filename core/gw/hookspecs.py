"""Every hook gw calls.  Plugins implement them with ``@gw.hookimpl``.

Registration hooks follow the callback style of llm and tox: the hook receives a ``register`` callable and
calls it once per thing it provides, so one plugin can register several named things and clashes are caught
by name.  Each hook below has a section in docs/plugin-hooks.md (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .model import Command, Outcome, Session, Verdict
    from .runtime import Runtime

hookspec = pluggy.HookspecMarker("gw")
hookimpl = pluggy.HookimplMarker("gw")


# ---------------------------------------------------------------------------------------------------------------
# Registration: called once per process when the registry is built
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    """Register protocol handlers: ``register(HandlerClass)``.

    The class subclasses :class:`gw.protocol.ProtocolHandler` and sets ``name`` (what listeners write after
    ``protocol =``) and ``Options`` (a pydantic model of the listener table, subclassing
    :class:`gw.protocol.ListenerOptions`).  Called for every plugin; returns nothing.
    """


@hookspec
def gw_register_identity_providers(register: Callable[[type[Any]], None]) -> None:
    """Register identity providers: ``register(ProviderClass)``.

    The class subclasses :class:`gw.identity.IdentityProvider` and sets ``name`` (what ``[identity.X]``
    tables write after ``use =``) and ``Options``.  Called for every plugin; returns nothing.
    """


@hookspec
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    """Register enforcement stages: ``register(StageClass)``.

    The class subclasses :class:`gw.stage.Stage` and sets ``name`` (what pipelines write after ``use =``)
    and ``Options``.  Called for every plugin; returns nothing.
    """


@hookspec
def gw_register_storage(register: Callable[[type[Any]], None]) -> None:
    """Register storage backends: ``register(StoreClass)``.

    The class subclasses :class:`gw.store.Store` and sets ``name`` (what ``[storage]`` writes after
    ``use =``) and ``Options``.  Called for every plugin; returns nothing.
    """


@hookspec
def gw_register_detectors(register: Callable[[Any], None]) -> None:
    """Register value detectors for masking: ``register(detector)``.

    A detector is an object with a ``name`` attribute and a ``find(text: str)`` method returning
    ``(start, end)`` spans of sensitive values in ``text`` (see :class:`gw.detect.Detector`).  Mask stages
    look detectors up by name, so a third party can add one.  Called for every plugin; returns nothing.
    """


@hookspec
def gw_register_commands(register: Callable[[click.Command], None]) -> None:
    """Register CLI commands or command groups: ``register(click_command)``.

    They become ``gw <name> ...`` (``gw token``, ``gw audit``, ``gw approvals`` ...).  Commands that need the
    pipeline file use :func:`gw.cli.config_option` and :func:`gw.cli.load_runtime`.  Called for every
    plugin; returns nothing.
    """


@hookspec
def gw_register_offers(register: Callable[[type[Any]], None]) -> None:
    """Register what a plugin offers others: ``register(OfferClass)``; built as ``OfferClass(runtime)``, got with
    ``runtime.offer(name)``, shaped as docs/plugin-hooks.md says.  Returns nothing."""


# ---------------------------------------------------------------------------------------------------------------
# Gateway lifecycle: called by ``gw serve`` (and by gw.testing's running gateway)
# ---------------------------------------------------------------------------------------------------------------


@hookspec
def gw_startup(runtime: Runtime) -> None:
    """The runtime is built and open, just before listeners start accepting.  Returns nothing."""


@hookspec
def gw_shutdown(runtime: Runtime) -> None:
    """Listeners stopped and sessions drained, just before the runtime closes.  Returns nothing."""


@hookspec
def gw_session_started(session: Session) -> None:
    """A client was authenticated and admitted (after stages saw ``session_started``).  Returns nothing;
    for observers such as metrics exporters.  Must not block."""


@hookspec
def gw_session_ended(session: Session, reason: str) -> None:
    """A session ended with ``reason``.  Returns nothing; must not block."""


@hookspec
def gw_session_refused(listener: str, protocol: str, reason: str) -> None:
    """A client was refused before its session began (``reason``: ``invalid_token``, ``group_not_allowed``
    ...), after stages saw ``session_refused``.  Returns nothing; must not block."""


@hookspec
def gw_command_decided(command: Command, verdict: Verdict, timings: Mapping[str, float]) -> None:
    """The pipeline decided about ``command`` (its ``decided`` stages ran).  ``timings`` maps
    ``"<stage>.check"`` / ``"<stage>.decided"`` to the seconds each stage took, and ``"total"`` to the whole
    decision.  Returns nothing; must not block (it runs on the data path)."""


@hookspec
def gw_command_completed(command: Command, outcome: Outcome) -> None:
    """A command that went through the pipeline finished (stages saw ``completed``); ``outcome.duration``
    is the protocol's measure, else arrival (decision included) to completion.  Returns nothing; must not
    block."""


@hookspec
def gw_reloaded(runtime: Runtime, changes: list[str], error: str | None) -> None:
    """A reload (SIGHUP) was applied (``error`` None, ``changes`` what changed) or refused (``error`` says
    why).  Returns nothing."""


# ---------------------------------------------------------------------------------------------------------------
# Operations: the admin endpoint and what it reports
# ---------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def gw_admin_server(runtime: Runtime) -> Callable[..., Awaitable[None]] | None:
    """Serve ``[gateway] admin_listen``: return an async function ``serve(task_status=...)`` that binds the
    address, calls ``task_status.started()`` and serves until cancelled.  ``gw serve`` runs it beside the
    listeners (it keeps serving while sessions drain) and refuses to start when ``admin_listen`` is set and no
    plugin returns one.  Stops at the first non-None result."""


@hookspec
def gw_collect_metrics(runtime: Runtime, add: Callable[..., None]) -> None:
    """Called when metrics are read (a ``/metrics`` scrape): report current values with
    ``add(name, value, *, labels={...}, help="...", kind="gauge"|"counter")``.  For values a plugin holds
    (approvals pending, audit queue depth, export backlog); label values must be configured names, never
    user-controlled text.  Must be quick and must not block; returns nothing."""


@hookspec
def gw_storage_info(runtime: Runtime) -> Awaitable[dict[str, Any]] | None:
    """``gw storage info``: return an awaitable of ``{label: text}`` lines about what the plugin keeps in the
    store (an export sink's backlog ...), or None.  The store is open; listeners are not."""
