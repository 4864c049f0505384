"""Masking through the mysql protocol with the real mask stage: columns traced from each column's definition
(org_table, org_name) and from lineage for expressions, in text rows (COM_QUERY) and binary rows
(prepared statements), and in error texts that quote row values."""

from __future__ import annotations

from typing import Any

SSN, SSN2 = "123-45-6789", "219-09-9999"
STAGES = ('{ use = "recorder" }, { use = "mask", strategy = "redact", columns = ["ssn", "*.card_number"], '
          'detectors = ["us_ssn", "credit_card", "email"] }')


def _people(my: Any, table: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20), ssn VARCHAR(11) UNIQUE, "
              f"card_number VARCHAR(25), note TEXT, age INT)", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'ann', '{SSN}', '4111 1111 1111 1111', 'mail ann@example.com', 30), "
              f"(2, 'bob', '{SSN2}', NULL, 'order 4111 1111 1111 1112', 40)", fetch=False)


async def test_text_rows(my_gateway: Any, my: Any, table: str) -> None:
    _people(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = my.connect(gw.port("my"), token)
            out = []
            with conn.cursor() as cur:
                for sql in (f"SELECT id, name, ssn, card_number, note FROM {table} ORDER BY id",
                            f"SELECT ssn AS x, UPPER(ssn) AS y, CONCAT(name, ssn) AS z FROM {table} p ORDER BY id",
                            f"SELECT (SELECT ssn FROM {table} WHERE id = 1) AS s",
                            f"SELECT id, name FROM {table} ORDER BY id",
                            # lineage cannot expand * without the catalog: the expression is attributed to
                            # every column of the table it reads (fail closed), the plain columns keep theirs
                            f"SELECT *, REPLACE(ssn, '-', '') AS r FROM {table} ORDER BY id",
                            f"SELECT COUNT(*), LENGTH(name) FROM {table} GROUP BY name ORDER BY 2"):
                    cur.execute(sql)
                    out.append(cur.fetchall())
            conn.close()
            return out

        plain, derived, sub, clean, star, counts = await my.in_thread(run)
    assert plain[0] == (1, "ann", "***", "***", "mail ***") or plain[0][2:4] == ("***", "***")
    text = repr([plain, derived, sub])
    assert SSN not in text and SSN2 not in text and "4111 1111 1111 1111" not in text
    assert "ann@example.com" not in text
    assert "4111 1111 1111 1112" in repr(plain)  # Luhn-invalid: not a card, left alone
    assert clean == ((1, "ann"), (2, "bob"))
    assert SSN.replace("-", "") not in repr(star) and SSN not in repr(star), star
    assert star[0][:2] == (1, "ann") and star[0][5] == 30
    assert counts == ((1, 3), (1, 3))


async def test_error_texts(my_gateway: Any, my: Any, table: str) -> None:
    """Errors and warnings that quote a row value keep their shape, not the value."""
    import pymysql

    _people(my, table)
    async with my_gateway(stages=STAGES) as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            out: list[Any] = []
            conn = my.connect(gw.port("my"), token, autocommit=True)
            with conn.cursor() as cur:
                try:
                    cur.execute(f"INSERT INTO {table} (id, ssn) SELECT 3, ssn FROM {table} WHERE id = 1")
                except pymysql.MySQLError as e:
                    out.append(e.args)
                cur.execute(f"SELECT CAST(REPLACE(ssn, '-', '') AS DOUBLE) + CAST(CONCAT(REPLACE(ssn, '-', ''), 'x') "
                            f"AS DOUBLE) FROM {table} WHERE id = 1")
                cur.execute("SHOW WARNINGS")
                out.append(cur.fetchall())
            conn.close()
            return out

        dup, warnings = await my.in_thread(run)
    assert dup[0] == 1062 and "Duplicate entry '***'" in dup[1], dup
    assert warnings and "'***'" in repr(warnings), warnings
    assert SSN not in repr(warnings) and SSN.replace("-", "") not in repr(warnings), warnings


async def test_binary_protocol_rows(my_gateway: Any, my: Any, table: str, certs: dict[str, Any]) -> None:
    import mysql.connector

    _people(my, table)
    cert, key = certs["cert"], certs["key"]
    async with my_gateway(stages=STAGES, listener=f'tls = {{ cert = "{cert}", key = "{key}" }}') as gw:
        token = gw.token("agent-7", ["agents"])

        def run() -> Any:
            conn = mysql.connector.connect(host="127.0.0.1", port=gw.port("my"), user="agent-7", password=token,
                                           database="test", auth_plugin="mysql_clear_password", use_pure=True,
                                           ssl_ca=str(certs["ca"]))
            cur = conn.cursor(prepared=True)
            cur.execute(f"SELECT id, ssn, UPPER(ssn), age, card_number FROM {table} WHERE id >= ? ORDER BY id", (1,))
            rows = cur.fetchall()
            conn.close()
            return rows

        rows = await my.in_thread(run)
    assert SSN not in repr(rows) and SSN2 not in repr(rows) and "4111 1111 1111 1111" not in repr(rows)
    assert [r[0] for r in rows] == [1, 2] and [r[3] for r in rows] == [30, 40]
