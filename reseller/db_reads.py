"""Single reads outside any transaction, for hot paths that only look something up.

A read in the session's transaction costs, on PostgreSQL, BEGIN and ROLLBACK round trips
around it, and on SQLite the database's write lock (every transaction begins IMMEDIATE,
see reseller.sqlite): getBalance from four processes would queue behind one another. One
statement needs no transaction: this runs it on a pooled connection in autocommit mode,
where it sees the latest committed data.
"""

from __future__ import annotations

from sqlalchemy import Row, Select

from .extensions import db


def first_row(statement: Select) -> Row | None:
    """The statement's first row, read outside the session's transaction."""
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection.execute(statement).first()
