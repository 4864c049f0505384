"""COPY through gw: FROM STDIN and TO STDOUT relayed; under a masking rule, text output is masked row by row
and CSV/binary output is refused with an error that says why (never relayed unmasked)."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest


@pytest.fixture
async def people(pg: Any, postgres: None) -> Any:
    t = f"gw_pg_{secrets.token_hex(4)}"
    code, _, err = await pg.psql(pg.DIRECT, "-c", f"create table {t} (id int, ssn text, note text);"
                                 f"insert into {t} values (1, '111-22-3333', 'tab\there'), (2, null, 'ok')")
    assert code == 0, err
    yield t
    await pg.psql(pg.DIRECT, "-c", f"drop table {t}")


def _copy(dsn: str, statement: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            with conn.cursor().copy(statement) as copy:
                return b"".join(bytes(chunk) for chunk in copy)
        except psycopg.Error as e:
            return (e.sqlstate, str(e).splitlines()[0])


def _copy_in(dsn: str, t: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        with cur.copy(f"copy {t} from stdin") as copy:
            copy.write(b"3\t333-44-5555\tnew\n4\t\\N\tx\n")
        return cur.rowcount


async def test_copy_relayed_without_rules(pg_gateway: Any, pg: Any, people: str) -> None:
    async with pg_gateway() as gw:
        dsn = pg.dsn(gw.port("pg"))
        assert await pg.in_thread(_copy_in, dsn, people) == 2
        out = await pg.in_thread(_copy, dsn, f"copy {people} to stdout")
    assert out == await pg.in_thread(_copy, pg.DIRECT, f"copy {people} to stdout")
    assert b"333-44-5555" in out


async def test_copy_to_is_masked_or_refused(pg_gateway: Any, pg: Any, people: str) -> None:
    stages = f'{{ use = "mask_sources", sources = ["public.{people}.ssn"] }}'
    async with pg_gateway(stages=stages) as gw:
        dsn = pg.dsn(gw.port("pg"))
        masked = await pg.in_thread(_copy, dsn, f"copy {people} to stdout")
        assert masked == b"1\t***\ttab\\there\n2\t\\N\tok\n"
        masked = await pg.in_thread(_copy, dsn, f"copy (select ssn as x, id from {people} order by id) to stdout")
        assert masked == b"***\t1\n\\N\t2\n"
        code, message = await pg.in_thread(_copy, dsn, f"copy {people} (ssn) to stdout with (format csv)")
        assert code == "58000" and "cannot mask COPY csv output" in message
        # a COPY whose columns no rule touches is relayed untouched, whatever its format
        out = await pg.in_thread(_copy, dsn, f"copy {people} (note) to stdout csv")
        assert out == b'tab\there\nok\n'
        # COPY FROM is unaffected by masking
        assert await pg.in_thread(_copy_in, dsn, people) == 2


async def test_copy_csv_under_a_stage_that_only_reads_rows_names_that_stage(pg_gateway: Any, pg: Any,
                                                                          people: str) -> None:
    """A stage that reads result rows without changing them (the session recording) cannot read CSV either, so
    the output is withheld (never relayed past the recording), with an error that names the recording, not a
    masking rule; with a masking rule in the same pipeline, the error names the rule."""
    async with pg_gateway(stages='{ use = "row_names" }') as gw:
        dsn = pg.dsn(gw.port("pg"))
        code, message = await pg.in_thread(_copy, dsn, f"copy {people} to stdout with (format csv)")
        assert code == "58000", message
        assert "result rows are recorded and gw cannot read COPY csv output to record it" in message
        assert "masking" not in message
        assert await pg.in_thread(_copy, dsn, f"copy {people} to stdout") == \
            await pg.in_thread(_copy, pg.DIRECT, f"copy {people} to stdout")  # text format: read and relayed
    stages = f'{{ use = "row_names" }}, {{ use = "mask_sources", sources = ["public.{people}.ssn"] }}'
    async with pg_gateway(stages=stages) as gw:
        code, message = await pg.in_thread(_copy, pg.dsn(gw.port("pg")), f"copy {people} to stdout csv")
        assert code == "58000" and "a masking rule applies to this result" in message, message
