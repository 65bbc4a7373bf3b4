import threading

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import LedgerEntry, LedgerKind, User
from reseller.money import parse_amount
from reseller.services import wallet
from reseller.services.ledger import verify_ledger


def balance_of(user_id):
    return db.session.execute(select(User.balance).where(User.id == user_id)).scalar_one()


def test_credit_and_debit_write_ledger_rows(make_user):
    user = make_user()
    wallet.credit(user.id, 5000, note="top-up")
    db.session.commit()
    entry = wallet.debit(user.id, 1200, kind=LedgerKind.ADJUSTMENT, note="fee")
    db.session.commit()
    assert entry.balance_after == 3800
    assert balance_of(user.id) == 3800
    rows = db.session.execute(
        select(LedgerEntry.amount, LedgerEntry.balance_after, LedgerEntry.kind)
        .where(LedgerEntry.user_id == user.id)
        .order_by(LedgerEntry.id)
    ).all()
    assert rows == [(5000, 5000, "topup"), (-1200, 3800, "adjustment")]
    assert verify_ledger() == []


def test_debit_refuses_overdraft_and_changes_nothing(make_user):
    user = make_user(balance="1.00")
    with pytest.raises(wallet.InsufficientFunds):
        wallet.debit(user.id, parse_amount("1.01"))
    db.session.rollback()
    assert balance_of(user.id) == parse_amount("1.00")
    assert db.session.execute(select(func.count(LedgerEntry.id))).scalar_one() == 1
    # Exactly the balance is fine and leaves zero.
    wallet.debit(user.id, parse_amount("1.00"))
    db.session.commit()
    assert balance_of(user.id) == 0
    assert verify_ledger() == []


def test_zero_and_wrong_sign_amounts_are_refused(make_user):
    user = make_user()
    for call in (
        lambda: wallet.credit(user.id, 0),
        lambda: wallet.credit(user.id, -5),
        lambda: wallet.debit(user.id, 0),
        lambda: wallet.adjust(user.id, 0, note="nothing"),
    ):
        with pytest.raises(ValueError):
            call()
    db.session.rollback()
    assert db.session.execute(select(func.count(LedgerEntry.id))).scalar_one() == 0


def test_unknown_account(app):
    with pytest.raises(wallet.UnknownAccount):
        wallet.credit(999, 100)
    db.session.rollback()


def test_ledger_rows_are_append_only(make_user):
    user = make_user(balance="2.00")
    entry = db.session.execute(
        select(LedgerEntry).where(LedgerEntry.user_id == user.id)
    ).scalar_one()
    entry.note = "changed"
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    db.session.delete(entry)
    with pytest.raises(RuntimeError, match="append-only"):
        db.session.commit()
    db.session.rollback()


def test_database_refuses_negative_balance(make_user):
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    user = make_user()
    with pytest.raises(IntegrityError):
        db.session.execute(update(User).where(User.id == user.id).values(balance=-1))
        db.session.flush()
    db.session.rollback()


def test_verify_reports_a_tampered_balance(make_user):
    from sqlalchemy import update

    user = make_user(balance="3.00")
    db.session.execute(update(User).where(User.id == user.id).values(balance=parse_amount("9.00")))
    db.session.commit()
    problems = verify_ledger()
    assert any("ledger sum" in p for p in problems)


def test_concurrent_debits_never_overdraw(app, make_user):
    """20 threads, each its own connection, race to debit 1.00 from a 5.00 balance."""
    user = make_user(balance="5.00")
    user_id = user.id
    db.session.remove()  # end this thread's transaction (SQLite: it holds the write lock)
    results = []
    barrier = threading.Barrier(20)

    def attempt():
        with app.app_context():
            barrier.wait()
            try:
                wallet.debit(user_id, parse_amount("1.00"), kind=LedgerKind.ADJUSTMENT)
                db.session.commit()
                results.append("ok")
            except wallet.InsufficientFunds:
                db.session.rollback()
                results.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count("ok") == 5
    assert results.count("refused") == 15
    db.session.expire_all()
    assert balance_of(user_id) == 0
    assert verify_ledger() == []
