"""The classification of a SQL text, and how the facts of several statements combine."""

from __future__ import annotations

from dataclasses import dataclass, field

from gw.model import Kind

#: How dangerous each kind is; a multi-statement text (or a statement with nested effects) takes the most
#: dangerous.  ``unknown`` ranks highest: what gw cannot see must not pass as anything milder.
KIND_DANGER: dict[Kind, int] = {
    Kind.READ: 0,
    Kind.TRANSACTION: 1,
    Kind.WRITE: 2,
    Kind.ADMIN: 3,
    Kind.EXEC: 3,
    Kind.DDL: 4,
    Kind.UNKNOWN: 5,
}

#: Among statements of the same kind, the verb reported is the most destructive one.
VERB_DANGER: dict[str, int] = {
    "delete": 6, "truncate": 5, "update": 4, "replace": 3, "merge": 3, "insert": 2, "copy": 1,
}


@dataclass(frozen=True, slots=True)
class Classification:
    """What a SQL text does, as far as gw can tell without running it.

    Texts with the same literal-normalised fingerprint share one instance (classification never depends on
    literal values), so treat it as immutable.
    """

    kind: Kind
    verb: str
    #: Tables (and views, sequences ...) the text names, schema-qualified (``public.users``); ``s.*`` for a
    #: whole schema.  Read and written objects alike.
    objects: tuple[str, ...]
    flags: frozenset[str]
    #: Number of statements in the text (``multi_statement`` flag when > 1).
    statements: int = 1
    #: Every verb in the text, most dangerous first (``verb`` is the first); several when the text holds
    #: several statements or a query wraps data-modifying CTEs.
    verbs: tuple[str, ...] = ()
    #: The literal-normalised text (``select a from t where id = ?``), for audit grouping.
    fingerprint: str = ""


@dataclass(slots=True)
class Facts:
    """Mutable facts about one statement while it is being analysed."""

    kind: Kind
    verb: str
    objects: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    verbs: list[str] = field(default_factory=list)

    def raise_kind(self, kind: Kind) -> None:
        if KIND_DANGER[kind] > KIND_DANGER[self.kind]:
            self.kind = kind

    def add_objects(self, names: list[str] | tuple[str, ...]) -> None:
        for name in names:
            if name not in self.objects:
                self.objects.append(name)

    def add_verb(self, verb: str) -> None:
        """Record a verb the statement performs; the most destructive becomes :attr:`verb`."""
        if verb and verb not in self.verbs:
            self.verbs.append(verb)
        if VERB_DANGER.get(verb, 0) > VERB_DANGER.get(self.verb, 0):
            self.verb = verb

    def absorb(self, other: Facts) -> None:
        """Take in the facts of a statement nested in this one (EXPLAIN ANALYZE's, a cursor's query)."""
        self.raise_kind(other.kind)
        self.add_objects(other.objects)
        self.flags |= other.flags
        for verb in other.verbs or [other.verb]:
            if verb and verb not in self.verbs:
                self.verbs.append(verb)


def unknown(verb: str = "", *flags: str) -> Facts:
    return Facts(Kind.UNKNOWN, verb, flags={"unparsed", *flags})


def combine(parts: list[Facts], fingerprint: str) -> Classification:
    """One classification for a text of several statements: the most dangerous statement's kind and verb
    (ties: the more destructive verb, then the first), every object and flag (in order of appearance) and
    every verb (most dangerous first)."""
    if not parts:
        return Classification(Kind.READ, "", (), frozenset({"empty"}), 0, (), fingerprint)
    main = max(parts, key=lambda f: (KIND_DANGER[f.kind], VERB_DANGER.get(f.verb, 0)))
    objects: list[str] = []
    flags: set[str] = set()
    verbs: list[str] = []
    for part in parts:
        for name in part.objects:
            if name not in objects:
                objects.append(name)
        flags |= part.flags
    for part in sorted(parts, key=lambda f: (-KIND_DANGER[f.kind], -VERB_DANGER.get(f.verb, 0))):
        for verb in [part.verb, *part.verbs]:
            if verb and verb not in verbs:
                verbs.append(verb)
    if len(parts) > 1:
        flags.add("multi_statement")
    if main.verb in verbs:
        verbs.remove(main.verb)
    verbs.insert(0, main.verb)
    return Classification(main.kind, main.verb, tuple(objects), frozenset(flags), len(parts),
                          tuple(v for v in verbs if v), fingerprint)
