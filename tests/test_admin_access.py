"""Who may use the console: the authorization matrix over every admin route and action,
and CSRF on every admin form."""

from __future__ import annotations

import re

import pytest
from flask import g
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import AuditLog, LedgerEntry, Payment, PricingRule
from reseller.services import accounts, catalog, settings
from reseller.services.provider import upstream
from tests.conftest import AuthActions, make_config, reset_database

ADMIN = "boss@example.com"
CUSTOMER = "customer@example.com"


def _settings_form() -> dict[str, str]:
    values = {spec.key: settings.raw_value(spec.key) for spec in settings.SPECS}
    return values | {"site_name": "Matrix Numbers"}


# Every admin endpoint and method, in an order in which an admin can run them all one
# after the other (so that one test walks the lot). `{customer}`, `{activation}`, `{rule}`
# and `{payment}` are filled in from the `console` fixture; data may be a callable.
ROUTES: list[tuple[str, str, str, object]] = [
    ("admin.index", "GET", "/admin", None),
    ("admin.customers", "GET", "/admin/customers?q=example", None),
    ("admin.customer", "GET", "/admin/customers/{customer}", None),
    (
        "admin.customer_credit",
        "POST",
        "/admin/customers/{customer}/credit",
        {"amount": "1.00", "note": "matrix"},
    ),
    ("admin.customer_active", "POST", "/admin/customers/{customer}/disable", {}),
    ("admin.customer_active", "POST", "/admin/customers/{customer}/enable", {}),
    ("admin.customer_admin", "POST", "/admin/customers/{customer}/grant-admin", {}),
    ("admin.customer_admin", "POST", "/admin/customers/{customer}/revoke-admin", {}),
    ("admin.customer_regenerate_key", "POST", "/admin/customers/{customer}/regenerate-key", {}),
    ("admin.activations", "GET", "/admin/activations?status=allocated", None),
    ("admin.activation", "GET", "/admin/activations/{activation}", None),
    ("admin.rents_page", "GET", "/admin/rents?status=active", None),
    ("admin.rent_detail", "GET", "/admin/rents/{rental}", None),
    ("admin.payments_page", "GET", "/admin/payments?status=pending", None),
    ("admin.payment", "GET", "/admin/payments/{payment}", None),
    ("admin.payment_check", "POST", "/admin/payments/{payment}/check", {}),
    ("admin.payment_refund", "POST", "/admin/payments/{payment}/refund", {}),
    ("admin.broadcast_page", "GET", "/admin/broadcast", None),
    ("admin.broadcast_page", "POST", "/admin/broadcast", {"text": "Hello"}),
    ("admin.pricing_page", "GET", "/admin/pricing?service=tg", None),
    (
        "admin.pricing_global",
        "POST",
        "/admin/pricing/global",
        {"markup_percent": "25", "minimum_price": "0.10"},
    ),
    (
        "admin.rule_create",
        "POST",
        "/admin/pricing/rules",
        {"service": "wa", "country": "us", "kind": "markup", "value": "40"},
    ),
    ("admin.rule_edit", "GET", "/admin/pricing/rules/{rule}", None),
    ("admin.rule_edit", "POST", "/admin/pricing/rules/{rule}", {"kind": "fixed", "value": "3"}),
    ("admin.rule_delete", "POST", "/admin/pricing/rules/{rule}/delete", {}),
    ("admin.service_switch", "POST", "/admin/pricing/services/tg/disable", {}),
    ("admin.service_switch", "POST", "/admin/pricing/services/tg/enable", {}),
    ("admin.country_switch", "POST", "/admin/pricing/countries/187/disable", {}),
    ("admin.country_switch", "POST", "/admin/pricing/countries/187/enable", {}),
    ("admin.pricing_refresh", "POST", "/admin/pricing/refresh", {}),
    ("admin.settings_page", "GET", "/admin/settings", None),
    ("admin.settings_page", "POST", "/admin/settings", _settings_form),
    ("admin.providers_page", "GET", "/admin/providers", None),
    (
        "admin.provider_add",
        "POST",
        "/admin/providers",
        {
            "name": "spare",
            "protocol": "sandbox",
            "priority": "5",
            "currency": "USD",
            "rate": "1",
        },
    ),
    ("admin.provider_edit", "GET", "/admin/providers/spare", None),
    (
        "admin.provider_edit",
        "POST",
        "/admin/providers/spare",
        {"display_name": "Spare", "priority": "7", "currency": "USD", "rate": "1"},
    ),
    ("admin.provider_action", "POST", "/admin/providers/spare/disable", {}),
    ("admin.provider_action", "POST", "/admin/providers/spare/enable", {}),
    ("admin.provider_action", "POST", "/admin/providers/spare/remove", {}),
    ("admin.audit_log", "GET", "/admin/audit?action=user.disable", None),
]
POSTS = [route for route in ROUTES if route[1] == "POST"]


@pytest.fixture
def console(customer, api, make_user):
    """An admin, a customer with an activation, and a pricing rule."""
    admin = make_user(email=ADMIN, is_admin=True)
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:")
    rented = api("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    rule = PricingRule(service="tg", country_id=187, markup_percent=50)
    db.session.add(rule)
    db.session.commit()
    return {
        "admin": admin,
        "customer": customer.id,
        "activation": 1,
        "rental": rented["phone"]["id"],
        "rule": rule.id,
        "payment": _payment(customer.id),
    }


def _payment(user_id: int) -> int:
    payment = Payment(
        user_id=user_id, gateway="sandbox", amount=100_000, currency="USD", invoice_id="sbx_m"
    )
    db.session.add(payment)
    db.session.commit()
    return payment.id


def _request(client, method, path, data, ids):
    url = path.format(**ids)
    if method == "GET":
        return client.get(url)
    return client.post(url, data=data() if callable(data) else data)


def _audit_rows() -> int:
    return db.session.execute(select(func.count(AuditLog.id))).scalar_one()


def test_the_matrix_covers_every_admin_route(app):
    served = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == {(endpoint, method) for endpoint, method, _path, _data in ROUTES}


def test_anonymous_visitors_are_sent_to_the_login_page(client, console):
    for _endpoint, method, path, data in ROUTES:
        response = _request(client, method, path, data, console)
        assert response.status_code == 302, (method, path)
        assert response.location.startswith("/login?next="), (method, path)
    assert _audit_rows() == 0


def test_customers_are_refused(client, auth, console):
    auth.login(CUSTOMER)
    for _endpoint, method, path, data in ROUTES:
        response = _request(client, method, path, data, console)
        assert response.status_code == 403, (method, path)
    assert _audit_rows() == 0


def test_an_admin_disabled_mid_session_is_logged_out(client, auth, console):
    auth.login(ADMIN)
    assert client.get("/admin").status_code == 200
    console["admin"].active = False
    db.session.commit()
    response = client.get("/admin")
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_admins_may_do_everything(client, auth, console):
    auth.login(ADMIN)
    for _endpoint, method, path, data in ROUTES:
        audited = _audit_rows()
        response = _request(client, method, path, data, console)
        expected = 200 if method == "GET" else 302
        assert response.status_code == expected, (method, path, response.get_data(as_text=True))
        if method == "POST":  # every action leaves its audit row
            assert _audit_rows() > audited, path


def test_the_admin_link_shows_for_admins_only(client, auth, console):
    auth.login(CUSTOMER)
    assert 'href="/admin"' not in client.get("/").get_data(as_text=True)
    auth.logout()
    auth.login(ADMIN)
    assert 'href="/admin"' in client.get("/").get_data(as_text=True)


# --- CSRF -----------------------------------------------------------------------------------


@pytest.fixture
def csrf_app(tmp_path):
    from reseller import create_app

    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        reset_database()
        catalog.refresh(upstream())
        yield app
        db.session.remove()
        db.engine.dispose()


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


@pytest.fixture
def csrf_console(csrf_app):
    admin = accounts.create_user(ADMIN, "password123", is_admin=True)
    customer = accounts.create_user(CUSTOMER, "password123")
    rule = PricingRule(service="tg", country_id=187, markup_percent=50)
    db.session.add(rule)
    db.session.commit()
    client = csrf_app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": ADMIN, "password": "password123", "csrf_token": token}
    )
    assert response.status_code == 302
    # Requests share the test's app context, so Flask-WTF's per-context token cache
    # outlives the session that login just cleared; a browser would get a fresh one.
    g.pop("csrf_token", None)
    ids = {"admin": admin, "customer": customer.id, "activation": 1, "rule": rule.id, "rental": 1}
    return client, ids | {"payment": _payment(customer.id)}


def test_every_admin_action_needs_the_csrf_token(csrf_console):
    client, ids = csrf_console
    ledger_rows = db.session.execute(select(func.count(LedgerEntry.id))).scalar_one()
    for _endpoint, _method, path, data in POSTS:
        response = _request(client, "POST", path, data, ids)
        assert response.status_code == 400, path
    assert _audit_rows() == 0
    assert db.session.execute(select(func.count(LedgerEntry.id))).scalar_one() == ledger_rows


def test_every_admin_form_carries_the_csrf_token_and_it_works(csrf_console):
    client, ids = csrf_console
    pages = {path.format(**ids) for _e, method, path, _d in ROUTES if method == "GET"}
    post_forms = 0
    for url in pages:
        page = client.get(url).get_data(as_text=True)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", page, flags=re.S | re.I):
            if 'method="post"' in form.lower():
                post_forms += 1
                assert 'name="csrf_token"' in form, (url, form[:200])
    assert post_forms > 10
    page = client.get(f"/admin/customers/{ids['customer']}").get_data(as_text=True)
    response = client.post(
        f"/admin/customers/{ids['customer']}/credit",
        data={"amount": "2.00", "note": "with token", "csrf_token": _token(page)},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _audit_rows() == 1


def test_login_next_brings_the_admin_back(client, console):
    response = client.get("/admin/customers")
    target = response.location
    response = AuthActions(client).login(ADMIN, query_string={"next": "/admin/customers"})
    assert target.startswith("/login")
    assert response.location == "/admin/customers"
