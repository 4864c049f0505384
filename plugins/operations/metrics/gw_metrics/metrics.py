"""The ``gw_…`` metrics of one running gateway, fed by core's observer hooks.

One :class:`GatewayMetrics` exists per served runtime, with its own ``prometheus_client`` registry (no process
global state, so several gateways in one test process do not mix).  It is registered on the runtime's plugin
manager while the gateway serves, so core's hooks (``gw_session_started``, ``gw_command_decided`` ...) reach it.

Label values are configured names (listener, pipeline, stage, protocol), gw's own vocabularies (kind,
verdict, status, refusal reason) or registered detector names -- never text an agent controls (statement
text, user names, paths, error messages), so a label can carry neither a secret nor an unmasked value.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from gw import hookimpl
from gw.model import Command, Decision, DenyCode, Outcome, Session, Verdict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gw.runtime import Runtime

#: Decisions include approval holds (minutes), so the buckets reach far.
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                    300, 900)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
COMMAND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

_WORD = re.compile(r"[a-z][a-z0-9_]{0,39}")
VERDICTS = {Decision.ALLOW: "allowed", Decision.DENY: "denied", Decision.PENDING: "pending"}
OUTCOME_STATUSES = frozenset({"ok", "error", "denied", "cancelled"})


def reason_label(reason: str) -> str:
    """A refusal or end reason as a label: gw's reason codes are short words; anything else (``error: …``
    carries text) is cut to its leading word or ``other``, so no free text becomes a label value."""
    word = reason.split(":", 1)[0].strip().lower()
    return word if _WORD.fullmatch(word) else "other"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class _PluginValues(Collector):
    """Values plugins report at scrape time through ``gw_collect_metrics``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        label_names: dict[str, tuple[str, ...]] = {}

        def add(name: str, value: float, *, labels: Mapping[str, str] | None = None, help: str = "",
                kind: str = "gauge") -> None:
            labels = dict(labels or {})
            keys = tuple(sorted(labels))
            if not name.startswith("gw_") or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"metric name {name!r} must be gw_ followed by lower-case words")
            family = families.get(name)
            if family is None:
                label_names[name] = keys
                if kind == "counter":
                    family = CounterMetricFamily(name.removesuffix("_total"), help or name, labels=list(keys))
                else:
                    family = GaugeMetricFamily(name, help or name, labels=list(keys))
                families[name] = family
            elif label_names[name] != keys:
                raise ValueError(f"metric {name!r} reported with labels {keys}, earlier {label_names[name]}")
            family.add_metric([str(labels[k]) for k in keys], float(value))  # type: ignore[attr-defined]

        self.runtime.pm.hook.gw_collect_metrics(runtime=self.runtime, add=add)
        yield from families.values()


def shared_directory(runtime: Runtime) -> Path | None:
    """Under ``gw serve --workers``: the directory where every worker keeps its metric values (prometheus_client
    multiprocess mode), so whichever worker answers a scrape reports the sum of all.  Switches this process's
    metric values to files named after the worker index (a restarted worker starts its own files again)."""
    index = runtime.services.worker
    if index is None:
        return None
    base = runtime.services.gateway_name.removesuffix(f".w{index}")
    path = runtime.config.data_dir / "metrics" / re.sub(r"[^A-Za-z0-9_.-]", "_", base)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob(f"*_w{index}.db"):
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    # prometheus_client's multiprocess helpers carry no annotations
    values.ValueClass = values.MultiProcessValue(lambda: f"w{index}")  # type: ignore[no-untyped-call]
    return path


class GatewayMetrics:
    """Every metric of one gateway; its methods are hookimpls while the gateway serves."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = r = CollectorRegistry(auto_describe=True)
        shared = shared_directory(runtime)
        #: What a scrape reports: this process's registry, or every worker's values.
        self.exposed = r
        if shared is not None:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=str(shared))  # type: ignore[no-untyped-call]  # unannotated
            self.exposed.register(_PluginValues(runtime))
        self.started = time.time()
        Gauge("gw_build_info", "gw version and Python; the value is 1", ["version", "python"],
              registry=r, multiprocess_mode="max").labels(_version("gw"), platform.python_version()).set(1)
        Gauge("gw_start_time_seconds", "Unix time gw serve started", registry=r,
              multiprocess_mode="min").set(self.started)
        self.sessions_active = Gauge("gw_sessions_active", "Sessions open now", ["listener", "protocol"],
                                     registry=r, multiprocess_mode="sum")
        self.sessions = Counter("gw_sessions", "Sessions admitted", ["listener", "protocol"], registry=r)
        self.sessions_refused = Counter("gw_sessions_refused", "Clients refused before a session began",
                                        ["listener", "protocol", "reason"], registry=r)
        self.sessions_ended = Counter("gw_sessions_ended", "Sessions ended, by reason",
                                      ["listener", "protocol", "reason"], registry=r)
        self.commands = Counter("gw_commands", "Commands decided, by kind and verdict",
                                ["listener", "pipeline", "kind", "verdict"], registry=r)
        self.decision = Histogram("gw_command_decision_seconds",
                                  "Time from a command's arrival to its verdict (approval holds included)",
                                  ["listener", "pipeline"], buckets=DECISION_BUCKETS, registry=r)
        self.stage = Histogram("gw_stage_seconds", "Time each stage took per command (check / decided)",
                               ["pipeline", "stage", "phase"], buckets=FAST_BUCKETS, registry=r)
        self.audit_write = Histogram("gw_audit_write_seconds",
                                     "Time the audit stage took to make a command's record durable",
                                     ["pipeline"], buckets=FAST_BUCKETS, registry=r)
        self.upstream = Histogram("gw_command_seconds",
                                  "Time from a command's verdict to its completion (upstream latency and "
                                  "result streaming)", ["listener", "kind"], buckets=COMMAND_BUCKETS, registry=r)
        #: Decision time of commands in flight, by (session, seq): subtracted from their duration.
        self._deciding: dict[tuple[str, int], float] = {}
        self.outcomes = Counter("gw_command_outcomes", "Commands completed, by status",
                                ["listener", "status"], registry=r)
        self.rows = Counter("gw_rows", "Result rows returned to agents", ["listener"], registry=r)
        self.approvals = Counter("gw_approvals_decided", "Held commands decided: approved, denied, timed_out",
                                 ["listener", "result"], registry=r)
        self.masked = Counter("gw_masked_values", "Values masked in results (detector, or column for "
                              "column/path rules)", ["listener", "detector"], registry=r)
        self.store_errors = Counter("gw_store_errors", "Commands refused because a record could not be "
                                    "written (fail closed), and failed store readiness checks", ["where"],
                                    registry=r)
        self.reloads = Counter("gw_reloads", "Reloads (SIGHUP): applied or refused", ["result"], registry=r)
        self.ready = Gauge("gw_ready", "1 when the last readiness check passed, else 0", registry=r,
                           multiprocess_mode="mostrecent")
        r.register(_PluginValues(runtime))
        for lr in runtime.listeners.values():  # every series exists from the start (rate() needs a zero)
            self.sessions_active.labels(lr.name, lr.options.protocol)
            self.sessions.labels(lr.name, lr.options.protocol)

    # -- hooks --------------------------------------------------------------------------------------------------
    @hookimpl
    def gw_session_started(self, session: Session) -> None:
        self.sessions.labels(session.listener, session.protocol).inc()
        self.sessions_active.labels(session.listener, session.protocol).inc()

    @hookimpl
    def gw_session_ended(self, session: Session, reason: str) -> None:
        for key in [k for k in self._deciding if k[0] == session.id]:
            del self._deciding[key]
        self.sessions_active.labels(session.listener, session.protocol).dec()
        self.sessions_ended.labels(session.listener, session.protocol, reason_label(reason)).inc()

    @hookimpl
    def gw_session_refused(self, listener: str, protocol: str, reason: str) -> None:
        self.sessions_refused.labels(listener, protocol, reason_label(reason)).inc()

    @hookimpl
    def gw_command_decided(self, command: Command, verdict: Verdict, timings: Mapping[str, float]) -> None:
        listener = command.session.listener
        pipeline = self.runtime.listeners[listener].options.pipeline if listener in self.runtime.listeners else ""
        self.commands.labels(listener, pipeline, str(command.kind), VERDICTS[verdict.decision]).inc()
        for key, seconds in timings.items():
            if key == "total":
                self.decision.labels(listener, pipeline).observe(seconds)
                if verdict.decision is Decision.ALLOW:
                    self._deciding[(command.session.id, command.seq)] = seconds
                continue
            stage, _, phase = key.rpartition(".")
            self.stage.labels(pipeline, stage, phase).observe(seconds)
            if stage == "audit" and phase == "decided":
                self.audit_write.labels(pipeline).observe(seconds)
        if verdict.approved_by:
            self.approvals.labels(listener, "approved").inc()
        elif verdict.code is DenyCode.APPROVAL_DENIED:
            self.approvals.labels(listener, "denied").inc()
        elif verdict.code is DenyCode.APPROVAL_TIMEOUT:
            self.approvals.labels(listener, "timed_out").inc()
        elif verdict.code is DenyCode.UNAVAILABLE:
            self.store_errors.labels("command").inc()

    @hookimpl
    def gw_command_completed(self, command: Command, outcome: Outcome) -> None:
        listener = command.session.listener
        status = outcome.status if outcome.status in OUTCOME_STATUSES else "other"
        self.outcomes.labels(listener, status).inc()
        deciding = self._deciding.pop((command.session.id, command.seq), None)
        if deciding is not None and outcome.duration:
            self.upstream.labels(listener, str(command.kind)).observe(max(0.0, outcome.duration - deciding))
        if outcome.rows and status == "ok":
            self.rows.labels(listener).inc(outcome.rows)
        masked = outcome.notes.get("masked")
        if isinstance(masked, dict):
            columns = masked.get("columns")
            if isinstance(columns, int) and columns > 0:
                self.masked.labels(listener, "column").inc(columns)
            detected = masked.get("detected")
            if isinstance(detected, dict):
                known = self.runtime.registry.items["detectors"]
                for name, n in detected.items():
                    if isinstance(n, int) and n > 0:
                        self.masked.labels(listener, name if name in known else "other").inc(n)

    @hookimpl
    def gw_reloaded(self, runtime: Runtime, changes: list[str], error: str | None) -> None:
        self.reloads.labels("refused" if error else "applied").inc()

    # -- reading ------------------------------------------------------------------------------------------------
    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Current samples by name (tests and ``gw`` commands that show a few numbers)."""
        out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for family in self.registry.collect():
            for s in family.samples:
                out[s.name].append((dict(s.labels), s.value))
        return dict(out)
