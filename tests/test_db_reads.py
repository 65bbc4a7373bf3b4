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
from reseller.services import accounts, activations


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


def test_the_combined_poll_read_agrees_with_the_key_lookup_and_the_poll_read(
    api, client, customer, make_user
):
    """The API's getStatus reads the caller and the activation with one statement
    (activations.caller_and_status_row); it must give what the key lookup
    (accounts._CALLER_BY_KEY_HASH) and then the poll read (`_USERS_ACTIVATION`) give, and
    the ORM, for every kind of key against every kind of id: the caller's own activations
    (fresh, with a code, closed), another customer's, a disabled account's, none."""
    from tests.conftest import Api, api_key_of

    other = make_user(email="other@example.com", balance="5.00")
    idle = make_user(email="idle@example.com", balance="5.00")
    own = [api.json("getNumber", service="tg", country="0")["activationId"] for _ in range(3)]
    theirs = Api(client, api_key_of(other)).json("getNumber", service="ot", country="0")
    idles = Api(client, api_key_of(idle)).json("getNumber", service="ot", country="0")
    coded = db.session.get(Activation, own[0])
    coded.code, coded.sms_text, coded.code_at = "12345", "Your code 12345", utcnow()
    closed = db.session.get(Activation, own[2])
    closed.status, closed.closed_at, closed.error = "cancelled", utcnow(), "by the customer"
    idle.active = False
    db.session.commit()
    keys = [api.key, api_key_of(other), api_key_of(idle), "no-such-key"]
    ids = [*own, theirs["activationId"], idles["activationId"], 10**6, 2**31 - 1]
    found = 0
    for key in keys:
        digest = accounts.api_key_digest(key)
        for activation_id in ids:
            db.session.expire_all()
            caller, row = activations.caller_and_status_row(digest, activation_id)
            assert caller == accounts.api_caller_by_digest(digest)
            user = db.session.execute(
                select(User).where(User.api_key_hash == digest)
            ).scalar_one_or_none()
            if user is None:
                assert caller is None and row is None
                continue
            assert caller == (user.id, user.active, user.balance, user.last_activity_at)
            two_step = activations._USERS_ACTIVATION.first(id=activation_id, user_id=user.id)
            orm = db.session.execute(
                select(Activation).where(
                    Activation.id == activation_id, Activation.user_id == user.id
                )
            ).scalar_one_or_none()
            if orm is None:
                assert row is None and two_step is None
                continue
            found += 1
            assert row._asdict() == two_step._asdict()  # the same names, the same values
            assert row._asdict() == {c.key: getattr(orm, c.key) for c in Activation.__table__.c}
    assert found == 5  # the customer's three, the other's and the disabled account's own
    # …and it runs the statement built at import, compiled once for this database.
    plan = activations._CALLER_AND_ACTIVATION._plans[db.engine.dialect]
    activations.caller_and_status_row(accounts.api_key_digest(api.key), own[1])
    assert activations._CALLER_AND_ACTIVATION._plans[db.engine.dialect] is plan


@pytest.mark.parametrize(
    "raw_id, expected",
    [
        ("7", 7),
        (" 7\t", 7),
        (str(2**31 - 1), 2**31 - 1),
        (str(2**31), None),  # beyond the INTEGER id column
        ("9" * 18, None),
        ("abc", None),
        ("", None),
        (None, None),
        ("²", None),
        ("-1", None),
    ],
)
def test_only_an_id_the_column_can_hold_goes_to_the_combined_read(raw_id, expected):
    assert activations.poll_id(raw_id) == expected


def test_the_poll_claim_is_one_write_of_its_own_that_takes_the_slot_once(api, customer, clock):
    """A due poll's claim runs as one UPDATE … RETURNING outside any transaction: it is
    committed when it returns (another connection sees it), answers what the poll needs as
    the claim left it, and a second claim in the same interval finds the slot taken and
    changes nothing. The same values as the row read through the ORM."""
    own = int(api.text("getNumber", service="tg", country="0").split(":")[1])
    clock.travel(6)  # past the first poll slot
    db.session.commit()
    claimed = activations._claim_poll(own)
    assert claimed is not None
    assert not db.session().in_transaction()
    db.session.expire_all()
    row = db.session.get(Activation, own)  # a transaction of the session's: sees it committed
    assert (claimed.upstream_id, claimed.status) == (row.upstream_id, row.status)
    assert (claimed.expires_at, claimed.upstream_name) == (row.expires_at, row.upstream_name)
    assert row.next_poll_at > utcnow()
    db.session.commit()
    taken = row.next_poll_at
    assert activations._claim_poll(own) is None
    db.session.expire_all()
    assert db.session.get(Activation, own).next_poll_at == taken
    db.session.commit()
    # A closed activation is never claimed.
    db.session.get(Activation, own).status = "cancelled"
    db.session.commit()
    clock.travel(6)
    assert activations._claim_poll(own) is None


def test_a_claim_first_commits_what_the_session_holds(api, customer, clock):
    """The claim runs on a connection of its own: a caller whose session holds a
    transaction (on SQLite, the write lock) has it committed first, instead of waiting on
    itself until the busy timeout."""
    own = int(api.text("getNumber", service="tg", country="0").split(":")[1])
    clock.travel(6)
    db.session.commit()
    activation = db.session.get(Activation, own)
    activation.error = "noted by the caller"  # pending in the session's transaction
    db.session.flush()  # (on SQLite the transaction now holds the write lock)
    started = dt.datetime.now()
    assert activations._claim_poll(own) is not None
    assert (dt.datetime.now() - started).total_seconds() < 5
    assert not db.session().in_transaction()
    db.session.expire_all()
    assert db.session.get(Activation, own).error == "noted by the caller"
    db.session.commit()


def test_a_write_needs_returning_to_be_a_hot_statement(app):
    from sqlalchemy import update

    with pytest.raises(TypeError):
        db_reads.HotRead(
            update(Activation.__table__)
            .where(Activation.id == bindparam("id"))
            .values(error=bindparam("error"))
        )
