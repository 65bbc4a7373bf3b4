"""The Telegram bot against a fake Bot API server (tests/fake_telegram.py): long polling,
accounts made by /start, balances, buying with arguments and by buttons, the pushed code,
cancel by button, /lang, linking a web account, Stars exactly once, webhook mode, a blocked
user and 429s — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import pytest

from reseller.extensions import db
from reseller.models import TelegramAccount, User
from reseller.services import telegram as tg
from reseller.telegram import runtime  # noqa: F401  (aiogram loads here, not in a test's wait)
from tests.fake_telegram import TOKEN, FakeTelegram, buttons, user

ANN = user(5001, "Ann", "en")
BORIS = user(5002, "Boris", "ru")


@pytest.fixture
def telegram():
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def config_overrides(telegram):
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_RATE_LIMIT": "1000 per minute",
        "PUBLIC_URL": "https://sms.example.com",
    }


class RunningBot:
    """`flask telegram poll` in a thread, stopped at the end of the test."""

    def __init__(self, app):
        self.app = app
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self):
        from reseller.telegram.runtime import poll

        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.ready.set()
        await poll(self.app, self.stop_event)

    def start(self):
        self.thread.start()
        self.ready.wait(5)

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def bot(app, telegram):
    db.session.commit()
    running = RunningBot(app)
    running.start()

    def known():  # the poller has asked getMe and stored the bot's username
        found = tg.bot_username()
        db.session.commit()
        return found

    try:
        telegram.wait_for(known, timeout=60)
        yield running
    finally:
        db.session.commit()
        running.stop()


def say(telegram, sender, text, expect=1):
    """`sender` writes `text`; waits for `expect` more bot messages in their chat."""
    db.session.commit()  # the test holds no transaction (SQLite: no write lock) meanwhile
    before = len(telegram.sent_to(sender["id"]))
    telegram.send(telegram.message(sender, text))
    telegram.wait_for(lambda: len(telegram.sent_to(sender["id"])) >= before + expect)
    return telegram.sent_to(sender["id"])[-1]


def account_of(sender) -> TelegramAccount:
    db.session.expire_all()
    found = db.session.get(TelegramAccount, sender["id"])
    db.session.commit()
    return found


def test_start_makes_an_account_with_a_wallet_and_an_api_key(bot, telegram):
    reply = say(telegram, ANN, "/start")
    assert "Welcome" in reply["text"]
    assert "/buy" in reply["text"]
    account = account_of(ANN)
    assert account is not None and account.made_by_bot
    owner = db.session.get(User, account.user_id)
    assert owner.email.endswith("@telegram.invalid") and owner.api_key_hash
    reply = say(telegram, ANN, "/balance")
    assert reply["text"] == "Your balance: 0.00 USD"
    # A second /start is the same account.
    say(telegram, ANN, "/start")
    assert account_of(ANN).user_id == account.user_id
    assert telegram.called("getMe")
    assert tg.bot_username() == "reseller_test_bot"
    db.session.commit()


@pytest.fixture
def funded(app, stocked, bot, telegram):
    """Ann has a bot account with 10.00 in her wallet; the catalogue is filled."""
    from reseller.money import parse_amount
    from reseller.services import wallet

    say(telegram, ANN, "/start")
    wallet.adjust(account_of(ANN).user_id, parse_amount("10.00"), note="test balance")
    db.session.commit()
    return account_of(ANN)


def _worker_pass():
    from reseller.services import worker

    report = worker.run_once()
    db.session.commit()
    return report


def test_buy_with_arguments_push_the_code_and_edit_the_number_message(funded, telegram, clock):
    from reseller.models import Activation

    reply = say(telegram, ANN, "/buy tg ru")
    assert "Activation: #" in reply["text"] and "Price:" in reply["text"]
    assert list(buttons(reply)) == ["Cancel"]
    activation = db.session.execute(db.select(Activation)).scalar_one()
    db.session.commit()
    assert f"#{activation.id}" in reply["text"] and activation.phone in reply["text"]
    shown(telegram, activation.id)
    # The sandbox's code comes after SANDBOX_CODE_DELAY; the worker polls it and pushes it.
    clock.travel(6)
    report = _worker_pass()
    assert report.telegram_sent == 1
    db.session.expire_all()
    code = db.session.get(Activation, activation.id).code
    db.session.commit()
    assert code
    texts = telegram.texts(ANN["id"])
    assert texts[-1] == f"Code for #{activation.id} (+{activation.phone}, Telegram): {code}"
    number = telegram.messages[reply["message_id"]]
    assert f"Code: {code}" in number["text"]
    assert list(buttons(number)) == ["Another SMS", "Complete"]
    # Once per code: another pass sends nothing more.
    assert _worker_pass().telegram_sent == 0
    assert len(telegram.texts(ANN["id"])) == len(texts)


def test_buy_by_buttons_then_cancel_by_button(app, funded, telegram, clock):
    picker = say(telegram, ANN, "/buy")
    assert picker["text"].startswith("Choose a service")
    service_button = next(d for label, d in buttons(picker).items() if label.startswith("Telegram"))
    db.session.commit()
    telegram.send(telegram.press(ANN, picker, service_button))
    countries = telegram.wait_for(
        lambda: (
            "choose a country" in telegram.messages[picker["message_id"]]["text"]
            and telegram.messages[picker["message_id"]]
        )
    )
    choice = next(d for d in buttons(countries).values() if d.startswith("buy:tg:"))
    before = len(telegram.sent_to(ANN["id"]))
    telegram.send(telegram.press(ANN, countries, choice))
    telegram.wait_for(lambda: len(telegram.sent_to(ANN["id"])) > before)
    number = telegram.sent_to(ANN["id"])[-1]
    assert "Activation: #" in number["text"]
    assert len(telegram.called("answerCallbackQuery")) == 2  # every press is answered

    # Too early to cancel: the press is answered with the reason, nothing changes.
    telegram.send(telegram.press(ANN, number, buttons(number)["Cancel"]))
    telegram.wait_for(lambda: len(telegram.called("answerCallbackQuery")) == 3)
    assert "Too early" in telegram.called("answerCallbackQuery")[-1]["text"]
    app.config["EARLY_CANCEL_WINDOW"] = 0  # (the sandbox's code would come before 120 s)
    telegram.send(telegram.press(ANN, number, buttons(number)["Cancel"]))
    edited = telegram.wait_for(
        lambda: (
            "cancelled" in telegram.messages[number["message_id"]]["text"]
            and telegram.messages[number["message_id"]]
        )
    )
    assert buttons(edited) == {}
    assert "returned" in telegram.called("answerCallbackQuery")[-1]["text"]
    assert say(telegram, ANN, "/balance")["text"] == "Your balance: 10.00 USD"
    from reseller.services.ledger import verify_ledger

    assert verify_ledger() == []
    db.session.commit()


def test_lang_switches_to_russian_and_back(funded, telegram):
    reply = say(telegram, ANN, "/lang ru")
    assert reply["text"] == "Язык: Русский"
    assert say(telegram, ANN, "/balance")["text"] == "Ваш баланс: 10.00 USD"
    picker = say(telegram, ANN, "/lang")
    assert set(buttons(picker)) == {"English", "Русский", "中文", "Español"}
    db.session.commit()
    telegram.send(telegram.press(ANN, picker, "lang:en"))
    telegram.wait_for(lambda: say(telegram, ANN, "/balance")["text"].startswith("Your balance"))


def test_a_russian_telegram_user_is_answered_in_russian(bot, telegram):
    assert "/buy" in say(telegram, BORIS, "/start")["text"]
    assert say(telegram, BORIS, "/balance")["text"] == "Ваш баланс: 0.00 USD"


# --- linking a web account ----------------------------------------------------------------


def _link_from_account_page(client) -> str:
    import re

    page = client.post("/dashboard/account/telegram/link").get_data(as_text=True)
    found = re.search(r'href="https://t.me/reseller_test_bot\?start=([A-Za-z0-9_-]+)"', page)
    assert found, page
    db.session.commit()
    return found.group(1)


@pytest.fixture
def web_user(make_user, auth, bot):
    user = make_user(email="web@example.com", balance="3.00")
    auth.login("web@example.com")
    db.session.commit()
    return user


def test_linking_from_the_account_page_replaces_an_empty_bot_account(web_user, client, telegram):
    say(telegram, ANN, "/start")  # a bot account with no money and no history
    made = account_of(ANN).user_id
    payload = _link_from_account_page(client)
    assert len(payload) <= 64
    reply = say(telegram, ANN, f"/start {payload}")
    assert reply["text"].startswith("Linked! This chat now uses the account web@example.com")
    assert account_of(ANN).user_id == web_user.id
    assert db.session.get(User, made).active is False  # the replaced account is closed
    assert say(telegram, ANN, "/balance")["text"] == "Your balance: 3.00 USD"
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert 'id="telegram-user">Ann<' in page
    # Single use: another Telegram user cannot use the same link.
    assert "Ссылка недействительна" in say(telegram, BORIS, f"/start {payload}")["text"]
    assert account_of(BORIS).user_id != web_user.id
    # Unlink: the bot forgets the link; Ann's next message gets her a fresh bot account.
    client.post("/dashboard/account/telegram/unlink")
    db.session.commit()
    assert account_of(ANN) is None
    assert say(telegram, ANN, "/balance")["text"] == "Your balance: 0.00 USD"


def test_a_bot_account_with_money_is_never_merged(web_user, client, telegram):
    from reseller.money import parse_amount
    from reseller.services import wallet

    say(telegram, ANN, "/start")
    own = account_of(ANN).user_id
    wallet.adjust(own, parse_amount("1.00"), note="test balance")
    payload = _link_from_account_page(client)
    reply = say(telegram, ANN, f"/start {payload}")
    assert "cannot be linked" in reply["text"] and "Nothing was changed" in reply["text"]
    assert account_of(ANN).user_id == own
    assert db.session.get(User, own).active
    db.session.commit()


def test_an_expired_link_links_nothing(web_user, client, telegram, clock):
    payload = _link_from_account_page(client)
    clock.travel(15 * 60 + 1)
    assert "not valid" in say(telegram, ANN, f"/start {payload}")["text"]
    assert account_of(ANN).user_id != web_user.id
    assert "not valid" in say(telegram, ANN, "/start not-a-real-link")["text"]


# --- Telegram Stars ---------------------------------------------------------------------------


@pytest.fixture
def stars(app):
    app.config["TELEGRAM_STARS_RATE"] = "0.013"
    app.extensions.pop("reseller.gateways", None)  # built again with Stars
    return app


def _stars_invoice(telegram, sender, amount="10"):
    """/topup AMOUNT, then the Stars button: the invoice Telegram got."""
    offer = say(telegram, sender, f"/topup {amount}")
    assert offer["text"] == f"Top up {amount}.00 USD with:"
    choice = buttons(offer)["Telegram Stars ⭐"]
    db.session.commit()
    telegram.send(telegram.press(sender, offer, choice))
    return telegram.wait_for(lambda: telegram.called("sendInvoice"))[-1]


def _checkout(telegram, sender, payload, stars_count, currency="XTR"):
    before = len(telegram.called("answerPreCheckoutQuery"))
    db.session.commit()
    telegram.send(telegram.pre_checkout(sender, payload, stars_count, currency))
    answers = telegram.wait_for(
        lambda: (
            len(telegram.called("answerPreCheckoutQuery")) > before
            and telegram.called("answerPreCheckoutQuery")
        )
    )
    return answers[-1]


def _balance_of(sender):
    db.session.expire_all()
    balance = db.session.get(User, account_of(sender).user_id).balance
    db.session.commit()
    return balance


def test_stars_top_up_credits_exactly_once(stars, bot, telegram, client, boss):
    from reseller.models import Payment
    from reseller.money import parse_amount
    from reseller.services.ledger import verify_ledger

    say(telegram, ANN, "/start")
    say(telegram, BORIS, "/start")
    invoice = _stars_invoice(telegram, ANN, "10")
    assert invoice["currency"] == "XTR" and not invoice.get("provider_token")
    assert invoice["prices"] == [{"label": "Top-up of 10.00 USD", "amount": 770}]  # 10 ÷ 0.013↑
    payload = invoice["payload"]

    # Forged or stale checkouts are refused: another user, another amount, another
    # currency, a payload we never issued.
    assert _checkout(telegram, BORIS, payload, 770)["ok"] == "false"
    assert _checkout(telegram, ANN, payload, 1)["ok"] == "false"
    assert _checkout(telegram, ANN, payload, 770, currency="USD")["ok"] == "false"
    refused = _checkout(telegram, ANN, "topup-999:10.00:USD", 770)
    assert refused["ok"] == "false" and "no longer valid" in refused["error_message"]
    assert _checkout(telegram, ANN, payload, 770)["ok"] == "true"

    paid = telegram.successful_payment(ANN, payload, 770, "charge-1")
    db.session.commit()
    update = telegram.send(paid)
    telegram.wait_for(lambda: any("Paid, thank you" in t for t in telegram.texts(ANN["id"])))
    assert _balance_of(ANN) == parse_amount("10.00")
    # The same payment again in a new update (a replay): no second credit.
    telegram.send({k: v for k, v in update.items() if k != "update_id"})
    telegram.wait_for(lambda: "already credited" in telegram.texts(ANN["id"])[-1])
    assert _balance_of(ANN) == parse_amount("10.00")
    payment = db.session.execute(db.select(Payment)).scalar_one()
    assert (payment.gateway, payment.status) == ("stars", "paid")
    assert payment.gateway_reference == f"{ANN['id']}:charge-1"
    assert verify_ledger() == []
    db.session.commit()

    # The console shows it with its timeline and refunds it with refundStarPayment.
    page = client.get(f"/admin/payments/{payment.id}").get_data(as_text=True)
    assert "Telegram Stars" in page and "telegram" in page and "Refund" in page
    client.post(f"/admin/payments/{payment.id}/refund")
    db.session.expire_all()
    assert telegram.called("refundStarPayment") == [
        {"user_id": ANN["id"], "telegram_payment_charge_id": "charge-1"}
    ]
    assert db.session.get(Payment, payment.id).status == "refunded"
    assert _balance_of(ANN) == 0
    assert verify_ledger() == []
    # A second refund is refused before Telegram is asked.
    client.post(f"/admin/payments/{payment.id}/refund")
    assert len(telegram.called("refundStarPayment")) == 1
    db.session.commit()


def test_stars_are_offered_in_the_bot_only(stars, client, make_user, auth):
    make_user(email="web@example.com")
    auth.login("web@example.com")
    page = client.get("/dashboard/topup").get_data(as_text=True)
    assert "Telegram Stars" not in page
    response = client.post("/payments/stars/webhook", data=b"{}")
    assert response.status_code == 401  # a Stars payment never arrives by a web request


# --- webhook mode -----------------------------------------------------------------------------

SECRET = "s3cret-for-the-webhook_0123"


def test_webhook_mode_with_and_without_the_secret(app, telegram, client, runner):
    app.config["TELEGRAM_WEBHOOK_SECRET"] = SECRET
    result = runner.invoke(args=["telegram", "set-webhook"])
    assert result.exit_code == 0, result.output
    assert telegram.webhook == {
        "url": "https://sms.example.com/telegram/webhook",
        "secret_token": SECRET,
    }
    update = {"update_id": 77, **telegram.message(ANN, "/balance")}
    assert client.post("/telegram/webhook", json=update).status_code == 401
    wrong = {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"}
    assert client.post("/telegram/webhook", json=update, headers=wrong).status_code == 403
    assert telegram.sent_to(ANN["id"]) == [] and account_of(ANN) is None  # nothing happened
    right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    assert client.post("/telegram/webhook", json=update, headers=right).status_code == 200
    assert telegram.texts(ANN["id"]) == ["Your balance: 0.00 USD"]
    # Telegram retries an update it thinks failed: processed once.
    assert client.post("/telegram/webhook", json=update, headers=right).status_code == 200
    assert len(telegram.sent_to(ANN["id"])) == 1
    assert client.post("/telegram/webhook", data=b"[]", headers=right).status_code == 400
    # Polling is refused while the webhook is set (Telegram answers 409); delete-webhook ends it.
    result = runner.invoke(args=["telegram", "delete-webhook"])
    assert result.exit_code == 0 and telegram.webhook is None


def test_set_webhook_needs_public_url_and_secret(app, runner):
    result = runner.invoke(args=["telegram", "set-webhook"])
    assert result.exit_code != 0 and "TELEGRAM_WEBHOOK_SECRET" in result.output
    app.config["TELEGRAM_BOT_TOKEN"] = None
    result = runner.invoke(args=["telegram", "poll"])
    assert result.exit_code != 0 and "TELEGRAM_BOT_TOKEN is not set" in result.output


# --- pushes: a blocked user, 429, 5xx, broadcasts ------------------------------------------


def _bought(telegram, sender):
    from reseller.models import Activation

    say(telegram, sender, "/buy tg ru")
    found = db.session.execute(db.select(Activation)).scalars().all()[-1]
    db.session.commit()
    shown(telegram, found.id)
    return found


def shown(telegram, activation_id: int):
    """Wait until the bot has noted which message shows the number (it does so right after
    Telegram answers the send; the worker edits that message when the code comes)."""

    def noted():
        found = tg.number_message(activation_id)
        db.session.commit()
        return found

    return telegram.wait_for(noted)


def test_a_user_who_blocked_the_bot_stops_getting_pushes(funded, telegram, clock):
    from reseller.models import TelegramMessage

    _bought(telegram, ANN)
    telegram.blocked.add(ANN["id"])
    clock.travel(6)
    report = _worker_pass()
    assert (report.telegram_sent, report.telegram_failed) == (0, 1)
    assert account_of(ANN).blocked_at is not None
    row = db.session.execute(db.select(TelegramMessage)).scalar_one()
    assert (row.status, row.last_error) == ("failed", "blocked by the user")
    db.session.commit()
    # Writing to the bot again (they unblocked it) brings pushes back.
    telegram.blocked.discard(ANN["id"])
    say(telegram, ANN, "/balance")
    assert account_of(ANN).blocked_at is None


def test_429_waits_retry_after_and_5xx_retries(funded, telegram, clock):
    from reseller.models import TelegramMessage

    _bought(telegram, ANN)
    telegram.rate_limited["sendMessage"] = [30]
    clock.travel(6)
    assert _worker_pass().telegram_failed == 1
    row = db.session.execute(db.select(TelegramMessage)).scalar_one()
    assert row.status == "queued" and (row.next_attempt_at - clock.utcnow()).total_seconds() > 25
    db.session.commit()
    clock.travel(10)
    assert _worker_pass().telegram_sent == 0  # not before retry_after
    telegram.server_errors["sendMessage"] = 1
    clock.travel(25)
    assert _worker_pass().telegram_failed == 1  # a 502: retried with backoff
    clock.travel(60)
    assert _worker_pass().telegram_sent == 1
    assert telegram.texts(ANN["id"])[-1].startswith("Code for #")


def test_broadcast_reaches_every_bot_user_but_those_who_blocked_it(bot, telegram, client, boss):
    for sender in (ANN, BORIS, user(5003, "Carl")):
        say(telegram, sender, "/start")
    telegram.blocked.add(5003)
    page = client.get("/admin/broadcast")
    assert page.status_code == 200 and "3 Telegram users" in page.get_data(as_text=True)
    assert client.post("/admin/broadcast", data={"text": ""}).status_code == 400
    client.post("/admin/broadcast", data={"text": "New countries are on sale!"})
    db.session.commit()
    report = _worker_pass()
    assert (report.telegram_sent, report.telegram_failed) == (2, 1)
    assert telegram.texts(ANN["id"])[-1] == "New countries are on sale!"
    assert telegram.texts(BORIS["id"])[-1] == "New countries are on sale!"
    progress = tg.broadcasts()[0]
    assert (progress.broadcast.recipients, progress.sent, progress.failed) == (3, 2, 1)
    db.session.commit()
    # The customer page shows the Telegram link.
    page = client.get(f"/admin/customers/{account_of(ANN).user_id}").get_data(as_text=True)
    assert "account made by the bot" in page


def test_a_slow_upstream_for_one_user_never_stalls_another(bot, telegram, monkeypatch):
    from reseller.services import activations, errors

    release = threading.Event()

    def slow_purchase(user, request):  # the upstream hangs for Ann's purchase
        db.session.commit()  # as buy_number does: no transaction open while calling out
        release.wait(20)
        raise errors.NoNumbers()

    monkeypatch.setattr(activations, "buy_number", slow_purchase)
    say(telegram, ANN, "/start")
    telegram.send(telegram.message(ANN, "/buy tg ru"))
    assert say(telegram, BORIS, "/balance")["text"] == "Ваш баланс: 0.00 USD"
    assert len(telegram.sent_to(ANN["id"])) == 1  # Ann's purchase still waits
    release.set()
    telegram.wait_for(lambda: len(telegram.sent_to(ANN["id"])) == 2)
    assert "No numbers available" in telegram.texts(ANN["id"])[-1]


def test_a_disabled_account_cannot_use_the_bot(app, bot, telegram):
    from reseller.services import admin

    say(telegram, ANN, "/start")
    admin.set_active(db.session.get(User, account_of(ANN).user_id), False, None)
    db.session.commit()
    assert "disabled" in say(telegram, ANN, "/buy tg ru")["text"]


def test_configuration_refuses_bad_telegram_settings(monkeypatch):
    from config import ConfigError, TestConfig

    for name, value in (
        ("TELEGRAM_STARS_RATE", "-1"),
        ("TELEGRAM_STARS_RATE", "abc"),
        ("TELEGRAM_WEBHOOK_SECRET", "short"),
        ("TELEGRAM_BOT_TOKEN", "not a token"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name):
            TestConfig().validate()
        monkeypatch.delenv(name)


def test_ledger_verify_catches_a_refunded_top_up_never_debited(app, make_user):
    from reseller.models import LedgerKind, Payment
    from reseller.money import parse_amount
    from reseller.services import wallet
    from reseller.services.ledger import verify_ledger

    owner = make_user()
    payment = Payment(
        user_id=owner.id, gateway="stars", amount=parse_amount("5.00"), currency="USD"
    )
    db.session.add(payment)
    db.session.flush()
    payment.status = "refunded"
    wallet.credit(owner.id, payment.amount, LedgerKind.PAYMENT, payment_id=payment.id)
    db.session.commit()
    assert f"payment {payment.id}: refunded but never debited" in verify_ledger()


def test_old_update_ids_are_forgotten_but_the_last_one(app, clock):
    for update_id in (10, 11, 12):
        assert tg.claim_update(update_id)
    assert not tg.claim_update(11)  # a second delivery
    clock.travel(3 * 86400)
    tg.prune_if_due()
    assert tg.last_update_id() == 12
    assert tg.claim_update(11)  # forgotten (long past any redelivery)
    assert not tg.claim_update(12)


def test_the_whole_journey(app, stocked, stars, web_user, client, telegram, clock):
    """The issue's 'done when': link the web account, buy, get the code pushed, cancel with
    the button, switch to Russian, top up with Stars — credited once."""
    from reseller.money import parse_amount
    from reseller.services.ledger import verify_ledger

    payload = _link_from_account_page(client)
    assert say(telegram, ANN, f"/start {payload}")["text"].startswith("Linked!")
    first = _bought(telegram, ANN)
    clock.travel(6)
    assert _worker_pass().telegram_sent == 1
    assert telegram.texts(ANN["id"])[-1].startswith(f"Code for #{first.id}")
    app.config["EARLY_CANCEL_WINDOW"] = 0
    number = say(telegram, ANN, "/buy tg ru")
    telegram.send(telegram.press(ANN, number, buttons(number)["Cancel"]))
    telegram.wait_for(lambda: "cancelled" in telegram.messages[number["message_id"]]["text"])
    assert say(telegram, ANN, "/lang ru")["text"] == "Язык: Русский"
    before = _balance_of(ANN)
    offer = say(telegram, ANN, "/topup 10")
    assert offer["text"] == "Пополнить на 10.00 USD через:"
    db.session.commit()
    telegram.send(telegram.press(ANN, offer, buttons(offer)["Telegram Stars ⭐"]))
    invoice = telegram.wait_for(lambda: telegram.called("sendInvoice"))[-1]
    assert _checkout(telegram, ANN, invoice["payload"], 770)["ok"] == "true"
    paid = telegram.successful_payment(ANN, invoice["payload"], 770, "charge-9")
    for _ in range(2):  # Telegram's message and a replay of it
        telegram.send(paid)
    telegram.wait_for(lambda: "уже зачислен" in " ".join(telegram.texts(ANN["id"])))
    assert _balance_of(ANN) == before + parse_amount("10.00")
    assert account_of(ANN).user_id == web_user.id
    assert verify_ledger() == []
    db.session.commit()


def test_per_user_rate_limit(app, bot, telegram):
    import dataclasses

    from reseller import rate_limits

    app.config["TELEGRAM_RATE_LIMIT"] = "2 per minute"
    counters = app.extensions[rate_limits.EXTENSION]  # (the test configuration turns them off)
    app.extensions[rate_limits.EXTENSION] = dataclasses.replace(counters, enabled=True)
    say(telegram, ANN, "/balance")
    say(telegram, ANN, "/balance")
    assert say(telegram, ANN, "/balance")["text"].startswith("Slow down a little")
    assert say(telegram, BORIS, "/balance")["text"].startswith("Ваш баланс")  # per user
