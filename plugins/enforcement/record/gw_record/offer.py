"""The ``"recordings"`` offer (docs/plugin-hooks.md): recorded sessions for the web console,
in the shapes ``gw sessions list --json`` and ``gw sessions export`` give."""

from __future__ import annotations

from typing import Any

from gw.runtime import Runtime

from . import archive
from .archive import Recording, RecordingNotFound
from .cli import _export


class RecordingsOffer:
    name = "recordings"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def sessions(self, *, limit: int = 100, subject: str | None = None) -> list[dict[str, Any]]:
        store = self.runtime.services.require_store("the recordings offer")
        return await archive.list_sessions(store, limit=limit, subject=subject)

    async def export(self, session_id: str, fmt: str) -> str | None:
        if fmt not in ("jsonl", "asciicast"):
            raise ValueError(f"unknown export format {fmt!r} (jsonl, asciicast)")
        store = self.runtime.services.require_store("the recordings offer")
        try:
            recording = await Recording.open(store, session_id)
        except RecordingNotFound:
            return None
        parts: list[str] = []
        await _export(recording, fmt, parts.append)
        return "".join(parts)
