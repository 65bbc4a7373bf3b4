"""End to end in real Chromium: a customer signs up, is credited by an admin in the console,
buys numbers, sees the code arrive on its own, completes, cancels, and reads the books."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation
from reseller.money import format_amount, to_units
from reseller.services import accounts

pytestmark = pytest.mark.browser

EMAIL = "browser-customer@example.com"
PASSWORD = "browser-password-1"


@pytest.fixture
def new_page(browser):
    """`new_page(javascript=True)`: a page in a fresh browser context (its own cookies).
    `page.problems` collects console errors (CSP violations among them) and uncaught
    exceptions."""
    contexts = []

    def make(*, javascript=True, width=1280, height=900):
        context = browser.new_context(
            java_script_enabled=javascript, viewport={"width": width, "height": height}
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.problems = []
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.location.get("url", "").endswith("/favicon.ico")  # the browser's guess
                and page.problems.append(f"{m.text} ({m.location.get('url')})")
            ),
        )
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        return page

    yield make
    for context in contexts:
        context.close()


def log_in(page, live, email, password):
    page.goto(live("/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    # Customers land on the dashboard, admins in the console.
    page.wait_for_url(re.compile(r"/(dashboard|admin)(\?.*)?$"))


def section(page, name):
    nav = page.get_by_role("navigation", name="Dashboard sections")
    nav.get_by_role("link", name=name, exact=True).click()


def flash(page):
    return page.locator(".flash").first


def in_app(live, fn):
    with live.app.app_context():
        try:
            return fn()
        finally:
            db.session.remove()


def activations_of(live, email):
    def read():
        user = accounts.user_by_email(email)
        return [
            (a.id, a.service, a.status, a.price, a.code)
            for a in db.session.execute(
                select(Activation).where(Activation.user_id == user.id).order_by(Activation.id)
            ).scalars()
        ]

    return in_app(live, read)


def balance_of(live, email):
    return in_app(live, lambda: accounts.user_by_email(email).balance)


def choose_offer(page, search, service_name, country):
    """Use the picker's search and service list, then the Buy button of one country."""
    page.get_by_label("Search services and countries").fill(search)
    page.locator("[data-service-list]").get_by_role(
        "link", name=re.compile(rf"^{re.escape(service_name)} ")
    ).click()
    page.get_by_role(
        "button", name=re.compile(rf"^Buy .* numbers in {re.escape(country)} ")
    ).click()


def latest_code(card):
    return card.locator("ol.codes li.latest code")


def test_customer_journey(new_page, live_server, screenshot):
    live = live_server
    from playwright.sync_api import expect

    page = new_page()

    # Sign up; the docs page shows the new key.
    page.goto(live("/signup"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(live("/docs"))
    api_key = in_app(live, lambda: accounts.reveal_api_key(accounts.user_by_email(EMAIL)))
    expect(page.locator("#api-key-value")).to_have_text(api_key)
    screenshot(page, "01-docs-with-api-key")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("[data-balance]")).to_have_text("0.00 USD")

    # An admin credits the account in the console, from a second browser session.
    admin = new_page()
    log_in(admin, live, *live.admin)
    customer_id = in_app(live, lambda: accounts.user_by_email(EMAIL).id)
    admin.goto(live(f"/admin/customers/{customer_id}"))
    admin.get_by_label("Amount").fill("5.00")
    admin.get_by_label("Note").fill("Bank transfer 42")
    admin.get_by_role("button", name="Apply").click()
    expect(flash(admin)).to_contain_text("5.00")
    screenshot(admin, "02-admin-credit")

    page.reload()
    expect(page.locator("[data-balance]")).to_have_text("5.00 USD")
    screenshot(page, "03-dashboard-empty")

    # Buy a Telegram number; the code appears without a reload.
    choose_offer(page, "tele", "Telegram", "USA (virtual)")
    expect(flash(page)).to_contain_text("You bought")
    [(tg_id, _, status, tg_price, _)] = activations_of(live, EMAIL)
    assert status == "allocated"
    card = page.locator(f"#activation-{tg_id}")
    expect(card.locator("[data-field=status_label]")).to_have_text("Waiting for the SMS")
    screenshot(page, "04-dashboard-waiting-for-code")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    expect(latest_code(card)).to_have_text(re.compile(r"^\d{6}$"), timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    code = latest_code(card).text_content()
    assert activations_of(live, EMAIL)[0][4] == code
    expect(card.locator("[data-field=status_label]")).to_have_text("Code received")
    expect(card.get_by_role("button", name="Cancel and refund")).to_be_hidden()
    screenshot(page, "05-dashboard-code-received")

    card.get_by_role("button", name="Complete").click()
    expect(flash(page)).to_contain_text("is complete")
    after_tg = to_units("5.00") - tg_price
    expect(page.locator("[data-balance]")).to_have_text(f"{format_amount(after_tg)} USD")

    # A number that never gets a code: cancel opens after the window, the money comes back.
    choose_offer(page, "other", "Any other", "USA (virtual)")
    expect(flash(page)).to_contain_text("You bought")
    ot_id, _, _, ot_price, _ = activations_of(live, EMAIL)[-1]
    card = page.locator(f"#activation-{ot_id}")
    cancel = card.get_by_role("button", name="Cancel and refund")
    expect(cancel).to_be_disabled()
    expect(card.locator("[data-cancel-note]")).to_contain_text("Cancelling opens in")
    screenshot(page, "06-dashboard-cancel-countdown")
    expect(page.locator("[data-balance]")).to_have_text(f"{format_amount(after_tg - ot_price)} USD")
    expect(cancel).to_be_enabled(timeout=10_000)  # the countdown ran out, no reload
    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    expect(flash(page)).to_contain_text("is cancelled")
    expect(page.locator("[data-balance]")).to_have_text(f"{format_amount(after_tg)} USD")
    assert [row[2] for row in activations_of(live, EMAIL)] == ["completed", "cancelled"]
    assert balance_of(live, EMAIL) == after_tg

    # History and ledger show both.
    section(page, "History")
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Cancelled, refunded")
    expect(rows.nth(1)).to_contain_text("Completed")
    expect(rows.nth(1)).to_contain_text(code)
    screenshot(page, "07-history")

    section(page, "Balance history")
    rows = page.locator("table.ledger tbody tr")
    expect(rows).to_have_count(4)
    expected = [
        ("Refund", f"#{ot_id}", after_tg),
        ("Number bought", f"#{ot_id}", after_tg - ot_price),
        ("Number bought", f"#{tg_id}", after_tg),
        ("Top-up", "Bank transfer 42", to_units("5.00")),
    ]
    for n, (label, detail, balance_after) in enumerate(expected):
        expect(rows.nth(n)).to_contain_text(label)
        expect(rows.nth(n)).to_contain_text(detail)
        expect(rows.nth(n).locator("td").last).to_have_text(f"{format_amount(balance_after)} USD")
    screenshot(page, "08-ledger")

    section(page, "Account")
    expect(page.locator("#api-key-value")).to_have_text(api_key)
    screenshot(page, "09-account")

    # Small screens: no sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    section(page, "Numbers")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "10-dashboard-phone")

    assert page.problems == []
    with live.app.app_context():
        result = live.app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output


def test_dashboard_without_javascript(new_page, live_server, screenshot):
    """Everything but the live refresh works without JavaScript; a reload shows the code."""
    live = live_server
    from playwright.sync_api import expect

    def create():
        from reseller.services import wallet

        user = accounts.create_user(EMAIL, PASSWORD)
        wallet.adjust(user.id, to_units("2.00"), note="test credit")

    in_app(live, create)
    page = new_page(javascript=False)
    log_in(page, live, EMAIL, PASSWORD)
    page.goto(live("/dashboard"))

    # The search box works server-side: Enter, and a single match is picked.
    page.get_by_label("Search services and countries").fill("telegram")
    page.get_by_label("Search services and countries").press("Enter")
    expect(page.get_by_role("heading", name="Telegram: prices by country")).to_be_visible()
    page.get_by_role(
        "button", name=re.compile(r"^Buy Telegram numbers in USA \(virtual\) ")
    ).click()
    expect(flash(page)).to_contain_text("You bought")
    [(activation_id, *_)] = activations_of(live, EMAIL)
    card = page.locator(f"#activation-{activation_id}")
    expect(card.get_by_role("button", name="Cancel and refund")).to_be_disabled()
    expect(card.get_by_role("button", name="Complete")).to_be_hidden()

    time.sleep(2.5)  # the sandbox code delay
    page.reload()
    expect(latest_code(card)).to_have_text(re.compile(r"^\d{6}$"))
    screenshot(page, "11-no-javascript-code")
    card.get_by_role("button", name="Complete").click()
    expect(flash(page)).to_contain_text("is complete")
    assert activations_of(live, EMAIL)[0][2] == "completed"
    assert page.problems == []


def test_each_purchase_from_the_buy_buttons_gets_its_own_order_key(new_page, live_server):
    """Back to the price list after a purchase: the same Buy button buys another number; a
    double click buys one; a page restored from the back/forward cache draws new keys."""
    live = live_server
    from playwright.sync_api import expect

    from reseller.services import wallet

    email = "buttons@example.com"
    in_app(live, lambda: wallet.adjust(accounts.create_user(email, PASSWORD).id, 50_000, note="t"))
    page = new_page()
    log_in(page, live, email, PASSWORD)
    page.goto(live("/dashboard?service=tg"))
    usa = page.get_by_role("button", name=re.compile(r"^Buy .* numbers in USA \(virtual\) "))

    usa.click()
    expect(flash(page)).to_contain_text("You bought")
    page.go_back()
    usa.click()  # the same button on the page shown again: a new purchase, not a repeat
    expect(flash(page)).to_contain_text("You bought")
    assert len(activations_of(live, email)) == 2

    page.go_back()
    usa.dblclick()
    expect(flash(page)).to_contain_text("You bought")
    assert len(activations_of(live, email)) == 3  # the double click bought once

    page.go_back()
    keys = page.locator("input[data-order-key]")
    before = keys.evaluate_all("inputs => inputs.map(i => i.value)")
    assert len(before) >= 3 and len(set(before)) == len(before)  # one key per button
    # Playwright's Chromium keeps no back/forward cache: show the page as one restores it.
    page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    after = keys.evaluate_all("inputs => inputs.map(i => i.value)")
    assert len(set(before + after)) == 2 * len(before)  # all new, all distinct
    assert all(re.fullmatch(r"web-[\w-]{16}", key) for key in after)
    usa.click()
    expect(flash(page)).to_contain_text("You bought")
    assert len(activations_of(live, email)) == 4
    assert page.problems == []
    with live.app.app_context():
        result = live.app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
