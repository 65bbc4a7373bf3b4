"""In real Chromium, with a real SMTP server on loopback: a customer resets a forgotten
password through the mailed link; another turns on two-factor sign-in (the secret read as
text instead of scanned), logs in with a code (a replayed one refused) and with a recovery
code, and turns it off with another."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest

from reseller import clock
from reseller.extensions import db
from reseller.services import accounts, mail
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.browser

EMAIL = "forgetful@example.com"
PASSWORD = "old-password-1"
NEW_PASSWORD = "new-password-2"


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def live_overrides(smtp):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
        "MAIL_DEFAULT_SENDER": "shop@example.com",
    }


def in_app(live, fn):
    with live.app.app_context():
        try:
            return fn()
        finally:
            db.session.remove()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not m.location.get("url", "").endswith("/favicon.ico")
            and page.problems.append(m.text)
        ),
    )
    yield page
    context.close()
    clock.reset()


def log_in(page, live, password):
    page.goto(live("/login"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_forgot_password_end_to_end(live_server, page, smtp, screenshot):
    live = live_server
    in_app(live, lambda: accounts.create_user(EMAIL, PASSWORD))

    page.goto(live("/login"))
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button", name="Send the link").click()
    page.locator("#forgot-sent").wait_for()
    assert smtp.received == []  # the worker sends it
    assert in_app(live, mail.deliver_due).sent == 1
    link = smtp.last_link(EMAIL)
    assert link.startswith(live("/password/reset/"))

    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    screenshot(page, "password-reset")
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url(re.compile(r"/login$"))
    assert "Your password is changed" in page.content()

    log_in(page, live, PASSWORD)  # the old one no longer works
    assert "Wrong email or password" in page.content()
    log_in(page, live, NEW_PASSWORD)
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert page.problems == []
    page.goto(link)  # the link worked once (a 404)
    assert "no longer valid" in page.locator("#link-invalid").inner_text()


def code_now(totp: pyotp.TOTP) -> str:
    return totp.at(clock.utcnow().replace(tzinfo=dt.UTC))


def test_two_factor_end_to_end(live_server, page, screenshot):
    live = live_server
    in_app(live, lambda: accounts.create_user(EMAIL, PASSWORD))
    log_in(page, live, PASSWORD)
    page.wait_for_url(re.compile(r"/dashboard$"))

    page.goto(live("/dashboard/account"))
    page.get_by_role("link", name="Two-factor authentication").click()
    qr = page.locator("#two-factor-qr")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the QR code draws
    totp = pyotp.TOTP(page.locator("#two-factor-secret").inner_text().strip())
    screenshot(page, "two-factor-setup")
    page.get_by_label("Code").fill(code_now(totp))
    page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", c) for c in codes)
    screenshot(page, "two-factor-recovery-codes")

    page.get_by_role("button", name="Log out", exact=True).click()
    log_in(page, live, PASSWORD)
    page.wait_for_url(re.compile(r"/login/two-factor$"))
    page.get_by_label("Code").fill(code_now(totp))  # the code that turned it on: refused
    page.get_by_role("button", name="Continue").click()
    assert "not right" in page.content()
    clock.travel(30)
    page.get_by_label("Code").fill(code_now(totp))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.goto(live("/dashboard/account/two-factor"))
    assert page.locator("#recovery-left").inner_text() == "10"

    page.get_by_role("button", name="Log out", exact=True).click()
    log_in(page, live, PASSWORD)
    page.wait_for_url(re.compile(r"/login/two-factor$"))
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.goto(live("/dashboard/account/two-factor"))
    assert page.locator("#recovery-left").inner_text() == "9"
    screenshot(page, "two-factor-on")

    page.locator("#disable-code").fill(codes[1])  # turning it off needs a code
    page.get_by_role("button", name="Turn off two-factor authentication").click()
    page.wait_for_url(re.compile(r"/dashboard/account$"))
    assert "Two-factor authentication is off." in page.content()
    page.get_by_role("button", name="Log out", exact=True).click()
    log_in(page, live, PASSWORD)  # the password alone again
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert page.problems == []
