"""Accounts: mail through a real SMTP server on loopback, password reset, e-mail verification
and change, sessions, two-factor sign-in (TOTP and recovery codes), the admin's forced set-up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from urllib.parse import urlsplit

import pyotp
import pytest
from sqlalchemy import select

from reseller.extensions import db, limiter
from reseller.models import AccountToken, AuditLog, MailMessage, MailStatus, RecoveryCode, User
from reseller.rate_limits import EXTENSION
from reseller.services import accounts, mail, two_factor, worker
from tests.conftest import Api, api_key_of
from tests.smtp_server import SmtpServer

PASSWORD = "password123"
PUBLIC_URL = "https://sms.example.com"
RECOVERY = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def config_overrides(smtp):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
        "MAIL_DEFAULT_SENDER": "shop@example.com",
        "PUBLIC_URL": PUBLIC_URL,
    }


def deliver() -> mail.DeliveryCounts:
    return mail.deliver_due()


def path_of(link: str) -> str:
    assert link.startswith(PUBLIC_URL + "/"), link
    return urlsplit(link).path


def audit_actions(user_id: int) -> list[str]:
    return list(
        db.session.execute(
            select(AuditLog.action)
            .where(AuditLog.target == f"user:{user_id}")
            .order_by(AuditLog.id)
        ).scalars()
    )


def limits_on(app):
    counters = app.extensions[EXTENSION]
    app.extensions[EXTENSION] = dataclasses.replace(counters, enabled=True)
    limiter.reset()


def log_in(client, email, password=PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


# --- the outbox -----------------------------------------------------------------------------


def test_mail_waits_for_the_worker_and_goes_out_as_text_and_html(app, client, smtp, make_user):
    user = make_user(email="me@example.com")
    page = client.post("/password/forgot", data={"email": "ME@example.com "})
    assert page.status_code == 200
    assert smtp.received == []  # the request never talks to the mail server
    row = db.session.execute(select(MailMessage)).scalar_one()
    assert row.status == MailStatus.QUEUED and row.recipient == user.email
    assert "http" not in row.sealed  # the link is sealed in the outbox

    report = worker.run_once()
    assert report.mails_sent == 1, report.summary()
    [received] = smtp.to("me@example.com")
    assert received.sender == "shop@example.com"
    assert received.subject == "Reset your password"
    link = received.links()[0]
    assert link in received.html
    db.session.expire_all()
    row = db.session.get(MailMessage, row.id)
    assert row.status == MailStatus.SENT and row.sealed is None  # the link is gone once sent
    assert worker.run_once().mails_sent == 0  # sent once


def test_a_refusing_mail_server_is_retried_with_backoff(
    app, client, smtp, make_user, clock, caplog
):
    make_user(email="me@example.com")
    client.post("/password/forgot", data={"email": "me@example.com"})
    smtp.refuse = True
    caplog.set_level(logging.DEBUG, logger="reseller")
    counts = deliver()
    assert (counts.sent, counts.retried) == (0, 1)
    row = db.session.execute(select(MailMessage)).scalar_one()
    assert row.status == MailStatus.QUEUED and row.attempts == 1
    assert row.last_error.startswith("SMTP")
    assert deliver().sent == 0  # not due yet
    smtp.refuse = False
    clock.travel(mail.FIRST_RETRY + 1)
    assert deliver().sent == 1
    assert len(smtp.to("me@example.com")) == 1
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("reseller")]
    assert ours and not [m for m in ours if "/password/reset/" in m]  # never a link in the log


def test_a_mail_another_worker_sent_meanwhile_is_not_sent_again(
    app, client, smtp, make_user, monkeypatch
):
    """A worker whose claim ran out (a very slow pass) finds the mail sent by another."""
    make_user(email="me@example.com")
    client.post("/password/forgot", data={"email": "me@example.com"})
    row = db.session.execute(select(MailMessage)).scalar_one()
    row.status, row.sealed = MailStatus.SENT.value, None
    db.session.commit()
    monkeypatch.setattr(mail, "claim_rows", lambda *args, **kwargs: [row.id])
    assert deliver().sent == 0
    assert smtp.received == []
    db.session.expire_all()
    assert db.session.get(MailMessage, row.id).attempts == 0


def test_a_mail_server_that_is_down_fails_the_mail_after_its_attempts(
    app, client, make_user, clock
):
    app.extensions["mail"].port = 1  # nobody listens there
    make_user(email="me@example.com")
    client.post("/password/forgot", data={"email": "me@example.com"})
    for _ in range(mail.MAX_ATTEMPTS):
        deliver()
        clock.travel(mail.LAST_RETRY + 1)
    row = db.session.execute(select(MailMessage)).scalar_one()
    assert row.status == MailStatus.FAILED and row.attempts == mail.MAX_ATTEMPTS
    assert row.sealed is None


def test_finished_mails_are_pruned_after_their_retention(app, client, smtp, make_user, clock):
    make_user(email="me@example.com")
    client.post("/password/forgot", data={"email": "me@example.com"})
    client.post("/password/forgot", data={"email": "me@example.com"})
    deliver()
    clock.travel(mail.RETENTION.total_seconds() - 60)
    client.post("/password/forgot", data={"email": "me@example.com"})  # still queued
    assert mail.prune() == 0
    clock.travel(120)
    assert mail.prune() == 2
    [left] = db.session.execute(select(MailMessage)).scalars()
    assert left.status == MailStatus.QUEUED


@pytest.mark.parametrize("config_overrides", [{"MAIL_SERVER": None}])
def test_without_a_mail_server_development_logs_the_mail(app, client, make_user, caplog):
    make_user(email="me@example.com")
    caplog.set_level(logging.INFO, logger="reseller.services.mail")
    client.post("/password/forgot", data={"email": "me@example.com"})
    assert "/password/reset/" in caplog.text  # `make run` shows the link
    assert db.session.execute(select(MailMessage)).first() is None


@pytest.mark.parametrize(
    "config_overrides",
    [{"MAIL_SERVER": None, "ENV_NAME": "production", "SUPPORT_CONTACT": "help@example.com"}],
)
def test_without_a_mail_server_production_says_whom_to_contact(app, client, make_user, caplog):
    make_user(email="me@example.com")
    page = client.get("/password/forgot").get_data(as_text=True)
    assert "help@example.com" in page and 'name="email"' not in page
    page = client.post("/password/forgot", data={"email": "me@example.com"})
    assert "help@example.com" in page.get_data(as_text=True)
    assert db.session.execute(select(AccountToken)).first() is None
    assert "/password/reset/" not in caplog.text


# --- forgot password ------------------------------------------------------------------------


def reset_link(client, smtp, email) -> str:
    client.post("/password/forgot", data={"email": email})
    deliver()
    return path_of(smtp.last_link(email))


def test_the_login_page_links_to_forgot_password(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/password/forgot"' in page and "Forgot password?" in page


def test_a_reset_link_sets_a_new_password_once(app, client, smtp, make_user):
    user = make_user(email="me@example.com")
    path = reset_link(client, smtp, "me@example.com")
    stored = db.session.execute(select(AccountToken)).scalar_one()
    assert path.rsplit("/", 1)[1] not in stored.token_hash  # stored hashed

    assert client.get(path).status_code == 200  # opening the link uses nothing
    response = client.post(path, data={"password": "brand-new-pass", "password2": "brand-new-pass"})
    assert response.status_code == 302 and response.location.endswith("/login")
    assert accounts.authenticate("me@example.com", PASSWORD) is None
    assert accounts.authenticate("me@example.com", "brand-new-pass").id == user.id
    assert "user.password_reset" in audit_actions(user.id)

    again = client.post(path, data={"password": "third-password", "password2": "third-password"})
    assert again.status_code == 404  # used once
    assert "no longer valid" in again.get_data(as_text=True)
    assert accounts.authenticate("me@example.com", "brand-new-pass") is not None


def test_a_reset_link_runs_out_after_an_hour(app, client, smtp, make_user, clock):
    make_user(email="me@example.com")
    path = reset_link(client, smtp, "me@example.com")
    clock.travel(3600 + 1)
    assert client.get(path).status_code == 404
    response = client.post(path, data={"password": "brand-new-pass", "password2": "brand-new-pass"})
    assert response.status_code == 404
    assert accounts.authenticate("me@example.com", PASSWORD) is not None


def test_a_newer_link_or_a_password_change_voids_a_reset_link(app, client, smtp, make_user):
    make_user(email="me@example.com")
    first = reset_link(client, smtp, "me@example.com")
    second = reset_link(client, smtp, "me@example.com")
    assert first != second
    assert client.get(first).status_code == 404  # a newer link was sent
    assert client.get(second).status_code == 200
    log_in(client, "me@example.com")
    client.post(
        "/dashboard/account",
        data={
            "current_password": PASSWORD,
            "new_password": "changed-by-me",
            "new_password2": "changed-by-me",
        },
    )
    assert client.get(second).status_code == 404  # the password changed since


def test_forgot_password_answers_the_same_for_an_unknown_address(app, client, smtp, make_user):
    make_user(email="me@example.com")
    known = client.post("/password/forgot", data={"email": "me@example.com"})
    unknown = client.post("/password/forgot", data={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    deliver()
    assert smtp.to("nobody@example.com") == []
    assert len(smtp.received) == 1


def test_a_weak_new_password_keeps_the_link(app, client, smtp, make_user):
    make_user(email="me@example.com")
    path = reset_link(client, smtp, "me@example.com")
    response = client.post(path, data={"password": "short", "password2": "short"})
    assert response.status_code == 200 and "at least 8" in response.get_data(as_text=True)
    ok = client.post(path, data={"password": "long-enough", "password2": "long-enough"})
    assert ok.status_code == 302


def test_a_reset_ends_every_session(app, smtp, make_user):
    make_user(email="me@example.com")
    laptop, stranger = app.test_client(), app.test_client()
    log_in(laptop, "me@example.com")
    assert laptop.get("/dashboard").status_code == 200
    path = reset_link(stranger, smtp, "me@example.com")
    stranger.post(path, data={"password": "brand-new-pass", "password2": "brand-new-pass"})
    assert laptop.get("/dashboard").status_code == 302


# --- sessions -------------------------------------------------------------------------------


def test_log_out_other_sessions_keeps_this_one_and_the_api_key(app, make_user):
    user = make_user(email="me@example.com")
    key = api_key_of(user)
    here, there = app.test_client(), app.test_client()
    log_in(here, "me@example.com")
    log_in(there, "me@example.com")
    old_identity = user.get_id()
    page = here.get("/dashboard/account").get_data(as_text=True)
    assert "Log out other sessions" in page and "Two-factor authentication" in page

    assert here.post("/dashboard/account/sessions").status_code == 302
    assert here.get("/dashboard").status_code == 200
    assert there.get("/dashboard").status_code == 302
    # A remember-me cookie carries the same identity: the loader refuses it now.
    assert accounts.user_for_session(old_identity) is None
    assert Api(here, key).text("getBalance").startswith("ACCESS_BALANCE")
    assert "user.sessions_cut" in audit_actions(user.id)


def test_a_password_change_is_audited(app, client, make_user):
    user = make_user(email="me@example.com")
    log_in(client, "me@example.com")
    client.post(
        "/dashboard/account",
        data={"current_password": PASSWORD, "new_password": "short", "new_password2": "short"},
    )
    assert "user.password_change" not in audit_actions(user.id)  # too short: nothing changed
    client.post(
        "/dashboard/account",
        data={
            "current_password": PASSWORD,
            "new_password": "new-password",
            "new_password2": "new-password",
        },
    )
    assert "user.password_change" in audit_actions(user.id)


# --- e-mail verification and change ---------------------------------------------------------


@pytest.fixture
def verification(app):
    app.config["REQUIRE_EMAIL_VERIFICATION"] = True


def test_sign_up_mails_a_link_and_the_api_key_waits_for_it(app, client, smtp, verification):
    response = client.post(
        "/signup",
        data={"email": "new@example.com", "password": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    user = accounts.user_by_email("new@example.com")
    api = Api(app.test_client(), api_key_of(user))
    assert api.text("getBalance") == "BAD_KEY"
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'id="verify-notice"' in page and "Send the link again" in page

    deliver()
    [received] = smtp.to("new@example.com")
    assert received.subject == "Confirm your e-mail address"
    path = path_of(received.links()[0])
    assert client.get(path).status_code == 200
    assert api.text("getBalance") == "BAD_KEY"  # opening the page confirms nothing yet
    assert client.post(path).status_code == 302
    assert api.text("getBalance").startswith("ACCESS_BALANCE")
    assert 'id="verify-notice"' not in client.get("/dashboard").get_data(as_text=True)
    assert client.post(path).status_code == 404  # once


def test_verification_can_be_resent_within_a_limit(app, client, smtp, verification):
    limits_on(app)
    client.post(
        "/signup", data={"email": "new@example.com", "password": PASSWORD, "password2": PASSWORD}
    )
    answers = [client.post("/dashboard/account/verify").status_code for _ in range(4)]
    assert answers == [302, 302, 302, 429]
    deliver()
    links = [r.links()[0] for r in smtp.to("new@example.com")]
    assert len(links) == 4  # sign-up and three resends
    assert client.get(path_of(links[0])).status_code == 404  # the newest link only
    assert client.post(path_of(links[-1])).status_code == 302


def test_without_verification_required_the_key_works_at_once(app, client, smtp):
    client.post(
        "/signup", data={"email": "new@example.com", "password": PASSWORD, "password2": PASSWORD}
    )
    user = accounts.user_by_email("new@example.com")
    assert Api(client, api_key_of(user)).text("getBalance").startswith("ACCESS_BALANCE")
    deliver()
    assert smtp.received == []


def test_an_email_change_happens_when_the_new_address_opens_its_link(app, client, smtp, make_user):
    user = make_user(email="old@example.com")
    log_in(client, "old@example.com")
    wrong = client.post(
        "/dashboard/account/email", data={"email": "new@example.com", "password": "not-mine-1"}
    )
    assert wrong.status_code == 302
    assert db.session.execute(select(AccountToken)).first() is None
    client.post("/dashboard/account/email", data={"email": "New@Example.com", "password": PASSWORD})
    deliver()
    assert smtp.to("old@example.com") == []
    [received] = smtp.to("new@example.com")
    assert "old@example.com" in received.text
    db.session.expire_all()
    assert db.session.get(User, user.id).email == "old@example.com"  # not yet

    path = path_of(received.links()[0])
    assert client.post(path).status_code == 302
    db.session.expire_all()
    changed = db.session.get(User, user.id)
    assert changed.email == "new@example.com" and changed.email_verified_at is not None
    assert "user.email_change" in audit_actions(user.id)
    assert accounts.authenticate("new@example.com", PASSWORD) is not None
    assert client.post(path).status_code == 404


def test_an_email_change_to_a_taken_address_is_refused(app, client, smtp, make_user):
    make_user(email="old@example.com")
    make_user(email="taken@example.com")
    log_in(client, "old@example.com")
    client.post(
        "/dashboard/account/email", data={"email": "taken@example.com", "password": PASSWORD}
    )
    deliver()
    assert smtp.received == []


# --- two-factor -----------------------------------------------------------------------------


def setup_page_secret(client) -> str:
    page = client.get("/dashboard/account/two-factor").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page
    return re.search(r'id="two-factor-secret" class="key">([A-Z2-7]+)<', page).group(1)


def turn_on(client, clock) -> tuple[pyotp.TOTP, list[str]]:
    secret = setup_page_secret(client)
    totp = pyotp.TOTP(secret)
    response = client.post("/dashboard/account/two-factor", data={"code": code_now(totp)})
    assert response.status_code == 200
    codes = RECOVERY.findall(response.get_data(as_text=True))
    clock.travel(two_factor.STEP)  # the next code is a new one
    return totp, codes


def code_now(totp: pyotp.TOTP) -> str:
    from reseller import clock

    return totp.at(clock.utcnow().replace(tzinfo=dt.UTC))


def test_set_up_shows_a_qr_code_and_the_secret_and_a_code_confirms_it(
    app, client, make_user, clock
):
    user = make_user(email="me@example.com")
    log_in(client, "me@example.com")
    assert "Two-factor authentication" in client.get("/dashboard/account").get_data(as_text=True)
    secret = setup_page_secret(client)
    assert setup_page_secret(client) == secret  # a reload keeps the code the app scanned
    db.session.expire_all()
    assert secret not in db.session.get(User, user.id).totp_secret_encrypted  # encrypted

    wrong = client.post("/dashboard/account/two-factor", data={"code": "000000"})
    assert "not right" in wrong.get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(User, user.id).two_factor_enabled

    response = client.post(
        "/dashboard/account/two-factor", data={"code": code_now(pyotp.TOTP(secret))}
    )
    codes = RECOVERY.findall(response.get_data(as_text=True))
    assert len(set(codes)) == 10
    stored = db.session.execute(select(RecoveryCode.code_hash)).scalars().all()
    assert len(stored) == 10 and not set(codes) & set(stored)  # hashed
    db.session.expire_all()
    assert db.session.get(User, user.id).two_factor_enabled
    assert "user.two_factor_enable" in audit_actions(user.id)
    page = client.get("/dashboard/account/two-factor").get_data(as_text=True)
    assert 'id="recovery-left">10<' in page and secret not in page


def test_log_in_asks_the_code_after_the_password_and_refuses_a_replay(app, make_user, clock):
    make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    totp, _codes = turn_on(client, clock)
    client.post("/logout")

    response = log_in(client, "me@example.com")
    assert response.status_code == 302 and response.location.endswith("/login/two-factor")
    assert client.get("/dashboard").status_code == 302  # not logged in yet
    page = client.get("/login/two-factor").get_data(as_text=True)
    assert 'name="code"' in page
    code = code_now(totp)
    assert client.post("/login/two-factor", data={"code": code}).status_code == 302
    assert client.get("/dashboard").status_code == 200

    other = app.test_client()
    log_in(other, "me@example.com")
    replay = other.post("/login/two-factor", data={"code": code})
    assert replay.status_code == 200 and "not right" in replay.get_data(as_text=True)
    assert other.get("/dashboard").status_code == 302
    clock.travel(two_factor.STEP)
    assert other.post("/login/two-factor", data={"code": code_now(totp)}).status_code == 302
    assert other.get("/dashboard").status_code == 200


def test_the_code_step_is_bound_to_its_browser_and_runs_out(app, make_user, clock):
    make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    totp, _codes = turn_on(client, clock)
    client.post("/logout")
    log_in(client, "me@example.com")
    cookie = client.get_cookie("session").value
    thief = app.test_client()
    thief.environ_base["HTTP_USER_AGENT"] = "another browser"
    thief.set_cookie("session", cookie)
    assert thief.post("/login/two-factor", data={"code": code_now(totp)}).status_code == 302
    assert thief.get("/dashboard").status_code == 302
    clock.travel(301)
    late = client.post("/login/two-factor", data={"code": code_now(totp)})
    assert late.status_code == 302 and late.location.endswith("/login")
    assert client.get("/dashboard").status_code == 302


def test_each_recovery_code_logs_in_once(app, make_user, clock):
    user = make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    _totp, codes = turn_on(client, clock)
    client.post("/logout")

    for code in (codes[0], codes[1].upper().replace("-", "")):  # typed loosely
        log_in(client, "me@example.com")
        assert client.post("/login/two-factor", data={"code": code}).status_code == 302
        assert client.get("/dashboard").status_code == 200
        client.post("/logout")
    log_in(client, "me@example.com")
    again = client.post("/login/two-factor", data={"code": codes[0]})
    assert again.status_code == 200 and client.get("/dashboard").status_code == 302
    assert two_factor.recovery_codes_left(user) == 8
    assert audit_actions(user.id).count("user.recovery_code_used") == 2


def test_wrong_codes_are_rate_limited(app, make_user, clock):
    make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    totp, _codes = turn_on(client, clock)
    client.post("/logout")
    app.config["TWO_FACTOR_RATE_LIMIT"] = "3 per minute"
    limits_on(app)
    log_in(client, "me@example.com")
    answers = [
        client.post("/login/two-factor", data={"code": f"{n:06}"}).status_code for n in range(3)
    ]
    assert answers == [200, 200, 200]
    right = client.post("/login/two-factor", data={"code": code_now(totp)})
    assert right.status_code == 429  # the limit holds for a right guess too
    assert client.get("/dashboard").status_code == 302


def test_new_recovery_codes_and_turning_off_need_a_current_code(app, make_user, clock):
    user = make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    totp, old = turn_on(client, clock)

    client.post("/dashboard/account/two-factor/recovery-codes", data={"code": "123456"})
    assert two_factor.recovery_codes_left(user) == 10
    response = client.post(
        "/dashboard/account/two-factor/recovery-codes", data={"code": code_now(totp)}
    )
    new = RECOVERY.findall(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    clock.travel(two_factor.STEP)

    client.post("/dashboard/account/two-factor/disable", data={"code": old[0]})  # replaced
    db.session.expire_all()
    assert db.session.get(User, user.id).two_factor_enabled
    client.post("/dashboard/account/two-factor/disable", data={"code": new[0]})
    db.session.expire_all()
    off = db.session.get(User, user.id)
    assert not off.two_factor_enabled and off.totp_secret_encrypted is None
    assert two_factor.recovery_codes_left(off) == 0
    assert "user.two_factor_disable" in audit_actions(user.id)
    client.post("/logout")
    log_in(client, "me@example.com")
    assert client.get("/dashboard").status_code == 200  # the password alone again


# --- the operator ---------------------------------------------------------------------------


def test_an_admin_is_sent_to_set_up_two_factor_before_the_console(app, make_user, clock):
    app.config["ADMIN_REQUIRE_2FA"] = True
    make_user(email="boss@example.com", is_admin=True)
    client = app.test_client()
    log_in(client, "boss@example.com")
    for path in ("/admin", "/admin/customers", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.location.endswith("/dashboard/account/two-factor")
    assert client.post("/admin/pricing/refresh").status_code == 302
    page = client.get("/dashboard/account/two-factor").get_data(as_text=True)
    assert "The console needs two-factor authentication" in page
    turn_on(client, clock)
    assert client.get("/admin").status_code == 200


def test_the_console_shows_verification_and_two_factor(app, boss, client, make_user, clock):
    customer = make_user(email="c@example.com")
    page = client.get(f"/admin/customers/{customer.id}").get_data(as_text=True)
    assert re.search(r'id="customer-email-state">not confirmed<', page)
    assert re.search(r'id="customer-two-factor">off<', page)
    turn_on(client, clock)
    page = client.get(f"/admin/customers/{boss.id}").get_data(as_text=True)
    assert re.search(r'id="customer-two-factor">on since', page)


def test_users_reset_2fa_turns_it_off_and_is_audited(app, runner, make_user, clock):
    user = make_user(email="me@example.com")
    client = app.test_client()
    log_in(client, "me@example.com")
    turn_on(client, clock)
    result = runner.invoke(args=["users", "reset-2fa", "me@example.com"])
    assert result.exit_code == 0, result.output
    assert "two-factor authentication is off" in result.output
    db.session.expire_all()
    assert not db.session.get(User, user.id).two_factor_enabled
    row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "user.two_factor_reset")
    ).scalar_one()
    assert row.actor_id is None and row.target == f"user:{user.id}"
    assert runner.invoke(args=["users", "reset-2fa", "nobody@example.com"]).exit_code != 0


@pytest.mark.parametrize(
    "line, expected",
    [
        ('"GET /password/reset/Ab9_-x HTTP/1.1" 200', '"GET /password/reset/*** HTTP/1.1" 200'),
        ("POST /email/verify/Ab9_-x?next=1", "POST /email/verify/***?next=1"),
        ("GET /email/change/Ab9_-x", "GET /email/change/***"),
    ],
)
def test_the_tokens_of_mailed_links_are_blanked_in_log_lines(line, expected):
    from reseller.observability import redact

    assert redact(line) == expected


def test_users_verify_email_lets_the_key_work(app, runner, make_user):
    app.config["REQUIRE_EMAIL_VERIFICATION"] = True
    user = make_user(email="me@example.com")
    api = Api(app.test_client(), api_key_of(user))
    assert api.text("getBalance") == "BAD_KEY"
    result = runner.invoke(args=["users", "verify-email", "me@example.com"])
    assert result.exit_code == 0, result.output
    assert api.text("getBalance").startswith("ACCESS_BALANCE")
    assert "user.email_verified" in audit_actions(user.id)


def test_users_create_counts_the_address_as_confirmed(app, runner):
    app.config["REQUIRE_EMAIL_VERIFICATION"] = True
    result = runner.invoke(args=["users", "create", "op@example.com", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    user = accounts.user_by_email("op@example.com")
    assert Api(app.test_client(), api_key_of(user)).text("getBalance").startswith("ACCESS")


# --- configuration ----------------------------------------------------------------------------


def test_admins_need_two_factor_in_production_only_by_default(monkeypatch):
    from config import DevelopmentConfig, ProductionConfig, TestConfig

    monkeypatch.delenv("ADMIN_REQUIRE_2FA", raising=False)
    assert ProductionConfig().ADMIN_REQUIRE_2FA is True
    assert DevelopmentConfig().ADMIN_REQUIRE_2FA is False
    assert TestConfig().ADMIN_REQUIRE_2FA is False
    monkeypatch.setenv("ADMIN_REQUIRE_2FA", "false")
    assert ProductionConfig().ADMIN_REQUIRE_2FA is False


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MAIL_SERVER": "smtp.example.com"}, "MAIL_DEFAULT_SENDER"),
        (
            {
                "MAIL_SERVER": "s",
                "MAIL_DEFAULT_SENDER": "a@b",
                "MAIL_USE_TLS": "1",
                "MAIL_USE_SSL": "1",
            },
            "MAIL_USE_TLS and MAIL_USE_SSL",
        ),
        ({"MAIL_PORT": "0"}, "MAIL_PORT"),
        ({"REQUIRE_EMAIL_VERIFICATION": "maybe"}, "REQUIRE_EMAIL_VERIFICATION"),
    ],
)
def test_mail_settings_are_checked_at_start_up(monkeypatch, env, message):
    from config import ConfigError, DevelopmentConfig

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        DevelopmentConfig().validate()


def test_sessions_from_before_the_upgrade_stay_valid(app, make_user):
    """Generation 0 names a session as before session generations existed."""
    from reseller import keyring

    user = make_user(email="me@example.com")
    before = f"{user.id}.{keyring.fingerprint(b'session', user.password_hash)}"
    assert user.get_id() == before
    assert accounts.user_for_session(before).id == user.id
    accounts.end_other_sessions(user)
    assert accounts.user_for_session(before) is None


def test_one_code_or_link_sent_twice_at_once_is_taken_once(app, client, smtp, make_user, clock):
    """Two requests with the same TOTP code, the same recovery code or the same reset link
    at the same moment: the guarded updates let exactly one through."""
    from tests.conftest import run_threads

    user = make_user(email="me@example.com")
    log_in(client, "me@example.com")
    totp, codes = turn_on(client, clock)
    path = reset_link(app.test_client(), smtp, "me@example.com")
    token = path.rsplit("/", 1)[1]
    user_id, code = user.id, code_now(totp)
    db.session.remove()

    def attempt(check):
        def run(i):
            with app.app_context():
                try:
                    return check(db.session.get(User, user_id))
                except accounts.AccountError:
                    return False
                finally:
                    db.session.remove()

        return run

    from reseller.services import account_links

    assert sorted(run_threads(2, attempt(lambda u: two_factor.check_login_code(u, code)))) == [
        False,
        True,
    ]
    assert sorted(run_threads(2, attempt(lambda u: two_factor.check_login_code(u, codes[0])))) == [
        False,
        True,
    ]
    outcomes = run_threads(
        2, attempt(lambda u: account_links.reset_password(token, "brand-new-pass") is not None)
    )
    assert sorted(outcomes) == [False, True]
