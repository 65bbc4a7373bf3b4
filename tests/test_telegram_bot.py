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
from tests.fake_telegram import TOKEN, FakeTelegram, user

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
    yield running
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
