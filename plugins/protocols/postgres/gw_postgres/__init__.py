"""gw's PostgreSQL protocol plugin: agents connect with psql/psycopg/asyncpg using an identity token as the
password; gw logs in to the real database with the credentials it holds and runs every statement through the
listener's pipeline.  See docs/plugins/postgres.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .handler import PostgresHandler

__all__ = ["PostgresHandler"]


@hookimpl
def gw_register_protocols(register: Callable[[type[Any]], None]) -> None:
    register(PostgresHandler)
