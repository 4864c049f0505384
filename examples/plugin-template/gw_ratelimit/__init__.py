"""``use = "ratelimit"``: refuses an identity's commands past ``per_minute`` (docs/writing-a-plugin.md)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from gw import hookimpl
from gw.model import Command, DenyCode, Verdict
from gw.services import Services
from gw.stage import Stage, StageOptions


class RateLimitOptions(StageOptions):
    #: Commands one identity may send per minute.
    per_minute: int = 60


class RateLimit(Stage):
    """Refuses commands past a per-identity rate."""

    name = "ratelimit"
    Options = RateLimitOptions

    def __init__(self, options: RateLimitOptions, services: Services, **kw: Any) -> None:
        super().__init__(options, services, **kw)
        self.seen: defaultdict[str, list[float]] = defaultdict(list)

    def evaluate(self, command: Command) -> Verdict | None:
        now = time.monotonic()
        recent = [t for t in self.seen[command.identity.subject] if now - t < 60]
        recent.append(now)
        self.seen[command.identity.subject] = recent
        if len(recent) > self.options.per_minute:
            return Verdict.deny(f"more than {self.options.per_minute} commands a minute; slow down",
                                code=DenyCode.POLICY, rule="per_minute")
        return None


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(RateLimit)
