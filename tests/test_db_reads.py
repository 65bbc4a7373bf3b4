"""db_reads.HotRead: the hot path's reads on a pooled DBAPI connection must give what
SQLAlchemy gives for the same statement, leave no transaction or autocommit behind, and
refuse statements it cannot run faithfully."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, select, text

from reseller import db_reads
from reseller.extensions import db
from reseller.models import Activation, User, utcnow
from reseller.services import activations


def test_a_hot_read_gives_what_sqlalchemy_gives_for_every_column_type(app, make_user):
    """Integers, big integers, booleans, strings, NULLs and datetimes (strings on SQLite,
    converted by the column types' own result processors) agree with a Core execution and
    with the ORM's attributes."""
    someone = make_user(email="someone@example.com", balance="12.34")
    someone.last_activity_at = dt.datetime(2026, 11, 30, 23, 59, 58, 123456)
    idle = make_user(email="idle@example.com")
    idle.active = False
    db.session.commit()
    read = db_reads.HotRead(select(User.__table__).where(User.id == bindparam("id")))
    for user in (someone, idle):
        hot = read.first(id=user.id)
        core = db_reads.first_row(read.statement, {"id": user.id})
        assert tuple(hot) == tuple(core)
        assert hot._fields == tuple(core._fields)
        assert hot.balance == user.balance and hot.active is user.active
        assert hot.last_activity_at == user.last_activity_at
        assert hot.email == user.email
    assert read.first(id=10**6) is None


def test_the_poll_read_agrees_with_the_orm(api, customer):
    """getStatus reads the activation with a HotRead built at import (its Core twin is
    `get_for_user`): the same values for a fresh purchase, one with a code, and a closed one."""
    ids = [api.text("getNumber", service="tg", country="0").split(":")[1] for _ in range(3)]
    first = db.session.get(Activation, int(ids[0]))
    first.code, first.sms_text, first.code_at = "12345", "Your code 12345", utcnow()
    closed = db.session.get(Activation, int(ids[2]))
    closed.status, closed.closed_at, closed.error = "cancelled", utcnow(), "by the customer"
    db.session.commit()
    for raw_id in ids:
        db.session.expire_all()
        orm = activations.get_for_user(customer, raw_id)
        hot = activations._USERS_ACTIVATION.first(id=int(raw_id), user_id=customer.id)
        assert hot._asdict() == {c.key: getattr(orm, c.key) for c in Activation.__table__.c}
    # Another customer's id is not found, as through the ORM.
    assert activations._USERS_ACTIVATION.first(id=int(ids[0]), user_id=customer.id + 1) is None


def test_a_hot_read_leaves_the_session_and_the_pool_as_they_were(app, make_user):
    """The read runs outside the session's transaction (it does not see its uncommitted
    writes) and hands its connection back as the pool expects it: not in autocommit, so a
    later transaction can still be rolled back."""
    user_id = make_user(email="before@example.com").id
    db.session.commit()
    read = db_reads.HotRead(select(User.email).where(User.id == bindparam("id")))
    db.session.execute(text("UPDATE users SET email = 'during@example.com'"))  # uncommitted
    if db.engine.dialect.name == "postgresql":  # SQLite's writer would hold the lock
        assert read.first(id=user_id).email == "before@example.com"
    db.session.rollback()
    for _ in range(3):
        assert read.first(id=user_id).email == "before@example.com"
    with db.engine.connect() as connection:
        driver = connection.connection.driver_connection
        if db.engine.dialect.name == "postgresql":
            assert driver.autocommit is False
        connection.execute(text("UPDATE users SET email = 'lost@example.com'"))
        connection.rollback()
    assert read.first(id=user_id).email == "before@example.com"


def test_a_hot_read_refuses_a_literal_list(app):
    read = db_reads.HotRead(select(User.id).where(User.id.in_([1, 2])))
    with pytest.raises(TypeError):
        read.first()


def test_literal_values_in_the_statement_are_bound(app, make_user):
    user = make_user(email="literal@example.com")
    read = db_reads.HotRead(
        select(User.id).where(User.email == "literal@example.com", User.id == bindparam("id"))
    )
    assert read.first(id=user.id).id == user.id
    assert read.first(id=user.id + 1) is None


def test_a_failed_hot_read_hands_its_connection_back_out_of_autocommit(app, make_user):
    """A read that fails after switching its connection to autocommit (here: binding its
    parameter, in Python, not in the driver) must not leave it so: the next transaction on
    that connection would commit statement by statement."""
    from sqlalchemy import event

    user_id = make_user(email="someone@example.com").id
    db.session.commit()
    read = db_reads.HotRead(select(User.email).where(User.id == bindparam("id")))
    checked_in = []

    def on_checkin(dbapi_connection, record):
        if dbapi_connection is not None:
            checked_in.append(getattr(dbapi_connection, "autocommit", False))

    event.listen(db.engine.pool, "checkin", on_checkin)
    try:
        assert read.first(id=user_id).email == "someone@example.com"
        plan = read._plans[db.engine.dialect]
        binders, plan.binders = plan.binders, {"id": lambda value: 1 / 0}
        with pytest.raises(ZeroDivisionError):
            read.first(id=user_id)
        plan.binders = binders
        assert read.first(id=user_id).email == "someone@example.com"
    finally:
        event.remove(db.engine.pool, "checkin", on_checkin)
    assert checked_in and not any(autocommit is True for autocommit in checked_in)
