"""Keeps the injected upstream credential out of response bodies.

An upstream that echoes request headers (debug endpoints, some error pages) would hand the agent the very
credential gw exists to keep from it.  :class:`SecretScrubber` replaces every occurrence with asterisks of the
same length, so ``Content-Length`` stays valid and bodies that need no change stream through untouched.  A
secret split across two reads is caught by holding back only the tail that could begin one -- ordinarily
nothing, so streaming responses (watches, server-sent events) are not delayed.
"""

from __future__ import annotations

from collections.abc import Sequence


class SecretScrubber:
    """A :class:`gw.stage.StreamFilter` (length-preserving) for the response body."""

    __slots__ = ("_pending", "secrets")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self.secrets = tuple(sorted(secrets, key=len, reverse=True))
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, b"*" * len(secret))
        hold = self._partial_tail(data)
        if hold:
            self._pending = data[-hold:]
            return data[:-hold]
        return data

    def finish(self) -> bytes:
        # The body ended inside what could have been a secret: blank that prefix as well.
        tail, self._pending = self._pending, b""
        return b"*" * len(tail)

    def _partial_tail(self, data: bytes) -> int:
        """Length of the longest suffix of ``data`` that is a proper prefix of some secret."""
        longest = 0
        for secret in self.secrets:
            first = secret[:1]
            start = max(len(data) - len(secret) + 1, 0)
            at = data.find(first, start)
            while at != -1:
                if secret.startswith(data[at:]):
                    longest = max(longest, len(data) - at)
                    break
                at = data.find(first, at + 1)
        return longest
