"""The dashboard's Rent page: offers, renting, the inbox, continue, cancel and finish, all
billed through services.rentals (the API's money path)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Rental, User
from reseller.services.ledger import verify_ledger


@pytest.fixture
def logged_in(client, auth, customer):
    auth.login(customer.email)
    return client


def page(response):
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def rent(client, service="tg", country="12", hours="4"):
    data = {"service": service, "country": country, "hours": hours}
    return client.post("/dashboard/rent", data=data, follow_redirects=True)


def test_rent_page_requires_login(client, stocked):
    response = client.get("/dashboard/rent")
    assert response.status_code == 302 and "/login" in response.location


@pytest.mark.parametrize("path", ["/dashboard/rent", "/dashboard/rent?country=16&hours=24"])
def test_rent_page_offers_and_follows_the_page_rules(logged_in, path):
    text = page(logged_in.get(path))
    assert "Rent a number" in text and 'href="/dashboard/rent"' in text
    assert "Telegram" in text and "Rent</button>" in text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text)
    assert not re.search(r"\sstyle\s*=", text)
    for control_id in re.findall(
        r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|submit)")[^>]*id="([^"]+)"', text
    ):
        assert f'for="{control_id}"' in text, control_id


def test_rent_read_continue_finish(logged_in, customer, clock):
    before = balance(customer.id)
    text = page(rent(logged_in))
    rental = db.session.execute(select(Rental)).scalar_one()
    assert f"You rented {rental.phone}" in text and "No SMS yet" in text
    assert balance(customer.id) == before - rental.price
    clock.travel(31)
    text = page(logged_in.get(f"/dashboard/rent/{rental.id}"))
    assert "Your Telegram code" in text
    listing = page(logged_in.get("/dashboard/rent"))
    assert rental.phone in listing and "Active" in listing

    paid = balance(customer.id)
    text = page(
        logged_in.post(
            f"/dashboard/rent/{rental.id}/continue", data={"hours": "24"}, follow_redirects=True
        )
    )
    assert "now ends" in text and balance(customer.id) < paid
    text = page(logged_in.post(f"/dashboard/rent/{rental.id}/cancel", follow_redirects=True))
    assert "can no longer be cancelled" in text
    text = page(logged_in.post(f"/dashboard/rent/{rental.id}/finish", follow_redirects=True))
    assert "is finished" in text and "Finished" in text
    ledger = page(logged_in.get("/dashboard/ledger"))
    assert "Number rented" in ledger and "Rent extended" in ledger
    assert verify_ledger() == []


def test_cancel_refunds_and_others_numbers_are_404(logged_in, customer, client, make_user, auth):
    before = balance(customer.id)
    page(rent(logged_in, service="ot"))
    rental = db.session.execute(select(Rental)).scalar_one()
    text = page(logged_in.post(f"/dashboard/rent/{rental.id}/cancel", follow_redirects=True))
    assert "back on your balance" in text
    assert balance(customer.id) == before
    other = make_user(email="other@example.com")
    auth.logout()
    auth.login(other.email)
    assert client.get(f"/dashboard/rent/{rental.id}").status_code == 404
    assert client.post(f"/dashboard/rent/{rental.id}/finish").status_code == 404


def test_a_refusal_is_explained_and_charges_nothing(logged_in, customer, make_user):
    before = balance(customer.id)
    text = page(rent(logged_in, service="dr", country="12"))
    assert "No number is available" in text
    assert balance(customer.id) == before
