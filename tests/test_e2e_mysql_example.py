"""examples/mysql.toml as written, served by `gw serve`, in front of the real MariaDB with the
least-privilege account examples/setup-mysql.sh creates: the mariadb CLI and PyMySQL log in with tokens; a
select of a masked column, a denied DDL, a held mass delete (approved by a dba with `gw approvals`), and the
GBK character-set injection, refused."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from gw.testing import GatewayProcess, free_port, require_program, require_service, wait_for

ROOT = Path(__file__).resolve().parents[1]
GW = str(Path(sys.executable).with_name("gw"))
SSN = "123-45-6789"


def root_sql(sql: str) -> str:
    return subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "-D", "test", "-N", "-B", "-e", sql],
                          capture_output=True, text=True, check=True).stdout


class Shop:
    def __init__(self, path: Path, port: int, env: dict[str, str], table: str) -> None:
        self.path, self.port, self.env, self.table = path, port, env, table

    def gw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GW, *args], capture_output=True, text=True, env=self.env, timeout=60,
                              check=False)

    def token(self, sub: str, group: str) -> str:
        out = self.gw("token", "issue", "-c", str(self.path), "--identity", "dev", "--sub", sub, "--group", group,
                      "--ttl", "1h")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def cli(self, token: str, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(self.port), "-u", "agent-7", f"-p{token}",
                               "-D", "test", "-B", *extra, "-e", sql], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    require_service("127.0.0.1", 3306, "MariaDB")
    require_program("mariadb")
    port = free_port()
    require_program("openssl")
    # The example's setup step, run from a copy: it makes gw's TLS pair beside the file (nothing is committed).
    shutil.copy(ROOT / "examples" / "setup-mysql.sh", tmp_path / "setup-mysql.sh")
    text = (ROOT / "examples" / "mysql.toml").read_text().replace("127.0.0.1:13306", f"127.0.0.1:{port}")
    path = tmp_path / "mysql.toml"
    path.write_text(text)
    env = {**os.environ, "GW_DEV_SECRET": secrets.token_urlsafe(32), "SHOP_DB_PASSWORD": secrets.token_urlsafe(12)}
    env.pop("SHOP_DBA_PASSWORD", None)
    setup = subprocess.run(["bash", str(tmp_path / "setup-mysql.sh")], env=env, capture_output=True,
                           text=True, check=False)
    assert setup.returncode == 0, setup.stderr
    assert (tmp_path / "gw.pem").exists() and (tmp_path / "gw-key.pem").stat().st_mode & 0o077 == 0
    table = f"gw_people_{secrets.token_hex(4)}"
    root_sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20), ssn VARCHAR(11)); "
             f"INSERT INTO {table} VALUES (1, 'ann', '{SSN}'), (2, 'bob', '219-09-9999'), (3, 'cy', NULL)")
    proc = GatewayProcess(path, env=env).start()
    try:
        yield Shop(path, port, env, table)
    finally:
        proc.stop()
        root_sql(f"DROP TABLE IF EXISTS {table}")


def test_policy_explain(shop: Shop) -> None:
    explain = shop.gw("policy", "explain", "-c", str(shop.path), "--listener", "shop", "--group", "agents",
                      "DELETE FROM people")
    assert explain.returncode == 2 and "kind=write verb=delete" in explain.stdout, explain.stdout
    explain = shop.gw("policy", "explain", "-c", str(shop.path), "--listener", "shop", "--group", "agents",
                      "SELECT LOAD_FILE('/etc/passwd')")
    assert explain.returncode == 1 and "kind=admin" in explain.stdout, explain.stdout
    # every stage is shown: audit's record, the mask plan, no "no rule matched" noise
    explain = shop.gw("policy", "explain", "-c", str(shop.path), "--listener", "shop", "--group", "agents",
                      "SELECT ssn FROM people")
    lines = explain.stdout.splitlines()
    assert explain.returncode == 0 and lines[-1] == "decision: allowed", explain.stdout
    assert any(x.startswith("  audit: writes the audit record") for x in lines), explain.stdout
    assert any(x.startswith("  mask: masks result columns matching") and "ssn" in x for x in lines), explain.stdout
    assert "no rule matched" not in explain.stdout


def test_example_end_to_end(shop: Shop) -> None:
    import pymysql

    agent = shop.token("agent-7", "agents")
    # mariadb CLI (TLS by default): a masked select
    out = shop.cli(agent, f"SELECT id, name, ssn, CONCAT('x', ssn) AS c FROM {shop.table} ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert SSN not in out.stdout and "219-09-9999" not in out.stdout
    assert out.stdout.splitlines()[1].split("\t")[:2] == ["1", "ann"]
    # a denied DDL
    out = shop.cli(agent, f"DROP TABLE {shop.table}")
    assert out.returncode == 1 and "ERROR 1227 (42000)" in out.stderr and "ddl" in out.stderr
    assert root_sql(f"SELECT COUNT(*) FROM {shop.table}").strip() == "3"
    # PyMySQL without TLS: the GBK injection (0xbf5c is one character in GBK) is refused
    conn = pymysql.connect(host="127.0.0.1", port=shop.port, user="agent-7", password=agent, database="test",
                           charset="gbk", client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as e:
            cur.execute(b"SELECT '\xbf\\'; DELETE FROM " + shop.table.encode() + b"; -- '")
        assert "character" in str(e.value)
        cur.execute(f"SELECT name, ssn FROM {shop.table} WHERE id = 2")
        assert cur.fetchall() == (("bob", "***"),) or "219-09-9999" not in str(cur.fetchall())
    conn.close()
    assert root_sql(f"SELECT COUNT(*) FROM {shop.table}").strip() == "3"
    # a mass delete is held until a dba approves it
    result: dict[str, Any] = {}

    def held() -> None:
        result["out"] = shop.cli(agent, f"DELETE FROM {shop.table}")

    t = threading.Thread(target=held)
    t.start()

    def pending() -> Any:
        out = shop.gw("approvals", "list", "-c", str(shop.path), "--json")
        items = json.loads(out.stdout or "[]")
        return [i for i in items if i.get("status") == "pending"]

    requests = wait_for(pending, timeout=20)
    assert root_sql(f"SELECT COUNT(*) FROM {shop.table}").strip() == "3"
    dba = shop.token("dana", "dba")
    approve = subprocess.run([GW, "approvals", "approve", "-c", str(shop.path), requests[0]["id"]],
                             capture_output=True, text=True, env={**shop.env, "GW_TOKEN": dba}, timeout=60,
                             check=False)
    assert approve.returncode == 0, approve.stderr + approve.stdout
    t.join(30)
    assert result["out"].returncode == 0, result["out"].stderr
    assert root_sql(f"SELECT COUNT(*) FROM {shop.table}").strip() == "0"
