"""What a session's provenance follows as statements complete (no server needed: only the catalog's
forgetting is touched, and the stand-in below counts it)."""

from __future__ import annotations

from typing import Any

from gw_postgres.provenance import Provenance, classifier
from gw_sqlanalysis import Classifier


class Catalog:
    """Stands in for the listener's catalog: counts what it was told to forget."""

    generation = 0

    def __init__(self) -> None:
        self.forgotten = 0

    def forget(self) -> None:
        self.forgotten += 1


def provenance() -> tuple[Provenance, Any]:
    catalog = Catalog()
    return Provenance(Classifier(dialect="postgres"), catalog), catalog  # type: ignore[arg-type]


def test_cursors_and_prepared_statements_are_followed() -> None:
    p, catalog = provenance()
    p.completed("declare c cursor for select ssn from people", None, "DECLARE CURSOR")
    p.completed("prepare q as select ssn from people", None, "PREPARE")
    assert p.cursors == {"c": "select ssn from people"} and p.prepared == {"q": "select ssn from people"}
    p.completed("select name from people", None, "SELECT 1")  # plain: the cursor stays
    assert "c" in p.cursors
    p.completed("select unknown_function()", None, "SELECT 1")  # it may have opened or replaced cursors
    assert p.cursors == {}
    p.completed("deallocate q", None, "DEALLOCATE")
    assert p.prepared == {}
    p.completed("create table t (a int)", None, "CREATE TABLE")
    assert catalog.forgotten == 1


def test_names_are_followed_with_no_cursor_open() -> None:
    """Without cursors gw skips what only decides whether to forget them; names made or dropped, and the
    catalog after DDL, are still followed."""
    p, catalog = provenance()
    p.completed("prepare q as select 1", None, "PREPARE")
    p.completed("select unknown_function()", None, "SELECT 1")
    assert p.prepared == {"q": "select 1"}
    p.completed("discard all", None, "DISCARD ALL")
    assert p.prepared == {}
    p.completed("alter table t add b int", None, "ALTER TABLE")
    assert catalog.forgotten == 1


def test_the_listener_classifier_lexes_once_for_the_lineage_too(monkeypatch: Any) -> None:
    """The listener's classifier lexes through the cache the lineage reads: a statement classified is not
    lexed again for its result's columns."""
    import gw_postgres.provenance as prov
    import gw_sqlanalysis

    calls: list[str] = []
    real = prov.lex

    def counting(text: str, dialect: str, *args: Any) -> Any:
        calls.append(text)
        return real(text, dialect, *args)

    monkeypatch.setattr(prov, "lex", counting)
    monkeypatch.setattr(gw_sqlanalysis, "lex", counting)  # the classifier's own lexer, were it used
    text = "SELECT abalance FROM pgbench_accounts WHERE aid = 917263"
    classifier({}).classify(text)
    assert prov.lexed_text(text, "postgres").tokens[0].lower() == "select"
    assert calls == [text]


def test_texts_lexed_last_are_kept_oldest_out_first_within_their_bounds(monkeypatch: Any) -> None:
    import gw_postgres.provenance as prov

    monkeypatch.setattr(prov, "_LEXED", {})
    monkeypatch.setattr(prov, "_lexed_chars", 0)
    texts = [f"SELECT {i}" for i in range(prov._LEXED_ENTRIES + 10)]
    for t in texts:
        prov.lexed_text(t, "postgres")
    kept = [k[0] for k in prov._LEXED]
    # Sessions interleave: the most recent texts stay, whatever came before them.
    assert kept == texts[-prov._LEXED_ENTRIES:]
    assert prov._lexed_chars == sum(len(t) for t in kept)
    big = "SELECT '" + "x" * (prov._LEXED_SIZE - 20) + "'"
    for i in range(6):  # six texts of nearly 64 kB: the total length bound drops the oldest
        prov.lexed_text(big + f" AS c{i}", "postgres")
    assert prov._lexed_chars <= prov._LEXED_BUDGET
    assert len(prov._LEXED) <= prov._LEXED_BUDGET // prov._LEXED_SIZE + 1
    assert (big + " AS c5", "postgres") in prov._LEXED
