"""``gw serve --workers N``: a supervisor and N worker processes accepting on the same listeners.

Each worker is ``gw serve`` of the same file with its own name (``NAME.w1``, ``NAME.w2`` ...: its own audit chain
in the shared store) binding its listeners with ``SO_REUSEPORT``, so the kernel spreads new connections across
the workers.  The supervisor validates the file once, starts the workers, restarts one that dies, validates the
file once on SIGHUP before fanning the signal out, and on SIGTERM/SIGINT lets every worker drain and exit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger("gw.workers")

#: A worker that exits this soon after it started failed to start; this many such failures in a row stop all.
STARTUP_SECONDS = 5.0
STARTUP_FAILURES = 3


def worker_count(value: str) -> int:
    """``auto`` (the number of cores) or a positive number."""
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a number of workers (1 or more) or \"auto\", got {value!r}")
    return int(value)


def reuse_port_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


class Supervisor:
    """Runs ``command(i)`` for i in 1..count and keeps them running (see the module docstring)."""

    def __init__(self, command: Callable[[int], Sequence[str]], count: int, validate: Callable[[], None]) -> None:
        self.command = command
        self.count = count
        self.validate = validate
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.stopping = False
        self.pending: list[int] = []

    def _start(self, i: int) -> None:
        proc = subprocess.Popen(list(self.command(i)))  # stdout/stderr shared: one log stream
        self.procs[i], self.started[i] = proc, time.monotonic()
        log.info("worker %d started (pid %d)", i, proc.pid)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self.pending.append(signum)

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            try:
                self.validate()
            except Exception as e:  # noqa: BLE001 -- any invalid file: keep the running one
                log.error("reload refused, the workers keep the running configuration: %s", e)
                return
            log.info("SIGHUP: the file is valid; reloading %d worker(s)", len(self.procs))
            for proc in self.procs.values():
                proc.send_signal(signal.SIGHUP)
            return
        if not self.stopping:
            log.info("%s: stopping %d worker(s) gracefully", signal.Signals(signum).name, len(self.procs))
            self.stopping = True
            for proc in self.procs.values():
                proc.send_signal(signal.SIGTERM)
        else:
            log.warning("second %s: stopping the workers now", signal.Signals(signum).name)
            for proc in self.procs.values():
                proc.send_signal(signal.SIGINT)

    def run(self) -> int:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)
        for i in range(1, self.count + 1):
            self._start(i)
        status = 0
        failures: dict[int, int] = {}
        restart_at: dict[int, float] = {}
        while self.procs or (restart_at and not self.stopping):
            while self.pending:
                self._handle(self.pending.pop(0))
            now = time.monotonic()
            for i, when in list(restart_at.items()):
                if self.stopping:
                    restart_at.clear()
                elif now >= when:
                    del restart_at[i]
                    self._start(i)
            for i, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self.procs[i]
                if self.stopping:
                    log.info("worker %d (pid %d) exited with status %d", i, proc.pid, code)
                    continue
                quick = time.monotonic() - self.started[i] < STARTUP_SECONDS
                failures[i] = failures.get(i, 0) + 1 if quick else 0
                if failures[i] >= STARTUP_FAILURES and not self.procs:
                    log.error("worker %d (pid %d) exited with status %d right after starting, %d times in a row, "
                              "and no worker is running; stopping (see the worker's messages above)", i, proc.pid,
                              code, failures[i])
                    self._handle(signal.SIGTERM)
                    status = 1
                    continue
                delay = min(2.0 ** failures[i] - 1, 30.0)
                log.warning("worker %d (pid %d) exited with status %d; starting it again%s", i, proc.pid, code,
                            f" in {delay:g}s" if delay else "")
                restart_at[i] = time.monotonic() + delay
            time.sleep(0.1)
        return status


def worker_command(pipeline: Path, index: int, options: Sequence[str]) -> list[str]:
    """The command line of worker ``index``: this gw, ``serve`` of the same file, as that worker."""
    return [sys.executable, "-c", "from gw.cli import main; main()", "serve", str(pipeline), *options,
            "--worker-index", str(index)]
