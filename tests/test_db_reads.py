"""db_reads.HotRead: the hot path's reads on a pooled DBAPI connection must give what
SQLAlchemy gives for the same statement, leave no transaction or autocommit behind, and
refuse statements it cannot run faithfully."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, func, select, text

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


@pytest.fixture
def read_parties(api, client, make_user):
    """For the combined reads of a key and an activation: the customer's own activations
    (one with a code, one of a seller no longer configured, one closed), another customer's,
    a disabled account's; the keys of all three and one of nobody's; their ids and ids of
    nobody's (the largest the id column holds among them)."""
    from tests.conftest import Api, api_key_of

    other = make_user(email="other@example.com", balance="5.00")
    idle = make_user(email="idle@example.com", balance="5.00")
    own = [api.json("getNumber", service="tg", country="0")["activationId"] for _ in range(3)]
    theirs = Api(client, api_key_of(other)).json("getNumber", service="ot", country="0")
    idles = Api(client, api_key_of(idle)).json("getNumber", service="ot", country="0")
    coded = db.session.get(Activation, own[0])
    coded.code, coded.sms_text, coded.code_at = "12345", "Your code 12345", utcnow()
    db.session.get(Activation, own[1]).upstream_name = "gone"  # no provider row any more
    closed = db.session.get(Activation, own[2])
    closed.status, closed.closed_at, closed.error = "cancelled", utcnow(), "by the customer"
    idle.active = False
    db.session.commit()
    keys = [api.key, api_key_of(other), api_key_of(idle), "no-such-key"]
    ids = [*own, theirs["activationId"], idles["activationId"], 10**6, 2**31 - 1]
    return own, keys, ids


def test_the_combined_poll_read_agrees_with_the_key_lookup_and_the_poll_read(api, read_parties):
    """The API's getStatus reads the caller and the activation with one statement
    (activations.caller_and_status_row); it must give what the key lookup
    (accounts._CALLER_BY_KEY_HASH) and then the poll read (`_USERS_ACTIVATION`) give, and
    the ORM, for every kind of key against every kind of id: the caller's own activations
    (with a code, of a gone seller, closed), another customer's, a disabled account's,
    none."""
    own, keys, ids = read_parties
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
            assert caller == (
                user.id,
                user.active,
                user.balance,
                user.last_activity_at,
                user.email_verified_at,
            )
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


# --- InSession: the purchase's and the cancel's statements, in the session's transaction ---


def _plain(value, now):
    """A value as compared across two runs of a statement: a timestamp the run took from
    the clock becomes a marker (it must be a fresh one)."""
    if isinstance(value, dt.datetime) and abs((value - now).total_seconds()) < 60:
        return "now"
    return value


def _money_path_cases(user_id, activation_id, other_activation_id):
    from reseller.models import LedgerKind
    from reseller.services import routing, wallet

    now = utcnow()
    return [
        (wallet._HOT_CREDIT, {"account": user_id, "delta": 250}, "users"),
        (wallet._HOT_DEBIT, {"account": user_id, "delta": -250}, "users"),
        (wallet._HOT_DEBIT, {"account": user_id, "delta": -(10**12)}, "users"),  # refused
        (
            wallet._HOT_ENTRY,
            {
                "user_id": user_id,
                "amount": -100,
                "kind": LedgerKind.ADJUSTMENT.value,
                "activation_id": None,
                "payment_id": None,
                "reference": None,
                "balance_after": 5,
                "note": "both ways",
                "actor_id": None,
            },
            "ledger_entries",
        ),
        (
            activations._HOT_NEW_ACTIVATION,
            {
                "user_id": user_id,
                "service": "tg",
                "country_id": 0,
                "status": "pending",
                "price": 75,
                "upstream_name": "sandbox",
                "order_id": "both-ways",
            },
            "activations",
        ),
        (activations._HOT_ACTIVE_COUNT, {"user": user_id}, None),
        (activations._HOT_STATE_OF, {"activation": activation_id}, None),
        (activations._HOT_STATE_OF, {"activation": 10**6}, None),
        (
            activations._HOT_MOVE_FROM,
            {
                "activation": activation_id,
                "expected": "allocated",
                "status": "cancelled",
                "closed_at": now,
            },
            "activations",
        ),
        (  # a guard that does not hold: nothing moves
            activations._HOT_MOVE,
            {"activation": other_activation_id, "expected": "pending", "status": "failed"},
            "activations",
        ),
        (
            activations._HOT_MOVE,
            {
                "activation": other_activation_id,
                "expected": "allocated",
                "status": "expired",
                "closed_at": now,
                "error": "both ways",
            },
            "activations",
        ),
        (
            activations._HOT_NEW_EVENT,
            {
                "activation_id": activation_id,
                "from_status": "allocated",
                "to_status": "cancelled",
                "note": None,
                "actor": "test",
            },
            "activation_events",
        ),
        (routing._HOT_CANDIDATES, {"now": now, "service": "tg", "country": 0}, None),
        (routing._HOT_CANDIDATES, {"now": now, "service": "no-such", "country": 0}, None),
    ]


def test_a_statement_in_the_session_gives_what_session_execute_gives(api, customer):
    """Every statement the purchase and the cancel run through db_reads.InSession answers
    what `Session.execute` answers for the same statement and parameters, and leaves the
    database as it does (Python-side defaults such as `created_at` and `updated_at`
    included): each way runs in a transaction rolled back after it."""
    own = [int(api.text("getNumber", service="tg", country="0").split(":")[1]) for _ in range(2)]
    db.session.commit()
    cases = _money_path_cases(customer.id, own[0], own[1])
    answered = 0
    for hot, parameters, table in cases:
        answers = []
        for way in ("session", "hot"):
            now = utcnow()
            count = None  # a write without RETURNING: the rows it changed
            if way == "session":
                result = db.session.execute(hot.statement, parameters)
                found = [tuple(row) for row in result.all()] if hot.columns else None
            elif hot.columns:
                found = [tuple(row) for row in hot.rows(parameters)]
            else:  # (SQLAlchemy may add a RETURNING of its own there: no rowcount to compare)
                found, count = None, hot.run(parameters)
                assert count == 1
            state = None
            if table is not None:  # the table's newest rows, as the transaction sees them
                rows = db.metadata.tables[table]
                state = db.session.execute(select(rows).order_by(rows.c.id.desc()).limit(3)).all()
                state = [[_plain(v, now) for v in row[1:]] for row in state]  # ids may differ
            if found is not None and table in ("activations", "ledger_entries"):
                found = [row[1:] if hot.columns[0] == "id" else row for row in found]
            answers.append(([[_plain(v, now) for v in row] for row in found or []], state))
            db.session.rollback()
        assert answers[0] == answers[1], (hot.statement, parameters)
        answered += bool(answers[0][0] or count)
    # (all but the two reads of nothing and the refused or unguarded writes answer rows)
    assert answered == len(cases) - 4


def test_a_statement_in_the_session_is_part_of_its_transaction(app, make_user):
    """It sees what the session wrote and has not committed, and is committed or rolled
    back with it."""
    from reseller.services import wallet

    user = make_user(email="inside@example.com", balance="1.00")
    db.session.commit()
    before = db.session.execute(select(User.balance).where(User.id == user.id)).scalar()
    db.session.execute(text(f"UPDATE users SET balance = 5000 WHERE id = {user.id}"))
    assert wallet._HOT_CREDIT.scalar({"account": user.id, "delta": 1}) == 5001
    db.session.rollback()
    assert wallet._HOT_CREDIT.scalar({"account": user.id, "delta": 1}) == before + 1
    db.session.commit()
    after = db.session.execute(select(User.balance).where(User.id == user.id)).scalar()
    assert after == before + 1
    db.session.commit()


def test_a_failed_statement_in_the_session_raises_what_sqlalchemy_raises(api, customer):
    """A constraint the database enforces comes out as SQLAlchemy's IntegrityError (the
    purchase's duplicate orderId and the ledger's one charge per activation are caught as
    such), and after the rollback nothing of the transaction remains."""
    from sqlalchemy.exc import IntegrityError

    from reseller.models import LedgerEntry, LedgerKind
    from reseller.services import wallet

    own = int(api.text("getNumber", service="tg", country="0").split(":")[1])
    db.session.commit()
    entries = db.session.execute(select(func.count(LedgerEntry.id))).scalar()
    db.session.commit()
    wallet._HOT_CREDIT.scalar({"account": customer.id, "delta": 1})
    with pytest.raises(IntegrityError):
        wallet.debit(customer.id, 1, kind=LedgerKind.PURCHASE, activation_id=own)  # charged
    db.session.rollback()
    assert db.session.execute(select(func.count(LedgerEntry.id))).scalar() == entries
    assert api.text("getBalance") == "ACCESS_BALANCE:" + _money(customer.id)
    # And a purchase with an orderId the customer used answers the protocol's error.
    assert api.text("getNumber", service="tg", country="0", orderId="o-1").startswith("ACCESS_")
    assert api.text("getNumber", service="tg", country="0", orderId="o-1") == (
        "ORDER_ALREADY_EXISTS"
    )


def _money(user_id: int) -> str:
    from reseller.money import format_amount

    balance = db.session.execute(select(User.balance).where(User.id == user_id)).scalar()
    db.session.commit()
    return format_amount(balance)


@pytest.mark.postgres_only
def test_a_statement_in_the_session_on_a_dropped_connection_invalidates_it(app, make_user):
    """The server went away inside the transaction: the statement fails as SQLAlchemy's
    would (a DBAPIError saying the connection was invalidated), the pool replaces the
    connection, and after the rollback the session works on a fresh one."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    from reseller.services import wallet

    user = make_user(email="dropped@example.com", balance="1.00")
    db.session.commit()
    wallet._HOT_CREDIT.scalar({"account": user.id, "delta": 1})  # the transaction begins
    connection = db.session.connection()
    backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    killer = create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with killer.connect() as other:
        other.execute(text(f"SELECT pg_terminate_backend({int(backend)})"))
    killer.dispose()
    with pytest.raises(DBAPIError) as failed:
        wallet._HOT_CREDIT.scalar({"account": user.id, "delta": 1})
    assert failed.value.connection_invalidated
    db.session.rollback()
    assert wallet._HOT_CREDIT.scalar({"account": user.id, "delta": 1}) == 10001
    db.session.commit()


def test_a_statement_in_the_session_is_a_core_one(app):
    """An ORM statement through Session.execute flushes first and loads entities: InSession
    cannot be its twin and refuses it."""
    with pytest.raises(TypeError):
        db_reads.InSession(select(Activation).where(Activation.id == bindparam("id")))
    with pytest.raises(TypeError):
        db_reads.InSession(select(User.id).where(User.id == bindparam("id")))
    assert db_reads.InSession(select(User.__table__.c.id)).columns == ("id",)


def test_the_combined_set_status_read_agrees_with_the_key_lookup_and_its_own_read(
    read_parties,
):
    """The API's setStatus reads the caller and what it needs of the activation with one
    statement (activations.caller_and_set_status_row); it must give what the key lookup
    (accounts._CALLER_BY_KEY_HASH) and then setStatus's read (`_FOR_SET_STATUS`) give, for
    every kind of key against every kind of id."""
    _own, keys, ids = read_parties
    columns = activations._FOR_SET_STATUS.columns
    found, sellers = 0, set()
    for key in keys:
        digest = accounts.api_key_digest(key)
        for activation_id in ids:
            caller, row = activations.caller_and_set_status_row(digest, activation_id)
            assert caller == accounts.api_caller_by_digest(digest)
            if caller is None:
                assert row is None
                continue
            two_step = activations._FOR_SET_STATUS.first(id=activation_id, user_id=caller.id)
            if two_step is None:
                assert row is None
                continue
            found += 1
            assert {c: getattr(row, c) for c in columns} == two_step._asdict()
            sellers.add(row.seller_name)
    assert found == 5  # the customer's three, the other's and the disabled account's own
    assert None in sellers and len(sellers) > 1  # the gone seller's row, and a seller's
    assert any(name.startswith("seller_") for name in columns)
    assert any(name.startswith("setting_") for name in columns)
