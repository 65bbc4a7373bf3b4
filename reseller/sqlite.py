"""SQLite settings that make the embedded database safe under concurrent writers.

pysqlite starts transactions lazily and a read lock that later wants to write fails
at once instead of waiting; so every transaction that may write begins IMMEDIATE (takes the
write lock up front, waits up to the busy timeout) and WAL keeps readers of other
connections going. The transactions of a read-only page view (reseller.transactions) begin
DEFERRED, with `PRAGMA query_only` on until they end: they read beside the writer, and a
write in one fails at once.
"""

import contextlib
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import transactions

_QUERY_ONLY = "reseller_query_only"  # in the pooled connection's info while it is on


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record):  # noqa: ARG001
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    with contextlib.suppress(sqlite3.OperationalError):  # e.g. read-only media
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn):
    if conn.dialect.name != "sqlite":
        return
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # a single read on its own (reseller.db_reads): no transaction, no lock
    if not transactions.reads_only():
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    conn.exec_driver_sql("BEGIN")
    conn.info[_QUERY_ONLY] = True
    # On the driver's connection: a setting of the connection, not a statement of the page.
    conn.connection.driver_connection.execute("PRAGMA query_only=ON")


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _sqlite_end_query_only(conn):
    # Before the COMMIT or ROLLBACK: the connection goes back to the pool writable (a
    # HotRead's claim, the next request's transaction may write on it).
    if conn.dialect.name != "sqlite" or conn.invalidated:
        return  # (an invalidated connection is discarded, its setting with it)
    if conn.info.pop(_QUERY_ONLY, False):
        conn.connection.driver_connection.execute("PRAGMA query_only=OFF")
