"""The HTML checker itself, and every customer and public page through it (the test
client; tests/browser/test_pages.py does the same in Chromium at two widths)."""

import pytest

from reseller.extensions import db
from reseller.money import format_amount
from reseller.services import favourites, pricing
from tests.page_checks import assert_valid_html, html_problems

CLEAN = """<!doctype html><html lang="en"><head><title>t</title></head><body>
<p id="a">x</p><label for="q">Q</label><input id="q" name="q" aria-describedby="a">
<form method="post"><button type="submit">Go</button></form></body></html>"""


def test_a_clean_page_passes():
    assert html_problems(CLEAN) == []


@pytest.mark.parametrize(
    "broken, found",
    [
        ("<p><form></form></p>", "end-tag"),  # a form closes the paragraph: a stray </p>
        ('<p id="a">x</p><p id="a">y</p>', "duplicate id 'a'"),
        ('<span aria-describedby="nope">x</span>', "names no element"),
        ("<div><span>x</div>", "end-tag"),
        ('<a href="/"><button>x</button></a>', "<button> inside <a>"),
        ('<input name="alone">', "has no label"),
        ('<button data-copy="#gone">Copy</button>', "names no element"),
        ("<table><tr><td>x</td></tr><div>y</div></table>", "table"),
    ],
)
def test_broken_markup_is_found(broken, found):
    page = CLEAN.replace("<body>", "<body>" + broken)
    problems = html_problems(page)
    assert any(found in p for p in problems), problems


@pytest.fixture
def busy_customer(client, auth, customer, clock):
    """A customer with a number that received a code, a favourite and a payment."""
    auth.login(customer.email)
    price = format_amount(pricing.quote("tg", 12).price)
    client.post("/dashboard/buy", data={"service": "tg", "country": "12", "max_price": price})
    clock.travel(6)
    client.get("/dashboard/activations.json")
    favourites.add(customer, "tg", "us")
    client.post("/dashboard/topup", data={"amount": "10.00", "gateway": "sandbox"})
    db.session.commit()
    return client


CUSTOMER_PAGES = [
    "/dashboard",
    "/dashboard?service=tg",
    "/dashboard?service=tg&q=usa&sort=stock",
    "/dashboard?view=list",
    "/dashboard/history",
    "/dashboard/ledger",
    "/dashboard/topup",
    "/dashboard/topup?payment=1",
    "/dashboard/account",
    "/docs",
    "/prices",
    "/prices/tg",
    "/",
]
PUBLIC_PAGES = [
    "/",
    "/prices",
    "/prices/tg",
    "/prices?q=zzz",
    "/docs",
    "/login",
    "/signup",
    "/terms",
    "/privacy",
]


@pytest.mark.parametrize("path", CUSTOMER_PAGES)
def test_every_customer_page_is_valid_html(busy_customer, path):
    response = busy_customer.get(path)
    assert response.status_code == 200, path
    assert_valid_html(response.get_data(as_text=True), path)


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_every_public_page_is_valid_html(stocked, client, path):
    response = client.get(path)
    assert response.status_code == 200, path
    assert_valid_html(response.get_data(as_text=True), path)


def test_a_refused_purchase_page_is_valid_html(client, auth, make_user, stocked):
    make_user(email="poor@example.com", balance="0.10")
    auth.login("poor@example.com")
    price = format_amount(pricing.quote("tg", 12).price)
    response = client.post(
        "/dashboard/buy",
        data={"service": "tg", "country": "12", "max_price": price},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert 'class="refusal"' in page
    assert_valid_html(page, "refused purchase")
