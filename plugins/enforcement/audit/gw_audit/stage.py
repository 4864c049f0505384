"""The audit stage: one durable, hash-chained record per command, plus session events.

The command record is written in :meth:`AuditStage.decided`, which the pipeline awaits before the protocol
forwards the command.  If the write fails the method raises, and core turns an allowed verdict into a refusal
(``DenyCode.UNAVAILABLE``): no command runs without its audit record.  The outcome record follows in
:meth:`AuditStage.completed`.  A session whose start cannot be recorded is not admitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import trio
from gw.errors import PluginError, StoreError
from gw.model import Command, Identity, Outcome, Session, Verdict
from gw.stage import Stage, StageOptions
from pydantic import Field

from .chain import AuditChain, close_chain, open_chain
from .records import Index, Record, RecordBuilder, Redactor

if TYPE_CHECKING:
    from gw.runtime import Services


class AuditOptions(StageOptions):
    """``{ use = "audit", ... }`` in a pipeline's stages."""

    #: Name of the hash chain; default: the gateway's name (``[gateway] name``, else the host name).  Gateways
    #: sharing one store need distinct chains.
    chain: str | None = Field(default=None, min_length=1)
    #: Also record bind parameters (prepared statements).  Off by default: they often carry the very values
    #: masking protects.
    include_params: bool = False
    #: Statement text longer than this is cut (the record keeps its length and SHA-256).
    max_text: int = Field(default=65536, ge=64)
    #: Detectors (``us_ssn``, ``credit_card`` ...) whose findings are replaced by ``***`` in the statement
    #: text, parameters and error messages before the record is written; ``"all"`` (the default) uses every
    #: installed detector, ``[]`` none.  gw never persists a sensitive value, even one the agent typed.
    redact: list[str] | Literal["all"] = "all"


class AuditStage(Stage):
    """Writes the tamper-evident audit trail (see the module docstring)."""

    name = "audit"
    Options = AuditOptions

    def __init__(self, options: AuditOptions, services: Services, *, pipeline: str = "", index: int = 0) -> None:
        super().__init__(options, services, pipeline=pipeline, index=index)
        self.options: AuditOptions = options
        services.require_store("audit")  # a pipeline with audit but no [storage] fails `gw check`
        try:
            detectors = services.detectors(options.redact)
        except PluginError as e:
            raise ValueError(f"redact: {e}") from None
        self.records = RecordBuilder(include_params=options.include_params, max_text=options.max_text,
                                     redactor=Redactor(detectors))
        self._chain: AuditChain | None = None

    async def open(self) -> None:
        store = self.services.require_store("audit")
        lease = self.services.config.model.gateway.chain_lease.total_seconds()
        self._chain = await open_chain(store, self.options.chain or self.services.gateway_name, lease=lease,
                                       holder=self.services.gateway_name)

    async def _write(self, built: tuple[Record, Index]) -> None:
        if self._chain is None:
            raise StoreError("the audit stage is not open (gw is starting or shutting down)")
        await self._chain.write(*built)

    # -- sessions -------------------------------------------------------------------------------------------
    async def session_started(self, session: Session) -> None:
        await self._write(self.records.session_start(self.services.gateway_name, session))

    async def session_ended(self, session: Session, reason: str) -> None:
        await self._write(self.records.session_end(self.services.gateway_name, session, reason))

    async def session_refused(self, listener: str, protocol: str, client_address: str, claimed_user: str,
                              reason: str, message: str) -> None:
        await self._write(self.records.session_refused(
            self.services.gateway_name, listener=listener, protocol=protocol, client_address=client_address,
            claimed_user=claimed_user, reason=reason, message=message))

    async def event(self, event: str, identity: Identity, details: Mapping[str, Any],
                    client_address: str = "") -> None:
        """Append an event record (the ``"audit"`` offer's ``event``)."""
        await self._write(self.records.event(self.services.gateway_name, event, identity, details,
                                             client_address))

    # -- commands -------------------------------------------------------------------------------------------
    def explain(self, command: Command) -> str | None:
        return "writes the audit record before the command runs (refuses it if that write fails)"

    async def decided(self, command: Command, verdict: Verdict) -> None:
        await self._write(self.records.command(self.services.gateway_name, self.pipeline, command, verdict))

    async def completed(self, command: Command, outcome: Outcome) -> None:
        # The command record was durable before the command ran; its outcome rides on the next write (or
        # the flusher's, within 50 ms) instead of costing the session a commit of its own.
        if self._chain is None:
            raise StoreError("the audit stage is not open (gw is starting or shutting down)")
        self._chain.enqueue(*self.records.outcome(self.services.gateway_name, command, outcome))

    async def close(self) -> None:
        chain, self._chain = self._chain, None
        if chain is not None:
            with trio.CancelScope(shield=True):
                await close_chain(chain)
