"""Masking against an adversarial agent, end to end: `gw serve` in front of the real PostgreSQL, an agent
token, stock psql (simple Query) and psycopg (extended protocol, text and binary results), plus a minimal
protocol client that skips Describe.  One case per class of attempt and per protocol mode; every byte the
client receives (rows, errors, notices, notifications, parameter status) and everything gw persists (audit,
recordings, logs) is searched for the raw values of masked columns and their obvious transformations.
Provably clean queries keep their values."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw.testing import GatewayProcess, free_port, require_program, require_service

GW = str(Path(sys.executable).with_name("gw"))

SSN = "536-22-8741"
BARE_SSN = "478209153"          # an SSN stored as bare digits: no detector recognises it
CARD = "4111111111111111"
EMAIL = "ann@example.com"
RAW = [SSN, BARE_SSN, CARD, EMAIL]


def _variants(value: str) -> set[str]:
    digits = "".join(c for c in value if c.isdigit())
    out = {value, value[::-1], value.upper()}
    if len(digits) >= 6:
        out |= {digits, digits[::-1], digits.translate(str.maketrans("0123456789", "abcdefghij"))}
        out.add(value.translate(str.maketrans("0123456789", "abcdefghij")))
    for v in list(out):
        out.add(base64.b64encode(v.encode()).decode().rstrip("="))
        out.add(v.encode().hex())
    out.add(value.split("@")[0] + "@example") if "@" in value else None
    return out


NEEDLES = sorted(set().union(*(_variants(v) for v in RAW)))

CONFIG = """
[gateway]
data_dir = ".gw"

[storage]
use = "sqlite"
path = ".gw/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
groups_claim = "groups"

[pipelines.agents]
stages = [
  { use = "audit" },
  { use = "mask", strategy = "redact", columns = ["ssn", "*.card_number", "email"],
    detectors = ["us_ssn", "credit_card", "email", "iban"] },
  { use = "record" },
]

[[listeners]]
name = "db"
protocol = "postgres"
listen = "127.0.0.1:PORT"
identity = "dev"
pipeline = "agents"
allow_groups = ["agents"]

[listeners.upstream]
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
"""

T = f"gw_mc_{secrets.token_hex(3)}"

# Each case: (class, statement(s) with {t} for the table).  Several statements in one string are one simple
# Query for psql; the extended-protocol modes run single statements only.
ADVERSARIAL: list[tuple[str, str]] = [
    ("whole-row", "select p from {t} p"),
    ("whole-row", "select p::text from {t} p"),
    ("whole-row", "select translate(p::text, '0123456789', 'abcdefghij') from {t} p"),
    ("whole-row", "select encode(convert_to(p::text, 'UTF8'), 'base64') from {t} p"),
    ("whole-row", "select value from {t} p, jsonb_each_text(to_jsonb(p)) where key = 'ssn'"),
    ("whole-row", "select row_to_json(p)::text from {t} p"),
    ("whole-row", "select (p).ssn, (p).email from {t} p"),
    ("whole-row", "select x from {t} p, lateral (select reverse(p::text) x) q"),
    ("whole-row", "update {t} p set note = note where id = 2 returning p"),
    ("whole-row", "select array_agg(p)::text from {t} p"),
    ("whole-row", "select hstore(p)::text from {t} p"),
    ("untraceable", "select replace(ssn, '-', '') x, (p is null) y from {t} p"),
    ("untraceable", "select replace(c, '-', '') from {t} as p(a, b, c)"),
    ("untraceable", "select replace(p.ssn, '-', '') from ({t} p join {t} q on p.id = q.id)"),
    ("untraceable", "values ((select replace(ssn, '-', '') from {t} where id = 1))"),
    ("untraceable", "select * from (values ((select replace(ssn, '-', '') from {t} where id = 2))) v(a)"),
    ("untraceable", "select (select replace(q.ssn, '-', '') from {t} q where q.id = p.id) from {t} p"),
    ("untraceable", "with c as (select ssn s from {t}) select replace(s, '-', '') from c"),
    ("untraceable", "select name from {t} union all select replace(ssn, '-', '') from {t}"),
    ("untraceable", "select u from {t} p, unnest(array[replace(p.ssn, '-', '')]) u"),
    ("untraceable", "select r.ssn from {t} p, json_populate_record(null::{t}, row_to_json(p)) r"),
    ("untraceable", ("with d as (update {t} set note = note where id = 1 returning ssn) "
                    "select replace(ssn, '-', '') from d")),
    ("untraceable", "select * from {t}"),
    ("untraceable", "select split_part(email, '@', 1) || '@example', translate(card_number, '1', 'x') from {t}"),
    ("untraceable", "select string_agg(ssn, ',') from {t}"),
    ("untraceable", "select query_to_xml('select ssn from {t}', true, true, '')::text"),
    ("untraceable", "select x.* from (select * from {t}) x"),
    ("untraceable", "select t2.a from {t} p cross join lateral (select p.ssn as a) t2"),
    ("untraceable", "table {t}"),
    ("untraceable", "select * from {t} natural join {t} q"),
    ("untraceable", "select * from {t} join {t} q using (id)"),
    ("whole-row", "select {t} from {t}"),
    ("whole-row", "select ({t}.*)::text from {t}"),
    ("untraceable", "select * from only {t}"),
    ("untraceable", "select ssn from {t} tablesample system (100)"),
    ("untraceable", "select distinct on (id) ssn from {t}"),
    ("untraceable", "select ssn from {t} group by grouping sets ((ssn))"),
    ("untraceable", 'select U&"\\0073sn" from {t}'),
    ("untraceable", 'select "ssn" from "{t}"'),
    ("untraceable", "select ssn from public.{t}"),
    ("untraceable", "select x from {t}, lateral (select ssn) s(x)"),
    ("whole-row", "select json_agg(p)::text from {t} p"),
    ("whole-row", "select to_json(p.*)::text from {t} p"),
    ("whole-row", "select format('%s', p) from {t} p"),
    ("whole-row", "select * from json_to_record((select row_to_json(p) from {t} p limit 1)) as x(ssn text)"),
    ("whole-row", "select s from {t} p, jsonb_each_text(to_jsonb(p)) as e(k, s)"),
    ("whole-row", "select row_to_json(p)->>'ssn' from {t} p"),
    ("untraceable", "with recursive r as (select ssn from {t} union select ssn from r) select * from r"),
    ("untraceable", "select $$x$$ || ssn from {t}"),
    ("untraceable", "select ssn /* c */ from {t} -- comment"),
    ("untraceable", "select xmlforest(ssn, email)::text from {t}"),
    ("untraceable", "select string_to_array(ssn, '-')::text from {t}"),
    ("untraceable", 'select ssn collate "C" from {t}'),
    ("untraceable", "select cast(ssn as varchar(20)) from {t}"),
    ("untraceable", "select left(ssn, 5), right(ssn, 4), md5(ssn) from {t}"),
    ("untraceable", "select {t}.* from {t}"),
    ("untraceable", "select c from {t} p(a, b, c, d, e, f)"),
    ("untraceable", "select * from {t} as p(a)"),
    ("untraceable", "select * from (select * from {t}) x(a, b, c)"),
    ("untraceable", "select t.* from (values (1)) v, lateral (select * from {t}) t"),
    ("untraceable", "select ssn from {t} union select email from {t} order by 1"),
    ("errors", "select ssn::int from {t} where id = 1"),
    ("errors", "select ('x' || ssn)::int from {t}"),
    ("errors", "select ssn::numeric from {t}"),
    ("errors", "select ssn::date from {t}"),
    ("errors", "select email::json from {t}"),
    ("errors", "select ssn::uuid from {t}"),
    ("errors", "select ssn::regclass from {t}"),
    ("errors", "select email::regrole from {t}"),
    ("errors", "select replace(ssn, '-', '')::regtype from {t}"),
    ("errors", "select jsonb_path_query('{}', ('$.' || ssn)::jsonpath) from {t}"),
    ("errors", "select 1 / (length(ssn) - length(ssn)) from {t}"),
    ("errors", "select to_number(email, '999') from {t}"),
    ("errors", "insert into {t}(id, ssn) select 100, ssn from {t} where id = 2"),
    ("errors", "update {t} set name = null where id = 2"),
    ("errors", "update {t} set id = 1 where id = 2"),
    ("errors", "alter table {t} add constraint gw_mc_check check (ssn like '9%')"),
    ("copies", "update {t} set note = ssn where id = 1"),
    ("copies", "create temp view {t} as select id, ssn as name from public.{t}"),
    ("copies", "create materialized view {t}_m as select ssn as x from {t}"),
    ("copies", "alter table {t} rename column ssn to x"),
    ("copies", "insert into {t} (id, name) values (1, 'x') on conflict (id) do update set note = {t}.ssn"),
    ("copies", "update {t} set note = (select q.ssn from {t} q where q.id = 2) where id = 1"),
    ("copies", "with s as (select ssn from {t}) insert into {t} (id, name, note) select 50, 'y', ssn from s"),
    ("copies", "create table {t}_c as select ssn from {t}"),
    ("copies", "select ssn into {t}_d from {t}"),
    ("copies", "select set_config('application_name', replace(ssn, '-', ''), false) from {t} where id = 1"),
    ("copies", "select pg_notify('gw_mc', ssn) from {t} where id = 2"),
    ("statistics", ("select translate(histogram_bounds::text, '0123456789', 'abcdefghij') from pg_stats "
                   "where tablename = '{t}'")),
    ("statistics", "select most_common_vals::text from pg_catalog.pg_stats where tablename = '{t}'"),
    ("views", "select tax_id from {t}_v"),
    ("views", "select replace(tax_id, '-', '') from {t}_v"),
    ("views", "select v::text from {t}_v v"),
    ("functions", "select {t}_f()"),
    ("functions", "select * from {t}_f()"),
]
SIMPLE_ONLY: list[tuple[str, str]] = [
    ("multi-statement", "select 1; select replace(ssn, '-', '') from {t}"),
    ("multi-statement", "select id from {t}; select replace(ssn, '-', '') x from {t}; select 2"),
    ("multi-statement", "select name from {t} where id = 1; select p from {t} p"),
    ("cursors", "begin; declare c cursor for select replace(ssn, '-', '') x from {t}; fetch all from c; commit"),
    ("cursors", ("begin; declare c cursor for select id from {t}; close c; "
                "declare c cursor for select replace(ssn, '-', '') x from {t}; fetch all from c; commit")),
    ("cursors", ("begin; declare \"C\" scroll cursor for select p from {t} p; move last in \"C\"; "
                "fetch prior from \"C\"; commit")),
    ("cursors", "fetch all from gw_unknown_cursor"),
    ("copy", "copy (select p from {t} p) to stdout"),
    ("copy", "copy (select '/*' a, ssn, card_number, email, '*/' b from {t}) to stdout"),
    ("copy", "copy (select name, replace(ssn, '-', '') from {t}) to stdout (delimiter ',')"),
    ("copy", "copy {t} to stdout"),
    ("copy", "copy {t} (ssn, email) to stdout with csv"),
    ("copy", "copy (select ssn from {t}) to '/tmp/{t}.txt'"),
    ("notify", "listen gw_mc; select pg_notify('gw_mc', ssn) from {t} where id = 2"),
    ("prepared", "prepare s1 as select replace(ssn, '-', '') x from {t}; execute s1"),
    ("prepared", ("prepare s2 as select id from {t}; deallocate s2; "
                 "prepare s2 as select replace(ssn, '-', '') x from {t}; execute s2")),
    ("multi-statement", ("create function {t}_g() returns int language sql begin atomic; select 1; end; "
                        "select replace(ssn, '-', '') from {t}")),
    ("do", "do $$ begin raise notice '%', (select string_agg(ssn, ',') from {t}); end $$"),
    ("do", "do $$ begin perform set_config('application_name', (select ssn from {t} limit 1), false); end $$"),
]
# Variants: expressions over a masked column, each placed in every position a value can come from.
EXPRESSIONS = [
    "replace(ssn, '-', '')", "translate(ssn, '0123456789', 'abcdefghij')", "reverse(ssn)", "ssn || ''",
    "lower(email)", "substr(card_number, 1, 16)", "concat_ws(',', name, ssn)", "format('%s', ssn)",
    "coalesce(null, ssn)", "case when id > 0 then ssn end", "regexp_replace(ssn, '-', '', 'g')",
    "encode(convert_to(ssn, 'UTF8'), 'hex')", "(ssn)", "people.ssn", "json_build_object('s', ssn)::text",
    "array[ssn]::text", "row(ssn)::text", "xmlelement(name x, ssn)::text", "lag(ssn) over (order by id)",
    "string_agg(ssn, ',') over ()", "(select ssn)", "split_part(ssn, '-', 1) || split_part(ssn, '-', 2)",
]
PLACES = [
    "select {e} from {t} people",
    "select x from (select {e} as x from {t} people) d",
    "with d as (select {e} as x from {t} people) select x from d",
    "select name from {t} union select {e} from {t} people",
    "select x from {t} q, lateral (select {e} as x from {t} people where people.id = q.id) l",
    "select (select {e} from {t} people limit 1)",
    "values ((select {e} from {t} people limit 1))",
    "select array(select {e} from {t} people)::text",
    "select * from (select {e} from {t} people) d(y)",
    "select d.* from (select id, {e} from {t} people) d",
]
VARIANTS = [place.replace("{e}", e) for place in PLACES for e in EXPRESSIONS]
CLEAN: list[tuple[str, list[tuple[str, ...]]]] = [
    ("select id, name from {t} order by id", [("1", "ann"), ("2", "bob")]),
    ("select count(*) from {t}", [("2",)]),
    ("select length(name) from {t} order by id", [("3",), ("3",)]),
    ("select id, name from {t} p where p is not null order by id", [("1", "ann")]),
    ("select id from {t}_v order by id", [("1",), ("2",)]),
]


def direct(sql: str) -> str:
    return subprocess.run(["psql", "host=127.0.0.1 port=5432 user=postgres dbname=test", "-XAtq", "-c", sql],
                          capture_output=True, text=True, check=True).stdout


class Env:
    def __init__(self, root: Path, proc: GatewayProcess, port: int, token: str) -> None:
        self.root, self.proc, self.port, self.token = root, proc, port, token

    def psql(self, sql: str) -> str:
        out = subprocess.run(["psql", f"host=127.0.0.1 port={self.port} user=agent dbname=test", "-XAt",
                              "-c", sql], check=False, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PGPASSWORD": self.token})
        return out.stdout + out.stderr

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=agent dbname=test password={self.token}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_program("psql")
    root = tmp_path_factory.mktemp("maskcorpus")
    port = free_port()
    path = root / "gw.toml"
    path.write_text(CONFIG.replace("PORT", str(port)))
    direct(f"create table {T} (id int primary key, name text not null, ssn text unique, note text, "
           f"card_number text, email text); "
           f"insert into {T} values (1, 'ann', '{SSN}', 'card on file', '{CARD}', '{EMAIL}'), "
           f"(2, 'bob', '{BARE_SSN}', 'n/a', null, null); analyze {T}; "
           f"create view {T}_v as select id, ssn as tax_id, name from {T}; "
           f"create function {T}_f() returns setof text language sql as 'select ssn from {T}'")
    genv = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32)}
    proc = GatewayProcess(path, env=genv, timeout=60).start()
    try:
        out = subprocess.run([GW, "token", "issue", "-c", str(path), "--sub", "agent-7", "--group", "agents",
                              "--ttl", "1h"], check=False, capture_output=True, text=True, env=genv, timeout=60)
        assert out.returncode == 0, out.stderr
        yield Env(root, proc, port, out.stdout.strip())
    finally:
        proc.stop()
        direct(f"drop table if exists {T}_c; drop table if exists {T}_d; drop view if exists {T}_v; "
               f"drop materialized view if exists {T}_m; "
               f"drop function if exists {T}_g(); "
               f"drop function if exists {T}_f(); drop table if exists {T}")


def assert_clean(received: str, case: str) -> None:
    for needle in NEEDLES:
        assert needle not in received, f"{needle!r} came back for {case!r}:\n{received[:2000]}"


def _sql(template: str) -> str:
    return template.replace("{t}", T)


# -- simple Query (psql) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "sql"), ADVERSARIAL + SIMPLE_ONLY, ids=lambda v: str(v)[:60])
def test_simple_query_psql(env: Env, cls: str, sql: str) -> None:
    received = env.psql(_sql(sql))
    if os.environ.get("GW_CORPUS_SHOW"):
        print(f"\n>>> {sql}\n{received}")
    assert_clean(received, sql)
    assert env.psql("select 1").strip() == "1"  # the session (and gw) go on


@pytest.mark.parametrize("sql", VARIANTS, ids=lambda v: v[:70])
def test_variants_psql(env: Env, sql: str) -> None:
    received = env.psql(_sql(sql))
    if os.environ.get("GW_CORPUS_SHOW"):
        print(f"\n>>> {sql}\n{received}")
    assert_clean(received, sql)


# -- extended protocol (psycopg), text and binary results -------------------------------------------------------
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("cls", "sql"), ADVERSARIAL, ids=lambda v: str(v)[:60])
def test_extended_psycopg(env: Env, cls: str, sql: str, binary: bool) -> None:
    psycopg = pytest.importorskip("psycopg")
    received: list[str] = []
    with psycopg.connect(env.dsn(), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: received.append(f"{d.message_primary} {d.message_detail} "
                                                          f"{d.context} {d.message_hint}"))
        try:
            with conn.cursor(binary=binary) as cur:
                cur.execute(_sql(sql))
                if cur.description is not None:
                    received.append(repr(cur.fetchall()))
        except psycopg.Error as e:
            d = e.diag
            received.append(f"{e} {d.message_detail} {d.context} {d.message_hint} {d.internal_query}")
        received.append(repr(conn.info.parameter_status("application_name")))
        received.extend(n.payload for n in conn.notifies(timeout=0.2, stop_after=5))
    assert_clean("\n".join(received), sql)


def test_psycopg_server_side_cursor(env: Env) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(env.dsn()) as conn, conn.cursor(name="gw_named") as cur:
        cur.execute(_sql("select id, replace(ssn, '-', '') x, email from {t} order by id"))
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [1, 2]
    assert_clean(repr(rows), "server-side cursor")


# -- extended protocol without Describe (a minimal client) ------------------------------------------------------
class RawClient:
    """Just enough of the frontend protocol to send Parse/Bind/Execute/Sync with no Describe."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        params = b"user\0agent\0database\0test\0\0"
        body = struct.pack("!I", 196608) + params
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        received = self.until_ready(password=token)
        assert b"R" in received

    def _message(self) -> tuple[bytes, bytes]:
        head = self._exactly(5)
        (length,) = struct.unpack("!I", head[1:])
        return head[:1], self._exactly(length - 4)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def until_ready(self, password: str | None = None) -> bytes:
        out = b""
        while True:
            t, body = self._message()
            out += t + body
            if t == b"R" and body[:4] == struct.pack("!I", 3) and password is not None:
                pw = password.encode() + b"\0"
                self.sock.sendall(b"p" + struct.pack("!I", len(pw) + 4) + pw)
            if t == b"Z":
                return out

    def run(self, sql: str, binary: bool) -> bytes:
        def msg(t: bytes, body: bytes) -> bytes:
            return t + struct.pack("!I", len(body) + 4) + body
        parse = msg(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
        bind = msg(b"B", b"\0\0" + struct.pack("!HH", 0, 0) + struct.pack("!HH", 1, 1 if binary else 0))
        self.sock.sendall(parse + bind + msg(b"E", b"\0" + struct.pack("!I", 0)) + msg(b"S", b""))
        return self.until_ready()

    def close(self) -> None:
        self.sock.sendall(b"X\0\0\0\4")
        self.sock.close()


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("cls", "sql"), ADVERSARIAL, ids=lambda v: str(v)[:60])
def test_extended_without_describe(env: Env, cls: str, sql: str, binary: bool) -> None:
    client = RawClient(env.port, env.token)
    try:
        received = client.run(_sql(sql), binary)
        assert b"Z" in received
        assert_clean(received.decode("utf-8", "replace"), sql)
        assert b"C" in client.run("select 1", False)  # the session goes on
    finally:
        client.close()


# -- provably clean queries keep their values -------------------------------------------------------------------
@pytest.mark.parametrize(("sql", "expected"), CLEAN, ids=lambda v: str(v)[:60])
def test_clean_cases_keep_values(env: Env, sql: str, expected: list[tuple[str, ...]]) -> None:
    out = env.psql(_sql(sql))
    assert [tuple(line.split("|")) for line in out.strip().splitlines()] == expected, out
    psycopg = pytest.importorskip("psycopg")
    for binary in (False, True):
        with psycopg.connect(env.dsn(), autocommit=True) as conn, conn.cursor(binary=binary) as cur:
            cur.execute(_sql(sql))
            rows = [tuple(str(v) for v in row) for row in cur.fetchall()]
        assert rows == expected


def test_masked_columns_are_masked_not_dropped(env: Env) -> None:
    out = env.psql(_sql("select id, ssn, replace(ssn, '-', '') x, p is null from {t} p order by id"))
    lines = out.strip().splitlines()
    assert lines[0].split("|")[0] == "1" and lines[0].split("|")[1] == "***"
    assert lines[1].split("|")[2] == "***"


def test_whole_rows_are_masked_field_by_field(env: Env) -> None:
    out = env.psql(_sql("select p from {t} p where id = 1")).strip()
    assert out == '(1,ann,***,"card on file",***,***)', out
    out = env.psql(_sql("update {t} p set note = note where id = 2 returning p")).strip().splitlines()[0]
    assert out == "(2,bob,***,n/a,,)", out
    # an expression over the row is not a row gw can decode: masked whole
    assert env.psql(_sql("select p::text from {t} p where id = 1")).strip() == "***"
    client = RawClient(env.port, env.token)
    try:
        received = client.run(_sql("select p from {t} p where id = 1"), True)
    finally:
        client.close()
    assert b"ann" in received and b"card on file" in received
    assert_clean(received.decode("utf-8", "replace"), "binary whole row")


def test_copy_with_options_ends_the_statement_not_the_session(env: Env) -> None:
    out = env.psql(_sql("copy (select name, replace(ssn, '-', '') from {t}) to stdout (delimiter ',')"))
    assert "FATAL" not in out and "XX000" not in out
    assert "COPY" in out or "copy" in out


# -- persistence: last, it stops the gateway --------------------------------------------------------------------
def test_nothing_raw_is_persisted(env: Env) -> None:
    env.proc.stop()
    state = env.root / ".gw"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files, "gw wrote nothing"
    for p in files:
        data = p.read_bytes().decode("utf-8", "replace")
        for needle in NEEDLES:
            if len(needle) >= 9:
                assert needle not in data, f"{needle!r} persisted in {p.name}"
    log = "\n".join(env.proc.log)
    for needle in NEEDLES:
        if len(needle) >= 9:
            assert needle not in log, f"{needle!r} in gw's log"
