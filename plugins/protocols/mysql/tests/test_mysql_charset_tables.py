"""gw's character-set rules (gw_sqlanalysis.mysql) against the live server: for every lead byte of the
character sets whose second bytes may be ASCII, the server and gw agree on whether a following backslash
belongs to the character; and on which bytes after ``--`` start a comment."""

from __future__ import annotations

from typing import Any

import pytest
from gw_sqlanalysis.mysql import CHARSETS, MySQLMode, decode_statement, lex_mysql


def _server_groups(cur: Any, lead: int) -> bool:
    """``'<lead>\\'``: the server reads one character (the string ends there) or an escaped quote."""
    import pymysql

    try:
        cur.execute(b"SELECT CHAR_LENGTH('" + bytes((lead, 0x5C)) + b"') AS n")
        return cur.fetchall()[0][0] == 1
    except pymysql.MySQLError:
        return False


@pytest.mark.parametrize("cs", ["gbk", "big5", "sjis", "cp932"])
def test_backslash_grouping_matches_the_server(mariadb: None, cs: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    try:
        for lead in range(0x80, 0x100):
            with conn.cursor() as cur:
                cur.execute(f"SET NAMES {cs}")
                server = _server_groups(cur, lead)
            ours = lead in CHARSETS[cs].leads and 0x5C in CHARSETS[cs].trails
            assert ours == server, f"{cs}: lead byte 0x{lead:02x}"
    finally:
        conn.close()


@pytest.mark.parametrize("cs", ["utf8mb4", "latin1", "cp1250", "gbk", "cp1251"])
def test_dash_comment_bytes_match_the_server(mariadb: None, cs: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    try:
        for b in [*range(0x80, 0x100), 0x7F]:
            with conn.cursor() as cur:
                cur.execute(f"SET NAMES {cs}")
                raw = b"SELECT 1 --" + bytes((b,)) + b"\n"
                try:
                    cur.execute(raw)
                    server = cur.fetchall() == ((1,),)
                except pymysql.MySQLError:
                    server = False
            ours = lex_mysql(decode_statement(raw, MySQLMode(cs)).analysis, MySQLMode(cs)).tokens
            assert (len(ours) == 2) == server, f"{cs}: byte 0x{b:02x}"
    finally:
        conn.close()
