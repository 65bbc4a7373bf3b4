"""Which transactions write: page views read beside SQLite's one writer.

SQLite has no row locks, so every transaction that may write begins IMMEDIATE
(reseller.sqlite): it takes the database's write lock up front and holds it to its end. A
page view that only reads would hold it too, queueing every dashboard and console page
behind each purchase, cancel and top-up in flight, and them behind it. WAL lets a reader
run beside the writer, so the GET and HEAD views of the page blueprints are read-only
(`read_only_pages`): on SQLite their transactions begin DEFERRED with `PRAGMA query_only`
on. A write in one fails at once ("attempt to write a readonly database"), never runs in
a transaction that did not take the write lock first.

The steps of a page that do write (a due status poll recording its answer, an overdue
activation's expiry) say so with `writing()` (a context manager, or a decorator): the
session's read transaction is ended first, and the transactions begun inside begin
IMMEDIATE as everywhere else; the step commits its own work, as services do. Outside a
read-only view `writing()` changes nothing.

PostgreSQL keeps its transactions as they were: its readers never wait on row locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Blueprint, g, request
from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db

_reading: ContextVar[bool] = ContextVar("reseller_reading", default=False)
_READ_TRANSACTION = "reseller_read_transaction"  # in Session.info: the one begun read-only

READ_METHODS = frozenset({"GET", "HEAD"})


def reads_only() -> bool:
    """Whether the transactions begun now only read (reseller.sqlite begins them)."""
    return _reading.get()


@contextmanager
def reading() -> Iterator[None]:
    """The transactions begun inside only read (a page view, a test)."""
    token = _reading.set(True)
    try:
        yield
    finally:
        _reading.reset(token)


@contextmanager
def writing() -> Iterator[None]:
    """The transactions begun inside write: inside a read-only view, the session's read
    transaction is committed (it changed nothing) and the next one begins IMMEDIATE."""
    if not _reading.get():
        yield
        return
    session = db.session()
    if _in_read_transaction(session):
        session.commit()  # it changed nothing (a write in it would have failed)
    token = _reading.set(False)
    try:
        yield
    finally:
        _reading.reset(token)


def read_only_pages(blueprint: Blueprint) -> None:
    """Make the blueprint's GET and HEAD views read-only (see the module's docstring).
    Register before the blueprint's other hooks: they may read."""
    blueprint.before_request(_begin_reading)
    blueprint.teardown_request(_end_reading)


def _begin_reading() -> None:
    if request.method in READ_METHODS:
        g.reseller_reading = _reading.set(True)


def _end_reading(_exc: BaseException | None) -> None:
    token = g.pop("reseller_reading", None)
    if token is None:
        return
    _reading.reset(token)
    # A read-only transaction never outlives the view (where the view's app context goes
    # on, as in tests, the next write in it would fail).
    session = db.session()
    if _in_read_transaction(session):
        session.rollback()


@event.listens_for(Session, "after_begin")
def _note_read_transaction(session, transaction, connection) -> None:
    if _reading.get() and connection.dialect.name == "sqlite":
        session.info[_READ_TRANSACTION] = transaction


def _in_read_transaction(session: Session) -> bool:
    noted = session.info.get(_READ_TRANSACTION)
    return noted is not None and noted is session.get_transaction()
