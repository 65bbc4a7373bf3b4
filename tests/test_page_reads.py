"""Page views read beside SQLite's writer (reseller.transactions): the GET views of the
dashboard and the console begin their transactions DEFERRED and read-only, a write in one
fails at once, and every step that writes (and every other request) still begins IMMEDIATE.
PostgreSQL's transactions are as they were."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from flask import Blueprint
from sqlalchemy.exc import OperationalError

from reseller.extensions import db
from reseller.models import User
from reseller.money import parse_amount
from reseller.services import ledger, wallet
from reseller.transactions import read_only_pages, reading, writing
from tests.conftest import ADMIN_EMAIL, ON_POSTGRES

DOLLAR = parse_amount("1")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock")

CUSTOMER_PAGES = ["/dashboard", "/dashboard/history", "/dashboard/ledger", "/dashboard/account"]
CONSOLE_PAGES = ["/admin/customers", "/admin/activations", "/admin/audit", "/admin/payments"]


def _balance(user_id: int) -> int:
    db.session.rollback()
    return db.session.get(User, user_id).balance


def _writes_a_dollar(app) -> Blueprint:
    """A page blueprint, read-only as the dashboard is, whose view credits a dollar: a
    write a GET page must never make by mistake."""
    probe = Blueprint("probe", __name__, url_prefix="/probe")
    read_only_pages(probe)

    @probe.route("/<int:user_id>", methods=["GET", "POST"])
    def credit(user_id):
        wallet.adjust(user_id, DOLLAR, note="a page's stray write")
        return "credited"

    @probe.get("/declared/<int:user_id>")
    def declared(user_id):
        with writing():
            wallet.adjust(user_id, DOLLAR, note="a page's declared write")
        return "credited"

    app.register_blueprint(probe)
    return probe


@sqlite_only
def test_page_views_read_while_another_connection_holds_the_write_lock(app, make_user, auth):
    """Dashboard and console pages answer while a purchase elsewhere holds SQLite's write
    lock (before: they began IMMEDIATE and waited for it, up to the busy timeout)."""
    customer = make_user(email="reader@example.com", balance="5")
    make_user(email=ADMIN_EMAIL, is_admin=True)
    console = app.test_client()
    console.post("/login", data={"email": ADMIN_EMAIL, "password": "password123"})
    auth.login("reader@example.com")
    for page in CUSTOMER_PAGES:
        assert auth.client.get(page).status_code == 200, page
    for page in CONSOLE_PAGES:
        assert console.get(page).status_code == 200, page
    db.session.rollback()  # the test's own session lets go of the database

    locker = sqlite3.connect(
        db.engine.url.database, isolation_level=None, timeout=5, check_same_thread=False
    )
    locker.execute("BEGIN IMMEDIATE")  # a writer elsewhere holds the database
    releaser = threading.Timer(8, locker.rollback)
    releaser.start()
    try:
        for client, page in [(auth.client, p) for p in CUSTOMER_PAGES] + [
            (console, p) for p in CONSOLE_PAGES
        ]:
            started = time.monotonic()
            answer = client.get(page)
            assert answer.status_code == 200, page
            assert time.monotonic() - started < 4, page
        assert "5.00" in auth.client.get("/dashboard/ledger").get_data(as_text=True)
    finally:
        releaser.cancel()
        locker.rollback()
        locker.close()
    assert _balance(customer.id) == 5 * DOLLAR


@sqlite_only
def test_a_write_in_a_read_only_page_view_fails_loudly(app, make_user, client):
    """A GET of a read-only page that writes without saying so fails at its first write
    and changes nothing; the same view by POST, or the write declared with `writing()`,
    goes through the money path as ever; and the connections go back to the pool
    writable (a HotRead's claim runs on them outside any transaction)."""
    _writes_a_dollar(app)
    user_id = make_user(balance="1").id
    db.session.rollback()  # the test's session is the requests' (one app context): no transaction
    with pytest.raises(OperationalError, match="readonly"):
        client.get(f"/probe/{user_id}")
    assert _balance(user_id) == DOLLAR
    db.session.rollback()
    assert client.post(f"/probe/{user_id}").status_code == 200
    assert client.get(f"/probe/declared/{user_id}").status_code == 200
    assert _balance(user_id) == 3 * DOLLAR
    assert ledger.verify_ledger() == []
    db.session.rollback()
    pool = db.engine.pool
    pooled = [db.engine.raw_connection() for _ in range(pool.checkedin())]
    try:
        assert pooled
        for connection in pooled:
            assert connection.driver_connection.execute("PRAGMA query_only").fetchone() == (0,)
    finally:
        for connection in pooled:
            connection.close()


@sqlite_only
def test_a_declared_write_takes_the_write_lock_first(app, make_user):
    """Inside `writing()` the transaction begins IMMEDIATE, as outside a page: another
    writer waits for it instead of racing it; the read before it is ended first."""
    user_id = make_user(balance="1").id
    db.session.commit()
    with reading():
        assert db.session.get(User, user_id).balance == DOLLAR  # a read transaction
        with writing():
            assert not db.session().in_transaction()  # the read one was ended
            wallet.credit(user_id, DOLLAR, note="declared")
            other = sqlite3.connect(db.engine.url.database, isolation_level=None, timeout=0.2)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
            db.session.commit()
    assert _balance(user_id) == 2 * DOLLAR


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's transactions")
def test_postgresql_page_transactions_are_unchanged(app, make_user, client):
    """On PostgreSQL a page view's transaction is the one it always was: no read-only mode
    (its readers never wait on a writer), so even the stray write goes through."""
    _writes_a_dollar(app)
    user_id = make_user(balance="1").id
    db.session.rollback()
    assert client.get(f"/probe/{user_id}").status_code == 200
    assert _balance(user_id) == 2 * DOLLAR
