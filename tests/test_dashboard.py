"""The customer dashboard through the Flask test client: pages, the money path behind its
forms (the API's), the live JSON feed, friendly errors, isolation between customers."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from flask import g
from markupsafe import escape
from sqlalchemy import func, select, update

from reseller.extensions import db
from reseller.models import (
    Activation,
    LedgerEntry,
    PricingRule,
    ProviderPrice,
    Service,
    UpstreamPrice,
    User,
    utcnow,
)
from reseller.models import ActivationStatus as S
from reseller.money import format_amount, to_units
from reseller.services import accounts, catalog, pricing, settings
from reseller.services import errors as err
from reseller.services.provider import raw_upstream
from reseller.upstream import errors as up
from reseller.upstream.sandbox import sms_code, sms_text
from tests.conftest import Api, api_key_of

PAGES = ["/dashboard", "/dashboard/history", "/dashboard/ledger", "/dashboard/account"]


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def charges(user_id):
    return db.session.execute(
        select(func.count(LedgerEntry.id)).where(
            LedgerEntry.user_id == user_id, LedgerEntry.kind == "purchase"
        )
    ).scalar_one()


def text_of(response):
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def ledger_ok(runner):
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output


@pytest.fixture
def logged_in(client, auth, customer):
    """The customer (10.00, stocked catalog) logged in; returns the client."""
    auth.login(customer.email)
    return client


def buy(client, service="tg", country="12", max_price=None, order_id=None):
    """Press a Buy button as the page renders it; returns the page after the redirect."""
    if max_price is None:
        max_price = format_amount(pricing.quote(service, int(country)).price)
    data = {"service": service, "country": country, "max_price": max_price}
    if order_id is not None:
        data["order_id"] = order_id
    return client.post("/dashboard/buy", data=data, follow_redirects=True)


def latest_activation(user_id):
    db.session.expire_all()
    return db.session.execute(
        select(Activation).where(Activation.user_id == user_id).order_by(Activation.id.desc())
    ).scalar()


def feed(client, **params):
    response = client.get("/dashboard/activations.json", query_string=params)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def post_action(client, activation_id, action):
    return client.post(f"/dashboard/activations/{activation_id}/{action}", follow_redirects=True)


# --- access -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_require_login(client, stocked, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login?next=" in response.location


def test_feed_and_posts_require_login(client, customer):
    response = client.get("/dashboard/activations.json")
    assert response.status_code == 401
    assert response.get_json() == {"error": "LOGIN_REQUIRED"}
    response = client.post("/dashboard/buy", data={"service": "tg", "country": "12"})
    assert response.status_code == 302 and "/login" in response.location
    assert charges(customer.id) == 0


def test_disabled_account_is_logged_out(logged_in, customer):
    customer.active = False
    db.session.commit()
    response = logged_in.get("/dashboard")
    assert response.status_code == 302 and "/login" in response.location
    assert logged_in.get("/dashboard/activations.json").status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_without_inline_script_or_outside_assets(logged_in, path):
    page = text_of(logged_in.get(path))
    assert "Dashboard" in page
    # A Content-Security-Policy without 'unsafe-inline' must not break any page.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert not re.search(r"\son[a-z]+\s*=", page)
    assert not re.search(r"\sstyle\s*=", page)
    assert not re.search(r'(src|href|action)="(https?:)?//', page)
    # Every form control has a label.
    for control_id in re.findall(
        r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|submit)")[^>]*id="([^"]+)"', page
    ):
        assert f'for="{control_id}"' in page, control_id


def test_dashboard_shows_balance_and_top_up_instructions(logged_in, app):
    page = text_of(logged_in.get("/dashboard"))
    assert "10.00 USD" in page
    assert 'href="/dashboard/topup"' in page
    assert 'src="/static/dashboard.js"' in page
    assert 'data-feed-url="/dashboard/activations.json"' in page
    # base.html links the dashboard once the blueprint exists.
    assert 'href="/dashboard"' in text_of(logged_in.get("/docs"))


def test_manual_top_up_instructions_only_when_no_gateway_runs(logged_in, app):
    """The operator's manual text never contradicts a running payment gateway."""
    settings.store("topup_instructions", "Pay by bank transfer to IBAN XX00 and mail us.")
    db.session.commit()
    page = text_of(logged_in.get("/dashboard"))
    assert "Pay by bank transfer" not in page  # the sandbox gateway runs in tests
    settings.store("payment_gateways", "cryptopay")  # offered, but not running here
    db.session.commit()
    page = text_of(logged_in.get("/dashboard"))
    assert "How to top up" in page
    assert "Pay by bank transfer to IBAN XX00 and mail us." in page


# --- the pickers ---------------------------------------------------------------------------


def test_service_picker_shows_lowest_price_and_stock(logged_in):
    page = text_of(logged_in.get("/dashboard"))
    offers = {o.service: o for o in pricing.service_offers()}
    telegram = offers["tg"]
    assert f"from {format_amount(telegram.from_price)} USD · {telegram.count:,}" in page
    assert 'class="mark mark-tg"' in page
    # The sandbox's out-of-stock-everywhere service is not offered.
    assert "OpenAI" in page  # in stock in some countries
    assert "/dashboard?service=ig#countries-title" in page


def test_country_table_shows_our_price_and_stock_with_buy_buttons(logged_in):
    page = text_of(logged_in.get("/dashboard?service=tg"))
    for quote in pricing.price_table(service="tg"):
        name = catalog.country(quote.country_id).name
        price = format_amount(quote.price)
        assert f'id="offer-{quote.country_id}"' in page
        assert f'name="max_price" value="{price}"' in page
        assert f"Buy Telegram numbers in {name} for {price} USD each" in page
    assert "🇺🇸</span> USA" in page
    # Out of stock (United Kingdom has no WhatsApp numbers) is not listed.
    page = text_of(logged_in.get("/dashboard?service=wa"))
    assert "United Kingdom" not in page


def test_countries_are_sorted_by_price_by_default_and_by_stock_or_name(logged_in):
    quotes = pricing.price_table(service="tg")

    def order(page):
        return sorted(quotes, key=lambda q: page.index(f'id="offer-{q.country_id}"'))

    by_price = order(text_of(logged_in.get("/dashboard?service=tg")))
    assert [q.price for q in by_price] == sorted(q.price for q in quotes)
    by_stock = order(text_of(logged_in.get("/dashboard?service=tg&sort=stock")))
    assert [q.count for q in by_stock] == sorted((q.count for q in quotes), reverse=True)
    by_name = order(text_of(logged_in.get("/dashboard?service=tg&sort=name")))
    names = [catalog.country(q.country_id).name.casefold() for q in by_name]
    assert names == sorted(names)


def test_search_works_without_javascript(logged_in):
    page = text_of(logged_in.get("/dashboard?q=tele"))
    assert "service=tg" in page and "service=wa" not in page
    # A single match is picked: its countries are listed at once.
    assert "Telegram: prices by country" in page
    # A text that names no service narrows the countries of the chosen one.
    page = text_of(logged_in.get("/dashboard?service=tg&q=king"))
    assert 'id="offer-16"' in page and 'id="offer-43"' not in page  # UK, not Germany
    assert "7 of 7 services" in page
    page = text_of(logged_in.get("/dashboard?service=nope"))
    assert "nope is not on sale right now" in page


def test_service_offers_match_the_price_table_under_every_kind_of_rule(app, stocked):
    db.session.add_all(
        [
            PricingRule(service="tg", markup_percent=Decimal("80")),
            PricingRule(country_id=187, markup_percent=Decimal("-50")),  # below cost: raised
            PricingRule(country_id=0, fixed_price=to_units("0.11")),
            # With this one every Instagram offer (12, 187) is under a country rule.
            PricingRule(country_id=12, markup_percent=Decimal("10")),
            PricingRule(service="go", country_id=16, fixed_price=to_units("0.13")),
            PricingRule(service="wa", country_id=43, markup_percent=Decimal("1")),
        ]
    )
    db.session.get(Service, "ds").enabled = False
    db.session.commit()
    expected: dict[str, list[int]] = {}
    for quote in pricing.price_table():
        low, stock, countries = expected.get(quote.service, [quote.price, 0, 0])
        expected[quote.service] = [min(low, quote.price), stock + quote.count, countries + 1]
    got = {o.service: [o.from_price, o.count, o.countries] for o in pricing.service_offers()}
    assert got == expected
    assert "ds" not in got


# --- buying: the API's money path ------------------------------------------------------------


def test_buy_charges_exactly_like_the_api(client, auth, customer, make_user, runner):
    auth.login(customer.email)
    page = text_of(buy(client, "tg", "12"))
    via_form = latest_activation(customer.id)
    assert via_form.status == S.ALLOCATED
    assert f"You bought +{via_form.phone} for Telegram (USA (virtual))" in page
    assert f'id="activation-{via_form.id}"' in page

    other = make_user(email="api@example.com", balance="10.00")
    api = Api(client, api_key_of(other))
    assert api.text("getNumber", service="tg", country="12").startswith("ACCESS_NUMBER:")
    via_api = latest_activation(other.id)

    assert via_form.price == via_api.price == pricing.quote("tg", 12).price
    assert balance(customer.id) == balance(other.id) == to_units("10.00") - via_form.price
    form_row, api_row = (
        db.session.execute(
            select(LedgerEntry).where(LedgerEntry.activation_id == a.id)
        ).scalar_one()
        for a in (via_form, via_api)
    )
    assert (form_row.kind, form_row.amount) == (api_row.kind, api_row.amount)
    assert form_row.balance_after == api_row.balance_after
    ledger_ok(runner)


def test_code_appears_in_the_feed_and_after_a_reload(logged_in, customer, clock):
    buy(logged_in)
    activation = latest_activation(customer.id)
    data = feed(logged_in)
    assert data["balance"] == format_amount(balance(customer.id))
    assert data["currency"] == "USD"
    assert data["poll_interval"] == settings.get("poll_interval")
    [row] = data["activations"]
    assert row["id"] == activation.id
    assert row["status"] == "allocated" and row["open"] is True
    assert row["phone"] == f"+{activation.phone}"
    assert row["code"] is None
    assert row["can_cancel"] and not row["can_complete"] and not row["can_retry"]
    assert 0 < row["cancel_in"] <= 120
    assert 1190 <= row["lifetime_left"] <= 1200

    clock.travel(6)
    code = sms_code(int(activation.upstream_id), 1)
    [row] = feed(logged_in)["activations"]
    assert row["status"] == "code_received"
    assert row["status_label"] == "Code received"
    assert row["code"] == code
    assert row["can_complete"] and row["can_retry"] and not row["can_cancel"]
    # Without JavaScript, a reload shows the same truth.
    page = text_of(logged_in.get("/dashboard"))
    assert f'id="code-{activation.id}-1">{code}</code>' in page


def test_feed_respects_the_upstream_poll_cap(logged_in, customer, monkeypatch, clock):
    provider = raw_upstream()
    calls = []
    real = provider.get_status

    def counting(upstream_id):
        calls.append(upstream_id)
        return real(upstream_id)

    monkeypatch.setattr(provider, "get_status", counting)
    interval = settings.get("poll_interval")
    buy(logged_in)  # the first poll is one interval after the purchase
    for _ in range(3):
        feed(logged_in)
    assert calls == []
    clock.travel(interval)
    feed(logged_in)  # takes the poll slot
    assert len(calls) == 1
    for _ in range(5):
        feed(logged_in)
        logged_in.get("/dashboard")
    assert len(calls) == 1
    clock.travel(interval)
    feed(logged_in)
    feed(logged_in)
    assert len(calls) == 2


def test_feed_reports_cards_that_closed_and_ignores_foreign_ids(
    client, auth, customer, make_user, clock
):
    stranger = make_user(email="stranger@example.com", balance="5.00")
    Api(client, api_key_of(stranger))("getNumber", service="tg", country="12")
    foreign = latest_activation(stranger.id)

    auth.login(customer.email)
    buy(client)
    mine = latest_activation(customer.id)
    clock.travel(6)
    post_action(client, mine.id, "complete")
    assert feed(client)["activations"] == []
    data = feed(client, ids=f"{mine.id},{foreign.id},junk,-3")
    assert [row["id"] for row in data["activations"]] == [mine.id]
    assert data["activations"][0]["open"] is False
    assert data["activations"][0]["status_label"] == "Completed"


def test_complete_keeps_the_charge(logged_in, customer, clock, runner):
    buy(logged_in)
    activation = latest_activation(customer.id)
    paid = to_units("10.00") - activation.price
    page = text_of(post_action(logged_in, activation.id, "complete"))
    assert "can be completed only after a code has arrived" in page
    assert latest_activation(customer.id).status == S.ALLOCATED

    clock.travel(6)
    page = text_of(post_action(logged_in, activation.id, "complete"))
    assert f"The activation of +{activation.phone} is complete" in page
    assert latest_activation(customer.id).status == S.COMPLETED
    assert balance(customer.id) == paid
    assert f'id="activation-{activation.id}"' not in page  # no longer among the open ones
    ledger_ok(runner)


def test_request_another_sms_then_complete(logged_in, customer, clock, runner):
    buy(logged_in)
    activation = latest_activation(customer.id)
    page = text_of(post_action(logged_in, activation.id, "retry"))
    assert "only after a code has arrived" in page

    clock.travel(6)
    feed(logged_in)
    page = text_of(post_action(logged_in, activation.id, "retry"))
    assert "Another SMS was requested" in page
    [row] = feed(logged_in)["activations"]
    assert row["status"] == "retry_wait"
    assert row["code"] == sms_code(int(activation.upstream_id), 1)  # the last code, still shown
    assert row["can_complete"] and not row["can_retry"]

    clock.travel(6)
    [row] = feed(logged_in)["activations"]
    assert row["status"] == "code_received"
    first, second = (sms_code(int(activation.upstream_id), n) for n in (1, 2))
    assert row["code"] == second
    # Every code, oldest first, each with the SMS's full text, in the feed and on the card.
    assert row["messages"] == [
        {"code": first, "text": sms_text("tg", first)},
        {"code": second, "text": sms_text("tg", second)},
    ]
    page = text_of(logged_in.get("/dashboard"))
    card = page[page.index(f'id="activation-{activation.id}"') :]
    assert card.index(f">{first}</code>") < card.index(f">{second}</code>")
    assert escape(sms_text("tg", second)) in card
    post_action(logged_in, activation.id, "complete")
    assert latest_activation(customer.id).status == S.COMPLETED
    assert balance(customer.id) == to_units("10.00") - activation.price
    ledger_ok(runner)


def test_cancel_is_refused_in_the_window_then_refunds(logged_in, customer, clock, runner):
    buy(logged_in, "ot", "12")  # the sandbox never sends this service a code
    activation = latest_activation(customer.id)
    after_purchase = balance(customer.id)
    assert after_purchase == to_units("10.00") - activation.price

    page = text_of(logged_in.get("/dashboard"))
    card = page[page.index(f'id="activation-{activation.id}"') :]
    assert re.search(r'<button type="submit" class="button secondary" disabled', card)
    assert "Cancelling opens in" in card

    # The server enforces the window whatever the browser shows.
    page = text_of(post_action(logged_in, activation.id, "cancel"))
    assert "Too early to cancel: a number can be cancelled 2 min 00 s after purchase" in page
    assert latest_activation(customer.id).status == S.ALLOCATED
    assert balance(customer.id) == after_purchase

    clock.travel(121)
    page = text_of(logged_in.get("/dashboard"))
    card = page[page.index(f'id="activation-{activation.id}"') :]
    assert not re.search(r'class="button secondary" disabled', card.split("</article>")[0])
    page = text_of(post_action(logged_in, activation.id, "cancel"))
    assert f"+{activation.phone} is cancelled and {format_amount(activation.price)} USD" in page
    assert latest_activation(customer.id).status == S.CANCELLED
    assert balance(customer.id) == to_units("10.00")
    # Cancelling a cancelled number again is harmless and refunds nothing more.
    post_action(logged_in, activation.id, "cancel")
    assert balance(customer.id) == to_units("10.00")
    ledger_ok(runner)


def test_cancel_after_the_code_is_refused(logged_in, customer, clock):
    buy(logged_in)
    activation = latest_activation(customer.id)
    clock.travel(121)
    page = text_of(post_action(logged_in, activation.id, "cancel"))
    assert "can no longer be cancelled: a code has arrived" in page
    assert latest_activation(customer.id).status == S.CODE_RECEIVED


# --- friendly refusals ---------------------------------------------------------------------


def test_no_balance(client, auth, make_user, stocked, runner):
    user = make_user(email="poor@example.com", balance="0.05")
    auth.login(user.email)
    price = format_amount(pricing.quote("tg", 12).price)
    page = text_of(buy(client))
    assert f"Your balance (0.05 USD) is too low for this number ({price} USD)" in page
    assert "Nothing was charged" in page
    assert balance(user.id) == to_units("0.05") and charges(user.id) == 0
    ledger_ok(runner)


def test_no_numbers(logged_in, customer):
    # Instagram in Russia is listed upstream with no stock.
    page = text_of(buy(logged_in, "ig", "0", max_price="1.00"))
    assert "No Instagram numbers are available in Russia right now" in page
    assert balance(customer.id) == to_units("10.00")


def test_price_changed_since_the_page_was_loaded(logged_in, customer):
    seen = format_amount(pricing.quote("tg", 12).price)
    settings.store("markup_percent", "100")
    db.session.commit()
    settings.forget()
    new = format_amount(pricing.quote("tg", 12).price)
    assert new != seen
    page = text_of(buy(logged_in, "tg", "12", max_price=seen))
    assert (
        f"The price of a Telegram number in USA (virtual) changed from {seen} USD to {new} USD"
        in page
    )
    assert "Your balance is unchanged" in page
    assert balance(customer.id) == to_units("10.00") and charges(customer.id) == 0
    # The page now offers the new price.
    assert f'name="max_price" value="{new}"' in page


def test_price_risen_upstream_is_a_price_change_too(logged_in, customer, runner):
    # Our cached cost is stale: the upstream refuses our price, we learn its cost, refund.
    db.session.get(UpstreamPrice, ("tg", 12)).cost = to_units("0.01")
    db.session.execute(
        update(ProviderPrice)
        .where(ProviderPrice.service == "tg", ProviderPrice.country_id == 12)
        .values(cost=to_units("0.01"))
    )
    db.session.commit()
    seen = format_amount(pricing.quote("tg", 12).price)
    page = text_of(buy(logged_in, "tg", "12", max_price=seen))
    new = format_amount(pricing.quote("tg", 12).price)
    assert new != seen
    assert f"changed from {seen} USD to {new} USD" in page
    assert latest_activation(customer.id).status == S.FAILED
    assert balance(customer.id) == to_units("10.00")
    ledger_ok(runner)


def test_every_refusal_a_form_can_meet_has_a_friendly_text():
    from reseller.dashboard.messages import MESSAGES

    reachable = {
        "buy": [
            err.BadService,
            err.BadCountry,
            err.NoNumbers,
            err.WrongMaxPrice,
            err.NoBalance,
            err.TooManyActivations,
            err.OrderAlreadyExists,
            err.BadParameter,
            err.ServiceUnavailable,
        ],
        "cancel": [err.BadStatus, err.EarlyCancelDenied, err.ServiceUnavailable],
        "retry": [err.BadStatus, err.ServiceUnavailable],
        "complete": [err.BadStatus],
    }
    for action, kinds in reachable.items():
        for kind in kinds:
            assert (kind.kind, action) in MESSAGES or (kind.kind, None) in MESSAGES, (kind, action)


@pytest.mark.parametrize(
    ("service", "country", "message"),
    [
        ("zz", "12", "zz is not on sale right now"),
        ("tg", "999", "Numbers from country 999 are not on sale right now"),
        ("tg", "12x", "Numbers from 12x are not on sale right now"),
    ],
)
def test_unknown_service_or_country(logged_in, customer, service, country, message):
    page = text_of(buy(logged_in, service, country, max_price="1.00"))
    assert message in page
    assert balance(customer.id) == to_units("10.00")


def test_disabled_service(logged_in, customer):
    db.session.get(Service, "tg").enabled = False
    db.session.commit()
    page = text_of(buy(logged_in, "tg", "12", max_price="5.00"))
    assert "Telegram is not on sale right now" in page


def test_malformed_price(logged_in, customer):
    page = text_of(buy(logged_in, "tg", "12", max_price="cheap"))
    assert "The form was out of date" in page
    assert charges(customer.id) == 0


def test_incomplete_form(logged_in, customer):
    page = text_of(logged_in.post("/dashboard/buy", data={}, follow_redirects=True))
    assert "Please choose a service and a country" in page
    assert charges(customer.id) == 0


def test_provider_down_refunds_and_says_so(logged_in, customer, monkeypatch, runner):
    def down(*args, **kwargs):
        raise up.UpstreamUnavailable("connection refused")

    monkeypatch.setattr(raw_upstream(), "get_number", down)
    page = text_of(buy(logged_in))
    assert "Our provider is not answering right now" in page
    assert latest_activation(customer.id).status == S.FAILED
    assert balance(customer.id) == to_units("10.00")
    ledger_ok(runner)


def test_too_many_numbers_at_once(logged_in, customer):
    settings.store("max_active_activations", "1")
    db.session.commit()
    buy(logged_in)
    page = text_of(buy(logged_in))
    assert "You already have the most numbers allowed at once (1)" in page
    assert charges(customer.id) == 1


def test_the_same_form_sent_twice_buys_once(logged_in, customer, runner):
    buy(logged_in, order_id="web-abc")
    page = text_of(buy(logged_in, order_id="web-abc"))
    assert "This purchase was already placed" in page
    assert charges(customer.id) == 1
    ledger_ok(runner)


def test_each_page_load_gets_a_fresh_order_key(logged_in):
    keys = {
        re.search(
            r'name="order_id" value="([^"]+)"', text_of(logged_in.get("/dashboard?service=tg"))
        )[1]
        for _ in range(3)
    }
    assert len(keys) == 3


def _token(page):
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)[1]


@pytest.mark.parametrize("config_overrides", [{"WTF_CSRF_ENABLED": True}])
def test_forms_need_the_csrf_token(client, customer):
    token = _token(text_of(client.get("/login")))
    data = {"email": customer.email, "password": "password123", "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302
    # The test's app context (and so `g`, where Flask-WTF caches the token) outlives each
    # request; a browser would get a fresh one after the login cleared the session.
    g.pop("csrf_token", None)

    offer = {"service": "tg", "country": "12", "max_price": "5.00"}
    assert client.post("/dashboard/buy", data=offer).status_code == 400
    assert charges(customer.id) == 0
    token = _token(text_of(client.get("/dashboard?service=tg")))
    page = text_of(
        client.post("/dashboard/buy", data={**offer, "csrf_token": token}, follow_redirects=True)
    )
    assert "You bought" in page
    activation = latest_activation(customer.id)
    assert client.post(f"/dashboard/activations/{activation.id}/cancel").status_code == 400


# --- one customer never sees another's -------------------------------------------------------


def test_another_customers_activation_is_not_reachable(client, auth, customer, make_user, clock):
    auth.login(customer.email)
    buy(client)
    theirs = latest_activation(customer.id)
    auth.logout()

    intruder = make_user(email="intruder@example.com", balance="1.00")
    auth.login(intruder.email)
    for action in ("cancel", "retry", "complete"):
        response = client.post(f"/dashboard/activations/{theirs.id}/{action}")
        assert response.status_code == 404
    clock.travel(200)
    client.post(f"/dashboard/activations/{theirs.id}/cancel")
    assert feed(client, ids=str(theirs.id))["activations"] == []
    for path in ("/dashboard", "/dashboard/history", "/dashboard/ledger"):
        page = text_of(client.get(path))
        assert theirs.phone not in page
    assert latest_activation(customer.id).status != S.CANCELLED
    assert balance(customer.id) == to_units("10.00") - theirs.price
    assert client.post("/dashboard/activations/999999/cancel").status_code == 404


# --- history and ledger --------------------------------------------------------------------


def _history_rows(user, count, service="tg", status=S.COMPLETED):
    start = utcnow() - dt.timedelta(days=1)
    for n in range(count):
        db.session.add(
            Activation(
                user_id=user.id,
                service=service,
                country_id=12,
                status=status.value,
                price=to_units("0.50"),
                upstream_name="sandbox",
                phone=f"1555{n:07d}",
                created_at=start + dt.timedelta(minutes=n),
            )
        )
    db.session.commit()


def test_history_lists_filters_and_pages(logged_in, customer, make_user):
    _history_rows(customer, 15, "tg", S.COMPLETED)
    _history_rows(customer, 10, "wa", S.CANCELLED)
    _history_rows(make_user(email="other@example.com"), 3, "go", S.COMPLETED)

    page = text_of(logged_in.get("/dashboard/history"))
    assert page.count('<tr id="activation-') == 20
    assert "Page 1 of 2" in page and 'rel="next"' in page
    assert "Google" not in page.split("<tbody>")[1]  # nobody else's rows
    page = text_of(logged_in.get("/dashboard/history?page=2"))
    assert page.count('<tr id="activation-') == 5 and 'rel="prev"' in page

    page = text_of(logged_in.get("/dashboard/history?status=cancelled"))
    assert page.count('<tr id="activation-') == 10
    assert "Cancelled, refunded" in page and "Page 1 of" not in page
    page = text_of(logged_in.get("/dashboard/history?service=tg"))
    assert page.count('<tr id="activation-') == 15
    assert 'href="/dashboard/history?service=tg&amp;page=2"' not in page  # 15 fit on one page
    page = text_of(logged_in.get("/dashboard/history?service=tg&status=cancelled"))
    assert "No activation matches these filters" in page
    # Nonsense filters and pages fall back to everything, page 1.
    page = text_of(logged_in.get("/dashboard/history?status=nope&service=go&page=x"))
    assert page.count('<tr id="activation-') == 20
    page = text_of(logged_in.get("/dashboard/history?page=99"))
    assert '<tr id="activation-' not in page


def test_history_keeps_filters_across_pages(logged_in, customer):
    _history_rows(customer, 25, "tg", S.COMPLETED)
    page = text_of(logged_in.get("/dashboard/history?service=tg"))
    assert 'href="/dashboard/history?service=tg&amp;page=2"' in page


def test_ledger_shows_every_change_with_the_running_balance(logged_in, customer, clock):
    buy(logged_in, "ot", "12")
    cancelled = latest_activation(customer.id)
    clock.travel(121)
    post_action(logged_in, cancelled.id, "cancel")
    buy(logged_in, "tg", "12")
    kept = latest_activation(customer.id)

    page = text_of(logged_in.get("/dashboard/ledger"))
    rows = re.findall(
        r"<tr>\s*<td><time[^>]*>[^<]+</time></td>\s*<td>([^<]+)</td>(.*?)</tr>", page, re.S
    )
    assert [label for label, _ in rows] == ["Number bought", "Refund", "Number bought", "Top-up"]
    entries = db.session.execute(
        select(LedgerEntry)
        .where(LedgerEntry.user_id == customer.id)
        .order_by(LedgerEntry.id.desc())
    ).scalars()
    for (_, cells), entry in zip(rows, entries, strict=True):
        assert f"{format_amount(entry.balance_after)} USD</td>" in cells
        assert f"{format_amount(abs(entry.amount))} USD</td>" in cells
    assert f"#{kept.id} Telegram, USA (virtual), +{kept.phone}" in page
    assert f"#{cancelled.id} Any other" in page
    assert "test balance" in page  # the operator's note on the top-up


def test_ledger_pages(logged_in, customer):
    from reseller.services import wallet

    for _ in range(30):
        wallet.adjust(customer.id, to_units("0.01"), note="cent")
    page = text_of(logged_in.get("/dashboard/ledger"))
    assert "Page 1 of 2" in page
    page = text_of(logged_in.get("/dashboard/ledger?page=2"))
    assert page.count("<time") == 6


# --- account -------------------------------------------------------------------------------


def test_account_shows_key_and_regenerates_back_to_account(logged_in, customer):
    page = text_of(logged_in.get("/dashboard/account"))
    key = accounts.reveal_api_key(customer)
    assert f'<code id="api-key-value" class="key">{key}</code>' in page
    assert 'data-copy="#api-key-value"' in page
    assert 'action="/docs/api-key/regenerate"' in page
    assert '<input type="hidden" name="back" value="account">' in page
    assert 'href="/docs"' in page

    response = logged_in.post("/docs/api-key/regenerate", data={"back": "account"})
    assert response.status_code == 302 and response.location.endswith("/dashboard/account")
    db.session.expire_all()
    new_key = accounts.reveal_api_key(db.session.get(User, customer.id))
    assert new_key != key
    assert new_key in text_of(logged_in.get("/dashboard/account"))


def _change(client, current, new, repeat=None):
    return client.post(
        "/dashboard/account",
        data={
            "current_password": current,
            "new_password": new,
            "new_password2": new if repeat is None else repeat,
        },
        follow_redirects=True,
    )


def test_change_password(client, auth, customer):
    auth.login(customer.email)
    page = text_of(_change(client, "wrong-password", "new-password-1"))
    assert "This is not your current password." in page
    page = text_of(_change(client, "password123", "new-password-1", "other-password"))
    assert "The new passwords do not match." in page
    page = text_of(_change(client, "password123", "short"))
    assert "Use at least 8 characters." in page
    assert accounts.authenticate(customer.email, "password123") is not None

    page = text_of(_change(client, "password123", "new-password-1"))
    assert "Your password is changed." in page
    assert accounts.authenticate(customer.email, "password123") is None
    assert accounts.authenticate(customer.email, "new-password-1") is not None
    auth.logout()
    response = auth.login(customer.email, "new-password-1")
    assert response.status_code == 302


def test_feed_ignores_ids_past_the_id_column(logged_in):
    """No id of ours exceeds the 32-bit column: such an id is left out, not compared (on
    PostgreSQL the comparison itself would fail the request)."""
    data = feed(logged_in, ids="2147483648,99999999999999,1")
    assert data["activations"] == []
