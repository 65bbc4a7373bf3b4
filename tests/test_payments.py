"""Top-ups through payment gateways: Crypto Pay and NOWPayments against local fakes that
speak their wire formats, and the sandbox gateway. Signatures are computed here by the
documented schemes. Money must move exactly once, and `flask ledger verify` must agree."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import LedgerEntry, LedgerKind, Payment, PaymentChange, User
from reseller.money import to_units
from reseller.services import payments, settings
from reseller.services.ledger import verify_ledger
from tests.conftest import run_threads
from tests.fake_gateways import FakeCryptoPay, FakeNowPayments, nowpayments_signature


@pytest.fixture
def cryptopay():
    with FakeCryptoPay() as fake:
        yield fake


@pytest.fixture
def nowpayments():
    with FakeNowPayments() as fake:
        yield fake


@pytest.fixture
def config_overrides(cryptopay, nowpayments):
    return {
        "CRYPTOPAY_API_TOKEN": cryptopay.token,
        "CRYPTOPAY_API_URL": cryptopay.url,
        "CRYPTOPAY_ACCEPTED_ASSETS": "usdt, ton",
        "NOWPAYMENTS_API_KEY": nowpayments.api_key,
        "NOWPAYMENTS_IPN_SECRET": nowpayments.ipn_secret,
        "NOWPAYMENTS_API_URL": nowpayments.url,
    }


@pytest.fixture
def buyer(make_user, auth):
    user = make_user(email="payer@example.com")
    auth.login("payer@example.com")
    return user


def balance(user_id: int) -> int:
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def ledger_rows(user_id: int, kind: LedgerKind) -> list[LedgerEntry]:
    return list(
        db.session.execute(
            select(LedgerEntry).where(
                LedgerEntry.user_id == user_id, LedgerEntry.kind == kind.value
            )
        ).scalars()
    )


def start(client, amount="25.00", gateway="cryptopay"):
    response = client.post("/dashboard/topup", data={"amount": amount, "gateway": gateway})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    payment = db.session.execute(select(Payment).order_by(Payment.id.desc())).scalars().first()
    return response, payment


def notify(client, gateway, body, headers):
    return client.post(f"/payments/{gateway}/webhook", data=body, headers=headers)


def snapshot():
    """Everything a refused notification must leave as it was."""
    db.session.expire_all()
    return (
        db.session.execute(select(User.id, User.balance).order_by(User.id)).all(),
        db.session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one(),
        db.session.execute(
            select(Payment.id, Payment.status, Payment.gateway_status, Payment.flag_reason)
        ).all(),
        db.session.execute(select(func.count()).select_from(PaymentChange)).scalar_one(),
    )


# --- starting a top-up -------------------------------------------------------------------


def test_topup_creates_our_row_then_a_crypto_pay_fiat_invoice(client, buyer, cryptopay):
    response, payment = start(client, "25.00")
    assert response.headers["Location"] == cryptopay.invoices[payment.invoice_id]["bot_invoice_url"]
    (call,) = cryptopay.calls("/createInvoice")
    assert call["headers"]["Crypto-Pay-API-Token"] == cryptopay.token
    sent = call["json"]
    assert sent["currency_type"] == "fiat" and sent["fiat"] == "USD"
    assert sent["amount"] == "25.00"
    assert sent["accepted_assets"] == "USDT,TON"
    assert sent["payload"] == f"topup-{payment.id}"
    assert sent["expires_in"] == 3600
    assert payment.status == "pending" and payment.amount == to_units("25.00")
    assert payment.user_id == buyer.id and payment.gateway == "cryptopay"
    assert balance(buyer.id) == 0


def test_nowpayments_invoice_points_its_ipn_at_our_webhook(client, buyer, nowpayments):
    response, payment = start(client, "40", gateway="nowpayments")
    invoice = nowpayments.invoices[payment.invoice_id]
    assert response.headers["Location"] == invoice["invoice_url"]
    (call,) = nowpayments.calls("/invoice")
    assert call["headers"]["x-api-key"] == nowpayments.api_key
    assert call["json"]["price_amount"] == 40.0
    assert call["json"]["price_currency"] == "usd"
    assert call["json"]["order_id"] == f"topup-{payment.id}"
    assert urlsplit(call["json"]["ipn_callback_url"]).path == "/payments/nowpayments/webhook"


def test_invoice_failure_leaves_a_failed_row_and_a_friendly_message(client, buyer, cryptopay):
    cryptopay.fail_next.append(502)
    response = client.post("/dashboard/topup", data={"amount": "25", "gateway": "cryptopay"})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "could not create an invoice" in page and "Nothing was charged" in page
    payment = db.session.execute(select(Payment)).scalar_one()
    assert payment.status == "failed" and payment.invoice_id is None
    assert "502" in payment.error
    assert balance(buyer.id) == 0
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "amount, message",
    [
        ("1.00", "smallest top-up is 5.00"),
        ("5000", "largest top-up is 1000.00"),
        ("abc", "Enter an amount"),
        ("10.001", "Enter an amount"),
    ],
)
def test_amounts_outside_the_limits_are_refused_and_nothing_is_created(
    client, buyer, cryptopay, amount, message
):
    response = client.post("/dashboard/topup", data={"amount": amount, "gateway": "cryptopay"})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(Payment)).scalar_one() == 0
    assert cryptopay.calls("/createInvoice") == []


def test_preset_amounts_fill_the_field_and_a_gateway_switched_off_in_settings(
    client, buyer, cryptopay
):
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert 'inputmode="decimal"' in page
    for preset in ("10.00", "25.00", "50.00", "100.00"):
        # A link that fills the amount (dashboard.js does it in place); it never pays.
        assert f'href="/dashboard/topup?amount={preset}#amount" data-preset="{preset}"' in page
    page = client.get("/dashboard/topup?amount=50.00").get_data(as_text=True)
    assert 'name="amount" type="text" value="50.00"' in page
    assert cryptopay.calls("/createInvoice") == []
    response = client.post("/dashboard/topup", data={"amount": "50.00", "gateway": "cryptopay"})
    assert response.status_code == 302
    assert cryptopay.calls("/createInvoice")[0]["json"]["amount"] == "50.00"

    settings.store("payment_gateways", "nowpayments")
    db.session.commit()
    response = client.post("/dashboard/topup", data={"amount": "25", "gateway": "cryptopay"})
    assert response.status_code == 400  # not a choice any more
    assert len(cryptopay.calls("/createInvoice")) == 1


# --- notifications -----------------------------------------------------------------------


def test_a_signed_paid_update_credits_once_and_replays_change_nothing(client, buyer, cryptopay):
    _, payment = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
    response = notify(client, "cryptopay", body, cryptopay.signed(body))
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    assert balance(buyer.id) == to_units("25.00")
    (row,) = ledger_rows(buyer.id, LedgerKind.PAYMENT)
    assert row.payment_id == payment.id and row.amount == to_units("25.00")
    assert row.reference == f"payment:{payment.id}"
    before = snapshot()
    for _ in range(3):  # the same update again, and a fresh update_id for the same invoice
        assert notify(client, "cryptopay", body, cryptopay.signed(body)).status_code == 200
        again = cryptopay.update_body(cryptopay.invoices[payment.invoice_id])
        assert notify(client, "cryptopay", again, cryptopay.signed(again)).status_code == 200
    assert snapshot() == before
    db.session.expire_all()
    paid = db.session.get(Payment, payment.id)
    assert paid.status == "paid" and paid.paid_at is not None
    notes = [c.body for c in paid.changes if c.body]
    assert len(notes) == 1 and json.loads(notes[0])["payload"]["invoice_id"] == int(
        payment.invoice_id
    )
    assert verify_ledger() == []


def test_bad_signatures_unknown_invoices_and_garbage_change_nothing(
    client, buyer, cryptopay, nowpayments, caplog
):
    _, payment = start(client, "25.00")
    paid = cryptopay.pay(payment.invoice_id)
    body = cryptopay.update_body(paid)
    before = snapshot()

    wrong_key = FakeCryptoPay(token="9999:NotOurToken").signed(body)
    assert notify(client, "cryptopay", body, wrong_key).status_code == 401
    unsigned = {"Content-Type": "application/json"}
    assert notify(client, "cryptopay", body, unsigned).status_code == 401
    signed = cryptopay.signed(body)
    tampered = body.replace(b'"25.00"', b'"2500.00"')
    assert notify(client, "cryptopay", tampered, signed).status_code == 401
    # The token itself as the key (a common mistake) is not the scheme.
    import hashlib
    import hmac

    naive = hmac.new(cryptopay.token.encode(), body, hashlib.sha256).hexdigest()
    assert notify(client, "cryptopay", body, {"crypto-pay-api-signature": naive}).status_code == 401

    unknown = dict(paid, invoice_id=424242)
    unknown_body = cryptopay.update_body(unknown)
    signed_unknown = cryptopay.signed(unknown_body)
    assert notify(client, "cryptopay", unknown_body, signed_unknown).status_code == 404
    garbage = b"not json at all"
    assert notify(client, "cryptopay", garbage, cryptopay.signed(garbage)).status_code == 400
    other = json.dumps({"update_type": "something_else", "payload": paid}).encode()
    assert notify(client, "cryptopay", other, cryptopay.signed(other)).status_code == 400
    # A NOWPayments-signed body sent to the Crypto Pay endpoint proves nothing there.
    np_sig = {"x-nowpayments-sig": nowpayments_signature(nowpayments.ipn_secret, json.loads(body))}
    assert notify(client, "cryptopay", body, np_sig).status_code == 401
    assert client.post("/payments/nope/webhook", data=body).status_code == 404

    assert snapshot() == before
    assert balance(buyer.id) == 0
    assert cryptopay.token not in caplog.text
    assert "refused" in caplog.text
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"amount": "2.50"}, "amount mismatch"),
        ({"fiat": "EUR"}, "currency mismatch"),
        ({"payload": "topup-999"}, "order mismatch"),
    ],
)
def test_a_signed_paid_update_that_disagrees_flags_and_credits_nothing(
    client, buyer, cryptopay, change, reason
):
    _, payment = start(client, "25.00")
    paid = dict(cryptopay.pay(payment.invoice_id), **change)
    body = cryptopay.update_body(paid)
    assert notify(client, "cryptopay", body, cryptopay.signed(body)).status_code == 200
    db.session.expire_all()
    flagged = db.session.get(Payment, payment.id)
    assert flagged.status == "flagged" and reason in flagged.flag_reason
    assert balance(buyer.id) == 0
    assert ledger_rows(buyer.id, LedgerKind.PAYMENT) == []
    # The right update afterwards credits nothing either: the operator decides.
    good = cryptopay.update_body(cryptopay.invoices[payment.invoice_id])
    assert notify(client, "cryptopay", good, cryptopay.signed(good)).status_code == 200
    assert balance(buyer.id) == 0
    assert verify_ledger() == []


def test_nowpayments_credits_on_finished_only(client, buyer, nowpayments):
    _, payment = start(client, "30", gateway="nowpayments")
    for status in ("waiting", "confirming", "partially_paid"):
        body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, status))
        assert notify(client, "nowpayments", body, headers).status_code == 200
        db.session.expire_all()
        row = db.session.get(Payment, payment.id)
        assert row.status == "pending" and row.gateway_status == status
        assert balance(buyer.id) == 0
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert "partially paid" in page

    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "finished"))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    assert balance(buyer.id) == to_units("30")
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "finished"))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    assert balance(buyer.id) == to_units("30")
    # A refund after the credit is recorded and flagged, never debited by itself.
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "refunded"))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    assert row.status == "paid" and "refunded" in row.flag_reason
    assert balance(buyer.id) == to_units("30")
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "status, expected", [("failed", "failed"), ("expired", "expired"), ("refunded", "failed")]
)
def test_nowpayments_failed_expired_refunded_are_recorded_not_credited(
    client, buyer, nowpayments, clock, status, expected
):
    _, payment = start(client, "30", gateway="nowpayments")
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, status))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    if status != "refunded":  # one payment failed: the invoice can still be paid
        assert (row.status, row.gateway_status) == ("pending", status)
        clock.travel(8 * 86400)  # its lifetime is over: the same word now closes it
        assert notify(client, "nowpayments", body, headers).status_code == 200
        db.session.expire_all()
        row = db.session.get(Payment, payment.id)
    assert (row.status, row.gateway_status) == (expected, status)
    assert balance(buyer.id) == 0
    assert verify_ledger() == []


def test_nowpayments_bad_signature_and_mismatch(client, buyer, nowpayments):
    _, payment = start(client, "30", gateway="nowpayments")
    finished = nowpayments.payment(payment.invoice_id, "finished")
    body, headers = nowpayments.ipn(finished)
    before = snapshot()
    forged = dict(headers, **{"x-nowpayments-sig": nowpayments_signature("wrong", finished)})
    assert notify(client, "nowpayments", body, forged).status_code == 401
    assert notify(client, "nowpayments", body, {}).status_code == 401
    cheaper = dict(finished, price_amount=3)
    assert notify(client, "nowpayments", json.dumps(cheaper).encode(), headers).status_code == 401
    assert snapshot() == before
    body, headers = nowpayments.ipn(dict(finished, price_currency="eur"))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "flagged"
    assert balance(buyer.id) == 0


# --- concurrency -------------------------------------------------------------------------


def test_ten_concurrent_duplicate_notifications_credit_once(app, client, buyer, cryptopay):
    _, payment = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
    headers = cryptopay.signed(body)
    user_id = buyer.id
    db.session.remove()  # this thread holds no transaction while the others race

    def deliver(i):
        return (
            app.test_client()
            .post("/payments/cryptopay/webhook", data=body, headers=headers)
            .status_code
        )

    results = run_threads(10, deliver)
    assert results == [200] * 10
    assert balance(user_id) == to_units("25.00")
    assert len(ledger_rows(user_id, LedgerKind.PAYMENT)) == 1
    assert verify_ledger() == []


def test_notification_racing_reconciliation_credits_once(app, client, buyer, cryptopay, clock):
    _, payment = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
    headers = cryptopay.signed(body)
    user_id = buyer.id
    clock.travel(120)  # the payment is due for a check
    db.session.remove()

    def act(i):
        with app.app_context():
            try:
                if i % 2:
                    return payments.handle_notification("cryptopay", body, headers).result
                return payments.reconcile(every=0).credited
            finally:
                db.session.remove()

    results = run_threads(6, act)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert balance(user_id) == to_units("25.00")
    assert len(ledger_rows(user_id, LedgerKind.PAYMENT)) == 1
    assert verify_ledger() == []


# --- reconciliation and expiry -----------------------------------------------------------


def test_a_lost_notification_is_credited_by_the_worker(client, buyer, cryptopay, runner, clock):
    _, payment = start(client, "25.00")
    cryptopay.pay(payment.invoice_id)  # paid, but the webhook never arrives
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    assert balance(buyer.id) == 0  # not due yet: first check a minute after creation
    clock.travel(61)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "top-ups credited 1" in result.output, result.output
    assert balance(buyer.id) == to_units("25.00")
    (call,) = cryptopay.calls("/getInvoices")
    assert call["json"]["invoice_ids"] == payment.invoice_id
    clock.travel(3600)
    runner.invoke(args=["worker", "--once"])
    assert balance(buyer.id) == to_units("25.00")
    assert len(cryptopay.calls("/getInvoices")) == 1  # paid payments are never asked again
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0 and "ledger OK" in result.output


def test_nowpayments_payment_heard_of_once_is_reconciled(client, buyer, nowpayments, clock):
    _, payment = start(client, "30", gateway="nowpayments")
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "confirming"))
    notify(client, "nowpayments", body, headers)
    nowpayments.payment(payment.invoice_id, "finished")  # the final IPN is lost
    clock.travel(61)
    report = payments.reconcile()
    assert report.credited == 1, report
    assert balance(buyer.id) == to_units("30")
    (payment_id,) = nowpayments.payments
    assert len(nowpayments.calls(f"/payment/{payment_id}")) == 1


def test_unpaid_invoices_expire_after_their_lifetime(client, buyer, cryptopay, clock):
    _, payment = start(client, "25.00")
    clock.travel(61)
    assert payments.reconcile().expired == 0
    cryptopay.invoices[payment.invoice_id]["status"] = "expired"
    clock.travel(3600)
    report = payments.reconcile()
    assert report.expired == 1
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "expired"
    # If the gateway is down, nothing is expired on a guess.
    _, second = start(client, "30.00")
    clock.travel(3700)
    cryptopay.fail_next.extend([503, 503])
    report = payments.reconcile()
    assert report.expired == 0 and report.errors
    db.session.expire_all()
    assert db.session.get(Payment, second.id).status == "pending"
    assert balance(buyer.id) == 0
    assert verify_ledger() == []


def test_an_expired_invoice_paid_late_is_still_credited(client, buyer, nowpayments, clock):
    _, payment = start(client, "30", gateway="nowpayments")
    clock.travel(8 * 86400)
    assert payments.reconcile().expired == 1
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "finished"))
    assert notify(client, "nowpayments", body, headers).status_code == 200
    assert balance(buyer.id) == to_units("30")
    assert verify_ledger() == []


# --- the bonus ---------------------------------------------------------------------------


def test_bonus_above_the_threshold_is_its_own_ledger_row(client, buyer, cryptopay):
    settings.store("topup_bonus_percent", "10")
    settings.store("topup_bonus_threshold", "50")
    db.session.commit()
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert "10 % bonus" in page
    for amount in ("49.99", "75.55"):
        _, payment = start(client, amount)
        body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
        notify(client, "cryptopay", body, cryptopay.signed(body))
    (bonus,) = ledger_rows(buyer.id, LedgerKind.PAYMENT_BONUS)
    assert bonus.amount == to_units("7.55")  # 10 % of 75.55, in whole cents rounded down
    assert balance(buyer.id) == to_units("49.99") + to_units("75.55") + to_units("7.55")
    ledger_page = client.get("/dashboard/ledger").get_data(as_text=True)
    assert "Top-up bonus" in ledger_page
    assert verify_ledger() == []


# --- the sandbox gateway -----------------------------------------------------------------


def test_sandbox_pay_goes_through_the_signed_path(client, buyer):
    response, payment = start(client, "25.00", gateway="sandbox")
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/payments/sandbox/{payment.invoice_id}"
    page = client.get(location).get_data(as_text=True)
    assert "no real money" in page
    response = client.post(urlsplit(location).path + "/pay")
    assert response.status_code == 302
    assert balance(buyer.id) == to_units("25.00")
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Paid: 25.00 USD" in shown
    client.post(urlsplit(location).path + "/pay")  # pressed twice
    assert balance(buyer.id) == to_units("25.00")
    assert verify_ledger() == []


def test_sandbox_notifications_need_the_sandbox_signature(client, buyer):
    _, payment = start(client, "25.00", gateway="sandbox")
    body = json.dumps(
        {
            "invoice_id": payment.invoice_id,
            "status": "paid",
            "amount": "25.00",
            "currency": "USD",
            "order_id": f"topup-{payment.id}",
        }
    ).encode()
    assert notify(client, "sandbox", body, {"X-Sandbox-Signature": "0" * 64}).status_code == 401
    assert balance(buyer.id) == 0


def test_customers_see_only_their_own_payments(client, auth, make_user, buyer):
    _, mine = start(client, "25.00", gateway="sandbox")
    auth.logout()
    make_user(email="other@example.com")
    auth.login("other@example.com")
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert "No payments yet" in page
    assert client.get(f"/payments/sandbox/{mine.invoice_id}").status_code == 404
    assert client.post(f"/payments/sandbox/{mine.invoice_id}/pay").status_code == 404
    assert (
        client.get(f"/dashboard/topup?payment={mine.id}")
        .get_data(as_text=True)
        .count(f"Payment #{mine.id}")
        == 0
    )
    assert balance(buyer.id) == 0


def test_history_lists_every_payment_with_its_status(client, buyer, cryptopay):
    _, first = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(first.invoice_id))
    notify(client, "cryptopay", body, cryptopay.signed(body))
    start(client, "10.00")
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert "Paid" in page and "Waiting for payment" in page
    assert page.index(">Payment #2<") < page.index(">Payment #1<")  # newest first
    assert "Top up" in client.get("/dashboard").get_data(as_text=True)


# --- the console -------------------------------------------------------------------------


def test_console_lists_filters_and_checks_payments(client, auth, make_user, buyer, cryptopay):
    _, paid = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(paid.invoice_id))
    notify(client, "cryptopay", body, cryptopay.signed(body))
    _, waiting = start(client, "10.00")
    assert client.get("/admin/payments").status_code == 403
    auth.logout()
    make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    page = client.get("/admin/payments").get_data(as_text=True)
    assert "payer@example.com" in page and "2 payments" in page
    page = client.get("/admin/payments?status=paid").get_data(as_text=True)
    assert "1 payment." in page and f"#{paid.id}" in page
    detail = client.get(f"/admin/payments/{paid.id}").get_data(as_text=True)
    assert "Verified notification" in detail and "invoice_paid" in detail
    overview = client.get("/admin").get_data(as_text=True)
    assert "Paid top-ups" in overview

    cryptopay.pay(waiting.invoice_id)
    response = client.post(f"/admin/payments/{waiting.id}/check")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Payment, waiting.id).status == "paid"
    assert balance(buyer.id) == to_units("35.00")
    assert verify_ledger() == []


def test_ledger_verify_catches_a_credit_without_a_paid_payment(client, buyer, cryptopay):
    from reseller.services import wallet

    _, payment = start(client, "25.00")
    wallet.credit(buyer.id, payment.amount, LedgerKind.PAYMENT, payment_id=payment.id)
    db.session.commit()
    problems = verify_ledger()
    assert any("credited but its status is pending" in p for p in problems)


# --- configuration -----------------------------------------------------------------------


def _production(**env):
    from config import ProductionConfig

    config = ProductionConfig()
    config.SECRET_KEY, config.SQLALCHEMY_DATABASE_URI = "k" * 32, "sqlite://"
    config.UPSTREAM = "sandbox"
    for key, value in env.items():
        setattr(config, key, value)
    return config


def test_production_offers_the_sandbox_only_when_named():
    from reseller.gateways import configured

    config = _production()
    config.validate()
    assert configured(vars(config) | {"ENV_NAME": "production"}) == {}
    config = _production(PAYMENT_GATEWAYS="sandbox")
    config.validate()
    assert list(configured(vars(config) | {"ENV_NAME": "production"})) == ["sandbox"]
    config = _production(CRYPTOPAY_API_TOKEN="1:x")
    assert list(configured(vars(config) | {"ENV_NAME": "production"})) == ["cryptopay"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PAYMENT_GATEWAYS": "cryptopay"}, "CRYPTOPAY_API_TOKEN is not set"),
        ({"PAYMENT_GATEWAYS": "nowpayments", "NOWPAYMENTS_API_KEY": "k"}, "NOWPAYMENTS_IPN_SECRET"),
        ({"PAYMENT_GATEWAYS": "paypal"}, "known gateways: cryptopay, nowpayments, sandbox"),
    ],
)
def test_payment_gateways_that_cannot_run_stop_the_start(env, message):
    from config import ConfigError

    with pytest.raises(ConfigError, match=message):
        _production(**env).validate()


def test_gateways_never_show_their_secrets(cryptopay, nowpayments):
    from reseller.gateways.cryptopay import CryptoPay
    from reseller.gateways.nowpayments import NowPayments

    assert cryptopay.token not in repr(CryptoPay(cryptopay.token, url=cryptopay.url))
    shown = repr(NowPayments(nowpayments.api_key, nowpayments.ipn_secret, url=nowpayments.url))
    assert nowpayments.api_key not in shown and nowpayments.ipn_secret not in shown


# --- hostile input -----------------------------------------------------------------------


def test_an_oversized_notification_is_refused_unread(client, buyer):
    response = client.post("/payments/cryptopay/webhook", data=b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413


def test_many_top_ups_in_an_hour_are_refused(client, buyer, cryptopay, clock):
    for _ in range(payments.MAX_STARTED_PER_HOUR):
        start(client, "10.00")
    response = client.post("/dashboard/topup", data={"amount": "10", "gateway": "cryptopay"})
    assert response.status_code == 302
    assert "in the last hour" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert len(cryptopay.calls("/createInvoice")) == payments.MAX_STARTED_PER_HOUR
    clock.travel(3601)
    start(client, "10.00")
    assert len(cryptopay.calls("/createInvoice")) == payments.MAX_STARTED_PER_HOUR + 1


HOSTILE_TEXT = st.one_of(
    st.sampled_from(["", "25", "25.00", "-5", "1e999999", "²", "5,00", "\x00", "9" * 400]),
    st.text(max_size=40),
)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_top_up_form_and_webhooks_survive_anything(app, client, buyer, cryptopay, data):
    before = snapshot()
    kind = data.draw(st.sampled_from(["form", "webhook"]), label="kind")
    if kind == "form":
        fields = {
            name: data.draw(HOSTILE_TEXT, label=name)
            for name in ("amount", "gateway", "preset")
            if data.draw(st.booleans(), label=f"send {name}")
        }
        response = client.post("/dashboard/topup", data=fields)
        assert response.status_code in (200, 302, 400), response.status_code
        if response.status_code == 302 and "/topup" not in response.headers["Location"]:
            db.session.expire_all()
            assert balance(buyer.id) == before[0][0][1]  # an invoice, never money
    else:
        gateway = data.draw(st.sampled_from(["cryptopay", "nowpayments", "sandbox"]))
        body = data.draw(
            st.one_of(
                st.binary(max_size=200),
                st.builds(
                    lambda d: json.dumps(d).encode(),
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "update_type",
                                "payload",
                                "invoice_id",
                                "payment_status",
                                "status",
                                "price_amount",
                                "amount",
                            ]
                        ),
                        st.one_of(
                            st.text(max_size=10),
                            st.integers(),
                            st.none(),
                            st.just("invoice_paid"),
                            st.just({"invoice_id": 9001}),
                        ),
                        max_size=5,
                    ),
                ),
            ),
            label="body",
        )
        headers = {
            name: data.draw(st.text(alphabet="0123456789abcdef", max_size=128), label=name)
            for name in ("crypto-pay-api-signature", "x-nowpayments-sig", "X-Sandbox-Signature")
            if data.draw(st.booleans(), label=f"send {name}")
        }
        response = client.post(f"/payments/{gateway}/webhook", data=body, headers=headers)
        assert response.status_code in (400, 401, 404), response.status_code
        assert snapshot() == before
    assert verify_ledger() == []


def test_nowpayments_signatures_over_javascript_numbers_verify(client, buyer, nowpayments):
    """NOWPayments signs JSON.stringify of the sorted body, where 30.0 is written `30`: a
    body carrying `30.0` must still verify against that signature."""
    import hashlib
    import hmac

    _, payment = start(client, "30", gateway="nowpayments")
    finished = nowpayments.payment(payment.invoice_id, "finished", amount=30.0)
    body = json.dumps(finished).encode()
    assert b'"price_amount": 30.0' in body
    as_node_writes_it = json.dumps(
        dict(finished, price_amount=30), sort_keys=True, separators=(",", ":")
    )
    signature = hmac.new(
        nowpayments.ipn_secret.encode(), as_node_writes_it.encode(), hashlib.sha512
    ).hexdigest()
    response = notify(client, "nowpayments", body, {"x-nowpayments-sig": signature})
    assert response.status_code == 200
    assert balance(buyer.id) == to_units("30")


def test_nowpayments_invoice_without_any_ipn_is_reconciled_with_a_login(
    app, client, buyer, nowpayments, clock
):
    _, payment = start(client, "30", gateway="nowpayments")
    nowpayments.payment(payment.invoice_id, "failed")  # a first attempt failed
    nowpayments.payment(payment.invoice_id, "finished", new=True)  # the second paid; no IPN
    clock.travel(61)
    assert payments.reconcile().credited == 0  # the API key alone cannot list an invoice
    assert balance(buyer.id) == 0

    from reseller.gateways.nowpayments import NowPayments

    payments.use_gateway(
        app,
        NowPayments(
            nowpayments.api_key,
            nowpayments.ipn_secret,
            url=nowpayments.url,
            email=nowpayments.EMAIL,
            password=nowpayments.PASSWORD,
        ),
    )
    clock.travel(3600)
    assert payments.reconcile().credited == 1
    assert balance(buyer.id) == to_units("30")
    (listing,) = nowpayments.calls("/payment/")
    assert listing["query"]["invoiceId"] == payment.invoice_id
    assert listing["headers"]["Authorization"].startswith("Bearer eyJ")
    assert nowpayments.calls("/auth")[0]["json"]["email"] == nowpayments.EMAIL
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "paid"
    assert verify_ledger() == []


def test_nowpayments_ipn_with_bitcoin_sized_amounts_verifies_and_credits(
    client, buyer, nowpayments
):
    """A BTC payment of a few dollars: NOWPayments signs JSON.stringify's `0.00008338`
    where Python's json writes `8.338e-05`. The signed text is checked in as JavaScript
    writes it (node agrees: tests/test_js_json.py)."""
    import hashlib
    import hmac

    _, payment = start(client, "7", gateway="nowpayments")
    ipn = {
        "payment_id": 5524759814,
        "invoice_id": int(payment.invoice_id),
        "payment_status": "finished",
        "pay_address": "bc1qfakeaddress",
        "price_amount": 7,
        "price_currency": "usd",
        "pay_amount": 0.00008338,
        "actually_paid": 0.00008338,
        "actually_paid_at_fiat": 0,
        "pay_currency": "btc",
        "order_id": f"topup-{payment.id}",
        "order_description": "top-up",
        "purchase_id": "5837122679",
        "outcome_amount": 0.0000079,
        "outcome_currency": "btc",
        "fee": {"currency": "btc", "depositFee": 1.2e-7, "serviceFee": 4e-7, "withdrawalFee": 0},
    }
    signed_text = (
        '{"actually_paid":0.00008338,"actually_paid_at_fiat":0,'
        '"fee":{"currency":"btc","depositFee":1.2e-7,"serviceFee":4e-7,"withdrawalFee":0},'
        f'"invoice_id":{payment.invoice_id},"order_description":"top-up",'
        f'"order_id":"topup-{payment.id}","outcome_amount":0.0000079,"outcome_currency":"btc",'
        '"pay_address":"bc1qfakeaddress","pay_amount":0.00008338,"pay_currency":"btc",'
        '"payment_id":5524759814,"payment_status":"finished","price_amount":7,'
        '"price_currency":"usd","purchase_id":"5837122679"}'
    )
    signature = hmac.new(
        nowpayments.ipn_secret.encode(), signed_text.encode(), hashlib.sha512
    ).hexdigest()
    body = json.dumps(ipn).encode()
    assert b"8.338e-05" in body  # how Python writes it; NOWPayments' Node writes 0.00008338
    response = notify(client, "nowpayments", body, {"x-nowpayments-sig": signature})
    assert response.status_code == 200
    assert balance(buyer.id) == to_units("7")
    # Python's rendering of the same body is not what NOWPayments signs.
    python_text = json.dumps(ipn, sort_keys=True, separators=(",", ":")).encode()
    wrong = hmac.new(nowpayments.ipn_secret.encode(), python_text, hashlib.sha512).hexdigest()
    assert notify(client, "nowpayments", body, {"x-nowpayments-sig": wrong}).status_code == 401
    assert verify_ledger() == []


# --- several payments on one NOWPayments invoice -------------------------------------------


def test_a_failed_nowpayments_attempt_leaves_the_invoice_open_for_the_next(
    client, buyer, nowpayments, clock
):
    """An invoice can carry several payments: one failing must not close the top-up while
    the invoice can still be paid, and a later one that finishes (its IPN lost) is still
    reconciled."""
    _, payment = start(client, "30", gateway="nowpayments")
    first = nowpayments.payment(payment.invoice_id, "waiting")
    notify(client, "nowpayments", *nowpayments.ipn(first))
    notify(
        client, "nowpayments", *nowpayments.ipn(nowpayments.payment(payment.invoice_id, "failed"))
    )
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    assert (row.status, row.gateway_status) == ("pending", "failed")
    second = nowpayments.payment(payment.invoice_id, "waiting", new=True)
    notify(client, "nowpayments", *nowpayments.ipn(second))
    nowpayments.payment(payment.invoice_id, "finished")  # the second finishes; its IPN is lost
    clock.travel(61)
    assert payments.reconcile().credited == 1
    assert balance(buyer.id) == to_units("30")
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    assert row.status == "paid" and row.gateway_reference == str(second["payment_id"])
    assert sorted(a.reference for a in row.attempts) == sorted(
        [str(first["payment_id"]), str(second["payment_id"])]
    )
    assert verify_ledger() == []


def test_every_nowpayments_attempt_is_kept_not_only_the_last_notified(
    client, buyer, nowpayments, clock
):
    _, payment = start(client, "30", gateway="nowpayments")
    first = nowpayments.payment(payment.invoice_id, "waiting")
    notify(client, "nowpayments", *nowpayments.ipn(first))
    second = nowpayments.payment(payment.invoice_id, "waiting", new=True)
    notify(client, "nowpayments", *nowpayments.ipn(second))
    nowpayments.payments[str(first["payment_id"])]["payment_status"] = "finished"  # IPN lost
    nowpayments.payments[str(first["payment_id"])]["actually_paid"] = 25.31
    clock.travel(61)
    assert payments.reconcile().credited == 1
    assert balance(buyer.id) == to_units("30")
    assert len(nowpayments.calls(f"/payment/{first['payment_id']}")) == 1
    # A replay of the credited payment's IPN after another attempt's notice is a duplicate,
    # not "a second payment on an invoice already credited".
    notify(client, "nowpayments", *nowpayments.ipn(dict(second, payment_status="failed")))
    replay = nowpayments.payments[str(first["payment_id"])]
    assert notify(client, "nowpayments", *nowpayments.ipn(replay)).status_code == 200
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    assert row.status == "paid" and row.flag_reason is None
    assert row.gateway_reference == str(first["payment_id"])
    assert balance(buyer.id) == to_units("30")
    assert verify_ledger() == []


def test_an_unreadable_nowpayments_payment_does_not_block_the_batch(
    client, auth, make_user, buyer, nowpayments, clock
):
    made = []
    for status in ("waiting", "waiting", "waiting"):
        _, payment = start(client, "30", gateway="nowpayments")
        ipn = nowpayments.payment(payment.invoice_id, status)
        notify(client, "nowpayments", *nowpayments.ipn(ipn))
        made.append((payment.id, payment.invoice_id, str(ipn["payment_id"])))
    (lost, lost_invoice, lost_ref), (paid, paid_invoice, _), (unpaid, _, _) = made
    del nowpayments.payments[lost_ref]  # PAYMENT_NOT_FOUND from now on
    nowpayments.payment(paid_invoice, "finished")  # its IPN is lost
    clock.travel(8 * 86400)  # every invoice's lifetime is over
    report = payments.reconcile()
    assert report.credited == 1 and report.expired == 1, report
    assert any("PAYMENT_NOT_FOUND" in e for e in report.errors), report.errors
    db.session.expire_all()
    assert db.session.get(Payment, paid).status == "paid"
    assert db.session.get(Payment, unpaid).status == "expired"
    unreadable = db.session.get(Payment, lost)
    assert unreadable.status == "pending"  # never expired on a guess
    assert lost_ref in unreadable.error and "PAYMENT_NOT_FOUND" in unreadable.error
    assert balance(buyer.id) == to_units("30")
    auth.logout()
    make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    assert "PAYMENT_NOT_FOUND" in client.get(f"/admin/payments/{lost}").get_data(as_text=True)
    assert verify_ledger() == []


@pytest.mark.parametrize("ending", ["worker", "notification"])
def test_a_partially_paid_invoice_is_flagged_not_silently_expired(
    client, auth, make_user, buyer, nowpayments, clock, ending
):
    _, payment = start(client, "30", gateway="nowpayments")
    partial = nowpayments.payment(payment.invoice_id, "partially_paid", actually_paid=10.5)
    notify(client, "nowpayments", *nowpayments.ipn(partial))
    clock.travel(8 * 86400)
    if ending == "worker":
        report = payments.reconcile()
        assert report.expired == 0 and report.flagged == 1, report
    else:
        expired = nowpayments.payment(payment.invoice_id, "expired", actually_paid=10.5)
        assert notify(client, "nowpayments", *nowpayments.ipn(expired)).status_code == 200
    db.session.expire_all()
    row = db.session.get(Payment, payment.id)
    assert row.status == "flagged"
    assert "partially paid" in row.flag_reason and "10.5" in row.flag_reason
    assert balance(buyer.id) == 0  # the operator decides
    auth.logout()
    make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    listing = client.get("/admin/payments?flagged=y").get_data(as_text=True)
    assert f"#{payment.id}" in listing and "partially paid" in listing
    detail = client.get(f"/admin/payments/{payment.id}").get_data(as_text=True)
    assert "Needs review" in detail and "10.5" in detail
    assert verify_ledger() == []


def test_the_hourly_cap_holds_when_starts_race(app, client, buyer, cryptopay):
    """The cap is a count then an insert: concurrent starts (other processes or hosts) must
    not all see room. Every count is slowed down to widen the race."""
    import time

    from sqlalchemy import event

    for _ in range(payments.MAX_STARTED_PER_HOUR - 1):
        start(client, "10.00")
    user_id = buyer.id
    urls = payments.Urls(callback="http://h/cb", back="http://h/back", site="http://h/")
    engine = db.engine
    db.session.remove()

    def slow_count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT COUNT(*)") and "payments" in statement:
            time.sleep(0.3)

    def begin(i):
        with app.app_context():
            try:
                user = db.session.get(User, user_id)
                payments.start_topup(user, to_units("10"), "cryptopay", urls)
                return "started"
            except payments.TooManyTopUps:
                return "refused"
            finally:
                db.session.remove()

    event.listen(engine, "after_cursor_execute", slow_count)
    try:
        results = run_threads(5, begin)
    finally:
        event.remove(engine, "after_cursor_execute", slow_count)
    assert sorted(results) == ["refused"] * 4 + ["started"], results
    count = db.session.execute(select(func.count()).select_from(Payment)).scalar_one()
    assert count == payments.MAX_STARTED_PER_HOUR
    assert len(cryptopay.calls("/createInvoice")) == payments.MAX_STARTED_PER_HOUR


def test_concurrent_duplicate_nowpayments_ipns_keep_one_attempt_and_credit_once(
    app, client, buyer, nowpayments
):
    _, payment = start(client, "30", gateway="nowpayments")
    body, headers = nowpayments.ipn(nowpayments.payment(payment.invoice_id, "finished"))
    user_id, payment_id = buyer.id, payment.id
    db.session.remove()

    def deliver(i):
        return (
            app.test_client()
            .post("/payments/nowpayments/webhook", data=body, headers=headers)
            .status_code
        )

    assert run_threads(8, deliver) == [200] * 8
    assert balance(user_id) == to_units("30")
    assert len(db.session.get(Payment, payment_id).attempts) == 1
    assert verify_ledger() == []


def test_a_payment_still_confirming_keeps_the_top_up_open_past_its_lifetime(
    client, buyer, nowpayments, clock
):
    _, payment = start(client, "30", gateway="nowpayments")
    seen = nowpayments.payment(payment.invoice_id, "confirming", actually_paid=25.31)
    notify(client, "nowpayments", *nowpayments.ipn(seen))
    clock.travel(8 * 86400)  # the invoice's lifetime is over while the money confirms
    report = payments.reconcile()
    assert report.expired == 0 and report.flagged == 0, report
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"
    nowpayments.payment(payment.invoice_id, "finished")  # its IPN is lost
    clock.travel(3600)
    assert payments.reconcile().credited == 1
    assert balance(buyer.id) == to_units("30")
    assert verify_ledger() == []


# --- cancelling an unpaid invoice (issue 24) ---------------------------------------------


def test_an_unpaid_invoice_can_be_cancelled_and_a_late_payment_still_credits(
    client, buyer, cryptopay
):
    _, payment = start(client, "25.00")
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert f'action="/dashboard/topup/{payment.id}/cancel"' in page
    response = client.post(f"/dashboard/topup/{payment.id}/cancel")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "cancelled"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Payment #{payment.id} is cancelled" in page
    assert "Open the payment page again" not in page
    # Cancelled twice: nothing to cancel, nothing changes.
    client.post(f"/dashboard/topup/{payment.id}/cancel")
    assert "nothing to cancel" in client.get("/dashboard/topup").get_data(as_text=True)
    # Paid at the gateway anyway: the money is the customer's.
    body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
    assert notify(client, "cryptopay", body, cryptopay.signed(body)).status_code == 200
    assert balance(buyer.id) == to_units("25.00")


def test_only_the_owner_cancels_and_only_a_waiting_payment(
    client, buyer, cryptopay, auth, make_user
):
    _, payment = start(client, "25.00")
    auth.logout()
    make_user(email="intruder@example.com")
    auth.login("intruder@example.com")
    client.post(f"/dashboard/topup/{payment.id}/cancel")
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"
    with pytest.raises(payments.TopUpError):
        payments.cancel_topup(db.session.get(User, buyer.id), 10**6)


def test_the_ledger_names_a_top_up_as_the_top_up_page_does(client, buyer, cryptopay):
    _, payment = start(client, "25.00")
    body = cryptopay.update_body(cryptopay.pay(payment.invoice_id))
    notify(client, "cryptopay", body, cryptopay.signed(body))
    ledger = client.get("/dashboard/ledger").get_data(as_text=True)
    assert f'<a href="/dashboard/topup?payment={payment.id}">Payment #{payment.id}</a>' in ledger
    topup = client.get("/dashboard/topup").get_data(as_text=True)
    assert f"Payment #{payment.id}" in topup
