"""The dashboard's Buy buttons: each purchase attempt carries its own order key, while the
same form sent twice (a double click) still buys once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import LedgerEntry


@pytest.fixture
def logged_in(client, auth, customer):
    auth.login(customer.email)
    return client


def buy_forms(page: str) -> list[dict[str, str]]:
    """Every Buy form on the page, as the fields a browser would send."""
    forms = []
    for body in re.findall(r'<form method="post" action="/dashboard/buy"(.*?)</form>', page, re.S):
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', body))
        forms.append(fields)
    return forms


def charges(user_id) -> int:
    return db.session.execute(
        select(func.count(LedgerEntry.id)).where(
            LedgerEntry.user_id == user_id, LedgerEntry.kind == "purchase"
        )
    ).scalar_one()


def test_every_buy_button_carries_its_own_order_key(logged_in):
    forms = buy_forms(logged_in.get("/dashboard?service=tg").get_data(as_text=True))
    assert len(forms) >= 3
    keys = [f["order_id"] for f in forms]
    assert all(k.startswith("web-") and len(k) >= 16 for k in keys)
    assert len(set(keys)) == len(keys)


def test_two_buttons_of_one_page_buy_two_numbers(logged_in, customer):
    """What the back button used to break: the page shown again, another country bought."""
    page = logged_in.get("/dashboard?service=tg").get_data(as_text=True)
    first, second = buy_forms(page)[:2]
    answer = logged_in.post("/dashboard/buy", data=first, follow_redirects=True)
    assert "You bought" in answer.get_data(as_text=True)
    answer = logged_in.post("/dashboard/buy", data=second, follow_redirects=True)
    assert "You bought" in answer.get_data(as_text=True)
    assert charges(customer.id) == 2


def test_one_button_sent_twice_buys_once(logged_in, customer, runner):
    (form, *_rest) = buy_forms(logged_in.get("/dashboard?service=tg").get_data(as_text=True))
    logged_in.post("/dashboard/buy", data=form)
    again = logged_in.post("/dashboard/buy", data=form, follow_redirects=True)
    assert "This purchase was already placed" in again.get_data(as_text=True)
    assert charges(customer.id) == 1
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output


def test_the_dashboard_is_never_served_from_cache(logged_in):
    """Back and forward load it anew (new keys, live numbers) unless the browser restores it
    from its back/forward cache, where dashboard.js draws new keys."""
    response = logged_in.get("/dashboard?service=tg")
    assert response.headers["Cache-Control"] == "no-store"
    assert 'autocomplete="off" data-once' in response.get_data(as_text=True)
