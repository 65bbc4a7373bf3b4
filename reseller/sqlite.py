"""SQLite settings that make the embedded database safe under concurrent writers.

pysqlite starts transactions lazily and a read lock that later wants to write fails
at once instead of waiting; so every transaction begins IMMEDIATE (takes the write lock up
front, waits up to the busy timeout) and WAL keeps readers of other connections going.
"""

import contextlib
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


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
    conn.exec_driver_sql("BEGIN IMMEDIATE")
