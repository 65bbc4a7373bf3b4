"""The security review, one test per promise (docs/threat-model.md says why each matters).

Some promises have fuller tests elsewhere: the admin authorization matrix and the console's
CSRF tokens (test_admin_access), the login and API rate limits (test_auth, test_api), the
dashboard's forms (test_dashboard). Random input is in test_hostile_input.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import request
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from config import ProductionConfig
from reseller import create_app
from reseller.extensions import db, limiter
from reseller.models import Activation, LedgerEntry, Service, SmsMessage, User
from reseller.observability import JsonFormatter, RedactingFilter, redact
from reseller.services import accounts, settings
from reseller.services.provider import use_upstream
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.conftest import Api, api_key_of, isolate_requests, make_config, reset_database
from tests.fake_grizzly import FakeGrizzly, Fault
from tests.test_hostile_input import (  # noqa: F401 (fixtures)
    fast_unknown_email_logins,
    route_examples,
    route_values,
    shop,
)
from tests.test_operations import json_logging_app  # noqa: F401 (a fixture)

PASSWORD = "password123"
PATHS = ["/stubs/handler_api.php", "/api/customer"]


@pytest.fixture
def fresh_client(app):
    """A new browser per call."""
    return app.test_client


@pytest.fixture
def people(stocked, make_user):
    return {
        "customer": make_user(email="customer@example.com", balance="10.00"),
        "victim": make_user(email="victim@example.com", balance="10.00"),
        "admin": make_user(email="boss@example.com", is_admin=True),
    }


def log_in(client, email: str, password: str = PASSWORD, **kwargs):
    response = client.post("/login", data={"email": email, "password": password}, **kwargs)
    assert response.status_code == 302, response.status_code
    return response


def books(user_id: int | None = None) -> tuple:
    """The ledger, the balances and the activations (of one customer, or of everyone)."""
    db.session.expire_all()

    def mine(stmt, column):
        return stmt if user_id is None else stmt.where(column == user_id)

    return (
        db.session.execute(
            mine(select(func.count(LedgerEntry.id)), LedgerEntry.user_id)
        ).scalar_one(),
        tuple(db.session.execute(mine(select(User.id, User.balance), User.id).order_by(User.id))),
        tuple(
            db.session.execute(
                mine(
                    select(Activation.id, Activation.status, Activation.code), Activation.user_id
                ).order_by(Activation.id)
            )
        ),
    )


def dump_database() -> str:
    """Every value of every column of every table, as text: what a stolen backup shows."""
    db.session.expire_all()
    values = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).all():
            values += [str(v) for v in row]
    return "\n".join(values)


def has_blueprint(app, name: str) -> bool:
    return f"{name}.index" in app.view_functions


# --- one customer never reaches another's activations -------------------------------------


def test_another_customers_activation_is_never_visible_or_changeable(
    app, fresh_client, people, clock
):
    victim, intruder = people["victim"], people["customer"]
    theirs = Api(fresh_client(), api_key_of(victim))
    waiting = theirs.json("getNumber", service="ot", country="12")["activationId"]
    coded = theirs.json("getNumber", service="tg", country="12")["activationId"]
    own = Api(fresh_client(), api_key_of(intruder)).json("getNumber", service="ot", country="12")
    clock.travel(130)  # past the early-cancel window; the tg code has arrived
    code = theirs.text("getStatus", id=coded).split(":", 1)[1]
    phones = [db.session.get(Activation, i).phone for i in (waiting, coded)]
    victim_ids = {waiting, coded}
    before = books(victim.id)

    def leaks(body: str) -> bool:
        return code in body or any(phone in body for phone in phones)

    # Every id there is, and a few beyond, with every action, in both dialects, both paths.
    for path in PATHS:
        api = Api(fresh_client(), api_key_of(intruder), path)
        for guess in range(0, own["activationId"] + 3):
            for fmt in (None, "json"):
                for action, extra in [("getStatus", {}), ("getStatusV2", {})] + [
                    ("setStatus", {"status": s}) for s in ("1", "3", "6", "8", "-1")
                ]:
                    response = api(action, fmt=fmt, id=str(guess), **extra)
                    body = response.get_data(as_text=True)
                    assert not leaks(body), (action, guess, body)
                    if guess != own["activationId"]:
                        answer = response.get_json() if fmt else body
                        expected = {"error": "ACTIVATION_NOT_FOUND"} if fmt else "NO_ACTIVATION"
                        assert answer == expected, (action, guess, fmt, body)
        for fmt in (None, "json"):
            data = api("getActiveActivations", fmt=fmt).get_json()
            rows = data.get("activations") or data.get("activeActivations") or []
            assert {int(r.get("id") or r.get("activationId")) for r in rows} <= {
                own["activationId"]
            }
            assert not leaks(json.dumps(data))
    assert books(victim.id) == before

    # The dashboard: no action on their cards, nothing of theirs in the feed or on the pages.
    if has_blueprint(app, "dashboard"):
        browser = fresh_client()
        log_in(browser, intruder.email)
        for activation_id in victim_ids:
            for action in ("cancel", "retry", "complete"):
                response = browser.post(f"/dashboard/activations/{activation_id}/{action}")
                assert response.status_code == 404
        feed = browser.get(
            "/dashboard/activations.json", query_string={"ids": f"{waiting},{coded}"}
        )
        assert {a["id"] for a in feed.get_json()["activations"]}.isdisjoint(victim_ids)
        for page in ("/dashboard", "/dashboard/history", "/dashboard/ledger"):
            assert not leaks(browser.get(page).get_data(as_text=True)), page
        assert books(victim.id) == before


# --- the console is for admins ------------------------------------------------------------


def test_admin_routes_refuse_non_admins(app, fresh_client, people):
    """A spot check of the worst cases; test_admin_access walks every route."""
    if not has_blueprint(app, "admin"):
        pytest.skip("the admin console is not installed")
    customer, victim = people["customer"], people["victim"]
    victim_key = api_key_of(victim)
    before = books()
    anonymous, browser = fresh_client(), fresh_client()
    log_in(browser, customer.email)
    attempts = [
        ("GET", "/admin", None),
        ("GET", f"/admin/customers/{victim.id}", None),
        ("POST", f"/admin/customers/{customer.id}/credit", {"amount": "1000", "note": "mine"}),
        ("POST", f"/admin/customers/{customer.id}/grant-admin", {}),  # promote myself
        ("POST", f"/admin/customers/{victim.id}/regenerate-key", {}),
        ("POST", "/admin/settings", {"site_name": "Owned"}),
    ]
    for method, path, data in attempts:
        response = anonymous.open(path, method=method, data=data)
        assert response.status_code == 302 and response.location.startswith("/login"), path
        assert browser.open(path, method=method, data=data).status_code == 403, path
    db.session.expire_all()
    assert not db.session.get(User, customer.id).is_admin
    assert api_key_of(db.session.get(User, victim.id)) == victim_key
    assert settings.get("site_name") != "Owned"
    assert books() == before


# --- CSRF on every state-changing route -----------------------------------------------------


@pytest.fixture
def csrf_app(tmp_path):
    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    isolate_requests(app)
    with app.app_context():
        reset_database()
        yield app
        db.session.remove()
        db.engine.dispose()


def example_url(rule) -> str:
    """A URL that `rule` matches. The CSRF check runs before the view, so ids need not exist."""
    words = [
        w.strip(" '\"")
        for group in re.findall(r"any\(([^)]*)\)", rule.rule)
        for w in group.split(",")
    ]
    names = sorted(rule.arguments)
    for values in itertools.product([1, "tg", *words], repeat=len(names)):
        try:
            return rule.build(dict(zip(names, values, strict=True)))[1]
        except ValueError:
            continue
    raise AssertionError(f"cannot build a URL for {rule.rule}")


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[1]


def test_every_state_changing_route_needs_the_csrf_token(csrf_app):
    """CSRFProtect covers the whole app: every POST without a token is refused before its
    view runs, logged in as an admin (who may reach every form). The customer API, the
    payment webhooks and the Telegram webhook alone are exempt, and need no token: a cookie
    does not authenticate them; the API's key does, each gateway's signature (unsigned here:
    refused), and Telegram's secret header."""
    boss = accounts.create_user("boss@example.com", PASSWORD, is_admin=True)
    client = csrf_app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": boss.email, "password": PASSWORD, "csrf_token": token})
    assert boss.email in client.get("/").get_data(as_text=True)  # logged in with the token

    before = dump_database()
    refused = []
    for rule in csrf_app.url_map.iter_rules():
        if not rule.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            continue
        data = {"email": "x@example.com", "password": PASSWORD, "amount": "5", "note": "x"}
        response = client.post(example_url(rule), data=data)
        if rule.endpoint == "api.handler":
            assert response.status_code == 200 and response.get_data(as_text=True) == "BAD_KEY"
            continue
        if rule.endpoint == "telegram.webhook":
            # Authenticated by Telegram's secret header, not a cookie; the bot is off here.
            assert response.status_code == 404
            continue
        if rule.endpoint == "payments.webhook":
            for gateway in ("cryptopay", "nowpayments", "sandbox"):
                answer = client.post(f"/payments/{gateway}/webhook", data=data)
                # Unsigned: 401 where the gateway runs (the sandbox here), 404 elsewhere.
                assert answer.status_code == (401 if gateway == "sandbox" else 404), gateway
            continue
        assert response.status_code == 400, (rule.rule, response.status_code)
        refused.append(rule.endpoint)
    assert {"auth.signup", "auth.login", "auth.logout", "docs.regenerate_key"} <= set(refused)
    assert dump_database() == before
    assert boss.email in client.get("/").get_data(as_text=True)  # the logout was refused too


# --- throttling: logins and the API, per key ------------------------------------------------


@pytest.fixture
def limited_app(tmp_path):
    """Rate limits on (the test config turns them off): 3 logins and 3 API calls a minute."""
    app = create_app(
        make_config(
            tmp_path,
            RATELIMIT_ENABLED=True,
            LOGIN_RATE_LIMIT="3 per minute",
            API_RATE_LIMIT="3 per minute",
        )
    )
    isolate_requests(app)
    with app.app_context():
        reset_database()
        limiter.reset()
        yield app
        limiter.reset()
        db.session.remove()
        db.engine.dispose()


def test_login_throttling_answers_429_with_retry_after_even_for_the_right_password(limited_app):
    """test_auth checks the per-address and per-email counts; here: what the guesser sees."""
    user = accounts.create_user("me@example.com", PASSWORD)
    client = limited_app.test_client()
    guesses = [{"email": user.email, "password": f"guess-{n:04}"} for n in range(3)]
    assert [client.post("/login", data=guess).status_code for guess in guesses] == [200] * 3
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 429  # a right guess during the lockout is not let in
    assert 30 < int(response.headers["Retry-After"]) <= 60  # the minute's window, not a guess
    assert response.mimetype == "text/html"
    assert "Too many requests" in response.get_data(as_text=True)
    assert user.email not in client.get("/").get_data(as_text=True)
    counters = " ".join(str(k) for k in getattr(limiter.storage, "storage", {}))
    assert "login-email:" in counters, "the test expects the in-memory storage"
    assert "me@example.com" not in counters  # the counters name no address


def test_a_json_login_during_the_lockout_is_not_let_in(limited_app):
    """The per-account limit counts the form's email field; a body the form would read
    some other way (JSON) must not log in past it. Each guess from another address, so
    that only the per-account limit stands in the way."""
    user = accounts.create_user("me@example.com", PASSWORD)
    client = limited_app.test_client()
    for n in range(3):
        guess = {"email": user.email, "password": f"guess-{n:04}"}
        address = {"REMOTE_ADDR": f"198.51.100.{n}"}
        assert client.post("/login", data=guess, environ_base=address).status_code == 200
    right = {"email": user.email, "password": PASSWORD}
    for n, body in enumerate(({"json": right}, {"json": right | {"email": "ME@example.com "}})):
        response = client.post("/login", environ_base={"REMOTE_ADDR": f"203.0.113.{n}"}, **body)
        assert response.status_code != 302
        assert user.email not in client.get("/").get_data(as_text=True)
    response = client.post("/login", data=right, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 429  # the form body, as before


def test_login_and_signup_read_form_bodies_only(app, make_user):
    """A JSON body fills no form: nobody logs in or signs up with one."""
    user = make_user(email="me@example.com")
    client = app.test_client()
    response = client.post("/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200  # the form again: its fields are missing
    assert user.email not in client.get("/").get_data(as_text=True)
    signup = {"email": "new@example.com", "password": PASSWORD, "password2": PASSWORD}
    assert client.post("/signup", json=signup).status_code == 200
    assert accounts.user_by_email("new@example.com") is None


def test_api_rate_limit_is_per_key_with_429_and_retry_after(limited_app):
    """test_api checks the counts; here: both dialects, the same key from many addresses,
    and the limiter's counters (in Redis in production) never name a key in clear."""
    fast = accounts.create_user("fast@example.com", PASSWORD)
    slow = accounts.create_user("slow@example.com", PASSWORD)
    client = limited_app.test_client()

    def call(key, fmt=None, address="10.0.0.1"):
        params = {"api_key": key, "action": "getBalance"} | ({"format": fmt} if fmt else {})
        return client.get(
            "/stubs/handler_api.php", query_string=params, environ_base={"REMOTE_ADDR": address}
        )

    key = api_key_of(fast)
    passed = [call(key, address=f"10.0.0.{i}") for i in range(3)]
    assert [r.status_code for r in passed] == [200, 200, 200]
    # Answers that pass carry no X-RateLimit-* headers: those cost storage reads per call.
    assert not [h for r in passed for h, _ in r.headers if h.lower().startswith("x-ratelimit")]
    for fmt, expected, mimetype in (
        (None, "RATE_LIMITED", "text/plain"),
        ("json", {"error": "RATE_LIMITED"}, "application/json"),
    ):
        response = call(key, fmt, address="10.9.9.9")  # another address: still this key
        assert response.status_code == 429
        # The window of "3 per minute" began with the first call a moment ago.
        assert 30 < int(response.headers["Retry-After"]) <= 60
        assert response.mimetype == mimetype
        assert (response.get_json() if fmt else response.get_data(as_text=True)) == expected
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert call(api_key_of(slow)).status_code == 200  # another key is not affected
    counters = " ".join(str(k) for k in getattr(limiter.storage, "storage", {}))
    assert counters, "the test expects the in-memory storage"
    assert key not in counters and api_key_of(slow) not in counters


# --- sessions -----------------------------------------------------------------------------


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def test_the_session_is_renewed_at_login_and_a_planted_one_does_not_survive(
    app, fresh_client, people
):
    customer = people["customer"]
    victim_browser = fresh_client()
    # An attacker plants a session the site issued to them in the victim's browser …
    with victim_browser.session_transaction() as planted:
        planted["planted"] = "attacker"
    planted_cookie = session_cookie(victim_browser)
    attacker = fresh_client()
    attacker.set_cookie("session", planted_cookie)

    # … the victim logs in: the session is a new one, the planted values are gone.
    log_in(victim_browser, customer.email)
    assert session_cookie(victim_browser) != planted_cookie
    with victim_browser.session_transaction() as fresh:
        assert "planted" not in fresh
        assert fresh["_user_id"] == customer.get_id()
        assert fresh["_user_id"].startswith(f"{customer.id}.")
    # The attacker's copy of the planted cookie is still an anonymous visitor's.
    assert customer.email not in attacker.get("/").get_data(as_text=True)

    # Logging out forgets the account in the session cookie too.
    victim_browser.post("/logout")
    with victim_browser.session_transaction() as after:
        assert "_user_id" not in after


def test_a_stolen_session_cookie_from_another_browser_is_refused(app, fresh_client, people):
    """Flask-Login's strong session protection: a session is bound to the address and the
    browser that logged in; replayed from elsewhere it is dropped."""
    customer = people["customer"]
    owner = fresh_client()
    log_in(owner, customer.email, headers={"User-Agent": "Owner/1.0"})
    stolen = session_cookie(owner)
    thief = fresh_client()
    thief.set_cookie("session", stolen)
    page = thief.get("/", headers={"User-Agent": "Thief/2.0"}).get_data(as_text=True)
    assert customer.email not in page
    assert customer.email in owner.get("/", headers={"User-Agent": "Owner/1.0"}).get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    "config_overrides, owner, thief",
    [
        pytest.param(
            {"TRUSTED_PROXIES": 0},
            ({"REMOTE_ADDR": "198.51.100.7"}, {}),
            ({"REMOTE_ADDR": "203.0.113.9"}, {"X-Forwarded-For": "198.51.100.7"}),
            id="no proxy",
        ),
        pytest.param(  # nginx on 127.0.0.1 appends the address it sees
            {"TRUSTED_PROXIES": 1},
            ({"REMOTE_ADDR": "127.0.0.1"}, {"X-Forwarded-For": "198.51.100.7"}),
            ({"REMOTE_ADDR": "127.0.0.1"}, {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}),
            id="behind nginx",
        ),
    ],
)
def test_a_stolen_session_cookie_with_a_forged_forwarded_address_is_refused(
    app, fresh_client, people, owner, thief
):
    """The session is bound to the address the app trusts (after TRUSTED_PROXIES), not to
    the first X-Forwarded-For entry, which the client writes: a thief who copies the cookie
    and the User-Agent and names the owner's address in that header is refused."""
    customer = people["customer"]
    browser = {"User-Agent": "Owner/1.0"}
    (owner_environ, owner_headers), (thief_environ, thief_headers) = owner, thief
    owners = fresh_client()
    log_in(owners, customer.email, headers=browser | owner_headers, environ_base=owner_environ)
    thiefs = fresh_client()
    thiefs.set_cookie("session", session_cookie(owners))
    page = thiefs.get("/dashboard", headers=browser | thief_headers, environ_base=thief_environ)
    assert page.status_code == 302  # to the login page: the session was dropped

    response = owners.get("/dashboard", headers=browser | owner_headers, environ_base=owner_environ)
    assert response.status_code == 200  # the owner keeps the session


@pytest.mark.parametrize("config_overrides", [{"TRUSTED_PROXIES": 1}])
def test_behind_a_proxy_an_entry_the_browser_adds_keeps_the_session(app, fresh_client, people):
    """Behind nginx, what counts is the address nginx appended: an X-Forwarded-For entry the
    owner's own (corporate) proxy puts in front, or changes, does not log the owner out."""
    customer = people["customer"]
    browser = {"User-Agent": "Owner/1.0"}
    nginx = {"REMOTE_ADDR": "127.0.0.1"}
    owner = fresh_client()
    log_in(
        owner,
        customer.email,
        headers=browser | {"X-Forwarded-For": "198.51.100.7"},
        environ_base=nginx,
    )
    for entries in ("10.1.2.3, 198.51.100.7", "10.9.9.9, 198.51.100.7"):
        response = owner.get(
            "/dashboard", headers=browser | {"X-Forwarded-For": entries}, environ_base=nginx
        )
        assert response.status_code == 200, entries


def test_a_password_change_ends_every_other_session(app, fresh_client, people):
    """Sessions are signed cookies; they name the account with a fingerprint of its
    password hash, so a copied cookie (or a forgotten laptop) stops working once the
    password changes. The browser that changed it stays logged in."""
    customer = people["customer"]
    laptop, phone = fresh_client(), fresh_client()
    log_in(laptop, customer.email)
    log_in(phone, customer.email)
    copied = session_cookie(laptop)
    assert customer.email in phone.get("/dashboard").get_data(as_text=True)

    changed = phone.post(
        "/dashboard/account",
        data={
            "current_password": PASSWORD,
            "new_password": "a-brand-new-password",
            "new_password2": "a-brand-new-password",
        },
    )
    assert changed.status_code == 302
    assert phone.get("/dashboard").status_code == 200  # the changer goes on
    assert laptop.get("/dashboard").status_code == 302  # to the login page
    replay = fresh_client()
    replay.set_cookie("session", copied)
    assert replay.get("/dashboard").status_code == 302
    log_in(laptop, customer.email, password="a-brand-new-password")
    assert laptop.get("/dashboard").status_code == 200


def test_a_session_naming_only_a_user_id_is_refused(app, fresh_client, people):
    """A session cookie signed with our key but naming just an id (the old format, or a
    guess) logs nobody in."""
    customer = people["customer"]
    browser = fresh_client()
    log_in(browser, customer.email)
    assert browser.get("/dashboard").status_code == 200
    with browser.session_transaction() as session:
        session["_user_id"] = str(customer.id)  # same browser, same session protection
    assert browser.get("/dashboard").status_code == 302


# --- credentials at rest --------------------------------------------------------------------


def strong_hash(stored: str) -> bool:
    """scrypt or argon2, or PBKDF2 with at least OWASP's 600,000 iterations."""
    method = stored.split("$", 1)[0]
    if method.startswith("scrypt:"):
        return int(method.split(":")[1]) >= 2**14
    if method.startswith("pbkdf2:"):
        return int(method.split(":")[2]) >= 600_000
    return stored.startswith("$argon2")


@pytest.mark.real_password_hash
def test_passwords_are_hashed_with_a_modern_salted_algorithm(app, client, auth):
    client.post(
        "/signup", data={"email": "a@example.com", "password": PASSWORD, "password2": PASSWORD}
    )
    other = accounts.create_user("b@example.com", PASSWORD)
    hashes = [u.password_hash for u in db.session.execute(select(User)).scalars()]
    assert len(hashes) == 2 and len(set(hashes)) == 2  # salted: same password, two hashes
    for stored in hashes:
        assert strong_hash(stored), stored[:20]
        assert PASSWORD not in stored
        assert check_password_hash(stored, PASSWORD)
    accounts.set_password(other, "another-password-9")
    assert strong_hash(other.password_hash)
    assert "another-password-9" not in dump_database() and PASSWORD not in dump_database()


def test_api_keys_cannot_be_read_from_a_database_dump(app, fresh_client, people, tmp_path):
    customer, admin_user = people["customer"], people["admin"]
    keys = {api_key_of(u) for u in people.values()}
    browser = fresh_client()
    # Use the keys every way there is: API calls (good, failing, on both paths), the docs
    # page, regenerating from the docs page and from the console.
    for path in PATHS:
        Api(browser, api_key_of(customer), path).text("getNumber", service="tg", country="us")
        Api(browser, api_key_of(customer), path).text("getStatus", id="999")
    log_in(browser, customer.email)
    browser.get("/docs")
    browser.post("/docs/api-key/regenerate")
    keys.add(api_key_of(db.session.get(User, customer.id)))
    if has_blueprint(app, "admin"):
        console = fresh_client()
        log_in(console, admin_user.email)
        console.post(f"/admin/customers/{people['victim'].id}/regenerate-key")
        db.session.expire_all()
        keys.add(api_key_of(db.session.get(User, people["victim"].id)))
    assert len(keys) >= 4

    dump = dump_database()
    for key in keys:
        assert key not in dump
    # What the dump does hold is useless without SECRET_KEY: the same database under
    # another secret reveals no key and recognises none.
    db.session.commit()  # end this app's transaction (SQLite: it holds the write lock)
    stolen = create_app(make_config(tmp_path))
    stolen.config["SECRET_KEY"] = "a-different-secret"
    with stolen.app_context():
        assert all(
            accounts.reveal_api_key(user) is None
            for user in db.session.execute(select(User)).scalars()
        )
        assert all(accounts.api_caller(key) is None for key in keys)
        db.session.remove()
        db.engine.dispose()


# --- security headers -----------------------------------------------------------------------


def assert_security_headers(response, *, hsts: bool) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {parts[0]: parts[1:] for parts in (d.split() for d in csp.split(";")) if parts}
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
    assert "*" not in csp.split() and "http:" not in csp and "https:" not in csp, csp
    assert directives.get("default-src") == ["'self'"], csp
    assert directives.get("script-src") == ["'self'"], csp
    assert directives.get("style-src") == ["'self'"], csp
    assert directives.get("object-src") == ["'none'"], csp
    assert directives.get("frame-ancestors") == ["'none'"], csp
    assert directives.get("base-uri") == ["'self'"], csp
    assert directives.get("form-action") == ["'self'"], csp
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"
    if hsts:
        max_age = int(re.search(r"max-age=(\d+)", headers["Strict-Transport-Security"])[1])
        assert max_age >= 180 * 24 * 3600
    else:
        assert "Strict-Transport-Security" not in headers


def every_kind_of_answer(client, key: str):
    """HTML pages (and errors), API answers in both dialects and on both paths, /healthz,
    a static file."""
    yield client.get("/")
    yield client.get("/docs")
    yield client.get("/login")
    yield client.get("/signup")
    yield client.get("/no-such-page")  # 404
    yield client.get("/logout")  # 405
    yield client.get("/static/site.css")
    yield client.get("/healthz")
    for path in PATHS:
        yield client.get(path, query_string={"api_key": key, "action": "getBalance"})
        yield client.post(path, data={"api_key": key, "action": "getBalance", "format": "json"})
        yield client.get(path, query_string={"api_key": "wrong", "action": "getBalance"})


def test_security_headers_on_every_kind_of_answer(app, fresh_client, people):
    customer = people["customer"]
    browser = fresh_client()
    for response in every_kind_of_answer(browser, api_key_of(customer)):
        assert_security_headers(response, hsts=False)
    log_in(browser, customer.email)
    for page in ("/docs", "/dashboard", "/dashboard/history", "/admin"):
        assert_security_headers(browser.get(page), hsts=False)


def test_a_header_a_view_sets_itself_is_kept_and_not_doubled(app):
    @app.get("/test-own-frame-policy")
    def own_frame_policy():
        return "framed", 200, {"x-frame-options": "SAMEORIGIN", "Referrer-Policy": "no-referrer"}

    response = app.test_client().get("/test-own-frame-policy")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert len(response.headers.getlist("Content-Security-Policy")) == 1


def test_every_page_that_needs_a_login_is_never_stored(
    app,
    shop,  # noqa: F811 (the fixture imported above)
):
    """The docs page (with the key), the account (key, webhook secret), history and balance
    history (codes), top up, every console page: every GET route that sends an anonymous
    visitor to the login page answers a logged-in one with `Cache-Control: no-store`, so
    that no browser or proxy cache keeps it. The docs page shows the key when logged in."""
    examples = route_examples(app, "GET", route_values(shop))
    anonymous = app.test_client()
    private = [
        (endpoint, url)
        for endpoint, url in examples
        if endpoint != "static"
        # The log-in flow's own steps (the two-factor code) send a visitor back to its start.
        and not endpoint.startswith("auth.")
        and (answer := anonymous.get(url)).status_code == 302
        and answer.location.startswith("/login")
    ]
    assert {
        "dashboard.account",
        "dashboard.history_page",
        "dashboard.ledger",
        "dashboard.topup",
        "admin.index",
        "admin.settings_page",
        "payments.sandbox_page",
    } <= {endpoint for endpoint, _url in private}
    browsers = {}
    for who in ("customer", "admin"):
        browsers[who] = app.test_client()
        log_in(browsers[who], shop[who].email)
    for endpoint, url in [*private, ("docs.index", "/docs")]:
        who = "admin" if endpoint.startswith("admin.") else "customer"
        response = browsers[who].get(url)
        assert response.status_code == 200, (endpoint, url, response.status_code)
        assert "no-store" in response.headers.get("Cache-Control", ""), (endpoint, url)
    # Public pages for anonymous visitors may be cached as before.
    assert "Cache-Control" not in anonymous.get("/docs").headers


@pytest.fixture
def production_app(tmp_path, monkeypatch):
    """ProductionConfig from the environment, as an operator runs it (SQLite, sandbox)."""
    for name in ("GRIZZLY_API_KEY", "TRUSTED_PROXIES", "RATELIMIT_STORAGE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "production-secret-for-the-test-0123456789")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'production.sqlite'}")
    monkeypatch.setenv("UPSTREAM", "sandbox")
    config = ProductionConfig()
    config.LOG_FORMAT = "plain"  # keep the JSON stdout handler out of the test process
    app = create_app(config)
    isolate_requests(app)
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_production_adds_hsts_and_secure_cookies(production_app):
    user = accounts.create_user("me@example.com", PASSWORD)
    client = production_app.test_client()
    https = {"base_url": "https://shop.example"}
    for response in every_kind_of_answer(client, api_key_of(user)):
        assert_security_headers(response, hsts=True)
    # The session cookie only travels over HTTPS, never to scripts, not on cross-site posts.
    page = client.get("/login", **https).get_data(as_text=True)
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_token(page)},
        headers={"Referer": "https://shop.example/login"},  # checked on HTTPS (same origin)
        **https,
    )
    assert response.status_code == 302
    assert_security_headers(response, hsts=True)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=lax"} <= flags, cookie


def test_production_error_pages_carry_no_traceback(production_app):
    def broken():
        raise RuntimeError("boom: Traceback secrets here")

    production_app.view_functions["main.index"] = broken
    response = production_app.test_client().get("/")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "boom" not in body and "Traceback" not in body and 'File "' not in body
    assert_security_headers(response, hsts=True)


# --- the pages satisfy the Content Security Policy ------------------------------------------


class CspAudit(HTMLParser):
    """What a policy without 'unsafe-inline' would block, or what loads from elsewhere."""

    URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._inline_script = False

    def handle_starttag(self, tag, attrs):
        named = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>: an inline event handler")
            if name == "style":
                self.problems.append(f"<{tag} style=…>: an inline style")
            target = (value or "").strip().lower()
            if name in self.URL_ATTRIBUTES and target.startswith(
                ("http:", "https:", "//", "javascript:")
            ):
                self.problems.append(f"<{tag} {name}={value!r}>: not our own origin")
        if tag == "script" and not named.get("src"):
            data_block = (named.get("type") or "").endswith("json")
            self._inline_script = not data_block
        if tag == "style":
            self.problems.append("<style>: an inline style block")
        if tag in ("object", "embed", "applet"):
            self.problems.append(f"<{tag}>: plugins are off")

    def handle_endtag(self, tag):
        if tag == "script":
            self._inline_script = False

    def handle_data(self, data):
        if self._inline_script and data.strip():
            self.problems.append(f"inline <script>: {data.strip()[:60]!r}")


def csp_problems(page: str) -> list[str]:
    audit = CspAudit()
    audit.feed(page)
    audit.close()
    return audit.problems


def test_the_audit_recognises_what_the_policy_blocks():
    page = (
        '<div onclick="x()" style="color:red"><script>alert(1)</script>'
        '<script src="https://cdn.example/x.js"></script><a href="javascript:x()">x</a>'
        '<link rel="stylesheet" href="//cdn.example/x.css"><style>p{}</style></div>'
    )
    assert len(csp_problems(page)) == 7
    assert csp_problems('<script src="/static/site.js" defer></script><img src="data:,">') == []


def html_pages(app, client) -> dict[str, str]:
    """Every GET page this client may see, ids filled with existing rows; JSON, the API and
    static files left out."""
    pages = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in ("static", "api.handler"):
            continue
        url = example_url(rule)
        response = client.get(url)
        if response.status_code in (200, 403, 404) and response.mimetype == "text/html":
            pages[url] = response.get_data(as_text=True)
    pages["/no-such-page"] = client.get("/no-such-page").get_data(as_text=True)
    return pages


def test_every_page_satisfies_the_content_security_policy(app, fresh_client, people, clock):
    from reseller.models import PricingRule

    customer = people["customer"]
    Api(fresh_client(), api_key_of(customer)).json("getNumber", service="tg", country="12")
    clock.travel(10)
    db.session.add(PricingRule(service="tg", country_id=187, markup_percent=50))
    db.session.commit()
    seen = {}
    for who in (None, customer.email, people["admin"].email):
        browser = fresh_client()
        if who:
            log_in(browser, who)
            browser.get("/dashboard/activations.json")  # the code arrives
        for url, page in html_pages(app, browser).items():
            seen[(who, url)] = page
            assert csp_problems(page) == [], (who, url, csp_problems(page))
    urls = {url for _who, url in seen}
    assert {"/", "/docs", "/login", "/signup"} <= urls
    if has_blueprint(app, "dashboard"):
        assert {"/dashboard", "/dashboard/history", "/dashboard/ledger"} <= urls
    if has_blueprint(app, "admin"):
        assert {"/admin", "/admin/customers", "/admin/settings", "/admin/pricing"} <= urls


def test_our_scripts_need_nothing_the_policy_forbids(app):
    forbidden = re.compile(
        r"\beval\s*\(|new\s+Function\s*\(|document\.write|insertAdjacentHTML|\.innerHTML\s*=|"
        r"setAttribute\(\s*['\"](?:on\w+|style)['\"]|set(?:Timeout|Interval)\(\s*['\"]"
    )
    scripts = sorted(Path(app.static_folder).glob("*.js"))
    assert scripts
    for script in scripts:
        found = forbidden.findall(script.read_text())
        assert not found, (script.name, found)


# --- templates escape what users (and the upstream) write -----------------------------------


def test_signup_with_markup_in_the_email_is_refused_and_not_echoed(fresh_client, people):
    email = "<script>alert(1)</script>@example.com"
    response = fresh_client().post(
        "/signup", data={"email": email, "password": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert accounts.user_by_email(email) is None


def test_site_name_from_the_configuration_is_escaped(tmp_path):
    app = create_app(make_config(tmp_path, SITE_NAME="<b>site</b>"))
    with app.app_context():
        reset_database()
        page = app.test_client().get("/").get_data(as_text=True)
        db.session.remove()
        db.engine.dispose()
    assert "<b>site</b>" not in page
    assert "&lt;b&gt;site&lt;/b&gt;" in page


def test_user_and_upstream_data_is_escaped_on_every_page(app, fresh_client, people, clock):
    """Markup from each source that ends up on a page: a site name an admin typed, an email
    created outside the sign-up form (the CLI checks less), a note on a credit, and what the
    upstream sends (service names, SMS text)."""
    from reseller.services import admin as admin_service
    from reseller.services import wallet

    marks = ["<b>site</b>", "<b>mail</b>", "<b>note</b>", "<b>service</b>", "<b>sms</b>"]
    settings.store("site_name", "<b>site</b>")
    db.session.commit()
    odd = accounts.create_user('x"><b>mail</b>@example.com', PASSWORD)
    wallet.adjust(odd.id, 50_000, note="<b>note</b>")
    db.session.get(Service, "tg").name = "<b>service</b>"
    db.session.commit()
    bought = Api(fresh_client(), api_key_of(odd)).json("getNumber", service="tg", country="12")
    activation = db.session.get(Activation, bought["activationId"])
    clock.travel(10)
    activation.code, activation.sms_text, activation.status = (
        "123456",
        "<b>sms</b> 123456",
        "code_received",
    )
    # As the poll records it: the SMS with its text (cards list every SMS from these rows).
    db.session.add(
        SmsMessage(activation_id=activation.id, seq=1, code="123456", text="<b>sms</b> 123456")
    )
    db.session.commit()
    admin_service.set_active(odd, True, people["admin"])  # an audit row naming them

    pages = {}
    for who in (odd.email, people["admin"].email):
        browser = fresh_client()
        log_in(browser, who)
        pages |= {(who, url): page for url, page in html_pages(app, browser).items()}
        if has_blueprint(app, "admin") and who != odd.email:
            for url in (f"/admin/customers/{odd.id}", f"/admin/activations/{activation.id}"):
                pages[(who, url)] = browser.get(url).get_data(as_text=True)
    shown = set()
    for (who, url), page in pages.items():
        for mark in marks:
            assert mark not in page, (who, url, mark)
            if mark.replace("<", "&lt;").replace(">", "&gt;") in page:
                shown.add(mark)
    assert "<b>site</b>" in shown and "<b>mail</b>" in shown  # the check saw them, escaped
    if has_blueprint(app, "dashboard"):
        assert {"<b>note</b>", "<b>service</b>", "<b>sms</b>"} <= shown


# --- logs carry no secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "GET /stubs/handler_api.php?api_key=Ab9_-xYz&action=getBalance",
            "GET /stubs/handler_api.php?action=getBalance".replace("?", "?api_key=***&"),
        ),
        ("API_KEY=abc def", "API_KEY=*** def"),
        ("password=hunter2&password2=hunter2", "password=***&password2=***"),
        ("current_password=a new_password=b", "current_password=*** new_password=***"),
        (
            "Cookie: session=eyJ1.abc.def; remember_token=1|abc",
            "Cookie: session=***; remember_token=***",
        ),
        ("'api_key=k1' and \"api_key=k2\"", "'api_key=***' and \"api_key=***\""),
        ("nothing to hide here", "nothing to hide here"),
        # What IGNORECASE takes for the markers' letters is redacted too.
        ("ap\u0131_key=abc&x=1", "ap\u0131_key=***&x=1"),
        ("\u017fession=abc; x=1", "\u017fession=***; x=1"),
        ("api_\u212aey=abc", "api_\u212aey=***"),
    ],
)
def test_redact(message, expected):
    assert redact(message) == expected


def test_json_formatter_writes_one_redacted_line_with_the_request_id():
    try:
        raise RuntimeError("upstream said no to /x?api_key=sekrit-key&action=getNumber")
    except RuntimeError:
        record = logging.LogRecord(
            "reseller.test",
            logging.ERROR,
            __file__,
            1,
            "call %s failed",
            ("api_key=sekrit-key",),
            sys.exc_info(),
        )
    record.request_id = "req-12345678"
    assert RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line and "sekrit-key" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "reseller.test"
    assert data["message"] == "call api_key=*** failed"
    assert data["request_id"] == "req-12345678"
    assert "api_key=***" in data["exception"] and "RuntimeError" in data["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", data["time"])


def test_logs_carry_no_api_keys_passwords_or_session_cookies(
    json_logging_app,  # noqa: F811 (the fixture imported above)
    monkeypatch,
):
    """Everything the app writes to stdout (JSON, at DEBUG) while it is used with a key, a
    password and a session, and while the upstream fails: none of them appears."""
    from reseller.services import activations, wallet

    app, stdout = json_logging_app
    user = accounts.create_user("me@example.com", PASSWORD)
    wallet.adjust(user.id, 100_000, note="test")
    key = api_key_of(user)
    client = app.test_client()

    # The API, with the key in the query string and in a form body; one action fails with
    # the full URL, key included, in its exception message.
    for path in PATHS:
        Api(client, key, path)("getBalance")
        Api(client, key, path)("getBalance", method="POST-FORM")
    Api(client, "wrong-" + key)("getBalance")

    def broken(_user):
        raise RuntimeError(f"cannot list activations for {request.url}")

    monkeypatch.setattr(activations, "active_for_user", broken)
    assert Api(client, key).text("getActiveActivations") == "ERROR_SQL"

    # A login with the password (a wrong one first), a password change, the session cookie.
    client.post("/login", data={"email": user.email, "password": "wrong-password-1"})
    log_in(client, user.email)
    session = client.get_cookie("session").value
    client.post(
        "/dashboard/account",
        data={
            "current_password": PASSWORD,
            "new_password": "brand-new-password-2",
            "new_password2": "brand-new-password-2",
        },
    )

    # The upstream failing in every way, the operator's key in its query strings (urllib3
    # logs each request line at DEBUG) and once in an answer.
    operator_key = "operator-grizzly-key-0123456789"
    with FakeGrizzly(api_key=operator_key) as fake:
        grizzly = GrizzlyClient(
            operator_key, url=fake.url, connect_timeout=0.5, read_timeout=0.5, retries=1, backoff=0
        )
        grizzly._sleep = lambda seconds: None
        use_upstream(app, grizzly)
        fake.script("getBalance", f"ERROR: the key {operator_key} is banned")
        fake.script("getNumberV2", Fault.HTTP_500, Fault.GARBAGE, f"Key {operator_key} refused")
        fake.script("getStatus", Fault.DROP)
        client.get("/healthz")
        api = Api(client, key)
        for _ in range(3):
            api.text("getNumber", service="tg", country="12")
        number = api.text("getNumber", service="tg", country="12")
        if number.startswith("ACCESS_NUMBER:"):
            api.text("getStatus", id=number.split(":")[1])
    use_upstream(app, GrizzlyClient(operator_key, url="http://127.0.0.1:9/x", retries=0))
    api.text("getNumber", service="tg", country="12")  # connection refused

    output = stdout.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert any("api_key=***" in line.get("exception", "") for line in lines)
    assert any(line["logger"].startswith("urllib3") for line in lines)  # DEBUG was on
    for secret in (
        key,
        PASSWORD,
        "wrong-password-1",
        "brand-new-password-2",
        session,
        operator_key,
    ):
        assert secret not in output, secret[:12]
