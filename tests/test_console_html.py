"""Every console page is valid HTML (tests/page_checks.py), in the states an operator
meets: lists with rows, a failing provider, a refused form, a filter with errors."""

from __future__ import annotations

import pytest

from reseller.extensions import db
from reseller.models import Payment, PricingRule
from reseller.services import provider_admin, routing
from tests.page_checks import html_problems


@pytest.fixture
def console(client, boss, customer, api, clock):
    """Activations (one with a code), a payment, a rule, a second provider that fails."""
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:")
    assert api.text("getNumber", service="ot", country="gb").startswith("ACCESS_NUMBER:")
    clock.travel(6)
    api.text("getStatus", id="1")
    rule = PricingRule(service="tg", country_id=187, markup_percent=50)
    payment = Payment(user_id=customer.id, gateway="sandbox", amount=100_000, currency="USD")
    db.session.add_all([rule, payment])
    db.session.commit()
    provider_admin.add("hero", "sms-activate", "http://127.0.0.1:9/stubs/handler_api.php", "k")
    for _ in range(3):
        routing.record_failure("hero", "hero getPrices: connection refused at 127.0.0.1:9")
    return {"customer": customer.id, "rule": rule.id, "payment": payment.id}


PAGES = [
    "/admin",
    "/admin?top=7d",
    "/admin/customers",
    "/admin/customers?q=customer&phone=1&key=abcd",
    "/admin/customers?key=abc",  # too short: a form error
    "/admin/customers/{customer}",
    "/admin/activations",
    "/admin/activations?status=allocated&service=ot&country=gb&provider=sandbox&phone=1",
    "/admin/activations?created_from=yesterday",  # a filter error
    "/admin/activations/1",
    "/admin/activations/2",
    "/admin/payments",
    "/admin/payments/{payment}",
    "/admin/pricing",
    "/admin/pricing?service=Telegram&country=USA",
    "/admin/pricing?service=nothing",  # a filter error
    "/admin/pricing/rules/{rule}",
    "/admin/providers",
    "/admin/providers/hero",
    "/admin/providers/sandbox",
    "/admin/settings",
    "/admin/audit",
]


@pytest.mark.parametrize("path", PAGES)
def test_console_page_is_valid_html(client, console, path):
    response = client.get(path.format(**console))
    assert response.status_code in (200, 400), path
    assert html_problems(response.get_data(as_text=True)) == []


@pytest.mark.parametrize(
    "path, data",
    [
        (
            "/admin/pricing/rules",
            {"service": "tg", "country": "us", "kind": "fixed", "value": "0.10"},
        ),
        ("/admin/pricing/rules/{rule}", {"kind": "fixed", "value": "0.10"}),
        (
            "/admin/pricing/rules",
            {"service": "zz", "country": "us", "kind": "markup", "value": "1"},
        ),
        ("/admin/providers", {"name": "Bad Name", "protocol": "sms-activate"}),
        ("/admin/settings", {"site_name": "x", "activation_lifetime": "5"}),
        ("/admin/customers/{customer}/credit", {"amount": "x", "note": ""}),
    ],
)
def test_refused_console_forms_are_valid_html(client, console, path, data):
    response = client.post(path.format(**console), data=data)
    assert response.status_code == 400, path
    assert html_problems(response.get_data(as_text=True)) == []


def test_the_checker_finds_a_form_nested_in_a_paragraph():
    page = '<!doctype html><html lang="en"><head><title>t</title></head><body>'
    assert html_problems(page + "<p>a</p></body></html>") == []
    assert html_problems(page + "<p><form></form></p></body></html>") != []
    twice = html_problems(page + '<i id="a"></i><b id="a"></b></body></html>')
    assert twice == ["duplicate id 'a' (2 times)"]
