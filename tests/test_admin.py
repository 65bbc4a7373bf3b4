"""The operator console: customers, activations, pricing pages, settings, the audit log
and the overview's upstream balance."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import AuditLog, LedgerEntry, PricingRule, Service, User
from reseller.money import parse_amount
from reseller.money import to_units as units
from reseller.services import accounts, settings
from reseller.services.provider import raw_upstream
from reseller.upstream import errors as up
from tests.conftest import ADMIN_EMAIL, Api, api_key_of

ADMIN = ADMIN_EMAIL  # the `boss` fixture's account (tests/conftest.py)


def audit_rows(action: str | None = None) -> list[AuditLog]:
    stmt = select(AuditLog).order_by(AuditLog.id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    return list(db.session.execute(stmt).scalars())


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def page(response) -> str:
    return response.get_data(as_text=True)


# --- credit and debit ------------------------------------------------------------------


def test_credit_and_debit_leave_ledger_rows_naming_the_admin(client, runner, boss, customer):
    url = f"/admin/customers/{customer.id}/credit"
    response = client.post(url, data={"amount": "10.50", "note": "paid by wire #77"})
    assert response.status_code == 302
    assert response.location == f"/admin/customers/{customer.id}"
    assert (
        client.post(url, data={"amount": "-2.25", "note": "goodwill reversed"}).status_code == 302
    )

    assert fresh(customer).balance == parse_amount("18.25")
    rows = list(
        db.session.execute(
            select(LedgerEntry).where(LedgerEntry.actor_id.is_not(None)).order_by(LedgerEntry.id)
        ).scalars()
    )
    assert [(r.amount, r.kind, r.note, r.actor_id) for r in rows] == [
        (105_000, "topup", "paid by wire #77", boss.id),
        (-22_500, "adjustment", "goodwill reversed", boss.id),
    ]
    credit, debit = audit_rows("wallet.credit") + audit_rows("wallet.debit")
    assert credit.actor_id == boss.id and credit.target == f"user:{customer.id}"
    assert json.loads(credit.before) == {"balance": "10.00"}
    assert json.loads(credit.after)["balance"] == "20.50"
    assert json.loads(debit.after) == {
        "amount": "-2.25",
        "balance": "18.25",
        "note": "goodwill reversed",
    }

    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output

    shown = page(client.get(f"/admin/customers/{customer.id}"))
    assert "paid by wire #77" in shown and ADMIN in shown and "18.25" in shown


def test_credit_form_errors_are_friendly(client, boss, customer):
    for amount, note, message in (
        ("ten", "x", "not an amount"),
        ("1.005", "x", "more than two decimals"),
        ("0", "x", "must not be zero"),
        ("", "x", "Enter an amount"),
        ("5.00", "", "A note is required"),
        ("5.00", "   ", "A note is required"),
        ("-10.01", "too much", "Cannot debit 10.01: the balance is 10.00"),
    ):
        response = client.post(
            f"/admin/customers/{customer.id}/credit", data={"amount": amount, "note": note}
        )
        assert response.status_code == 400, amount
        assert message in page(response), amount
        assert 'value="Apply"' in page(response)
    assert fresh(customer).balance == parse_amount("10.00")
    assert audit_rows() == []


# --- account actions ---------------------------------------------------------------------


def switch_to(auth, email: str) -> None:
    """Log out and in as someone else. (One client: the test's requests share one app
    context, so a second client would see the first one's user cached in `g`.)"""
    auth.logout()
    assert auth.login(email).status_code == 302


def test_disable_and_enable_an_account(client, auth, boss, customer):
    key = api_key_of(customer)
    response = client.post(f"/admin/customers/{customer.id}/disable")
    assert response.status_code == 302
    assert not fresh(customer).active
    assert Api(client, key).text("getBalance") == "ACCOUNT_INACTIVE"
    auth.logout()
    login = auth.login(customer.email)
    assert login.status_code == 200 and "disabled" in page(login)

    assert auth.login(ADMIN).status_code == 302
    client.post(f"/admin/customers/{customer.id}/enable")
    assert fresh(customer).active
    assert Api(client, key).text("getBalance") == "ACCESS_BALANCE:10.00"
    assert [(r.action, r.actor_id) for r in audit_rows()] == [
        ("user.disable", boss.id),
        ("user.enable", boss.id),
    ]


def test_an_admin_cannot_disable_or_demote_themselves(client, boss):
    response = client.post(f"/admin/customers/{boss.id}/disable", follow_redirects=True)
    assert "cannot disable your own account" in page(response)
    response = client.post(f"/admin/customers/{boss.id}/revoke-admin", follow_redirects=True)
    assert "cannot revoke your own admin rights" in page(response)
    me = fresh(boss)
    assert me.active and me.is_admin
    assert audit_rows() == []
    # Their own page offers neither button.
    own = page(client.get(f"/admin/customers/{boss.id}"))
    assert f"/admin/customers/{boss.id}/disable" not in own
    assert f"/admin/customers/{boss.id}/revoke-admin" not in own


def test_grant_and_revoke_admin(client, auth, boss, customer):
    switch_to(auth, customer.email)
    assert client.get("/admin").status_code == 403

    switch_to(auth, ADMIN)
    client.post(f"/admin/customers/{customer.id}/grant-admin")
    assert fresh(customer).is_admin
    switch_to(auth, customer.email)
    assert client.get("/admin").status_code == 200

    switch_to(auth, ADMIN)
    client.post(f"/admin/customers/{customer.id}/revoke-admin")
    assert not fresh(customer).is_admin
    switch_to(auth, customer.email)
    assert client.get("/admin").status_code == 403
    assert [r.action for r in audit_rows()] == ["user.grant_admin", "user.revoke_admin"]


def test_regenerate_the_api_key(client, boss, customer):
    old_key = api_key_of(customer)
    client.post(f"/admin/customers/{customer.id}/regenerate-key")
    new_key = api_key_of(fresh(customer))
    assert new_key != old_key
    assert Api(client, old_key).text("getBalance") == "BAD_KEY"
    assert Api(client, new_key).text("getBalance") == "ACCESS_BALANCE:10.00"
    (row,) = audit_rows("user.regenerate_api_key")
    assert old_key not in (row.after or "") and new_key not in (row.after or "")


# --- lists -------------------------------------------------------------------------------


def _bare_user(email: str, balance: int = 0) -> User:
    """An account without password hashing (fast), for list tests."""
    user = User(
        email=email,
        password_hash="!",
        api_key_hash=accounts.api_key_digest(email),
        api_key_encrypted="!",
        balance=balance,
    )
    db.session.add(user)
    return user


def test_customers_search_and_pages(client, boss):
    for n in range(60):
        _bare_user(f"shop{n:02d}@example.com")
    _bare_user("needle@example.org", balance=123_400)
    db.session.commit()

    first = page(client.get("/admin/customers"))
    assert "62 accounts" in first and "Page 1 of 2" in first
    assert "needle@example.org" in first  # newest first
    second = page(client.get("/admin/customers?page=2"))
    assert "shop00@example.com" in second and "needle@example.org" not in second

    found = page(client.get("/admin/customers?q=NEEDLE"))
    assert "1 account " in found and "needle@example.org" in found and "12.34" in found
    assert "shop01@example.com" not in found
    # LIKE wildcards in the search are taken literally.
    assert "0 accounts" in page(client.get("/admin/customers?q=%25"))


@pytest.fixture
def two_activations(api, clock):
    """#1: tg/us with a code; #2: ot/gb (never gets one), still waiting."""
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:1:")
    assert api.text("getNumber", service="ot", country="gb").startswith("ACCESS_NUMBER:2:")
    clock.travel(6)
    assert api.text("getStatus", id="1").startswith("STATUS_OK:")
    return api


def _ids_listed(html: str) -> set[int]:
    import re

    return {int(n) for n in re.findall(r'href="/admin/activations/(\d+)"', html)}


def test_activation_filters(client, boss, customer, two_activations):
    for query, expected in (
        ("", {1, 2}),
        ("status=code_received", {1}),
        ("status=allocated", {2}),
        ("service=ot", {2}),
        ("country=gb", {2}),
        ("country=187", {1}),
        ("email=customer%40example", {1, 2}),
        ("email=nobody", set()),
        (f"user={customer.id}", {1, 2}),
        (f"user={boss.id}", set()),
        ("status=allocated&service=tg", set()),
    ):
        listed = _ids_listed(page(client.get(f"/admin/activations?{query}")))
        assert listed == expected, query


def test_activation_filters_are_choices_with_names(client, boss, customer, two_activations):
    from reseller.models import Activation

    shown = page(client.get("/admin/activations"))
    assert '<select id="service" name="service">' in shown
    assert '<option value="tg">Telegram (tg)</option>' in shown
    assert '<option value="187">USA (187)</option>' in shown
    assert '<option value="sandbox">Sandbox</option>' in shown
    assert '<option value="code_received">Code received</option>' in shown
    # The list names services and countries and says statuses in words.
    row = shown.split('href="/admin/activations/1"')[1].split("</tr>")[0]
    assert "<td>Telegram</td><td>USA</td>" in row and ">Code received</span>" in row

    # By phone: any digits of the number, typed as people type them.
    phone = db.session.get(Activation, 2).phone
    spaced = f"+{phone[:3]} {phone[3:6]}-{phone[6:]}"
    assert _ids_listed(page(client.get("/admin/activations", query_string={"phone": spaced}))) == {
        2
    }
    assert _ids_listed(page(client.get(f"/admin/activations?phone={phone[-4:]}"))) >= {2}
    assert _ids_listed(page(client.get("/admin/activations?phone=000000000000"))) == set()


def test_customers_found_by_phone_and_by_the_end_of_their_api_key(
    client, boss, customer, two_activations, make_user
):
    from reseller.models import Activation

    other = make_user(email="other@example.com")
    key = api_key_of(customer)
    for ending in (key[-4:], key[-9:], key[-12:]):
        found = page(client.get("/admin/customers", query_string={"key": ending}))
        assert "1 account found" in found and "customer@example.com" in found, ending
    whole = client.get("/admin/customers", query_string={"key": key})
    assert whole.status_code == 400 and "last 4 to 12 characters only" in page(whole)
    assert key not in page(whole)  # never shown back whole
    assert "other@example.com" not in page(client.get(f"/admin/customers?key={key[-4:]}"))
    assert "0 accounts found" in page(client.get(f"/admin/customers?key=x{key[-6:]}"))
    short = client.get(f"/admin/customers?key={key[-3:]}")
    assert short.status_code == 400 and "at least 4 characters" in page(short)

    phone = db.session.get(Activation, 1).phone
    found = page(client.get(f"/admin/customers?phone={phone}"))
    assert "customer@example.com" in found and other.email not in found


def test_key_tails_of_older_keys_are_filled_by_a_command(client, boss, customer, runner):
    key = api_key_of(customer)
    fresh(customer).api_key_tail = None
    db.session.commit()
    assert "0 accounts found" in page(client.get(f"/admin/customers?key={key[-6:]}"))
    result = runner.invoke(args=["users", "fill-key-tails"])
    assert result.exit_code == 0 and "key tail(s) filled" in result.output
    assert "1 account found" in page(client.get(f"/admin/customers?key={key[-6:]}"))


def test_a_customer_page_shows_names_and_payments(client, boss, customer, two_activations):
    from reseller.services import payments

    urls = payments.Urls("http://x/callback", "http://x/topup", "http://x/")
    payments.start_topup(fresh(customer), units("5.00"), "sandbox", urls)
    shown = page(client.get(f"/admin/customers/{customer.id}"))
    recent = shown.split('id="activations-heading"')[1]
    assert "<td>Telegram</td><td>USA</td>" in recent
    listed = shown.split('id="payments-heading"')[1].split("</section>")[0]
    assert "Payment #1" in listed and "5.00 USD" in listed
    # The ledger says what each row was, in words, and links what it was for.
    ledger = shown.split('id="ledger-heading"')[1].split("</section>")[0]
    assert "<td>Credit by an operator</td>" in ledger and "<td>Number bought</td>" in ledger
    assert ">Activation #1</a>" in ledger


def test_activation_date_filter_and_bad_input(client, boss, two_activations, clock):
    from reseller.clock import utcnow

    today = utcnow().date()
    tomorrow = today.fromordinal(today.toordinal() + 1)
    yesterday = today.fromordinal(today.toordinal() - 1)
    listed = page(client.get(f"/admin/activations?created_from={today}&created_to={today}"))
    assert _ids_listed(listed) == {1, 2}
    assert _ids_listed(page(client.get(f"/admin/activations?created_from={tomorrow}"))) == set()
    assert _ids_listed(page(client.get(f"/admin/activations?created_to={yesterday}"))) == set()
    bad = page(client.get("/admin/activations?country=atlantis&created_from=someday"))
    assert "Unknown country" in bad and "Not a valid date" in bad
    assert _ids_listed(bad) == set()


def test_activation_detail(client, boss, two_activations):
    from reseller.models import Activation

    item = db.session.get(Activation, 1)
    shown = page(client.get("/admin/activations/1"))
    for text in (
        "Activation #1",
        item.upstream_id,
        item.phone,
        "1.69",  # price: 1.30 + 30 %
        "1.30",  # upstream cost
        item.code,
        "customer@example.com",
        "Telegram",
    ):
        assert text in shown, text
    timeline = shown.split("Timeline")[1]
    assert (
        timeline.index(">Buying<")
        < timeline.index(">Waiting for the SMS<")
        < timeline.index(">Code received<")
    )
    assert client.get("/admin/activations/999").status_code == 404


# --- pricing -----------------------------------------------------------------------------


def test_a_rule_set_in_the_console_applies_on_the_api_at_once(client, boss, api):
    assert api.json("getPrices", service="tg", country="us") == {
        "187": {"tg": {"cost": 1.69, "count": 606}}
    }
    response = client.post(
        "/admin/pricing/rules",
        data={"service": "tg", "country": "us", "kind": "fixed", "value": "2.50"},
    )
    assert response.status_code == 302
    assert api.json("getPrices", service="tg", country="us")["187"]["tg"]["cost"] == 2.5
    rule = db.session.execute(select(PricingRule)).scalar_one()

    client.post(f"/admin/pricing/rules/{rule.id}", data={"kind": "markup", "value": "100"})
    assert api.json("getPrices", service="tg", country="us")["187"]["tg"]["cost"] == 2.6

    client.post(f"/admin/pricing/rules/{rule.id}/delete")
    assert api.json("getPrices", service="tg", country="us")["187"]["tg"]["cost"] == 1.69
    assert [r.action for r in audit_rows()] == [
        "pricing.rule_set",
        "pricing.rule_update",
        "pricing.rule_delete",
    ]
    assert json.loads(audit_rows()[1].before)["fixed_price"] == "2.50"


def test_adding_a_rule_for_an_existing_scope_replaces_it(client, boss, stocked):
    for value in ("10", "20"):
        client.post(
            "/admin/pricing/rules",
            data={"service": "", "country": "de", "kind": "markup", "value": value},
        )
    rule = db.session.execute(select(PricingRule)).scalar_one()
    assert (rule.service, rule.country_id, float(rule.markup_percent)) == (None, 43, 20.0)


def test_rule_form_errors(client, boss, stocked):
    for data, message in (
        ({"service": "zz", "country": "us", "value": "10"}, "Unknown service"),
        ({"service": "tg", "country": "atlantis", "value": "10"}, "Unknown country"),
        ({"service": "", "country": "*", "value": "10"}, "needs a service, a country or both"),
        ({"service": "tg", "country": "us", "value": "ten"}, "not a percentage"),
        ({"service": "tg", "country": "us", "value": "-5"}, "between 0 and 10000"),
        ({"service": "tg", "country": "us", "kind": "fixed", "value": "0"}, "above zero"),
        ({"service": "tg", "country": "us", "kind": "fixed", "value": "1.234"}, "two decimals"),
        ({"service": "tg", "country": "us", "kind": "free", "value": "1"}, "Not a valid choice"),
    ):
        response = client.post("/admin/pricing/rules", data={"kind": "markup", **data})
        assert response.status_code == 400, data
        assert message in page(response), data
    assert db.session.execute(select(func.count(PricingRule.id))).scalar_one() == 0


def test_a_fixed_price_below_cost_is_refused_until_the_loss_is_confirmed(client, boss, stocked):
    data = {"service": "tg", "country": "us", "kind": "fixed", "value": "0.50"}
    response = client.post("/admin/pricing/rules", data=data)
    assert response.status_code == 400
    notice = page(response).split('id="below-cost"')[1].split("</div>\n</div>")[0]
    # The loss is named: Telegram in USA costs 1.30, the rule asks 0.50.
    assert "under the upstream cost of 1 pair(s)" in notice and "0.80 USD" in notice
    assert "Telegram · USA: costs 1.30" in notice
    assert 'name="accept_loss"' in notice
    assert db.session.execute(select(func.count(PricingRule.id))).scalar_one() == 0
    assert audit_rows("pricing.rule_set") == []

    # A price at or above the cost needs nothing; below it, the box saves it.
    assert client.post("/admin/pricing/rules", data=data | {"accept_loss": "y"}).status_code == 302
    rule = db.session.execute(select(PricingRule)).scalar_one()
    assert rule.fixed_price == units("0.50")

    # Editing the rule asks again.
    response = client.post(
        f"/admin/pricing/rules/{rule.id}", data={"kind": "fixed", "value": "0.60"}
    )
    assert response.status_code == 400 and 'id="below-cost"' in page(response)
    db.session.expire_all()
    assert db.session.get(PricingRule, rule.id).fixed_price == units("0.50")


def test_a_service_rule_below_cost_counts_every_pair_it_governs(stocked):
    from reseller.services import admin, pricing

    found = pricing.below_cost("tg", None, fixed_price=units("0.01"))
    assert found and all(s.service == "tg" and s.loss > 0 for s in found)
    assert [s.loss for s in found] == sorted((s.loss for s in found), reverse=True)
    assert pricing.below_cost("tg", None, markup_percent=0) == []
    with pytest.raises(admin.BelowCost):
        admin.set_rule(admin.RuleScope("tg", None), fixed_price=units("0.01"), actor=None)


def test_rule_scopes_accept_names_as_well_as_codes(client, boss, stocked):
    shown = page(client.get("/admin/pricing"))
    assert '<option value="Telegram (tg)">' in shown and '<option value="USA (187)">' in shown
    assert 'list="service-options"' in shown and 'list="country-options"' in shown
    for service, country in (("Telegram", "usa"), ("Telegram (tg)", "USA (187)"), ("tg", "us")):
        data = {"service": service, "country": country, "kind": "markup", "value": "10"}
        assert client.post("/admin/pricing/rules", data=data).status_code == 302, data
    rule = db.session.execute(select(PricingRule)).scalar_one()
    assert (rule.service, rule.country_id) == ("tg", 187)
    listed = page(client.get("/admin/pricing?service=Telegram&country=USA"))
    assert "1 price." in listed


def test_the_price_table_says_when_a_price_was_raised_to_cost(client, boss, stocked):
    client.post(
        "/admin/pricing/rules",
        data={
            "service": "tg",
            "country": "us",
            "kind": "fixed",
            "value": "0.50",
            "accept_loss": "y",
        },
    )
    shown = page(client.get("/admin/pricing?service=tg&country=us"))
    row = shown.split("Price table")[1]
    assert "1.30" in row  # the upstream cost, and our price raised to it
    assert "raised to cost" in row
    assert "606" in row  # stock


def test_global_pricing_form(client, boss, api):
    response = client.post(
        "/admin/pricing/global", data={"markup_percent": "100", "minimum_price": "0.10"}
    )
    assert response.status_code == 302
    assert api.json("getPrices", service="tg", country="us")["187"]["tg"]["cost"] == 2.6
    (row,) = audit_rows()  # only the markup changed
    assert (row.action, row.target) == ("setting.update", "setting:markup_percent")
    response = client.post(
        "/admin/pricing/global", data={"markup_percent": "lots", "minimum_price": "-1"}
    )
    assert response.status_code == 400
    assert "is not a valid value" in page(response)


def test_service_and_country_switches(client, boss, api):
    client.post("/admin/pricing/services/tg/disable")
    assert api.text("getNumber", service="tg", country="us") == "BAD_SERVICE"
    assert "tg" not in api.json("getPrices", country="us")["187"]
    client.post("/admin/pricing/services/tg/enable")
    client.post("/admin/pricing/countries/187/disable")
    assert api.text("getNumber", service="tg", country="us") == "BAD_COUNTRY"
    client.post("/admin/pricing/countries/187/enable")
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:")
    assert [r.action for r in audit_rows()] == [
        "service.disable",
        "service.enable",
        "country.disable",
        "country.enable",
    ]
    assert client.post("/admin/pricing/services/nope/disable").status_code == 404


def test_refresh_from_upstream(client, boss, app):
    assert db.session.execute(select(func.count()).select_from(Service)).scalar_one() == 0
    response = client.post("/admin/pricing/refresh", follow_redirects=True)
    assert "refreshed from the upstream" in page(response)
    assert db.session.execute(select(func.count()).select_from(Service)).scalar_one() > 0
    assert "Telegram" in page(client.get("/admin/pricing"))
    (row,) = audit_rows("pricing.refresh")
    assert json.loads(row.after) == {"errors": [], "refreshed": True}


def test_refresh_when_the_upstream_fails(client, boss, monkeypatch):
    def down(*args, **kwargs):
        raise up.UpstreamUnavailable()

    monkeypatch.setattr(raw_upstream(), "get_services", down)
    response = client.post("/admin/pricing/refresh", follow_redirects=True)
    assert response.status_code == 200
    assert "The upstream did not answer" in page(response)


# --- settings ----------------------------------------------------------------------------


def test_settings_page_edits_every_setting(client, boss):
    new = {
        "site_name": "Numbers & Co",
        "support_contact": "help@example.com",
        "topup_instructions": "Pay by wire.\nMention your email.",
        "rent_markup_percent": "60",
        "activation_lifetime": "900",
        "early_cancel_window": "60",
        "max_active_activations": "5",
        "poll_interval": "4",
        "default_country": "gb",
        "low_balance_threshold": "50.00",
        "payment_gateways": "sandbox",
        "topup_minimum": "2.00",
        "topup_maximum": "500.00",
        "topup_presets": "5, 20",
        "topup_bonus_percent": "5",
        "topup_bonus_threshold": "150.00",
        "routing_policy": "cheapest",
        "serve_at_loss": "yes",
        "show_provider_names": "no",
        "terms_text": "Our terms.\nSecond paragraph.",
        "privacy_text": "Our privacy policy.",
    }
    # Every setting but the Pricing page's two.
    assert set(new) == {spec.key for spec in settings.SPECS} - {"markup_percent", "minimum_price"}
    form = page(client.get("/admin/settings"))
    assert 'name="markup_percent"' not in form and 'name="minimum_price"' not in form
    sections = [
        part.split('">', 1)[1].split("</h2>")[0] for part in form.split('<h2 id="settings-')[1:]
    ]
    assert sections == ["Pricing and providers", "Activations", "Top-ups", "Site texts"]
    texts = form.split('id="settings-texts"')[1].split("</section>")[0]
    assert 'name="site_name"' in texts and 'name="support_contact"' in texts
    topups = form.split('id="settings-topups"')[1].split("</section>")[0]
    assert 'name="topup_presets"' in topups and 'name="poll_interval"' not in topups
    response = client.post("/admin/settings", data=new | {"markup_percent": "99"})
    assert response.status_code == 302
    settings.forget()
    assert settings.get("site_name") == "Numbers & Co"
    assert settings.get("activation_lifetime") == 900
    assert settings.get("markup_percent") == 30.0  # not this page's field: left alone
    assert settings.get("default_country") == 16
    rows = audit_rows("setting.update")
    assert {r.target for r in rows} == {f"setting:{key}" for key in new}
    lifetime = next(r for r in rows if r.target == "setting:activation_lifetime")
    assert json.loads(lifetime.before) == {"activation_lifetime": "1200"}
    assert json.loads(lifetime.after) == {"activation_lifetime": "900"}
    shown = page(client.get("/admin/settings"))
    assert "Numbers &amp; Co" in shown and "Mention your email." in shown


def test_invalid_settings_are_refused_with_nothing_stored(client, boss):
    data = {spec.key: settings.raw_value(spec.key) for spec in settings.SPECS}
    data |= {"site_name": "Changed", "activation_lifetime": "5", "poll_interval": "often"}
    response = client.post("/admin/settings", data=data)
    assert response.status_code == 400
    assert "at least 60" in page(response) and "is not a valid value" in page(response)
    settings.forget()
    assert settings.get("site_name") != "Changed"
    assert audit_rows() == []


# --- the audit log -----------------------------------------------------------------------


def test_audit_log_lists_and_filters(client, boss, customer, make_user):
    other = make_user(email="second@example.com", is_admin=True)
    client.post(f"/admin/customers/{customer.id}/disable")
    client.post(f"/admin/customers/{customer.id}/enable")
    from reseller.services import admin as admin_service

    admin_service.set_admin(customer, True, other)

    everything = page(client.get("/admin/audit"))
    assert everything.count("<code>user.") == 3
    assert "second@example.com" in everything
    only_disable = page(client.get("/admin/audit?action=user.disable"))
    assert only_disable.count("<code>user.") == 1
    by_other = page(client.get(f"/admin/audit?actor={other.id}"))
    assert by_other.count("<code>user.") == 1 and "user.grant_admin" in by_other
    assert page(client.get("/admin/audit?actor=0")).count("<code>user.") == 0


# --- overview and the upstream balance -----------------------------------------------------


def _count_balance_calls(monkeypatch, answer=None, error=None):
    provider = raw_upstream()
    real = provider.get_balance
    calls = []

    def counted():
        calls.append(1)
        if error is not None:
            raise error
        return answer if answer is not None else real()

    monkeypatch.setattr(provider, "get_balance", counted)
    return calls


def test_overview_shows_the_upstream_balance_asking_at_most_once_a_minute(
    client, boss, clock, monkeypatch
):
    calls = _count_balance_calls(monkeypatch)
    shown = page(client.get("/admin"))
    assert "1000.00" in shown and "Low upstream balance" not in shown
    client.get("/admin")
    client.get("/admin/customers")
    assert len(calls) == 1
    clock.travel(61)
    client.get("/admin")
    assert len(calls) == 2


def banner(html: str) -> str:
    """The provider banner's text ("" when there is none)."""
    if 'id="provider-banner"' not in html:
        return ""
    return html.split('id="provider-banner"')[1].split("</div>")[0]


def test_an_unreachable_upstream_is_shown_in_words_not_a_500(client, boss, monkeypatch):
    _count_balance_calls(
        monkeypatch,
        error=up.UpstreamUnavailable("sandbox getBalance: connection refused at 127.0.0.1:5999"),
    )
    response = client.get("/admin")
    assert response.status_code == 200
    shown = banner(page(response))
    # The banner names the provider, links to its card and says why in words.
    assert 'href="/admin/providers#provider-sandbox">Sandbox</a>' in shown
    assert "connection refused at 127.0.0.1:5999" in shown and "unreachable" in shown
    # The card below the same banner on the Providers page tells the same story.
    providers = page(client.get("/admin/providers"))
    assert "connection refused at 127.0.0.1:5999" in banner(providers)
    card = providers.split('id="provider-sandbox"')[1].split("</section>")[0]
    assert 'data-health="unreachable"' in providers and ">unreachable</span>" in card
    assert "connection refused at 127.0.0.1:5999" in card
    # The other console pages carry no banner.
    for url in ("/admin/settings", "/admin/customers", "/admin/pricing", "/admin/audit"):
        assert banner(page(client.get(url))) == "", url


def test_a_misbehaving_provider_is_not_a_500_either(client, boss, monkeypatch):
    _count_balance_calls(monkeypatch, error=ValueError("garbage with a secret"))
    response = client.get("/admin")
    assert response.status_code == 200
    assert "ValueError" in page(response) and "secret" not in page(response)


def test_low_balance_warning_on_the_overview_and_providers_pages(client, boss, monkeypatch):
    from decimal import Decimal

    _count_balance_calls(monkeypatch, answer=Decimal("4.99"))
    for url in ("/admin", "/admin/providers"):
        shown = banner(page(client.get(url)))
        assert "Sandbox" in shown and "4.99 USD, below the warning threshold" in shown, url
    assert banner(page(client.get("/admin/customers"))) == ""
    settings.store("low_balance_threshold", "4.00")
    db.session.commit()
    assert banner(page(client.get("/admin"))) == ""


def test_admin_pages_need_no_script_and_no_external_assets(client, boss, two_activations):
    import re

    for url in ("/admin", "/admin/customers", "/admin/activations", "/admin/pricing"):
        shown = page(client.get(url))
        assert re.findall(r"<script\b[^>]*>", shown) == [
            '<script src="/static/site.js" defer>',
            '<script src="/static/console.js" defer>',
        ]
        assert not re.search(r'(src|href)="(https?:)?//', shown), url
    assert "<svg" in page(client.get("/admin")) and "<polyline" in page(client.get("/admin"))


def test_the_overview_sets_what_wallets_hold_against_the_providers(
    client, boss, make_user, monkeypatch
):
    from decimal import Decimal

    _count_balance_calls(monkeypatch, answer=Decimal("30.00"))
    make_user(balance="20.00")
    shown = page(client.get("/admin"))
    assert '<td class="num" id="owed"><strong>20.00</strong>' in shown
    assert '<td class="num" id="held"><strong>30.00</strong>' in shown
    assert 'id="funding-warning"' not in shown and "covers the wallets" in shown

    make_user(balance="15.50")  # wallets now 35.50 against 30.00 held
    shown = page(client.get("/admin"))
    warning = shown.split('id="funding-warning"')[1].split("</p>")[0]
    assert "wallets exceed what the providers hold" in warning and "5.50 USD" in warning


def test_provider_balances_are_converted_at_their_rate(client, boss, monkeypatch):
    from decimal import Decimal

    from reseller.services import provider_admin
    from reseller.services.provider import ensure_default

    ensure_default()
    provider_admin.update(provider_admin.get("sandbox"), currency="RUB", rate="0.01")
    _count_balance_calls(monkeypatch, answer=Decimal("2500"))
    shown = page(client.get("/admin"))
    row = shown.split('data-provider="sandbox"')[1].split("</tr>")[0]
    assert "2500 RUB" in row and "25.00" in row and "1 RUB = 0.01" in row
    assert '<td class="num" id="held"><strong>25.00</strong>' in shown


def test_the_overview_counts_customers(client, boss, make_user, clock):
    old = make_user(email="old@example.com")
    clock.travel(10 * 86400)
    make_user(email="new@example.com")
    fresh(old).active = False
    db.session.commit()
    shown = page(client.get("/admin"))
    section = shown.split('id="customer-figures"')[1].split("</section>")[0]
    assert "<strong>2</strong> customer accounts, 1 disabled" in section
    new_row = section.split("New sign-ups")[1].split("</tr>")[0]
    assert new_row.count('<td class="num">1</td>') == 2 and '<td class="num">2</td>' in new_row


def test_purchases_means_a_count_of_numbers_everywhere(client, boss, two_activations):
    import re

    for url in ("/admin", "/admin/providers"):
        shown = page(client.get(url))
        assert ">Purchases (numbers)<" in shown, url
        assert re.findall(r">Purchases(?! \(numbers\))", shown) == [], url
    assert ">Charged for numbers (USD)<" in page(client.get("/admin"))
