"""The console's Rents page: every rented number, figures per period and per provider."""

from __future__ import annotations

from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Rental
from reseller.services import rent_stats


def test_rents_page_lists_and_counts(client, customer, api, boss):
    answer = api("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    quiet = api("getRentNumber", service="ot", rent_time="4", country="12").get_json()
    api("setRentStatus", id=quiet["phone"]["id"], status="2")
    rental = db.session.get(Rental, answer["phone"]["id"])

    figures = rent_stats.by_period()["today"]
    assert figures.rentals == 2 and figures.revenue == rental.price  # the cancel refunded
    assert figures.by_status == {"active": 1, "cancelled": 1}
    assert rent_stats.by_provider()["sandbox"].rentals == 2

    page = client.get("/admin/rents").get_data(as_text=True)
    assert answer["phone"]["number"] in page and "customer@example.com" in page
    assert 'href="/admin/rents"' in page  # the console's nav
    filtered = client.get("/admin/rents?status=cancelled").get_data(as_text=True)
    assert answer["phone"]["number"] not in filtered and quiet["phone"]["number"] in filtered
    detail = client.get(f"/admin/rents/{rental.id}")
    assert detail.status_code == 200 and "Periods" in detail.get_data(as_text=True)
    assert client.get("/admin/rents/999999").status_code == 404


def test_rents_page_is_for_admins(client, customer, auth):
    auth.login(customer.email)
    assert client.get("/admin/rents").status_code == 403
    assert db.session.execute(select(Rental)).first() is None


def test_a_rents_status_is_in_a_rents_words(client, customer, api, boss):
    """Rents share status names with activations but not their money: an ended rent is not
    "Expired, refunded"."""
    answer = api("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    rental = db.session.get(Rental, answer["phone"]["id"])
    rental.status = "expired"
    db.session.commit()
    for page in (client.get("/admin/rents"), client.get(f"/admin/rents/{rental.id}")):
        text = page.get_data(as_text=True)
        assert ">Ended</span>" in text and "refunded" not in text
