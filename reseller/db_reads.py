"""Single reads outside any transaction, for hot paths that only look something up.

A read in the session's transaction costs, on PostgreSQL, BEGIN and ROLLBACK round trips
around it, and on SQLite the database's write lock (every transaction begins IMMEDIATE,
see reseller.sqlite): getBalance from four processes would queue behind one another. One
statement needs no transaction: it runs on a pooled connection in autocommit mode, where it
sees the latest committed data.

`HotRead` is for the reads every API call makes (the key lookup, a status poll). Its Core
statement is built once at import and compiled once per database dialect; each read then
borrows a DBAPI connection from the engine's pool (with its checkout check, reseller.pool),
runs the compiled SQL on a cursor and converts the row with the column types' own result
processors. SQLAlchemy's per-execution machinery — the Connection, the execution context,
switching the isolation level there and back — cost several times the statement itself
(about 0.14 ms of a 0.16 ms read on SQLite); this skips it and keeps the rest: the models'
schema, the pool, the driver. `first_row` is the general form, through a SQLAlchemy
Connection.

A `HotRead` may also be one guarded write that answers with RETURNING (a due poll's claim):
run in autocommit, it is a transaction of its own, committed when it returns, and holds the
database's write lock (SQLite) or the row's lock (PostgreSQL) only while the statement runs,
not across the Python between a BEGIN, the statement and a COMMIT, where a threaded worker
may wait for the GIL. Only for a statement that is complete in itself and safe to run again
after a dropped connection (a guard in its WHERE clause makes a second run change nothing);
never while the caller's session holds a transaction, which it could wait on.

A read that finds its connection closed under it (the database restarted after the pool's
check, see reseller.pool) invalidates the pool, as SQLAlchemy does, and runs once more on a
fresh connection: it changed nothing.

`InSession` is the same economy for the statements of a transaction that writes (a
purchase's hold and allocation, a cancel and its refund, their ledger rows): the session's
transaction and connection, SQLAlchemy's compilation, the driver's cursor; not retried (the
transaction fails as a whole and is rolled back, as through `Session.execute`).
"""

from __future__ import annotations

import sqlite3
import weakref
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql.dml import UpdateBase

from .extensions import db


def first_row(
    statement: Select | UpdateBase, parameters: dict[str, Any] | None = None
) -> Row | None:
    """The statement's first row, read outside the session's transaction."""
    try:
        return _first_row(statement, parameters)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return _first_row(statement, parameters)


def _first_row(statement: Select | UpdateBase, parameters: dict[str, Any] | None) -> Row | None:
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection.execute(statement, parameters).first()


@dataclass
class _Plan:
    """A statement compiled for one dialect: its SQL, how to pass its parameters, and (after
    the first read tells the driver's column types) how to convert a row."""

    sql: str
    names: tuple[str, ...]  # bind parameter names, in the order a positional driver wants
    positional: bool
    defaults: dict[str, Any]
    binders: dict[str, Callable[[Any], Any]]
    # Columns whose Python-side default (INSERT) or onupdate (UPDATE) fills a parameter the
    # caller left out, as SQLAlchemy's execution context would: (name, make the value).
    prefetch: tuple[tuple[str, Callable[[], Any]], ...] = ()
    converters: tuple[Callable[[Any], Any] | None, ...] | None = None

    def parameters(self, given: dict[str, Any]) -> tuple | dict:
        values = {**self.defaults, **given}
        for name, make in self.prefetch:
            values[name] = make()
        for name, bind in self.binders.items():
            values[name] = bind(values[name])
        if self.positional:
            return tuple(values[name] for name in self.names)
        return values

    def convert(self, raw: tuple) -> list:
        return [
            value if convert is None else convert(value)
            for convert, value in zip(self.converters, raw, strict=True)
        ]


def _compile(statement, dialect: Dialect, keys: tuple[str, ...] | None = None) -> _Plan:
    """Compile `statement` for `dialect` as SQLAlchemy would for an execution whose
    parameters are named `keys` (an INSERT's or UPDATE's columns come from them)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise TypeError("hot statements take bind parameters, not literal lists")
    binders = {}
    for name, bind in binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binders[name] = process
    prefetch = tuple(
        (column.key, _default_maker(column.default))
        for column in getattr(compiled, "insert_prefetch", ())
    ) + tuple(
        (column.key, _default_maker(column.onupdate))
        for column in getattr(compiled, "update_prefetch", ())
    )
    given = set(keys or ())
    return _Plan(
        sql=compiled.string,
        names=tuple(compiled.positiontup or ()),
        positional=bool(compiled.positional),
        defaults={k: v for k, v in compiled.params.items() if v is not None and k not in given},
        binders=binders,
        prefetch=prefetch,
    )


def _default_maker(default) -> Callable[[], Any]:
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        make = default.arg  # SQLAlchemy's wrapper of a plain callable takes the context
        return lambda: make(None)
    raise TypeError(f"hot statements cannot compute the default {default!r}")


def _converters(types, dialect: Dialect, description) -> tuple:
    return tuple(
        type_.dialect_impl(dialect).result_processor(dialect, column[1])
        for type_, column in zip(types, description, strict=True)
    )


class _Dropped(Exception):
    """The pooled connection was found closed (and is invalidated): read again."""


class HotRead:
    """One Core select (or one guarded write with RETURNING: see above), run outside any
    transaction at the lowest cost the stack allows.

    Build it at import (bind parameters, no literal lists); `first(**parameters)` returns
    the first row as a named tuple with the statement's column names, or None.
    """

    def __init__(self, statement: Select | UpdateBase) -> None:
        self.statement = statement
        columns = (
            statement.selected_columns
            if isinstance(statement, Select)
            else statement.exported_columns  # a write's RETURNING
        )
        if not columns:
            raise TypeError("HotRead needs a select or a write with RETURNING")
        self.columns = tuple(column.key for column in columns)
        self.types = tuple(column.type for column in columns)
        self.row = namedtuple("HotRow", self.columns)  # noqa: PYI024 (fields from the statement)
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan] = weakref.WeakKeyDictionary()

    def first(self, **parameters: Any) -> tuple | None:
        engine = db.engine
        if isinstance(engine.pool, StaticPool | SingletonThreadPool):
            # In-memory SQLite: one connection shared with the session, whose open
            # transaction the pool's reset at checkin would roll back.
            row = first_row(self.statement, parameters)
            return self.row(*row) if row is not None else None
        plan = self._plan(engine.dialect)
        try:
            return self._read(engine, plan, parameters)
        except _Dropped:
            return self._read(engine, plan, parameters)

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = _compile(self.statement, dialect)
        return plan

    def _read(self, engine: Engine, plan: _Plan, parameters: dict[str, Any]) -> tuple | None:
        dialect = engine.dialect
        fairy = engine.raw_connection()  # the pool's checkout check runs here
        driver = fairy.driver_connection
        toggles = not isinstance(driver, sqlite3.Connection)  # SQLite: no transaction here
        cursor = None
        try:
            if toggles:
                driver.autocommit = True  # psycopg: a client-side flag, no round trip
            cursor = fairy.cursor()
            cursor.execute(plan.sql, plan.parameters(parameters))
            raw = cursor.fetchone()
            if plan.converters is None:
                plan.converters = _converters(self.types, dialect, cursor.description)
            cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, driver, cursor):
                # As SQLAlchemy's Connection does on a disconnect: this connection and
                # every other the pool held before now are replaced (a restarted server
                # closed them all); tests/test_operations.py pins this.
                engine.pool._invalidate(fairy, exc)
                raise _Dropped() from exc
            raise
        finally:
            # Whatever happened, the pool never gets a connection back in autocommit: the
            # next transaction on it would commit statement by statement.
            if toggles and fairy.is_valid and not _autocommit_off(driver):
                fairy.invalidate()
            fairy.close()
        if raw is None:
            return None
        return self.row(*plan.convert(raw))


def _autocommit_off(driver) -> bool:
    try:
        driver.autocommit = False
    except Exception:
        return False
    return True


class InSession:
    """One Core statement of a hot transaction (a purchase, a cancel, their money), run in
    the session's transaction on its connection, straight on the driver's cursor.

    The statement is SQLAlchemy's own (built once at import from the models' tables) and
    compiled by SQLAlchemy, once per dialect and set of parameter names, exactly as
    `db.session.execute(statement, parameters)` would compile it, Python-side column
    defaults included (`created_at`, `updated_at`). What is skipped is SQLAlchemy's
    per-execution machinery: the execution context, the result's setup and its events, a
    tenth of a millisecond per statement, several times what the driver spends. The
    transaction is the session's (begun through `Session.connection()`, so SQLite's BEGIN
    IMMEDIATE and the pool's checkout check still run), and so are the commit and the
    rollback. A driver error comes out as SQLAlchemy's exception for it (IntegrityError…),
    as from `Session.execute`; a dropped connection is invalidated as SQLAlchemy does.

    Like a Core statement through `Session.execute`, it does not flush the session's
    pending ORM objects first. `rows()`, `first()`, `scalar()` answer a statement that
    returns rows (named tuples with the statement's column names); `run()` a write without
    RETURNING, answering the rows it changed. tests/test_db_reads.py holds each of them to
    the same answers and the same database as `Session.execute`.
    """

    def __init__(self, statement: Select | UpdateBase) -> None:
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            # Session.execute would flush before it and load entities from it: not a twin
            raise TypeError("InSession takes Core statements of tables, not ORM ones")
        self.statement = statement
        columns = (
            statement.selected_columns
            if isinstance(statement, Select)
            else statement.exported_columns
        )
        self.columns = tuple(str(column.key) for column in columns)
        self.types = tuple(column.type for column in columns)
        # (an unnamed column, count(*), gets a positional name)
        self.row = namedtuple("Row", self.columns, rename=True)  # noqa: PYI024
        self._plans: weakref.WeakKeyDictionary[Dialect, dict] = weakref.WeakKeyDictionary()

    def rows(self, parameters: dict[str, Any]) -> list[tuple]:
        dialect, plan, cursor = self._execute(parameters)
        try:
            raw = cursor.fetchall()
            if plan.converters is None:
                plan.converters = _converters(self.types, dialect, cursor.description)
        finally:
            cursor.close()
        return [self.row(*plan.convert(values)) for values in raw]

    def first(self, parameters: dict[str, Any]) -> tuple | None:
        found = self.rows(parameters)
        return found[0] if found else None

    def scalar(self, parameters: dict[str, Any]) -> Any:
        found = self.rows(parameters)
        return found[0][0] if found else None

    def run(self, parameters: dict[str, Any]) -> int:
        _dialect, _plan, cursor = self._execute(parameters)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def _execute(self, parameters: dict[str, Any]):
        connection = db.session.connection()  # the session's transaction, begun if need be
        dialect = connection.dialect
        keys = tuple(sorted(parameters))
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans[dialect] = {}
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = _compile(self.statement, dialect, keys)
        fairy = connection.connection
        cursor = fairy.cursor()
        values = plan.parameters(parameters)
        try:
            cursor.execute(plan.sql, values)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            dropped = dialect.is_disconnect(exc, fairy.driver_connection, cursor)
            if dropped:  # as SQLAlchemy's Connection does: the pool's older ones too
                connection.engine.pool._invalidate(fairy, exc)
                connection.invalidate(exc)
            raise DBAPIError.instance(
                plan.sql,
                values,
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=connection.engine.hide_parameters,
                connection_invalidated=dropped,
                dialect=dialect,
            ) from exc
        return dialect, plan, cursor
