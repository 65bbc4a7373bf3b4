"""Single reads outside any transaction, for hot paths that only look something up.

A read in the session's transaction costs, on PostgreSQL, BEGIN and ROLLBACK round trips
around it, and on SQLite the database's write lock (every transaction begins IMMEDIATE,
see reseller.sqlite): getBalance from four processes would queue behind one another. One
statement needs no transaction: this runs it on a pooled connection in autocommit mode,
where it sees the latest committed data.

A read that finds its connection closed under it (the database restarted after the pool's
check, see reseller.pool) is run once more on a fresh connection: it changed nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.exc import DBAPIError

from .extensions import db


def first_row(statement: Select, parameters: dict[str, Any] | None = None) -> Row | None:
    """The statement's first row, read outside the session's transaction."""
    try:
        return _first_row(statement, parameters)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return _first_row(statement, parameters)


def _first_row(statement: Select, parameters: dict[str, Any] | None) -> Row | None:
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection.execute(statement, parameters).first()
