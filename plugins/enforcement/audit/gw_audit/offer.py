"""The ``"audit"`` offer (docs/plugin-hooks.md): searching and verifying the trail from the web
console, and recording what people do there.

Search filters on the indexed fields first (subject, listener, verdict) and on the rest (kind, text, time) while
paging newest first, so a narrow search over a long trail reads pages, never the whole stream at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gw.errors import StoreError
from gw.model import Identity
from gw.runtime import Runtime
from gw.store import Entry, Store

from .cli import _iso, _outcomes
from .records import STREAM
from .stage import AuditStage
from .verify import verify_store

log = logging.getLogger("gw.audit")

#: Records read per page while searching.
_PAGE = 500
#: Records looked at before a search gives up finding more matches (the page shows what it found).
_SCAN_LIMIT = 100_000


class AuditOffer:
    name = "audit"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _store(self) -> Store:
        return self.runtime.services.require_store("the audit offer")

    async def search(self, *, subject: str | None = None, listener: str | None = None,
                     verdict: str | None = None, kind: str | None = None, text: str | None = None,
                     since: float | None = None, until: float | None = None,
                     limit: int = 100) -> list[dict[str, Any]]:
        where = {"type": "command"}
        for key, value in (("subject", subject), ("listener", listener), ("verdict", verdict)):
            if value:
                where[key] = value
        needle = (text or "").casefold()
        store = self._store()
        found: list[Entry] = []
        before: int | None = None
        looked = 0
        while len(found) < limit and looked < _SCAN_LIMIT:
            page = await store.scan(STREAM, where=where, before=before, limit=_PAGE, newest_first=True)
            for e in page:
                t = e.data.get("time")
                if until is not None and isinstance(t, (int, float)) and t > until:
                    continue
                if since is not None and isinstance(t, (int, float)) and t < since:
                    page = []  # newest first: everything after this is older still
                    break
                if kind and e.data.get("kind") != kind:
                    continue
                if needle and needle not in str(e.data.get("text", "")).casefold():
                    continue
                found.append(e)
                if len(found) >= limit:
                    break
            looked += _PAGE
            if len(page) < _PAGE:
                break
            before = page[-1].seq
        outcomes = await _outcomes(store, found)
        return [{"id": e.seq, **e.data, "ts": e.data.get("time"), "time": _iso(e.data.get("time")),
                 "outcome": outcomes.get((e.data.get("session"), e.data.get("seq")))}  # type: ignore[arg-type]
                for e in found]

    async def verify(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in await verify_store(self._store())]

    async def event(self, event: str, identity: Identity, *, details: Mapping[str, Any],
                    client_address: str = "") -> None:
        stage = next((s for p in self.runtime.pipelines.values() for s in p.stages if isinstance(s, AuditStage)),
                     None)
        if stage is None:
            # No pipeline audits: the log is the only record there is to keep.
            log.info("%s by %s (%s): %s", event, identity.subject, client_address, dict(details))
            return
        try:
            await stage.event(event, identity, details, client_address)
        except StoreError:
            log.exception("could not record %s by %s", event, identity.subject)
            raise
