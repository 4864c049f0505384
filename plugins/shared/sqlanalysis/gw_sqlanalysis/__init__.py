"""SQL analysis shared by gw's SQL protocol plugins (PostgreSQL, MySQL): classification, fingerprints, lineage.

INTERFACE STUB -- being implemented.  The public API below is the contract protocol plugins code against.
"""

from __future__ import annotations

from dataclasses import dataclass

from gw.model import Kind


@dataclass(frozen=True, slots=True)
class Classification:
    kind: Kind
    verb: str
    objects: tuple[str, ...]
    flags: frozenset[str]
    #: Number of statements in the text (``multi_statement`` flag when > 1).
    statements: int = 1


class Classifier:
    """Classifies SQL text in one dialect (``postgres``, ``mysql``), cached by literal-normalised fingerprint."""

    def __init__(self, dialect: str = "postgres", cache_size: int = 4096) -> None:
        self.dialect = dialect

    def classify(self, text: str) -> Classification:
        return Classification(Kind.UNKNOWN, "", (), frozenset({"unparsed"}))

    def column_sources(self, text: str) -> list[tuple[str, ...]] | None:
        """For a query returning rows: per output column (in order), the source columns it derives from as
        ``schema.table.column`` (``public.people.ssn``); None when unknown (e.g. ``SELECT *``)."""
        return None


def fingerprint(text: str, dialect: str = "postgres") -> str:
    """The statement with literals replaced by ``?`` and comments/whitespace normalised."""
    return text
