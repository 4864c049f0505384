"""What a session's provenance follows as statements complete (no server needed: only the catalog's
forgetting is touched, and the stand-in below counts it)."""

from __future__ import annotations

from typing import Any

from gw_postgres.provenance import Provenance
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
