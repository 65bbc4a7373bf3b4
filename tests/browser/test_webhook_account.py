"""In real Chromium: a customer sets a webhook on the Account page, sends a test event, buys a
number through the API and their receiver gets the signed SMS event from the worker, with no
getStatus call; a failing receiver pauses the webhook and saving the URL resumes it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
import requests

from reseller.extensions import db
from reseller.services import accounts, webhooks, worker
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.browser

EMAIL = "hook-customer@example.com"
PASSWORD = "hook-password-1"


def in_app(live, fn):
    with live.app.app_context():
        try:
            return fn()
        finally:
            db.session.remove()


def signed_body(received, secret: str) -> dict:
    timestamp = received.headers["x-webhook-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert received.headers["x-webhook-signature"] == "sha256=" + expected
    return json.loads(received.body)


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


def test_webhook_on_the_account_page_end_to_end(live_server, page, screenshot):
    live = live_server

    def make_customer():
        user = accounts.create_user(EMAIL, PASSWORD)
        from reseller.services import wallet

        wallet.adjust(user.id, 10_000_000, note="test balance")
        return accounts.reveal_api_key(user)

    api_key = in_app(live, make_customer)

    page.goto(live("/login"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/(dashboard|admin)(\?.*)?$"))
    page.goto(live("/dashboard/account"))

    with Receiver() as receiver:
        # A bad URL: a friendly error, nothing saved.
        page.get_by_label("Webhook URL").fill("ftp://example.com/hook")
        page.get_by_role("button", name="Save webhook").click()
        assert page.get_by_text("Use an http:// or https:// URL.").is_visible()

        page.get_by_label("Webhook URL").fill(receiver.url)
        page.get_by_role("button", name="Save webhook").click()
        page.wait_for_url(re.compile(r"/dashboard/account#webhook$"))
        assert page.locator(".flash").first.inner_text().startswith("Webhook saved.")
        secret = page.locator("#webhook-secret-value").inner_text().strip()
        assert secret.startswith("whsec_")

        page.get_by_role("button", name="Send test event").click()
        assert "test event is queued" in page.locator(".flash").first.inner_text()
        in_app(live, webhooks.deliver_due)
        page.reload()
        row = page.locator("table.attempts tbody tr").first
        assert "test" in row.inner_text() and "HTTP 200" in row.inner_text()
        assert signed_body(receiver.received[0], secret)["event"] == "test"

        # Buy through the API; the sandbox's code comes 2 s later; the worker pushes it.
        api = live("/stubs/handler_api.php")
        bought = requests.get(
            api,
            params={"api_key": api_key, "action": "getNumber", "service": "tg", "country": "12"},
        ).text
        assert bought.startswith("ACCESS_NUMBER:"), bought
        activation_id = int(bought.split(":")[1])
        deadline = time.monotonic() + 15
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            in_app(live, worker.run_once)
            time.sleep(0.5)
        sms = signed_body(receiver.received[1], secret)
        assert sms["event"] == "sms" and sms["activationId"] == activation_id
        assert sms["code"]

        # The receiver breaks: after the threshold the webhook pauses, and the page says why.
        receiver.mode = "error"
        webhooks.PAUSE_AFTER, saved_threshold = 1, webhooks.PAUSE_AFTER
        try:
            page.get_by_role("button", name="Send test event").click()
            in_app(live, webhooks.deliver_due)
        finally:
            webhooks.PAUSE_AFTER = saved_threshold
        page.reload()
        assert page.locator("#webhook-pause-reason").is_visible()
        assert "HTTP 500" in page.locator("#webhook-pause-reason").inner_text()
        screenshot(page, "webhook-paused")

        receiver.mode = "ok"
        page.get_by_role("button", name="Save webhook").click()
        assert "delivery resumed" in page.locator(".flash").first.inner_text()
        assert page.locator("#webhook-pause-reason").count() == 0

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Regenerate secret").click()
        page.wait_for_load_state()
        assert page.locator("#webhook-secret-value").inner_text().strip() not in ("", secret)
        screenshot(page, "webhook-account")
    assert page.problems == []
