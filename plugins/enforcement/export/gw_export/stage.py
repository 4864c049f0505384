"""The export stage: streams the audit trail of its pipeline's listeners to a sink.

It adds nothing to a command's path but a wake-up call: the audit stage has already made each record durable
in the store, and the exporter (see :mod:`gw_export.exporter`) delivers from there in the background.  So a
pipeline with ``export`` needs an ``audit`` stage, and a sink outage never delays or refuses a command.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gw.errors import ConfigError
from gw.model import Command, Session, Verdict
from gw.stage import Stage

from .exporter import Exporter, running
from .options import ExportOptions, expand_env
from .sinks import FileSink, HttpSink, Sink, SyslogTCP, SyslogUDP

if TYPE_CHECKING:
    from gw.runtime import Services


class ExportStage(Stage):
    name = "export"
    Options = ExportOptions

    def __init__(self, options: Any, services: Services, *, pipeline: str = "", index: int = 0) -> None:
        super().__init__(options, services, pipeline=pipeline, index=index)
        self.options: ExportOptions = options
        services.require_store("export")
        stages = services.config.raw.get("pipelines", {}).get(pipeline, {}).get("stages", [])
        if not any(isinstance(s, dict) and s.get("use") == "audit" for s in stages):
            raise ValueError(f"export streams the audit trail, and pipeline {pipeline!r} has no audit stage; "
                             "add { use = \"audit\" } to its stages")
        self.target = options.target
        self.label = options.name or self.target.describe()
        self.exporter: Exporter | None = None

    @property
    def key(self) -> str:
        """Where this sink's delivery position is kept (per gateway, pipeline and sink)."""
        return f"{self.services.gateway_name}/{self.pipeline}/{self.label}"

    def listeners(self) -> set[str]:
        return {name for name, pipeline in self.services.listeners().items() if pipeline == self.pipeline}

    def make_sink(self) -> Sink:
        opts, target = self.options, self.target
        common: dict[str, Any] = {"timeout": opts.timeout.total_seconds(), "hostname": self.services.gateway_name}
        if target.kind == "syslog+tcp":
            return SyslogTCP(target, opts.format, facility=opts.facility, **common)
        if target.kind == "syslog+udp":
            return SyslogUDP(target, opts.format, facility=opts.facility, **common)
        if target.kind == "file":
            return FileSink(target, opts.format, path=self.services.resolve_path(target.path), **common)
        headers = {}
        for key, value in opts.headers.items():
            try:
                headers[key] = expand_env(value, dict(os.environ), f"headers.{key}")
            except ValueError as e:
                raise ConfigError(str(e), file=str(self.services.config.path),
                                  path=f"pipelines.{self.pipeline}.stages[{self.index}].headers") from None
        ca = str(self.services.resolve_path(opts.ca_file)) if opts.ca_file else None
        return HttpSink(target, opts.format, headers=headers, ca_file=ca, **common)

    async def open(self) -> None:
        store = self.services.require_store("export")
        exporters = running(store)
        previous = exporters.pop(self.key, None)
        if previous is not None:  # a reload changed this sink's options: the new one takes over its position
            await previous.stop()
        self.exporter = Exporter(store, self.key, self.label, self.make_sink(),
                                 gateway=self.services.gateway_name, listeners=self.listeners,
                                 batch=self.options.batch, retry_max=self.options.retry_max.total_seconds())
        await self.exporter.start(self.services.spawn)
        exporters[self.key] = self.exporter

    async def close(self) -> None:
        exporter, self.exporter = self.exporter, None
        if exporter is None:
            return
        exporters = running(exporter.store)
        if exporters.get(self.key) is exporter:
            del exporters[self.key]
        await exporter.stop()

    def _wake(self) -> None:
        if self.exporter is not None:
            self.exporter.wake()

    # Records are already durable when these run (the audit stage writes first); they only wake the exporter.
    async def decided(self, command: Command, verdict: Verdict) -> None:
        self._wake()

    async def session_started(self, session: Session) -> None:
        self._wake()

    async def session_ended(self, session: Session, reason: str) -> None:
        self._wake()

    async def session_refused(self, listener: str, protocol: str, client_address: str, claimed_user: str,
                              reason: str, message: str) -> None:
        self._wake()
