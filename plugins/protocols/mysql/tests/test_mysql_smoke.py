"""First contact: token login with PyMySQL, a query, a refusal."""

from __future__ import annotations

from typing import Any


async def test_pymysql_login_query_and_refusal(my_gateway: Any, my: Any, table: str, events: list[Any]) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20))", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES (1, 'ann'), (2, 'bob')", fetch=False)
    async with my_gateway() as gw:
        port = gw.port("my")
        token = gw.token("agent-7", ["agents"])

        def work() -> Any:
            conn = my.connect(port, token)
            with conn.cursor() as cur:
                cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
                rows = cur.fetchall()
                try:
                    cur.execute(f"DROP TABLE {table}")
                    dropped = None
                except Exception as e:  # noqa: BLE001
                    dropped = e
                cur.execute("SELECT 1")
                one = cur.fetchall()
            conn.close()
            return rows, dropped, one

        rows, dropped, one = await my.in_thread(work)
    assert rows == ((1, "ann"), (2, "bob"))
    assert dropped is not None and dropped.args[0] == 1227, dropped
    assert one == ((1,),)
    assert my.direct(f"SELECT COUNT(*) FROM {table}") == ((2,),)
