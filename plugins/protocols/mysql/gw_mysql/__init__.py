"""gw's MySQL / MariaDB protocol plugin: agents connect with the mariadb/mysql CLI, PyMySQL, mysqlclient,
mysql-connector-python ... using an identity token as the password (sent with mysql_clear_password); gw logs
in to the real server with the credentials it holds and runs every command through the listener's pipeline.
See docs/plugins/mysql.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import MySQLHandler

__all__ = ["MySQLHandler"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(MySQLHandler)
