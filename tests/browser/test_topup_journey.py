"""In real Chromium: from the dashboard, through the Top up page and the sandbox gateway's
Pay button, to the new balance — with CSRF on and the production CSP."""

from __future__ import annotations

import re

import pytest

from reseller.money import to_units
from reseller.services import accounts
from reseller.services.ledger import verify_ledger
from tests.browser.test_customer_journey import flash, in_app, log_in, new_page  # noqa: F401

pytestmark = pytest.mark.browser

EMAIL = "topup-customer@example.com"
PASSWORD = "topup-password-1"


def test_top_up_through_the_sandbox_gateway(new_page, live_server, screenshot):  # noqa: F811
    from playwright.sync_api import expect

    live = live_server
    in_app(live, lambda: accounts.create_user(EMAIL, PASSWORD))
    page = new_page()
    log_in(page, live, EMAIL, PASSWORD)
    page.goto(live("/dashboard"))
    expect(page.locator("[data-balance]")).to_have_text("0.00 USD")

    page.get_by_role("link", name="Top up", exact=True).first.click()
    page.wait_for_url(live("/dashboard/topup"))
    expect(page.get_by_role("heading", name="Top up", exact=True)).to_be_visible()
    screenshot(page, "topup-01-page")
    page.get_by_label("Amount", exact=True).fill("12.50")
    page.get_by_role("button", name="Continue to payment").click()

    page.wait_for_url(re.compile(r"/payments/sandbox/sbx_"))
    expect(page.get_by_text("Sandbox gateway — no real money")).to_be_visible()
    screenshot(page, "topup-02-sandbox-invoice")
    page.get_by_role("button", name="Pay 12.50 USD").click()

    page.wait_for_url(re.compile(r"/dashboard/topup\?payment=\d+"))
    expect(flash(page)).to_contain_text("12.50 USD is on your balance")
    expect(page.locator("[data-payment-status]")).to_have_attribute("data-payment-status", "paid")
    expect(page.locator("table.payments tbody tr").first).to_contain_text("Paid")
    screenshot(page, "topup-03-paid")

    page.get_by_role("navigation", name="Dashboard sections").get_by_role(
        "link", name="Numbers"
    ).click()
    expect(page.locator("[data-balance]")).to_have_text("12.50 USD")

    # A preset button, and the same journey's second payment left unpaid.
    page.goto(live("/dashboard/topup"))
    page.get_by_role("link", name="25.00 USD").click()  # fills the amount, pays nothing
    expect(page.get_by_label("Amount", exact=True)).to_have_value("25.00")
    assert page.url == live("/dashboard/topup")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r"/payments/sandbox/sbx_"))
    page.get_by_role("link", name="Back to the shop without paying").click()
    expect(page.locator("table.payments tbody tr").first).to_contain_text("Waiting for payment")

    # The operator sees both on the console's Payments page, with the verified notification.
    admin = new_page()
    log_in(admin, live, *live.admin)
    admin.goto(live("/admin"))
    expect(admin.locator("#topups-heading")).to_be_visible()
    admin.get_by_role("navigation", name="Console").get_by_role("link", name="Payments").click()
    rows = admin.locator("table.payments tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("pending")
    expect(rows.nth(1)).to_contain_text("paid")
    expect(rows.nth(1)).to_contain_text(EMAIL)
    screenshot(admin, "topup-04-console-payments")
    rows.nth(1).get_by_role("link").first.click()
    admin.get_by_text("Verified notification").click()
    expect(admin.locator("pre.raw")).to_contain_text('"amount": "12.50"')
    screenshot(admin, "topup-05-console-payment")

    assert in_app(live, lambda: accounts.user_by_email(EMAIL).balance) == to_units("12.50")
    assert in_app(live, verify_ledger) == []
    assert page.problems == []
