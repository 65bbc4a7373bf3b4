"""Dead pooled connections are dropped at checkout, without a round trip to the database.

When PostgreSQL restarts or fails over, it closes every client connection: the sockets of
our idle pooled connections turn readable (the server's goodbye, then end of file). The
pool's pre-ping would find them with a `SELECT 1` round trip on every checkout — a third of
a hot API read's cost. This asks the kernel instead: an idle connection owes us no data, so
a readable socket means the connection is gone (or carries something we did not ask for)
and is replaced before anyone uses it. A connection that dies after this check fails its
first statement; the pool then replaces it, hot reads retry once (reseller.db_reads), and
other requests answer with their clean "service unavailable" error.
"""

from __future__ import annotations

import select

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool


def socket_has_news(dbapi_connection) -> bool:
    """Whether an idle connection's socket is readable or already closed (never blocks).
    False for connections without a socket (SQLite)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3
    if pgconn is None:
        return False
    if dbapi_connection.closed:
        return True
    try:
        fileno = pgconn.socket
    except Exception:  # the connection is closed or broken
        return True
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


@event.listens_for(Pool, "checkout")
def _drop_dead_connection(dbapi_connection, connection_record, connection_proxy):  # noqa: ARG001
    if socket_has_news(dbapi_connection):
        # The pool invalidates this connection and hands out a fresh one in its place.
        raise DisconnectionError("the database closed this pooled connection")
