"""The operator console in real Chromium at a laptop's 1366 px and a phone's 390 px: every
page valid HTML, without console errors or a sideways page scroll, dates and badges on one
line; and the console's answers an operator acts on: a price below cost refused until
confirmed, a failing provider's reason in words, the activation filters."""

from __future__ import annotations

import re
import socket

import pytest

from reseller.extensions import db
from reseller.models import Payment, PricingRule
from reseller.services import accounts, provider_admin, wallet
from tests.browser.test_customer_journey import flash, in_app, log_in, new_page  # noqa: F401
from tests.conftest import Api, api_key_of
from tests.page_checks import html_problems, page_overflow, wrapped

pytestmark = pytest.mark.browser

WIDTHS = (1366, 390)


def _refused_port() -> int:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        return spare.getsockname()[1]


def _console_data(live, port: int) -> dict:
    """A customer with two activations and a payment, a pricing rule, and a provider at a
    port nothing listens on."""

    def build():
        user = accounts.create_user("console-customer@example.com", "console-password-1")
        wallet.adjust(user.id, 2_000_000, note="test balance")
        api = Api(live.app.test_client(), api_key_of(user))
        assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:")
        assert api.text("getNumber", service="ot", country="gb").startswith("ACCESS_NUMBER:")
        rule = PricingRule(service="ot", country_id=16, markup_percent=40)
        payment = Payment(user_id=user.id, gateway="sandbox", amount=50_000, currency="USD")
        db.session.add_all([rule, payment])
        db.session.commit()
        provider_admin.add(
            "hero", "sms-activate", f"http://127.0.0.1:{port}/stubs/handler_api.php", "key-1234"
        )
        return {"customer": user.id, "rule": rule.id, "payment": payment.id}

    return in_app(live, build)


PAGES = [
    "/admin",
    "/admin/customers",
    "/admin/customers/{customer}",
    "/admin/activations",
    "/admin/activations/1",
    "/admin/payments",
    "/admin/payments/{payment}",
    "/admin/pricing",
    "/admin/pricing/rules/{rule}",
    "/admin/providers",
    "/admin/providers/hero",
    "/admin/settings",
    "/admin/audit",
]


def test_every_console_page_at_laptop_and_phone_width(new_page, live_server, screenshot):  # noqa: F811
    live = live_server
    port = _refused_port()
    ids = _console_data(live, port)
    failures = []
    for width in WIDTHS:
        page = new_page(width=width, height=800)
        log_in(page, live, *live.admin)
        for path in PAGES:
            url = live(path.format(**ids))
            response = page.goto(url)
            assert response.status == 200, url
            name = f"{width}px {path}"
            failures += [f"{name}: {e}" for e in html_problems(response.text())]
            overflow = page_overflow(page)
            if overflow:
                failures.append(f"{name}: {overflow}")
                screenshot(page, f"console-overflow-{width}-{path.strip('/').replace('/', '-')}")
            if width == 1366:
                failures += [
                    f"{name}: wraps {text!r}" for text in wrapped(page, "td time, td .badge")
                ]
        failures += [f"{width}px console: {p}" for p in page.problems]
        if width == 390:
            page.goto(live("/admin/providers"))
            screenshot(page, "console-providers-390")
    assert failures == [], "\n".join(failures)


def test_the_operator_sees_why_a_provider_fails_and_cannot_price_below_cost_unawares(
    new_page,  # noqa: F811
    live_server,
    screenshot,
):
    from playwright.sync_api import expect

    live = live_server
    port = _refused_port()
    _console_data(live, port)
    page = new_page(width=1366, height=900)
    log_in(page, live, *live.admin)

    # The overview's banner names the failing provider, says why in words, links its card.
    page.goto(live("/admin"))
    banner = page.locator("#provider-banner")
    expect(banner).to_contain_text(f"connection refused at 127.0.0.1:{port}")
    banner.get_by_role("link", name="hero").click()
    page.wait_for_url(re.compile(r"/admin/providers#provider-hero$"))
    card = page.locator("#provider-hero")
    expect(card.locator("h2 .badge")).to_have_text("unreachable")
    expect(card.locator("[data-reason]")).to_contain_text(f"connection refused at 127.0.0.1:{port}")
    screenshot(page, "console-provider-failing")

    # Picking a known provider fills its protocol, address and a name.
    page.get_by_label("Known provider").select_option("5sim")
    expect(page.get_by_label("Base URL")).to_have_value("https://5sim.net/v1")
    expect(page.get_by_label("Protocol")).to_have_value("5sim")
    expect(page.get_by_label("Name", exact=True)).to_have_value("5sim")

    # A fixed price under the cost is refused, naming the pair and the loss; ticking the box
    # saves it.
    page.goto(live("/admin/pricing"))
    page.locator("#rule-service").fill("Telegram")
    page.locator("#rule-country").fill("USA (187)")
    page.locator("#kind").select_option("fixed")
    page.locator("#value").fill("0.30")
    page.get_by_role("button", name="Save rule").click()
    notice = page.locator("#below-cost")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("1.00 USD per number")
    expect(notice).to_contain_text("Telegram · USA: costs 1.30")
    screenshot(page, "console-below-cost")
    page.get_by_label("Save anyway").check()
    page.get_by_role("button", name="Save rule").click()
    expect(flash(page)).to_contain_text("Rule for tg/187 added")

    # Wallets holding more than the providers: the overview says so, with the shortfall.
    expect(page.locator("#funding-warning")).to_have_count(0)

    def owe_more():
        user = accounts.user_by_email("console-customer@example.com")
        wallet.adjust(user.id, 9_000_000, note="a large top-up")  # 900.00 more
        return accounts.reveal_api_key(user)

    key = in_app(live, owe_more)
    page.goto(live("/admin"))
    expect(page.locator("#funding-warning")).to_be_visible()
    expect(page.locator("#funding-warning")).to_contain_text(
        "wallets exceed what the providers hold"
    )

    # A customer found by the end of their API key.
    page.goto(live("/admin/customers"))
    page.get_by_label("API key ends with").fill(key[-6:])
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table tbody tr")).to_have_count(1)
    expect(page.locator("table tbody tr")).to_contain_text("console-customer@example.com")

    # The activation filters are choices with names.
    page.goto(live("/admin/activations"))
    page.get_by_label("Service").select_option(label="Telegram (tg)")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table tbody tr")).to_have_count(1)
    expect(page.locator("table tbody tr").first).to_contain_text("Telegram")
    expect(page.locator("table tbody tr").first).to_contain_text("USA")
    # The refused rule was answered 400 (the house's status for a form with errors), which
    # Chromium reports; nothing else.
    refused = f"status of 400 (BAD REQUEST) ({live('/admin/pricing/rules')})"
    assert [p for p in page.problems if not p.endswith(refused)] == []
