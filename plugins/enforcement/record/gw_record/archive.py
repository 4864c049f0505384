"""Reading recordings back from the store: a session's header and events, the session index, and the cleanup
of index documents whose recordings retention has pruned.  Used by ``gw sessions``; reads only through the
core :class:`~gw.store.Store` interface, so it works on every storage backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from gw.errors import GwError
from gw.store import Store

from .recording import FORMAT, INDEX, STREAM, VERSION

#: Records fetched per store round trip while reading a recording.
PAGE = 200


class RecordingNotFound(GwError):
    """There is nothing (left) to replay for this session id."""


class Recording:
    """One session's recording: :attr:`header`, then :meth:`events` in the order they happened."""

    def __init__(self, store: Store, session_id: str, header: dict[str, Any],
                 first_page: list[Mapping[str, Any]], first_seq_after: int | None, more: bool) -> None:
        self.store = store
        self.session_id = session_id
        self.header = header
        self._first_page = first_page
        self._after = first_seq_after
        self._more = more

    @classmethod
    async def open(cls, store: Store, session_id: str) -> Recording:
        """Find a recording by its session id; raises :class:`RecordingNotFound` with what to do next."""
        entries = await store.scan(STREAM, where={"session": session_id}, limit=PAGE)
        page = [e.data for e in entries]
        header: dict[str, Any] | None = None
        if page and "header" in page[0]:
            header = dict(page[0]["header"])
            page = page[1:]
        if header is None:
            doc = await store.get(INDEX, session_id)
            if doc is None:
                raise RecordingNotFound(f"no recording of session {session_id!r} in this store; "
                                        "`gw sessions list` shows the recorded sessions")
            if not entries:
                raise RecordingNotFound(f"the recording of session {session_id!r} was removed by retention "
                                        "(storage.retention); only its index entry is left, and "
                                        "`gw sessions prune` removes it")
            # The oldest records (the header among them) are past retention; the rest is still useful.
            header = header_from_index(doc.data)
            header["pruned"] = True
        after = entries[-1].seq if entries else None
        return cls(store, session_id, header, page, after, len(entries) == PAGE)

    async def events(self) -> AsyncIterator[list[Any]]:
        """Every event ``[t, type, payload]`` in order, fetched a page of records at a time.  May be iterated
        more than once (the asciicast export reads the recording twice)."""
        for record in self._first_page:
            for event in record.get("events", ()):
                yield event
        after, more = self._after, self._more
        while more:
            entries = await self.store.scan(STREAM, where={"session": self.session_id}, after=after,
                                            limit=PAGE)
            for entry in entries:
                for event in entry.data.get("events", ()):
                    yield event
            more = len(entries) == PAGE
            if entries:
                after = entries[-1].seq


def header_from_index(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A recording header rebuilt from a session's index document."""
    return {"format": FORMAT, "version": VERSION, "session": doc.get("id"), "listener": doc.get("listener"),
            "protocol": doc.get("protocol"), "subject": doc.get("subject"), "groups": doc.get("groups", []),
            "client": doc.get("client"), "upstream": doc.get("upstream"), "started": doc.get("started")}


async def list_sessions(store: Store, *, limit: int, subject: str | None = None,
                        listener: str | None = None) -> list[dict[str, Any]]:
    """The ``limit`` most recently active recorded sessions (newest start first), optionally filtered."""
    where: dict[str, Any] = {}
    if subject:
        where["subject"] = subject
    if listener:
        where["listener"] = listener
    docs = await store.query(INDEX, where=where or None, limit=limit)
    found = [dict(d.data, id=d.key) for d in docs]
    found.sort(key=lambda d: d.get("started") or 0.0, reverse=True)
    return found


async def prune(store: Store, older_than: float) -> tuple[int, int]:
    """Apply retention to recordings: delete stream records written before ``older_than`` and the index
    documents of sessions that ended before it (or never ended and have no records left).
    Returns ``(records, sessions)`` deleted."""
    records = await store.prune(STREAM, older_than)
    sessions = 0
    for doc in await store.query(INDEX):
        data = doc.data
        ended = data.get("ended")
        if ended is not None:
            stale = ended < older_than
        else:  # a gateway that crashed never wrote the end; stale once nothing of it is left
            stale = (data.get("started") or 0.0) < older_than and not await store.scan(
                STREAM, where={"session": doc.key}, limit=1)
        if stale and await store.delete(INDEX, doc.key):
            sessions += 1
    return records, sessions
