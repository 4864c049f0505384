"""The protocol side of ``rows_over``: a write measured by the server inside a savepoint (or a transaction gw
opens in autocommit), rolled back when over the limit, kept when within; writes to non-transactional tables
are not run (unknown count, fail closed)."""

from __future__ import annotations

from typing import Any

import pytest
from gw_mysql.measure import measure
from gw_mysql.upstream import Login, UpstreamTarget, connect


@pytest.mark.parametrize("engine", ["InnoDB", "MyISAM", "Aria", "MEMORY"])
async def test_measure(my: Any, table: str, engine: str) -> None:
    my.direct(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT) ENGINE={engine}", fetch=False)
    my.direct(f"INSERT INTO {table} VALUES " + ", ".join(f"({i}, 0)" for i in range(1, 11)), fetch=False)
    up = await connect(UpstreamTarget("127.0.0.1", 3306, "test"), Login("root"))
    try:
        over = await measure(up, f"\x03UPDATE {table} SET v = 1 WHERE id > 0".encode(), [f"test.{table}"], 5)
        if engine == "InnoDB":
            assert over.rows == 10 and not over.committed
            assert my.direct(f"SELECT SUM(v) FROM {table}")[0][0] == 0  # rolled back
            within = await measure(up, f"\x03UPDATE {table} SET v = 1 WHERE id <= 3".encode(), [f"test.{table}"], 5)
            assert within.rows == 3 and within.committed
            assert my.direct(f"SELECT SUM(v) FROM {table}")[0][0] == 3  # committed (autocommit)
            # inside the client's transaction: a savepoint, the transaction stays open
            await up.query("BEGIN")
            await up.query(f"UPDATE {table} SET v = 5 WHERE id = 10")
            again = await measure(up, f"\x03DELETE FROM {table}".encode(), [f"test.{table}"], 5)
            assert again.rows == 10 and not again.committed
            rows = await up.query(f"SELECT COUNT(*), SUM(v) FROM {table}")
            assert rows.rows[0] == [b"10", b"8"]  # the client's own change survives, the DELETE does not
            await up.query("ROLLBACK")
        else:
            assert over.rows is None and not over.committed and "cannot be rolled back" in over.reason
            assert my.direct(f"SELECT SUM(v) FROM {table}")[0][0] == 0  # never ran
    finally:
        await up.aclose()
