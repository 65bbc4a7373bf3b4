"""The bot's async side (aiogram 3): the Bot API client, the dispatcher, long polling and
webhook updates, and sending what the views (`actions`) answer.

The services are synchronous Flask/SQLAlchemy code: each call runs in a thread pool with
an app context of its own (`Services`), and every update is its own asyncio task, so one
user's slow upstream call never stalls another user's update.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    Update,
)
from flask import Flask

from ..services import telegram as tg
from . import actions
from .replies import Reply

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
POLL_TIMEOUT = 25  # seconds a getUpdates long poll waits for news


def make_bot(app: Flask, *, timeout: float = POLL_TIMEOUT + 15) -> Bot:
    """A Bot API client for TELEGRAM_API_URL (Telegram's, a local telegram-bot-api, a fake)."""
    server = TelegramAPIServer.from_base(app.config["TELEGRAM_API_URL"].rstrip("/"))
    return Bot(
        app.config["TELEGRAM_BOT_TOKEN"], session=AiohttpSession(api=server, timeout=timeout)
    )


class Services:
    """Runs the synchronous views in threads, each call in an app context of its own."""

    def __init__(self, app: Flask, workers: int | None = None):
        self.app = app
        self.pool = ThreadPoolExecutor(
            workers or app.config["TELEGRAM_WORKERS"], thread_name_prefix="telegram"
        )

    async def __call__(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, fn, args)

    def _run(self, fn, args):
        with self.app.app_context():
            return fn(*args)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def sender_of(user) -> tg.TelegramUser:
    return tg.TelegramUser(
        id=user.id,
        username=user.username,
        first_name=user.first_name,
        language_code=user.language_code,
    )


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=b.label, url=b.url)
                if b.url
                else InlineKeyboardButton(text=b.label, callback_data=b.data)
                for b in row
            ]
            for row in reply.buttons
        ]
    )


async def send(bot: Bot, services: Services, chat_id: int, reply: Reply, edit_of=None) -> None:
    """Send (or, for `edit_of` a message, edit) one reply; keep a number message's id."""
    if reply.invoice is not None:
        invoice = reply.invoice
        await bot.send_invoice(
            chat_id=chat_id,
            title=invoice.title,
            description=invoice.description,
            payload=invoice.payload,
            currency="XTR",
            prices=[LabeledPrice(label=invoice.label, amount=invoice.stars)],
            provider_token="",
        )
        return
    if not reply.text:
        return
    if edit_of is not None and reply.edit:
        try:
            await bot.edit_message_text(
                chat_id=chat_id,
                message_id=edit_of.message_id,
                text=reply.text,
                reply_markup=markup(reply),
            )
            return
        except TelegramBadRequest as exc:  # "message is not modified", or too old to edit
            if "not modified" in str(exc):
                return
    sent = await bot.send_message(chat_id=chat_id, text=reply.text, reply_markup=markup(reply))
    if reply.number is not None:
        await services(tg.remember_number_message, reply.number, chat_id, sent.message_id)


def build_dispatcher(services: Services) -> Dispatcher:
    router = Router(name="reseller")

    @router.message(F.successful_payment)
    async def paid(message: Message, bot: Bot) -> None:
        body = json.dumps(
            message.model_dump(mode="json", exclude_none=True, by_alias=True)
        ).encode()
        for reply in await services(
            actions.on_successful_payment, sender_of(message.from_user), body
        ):
            await send(bot, services, message.chat.id, reply)

    @router.message(F.text)
    async def text(message: Message, bot: Bot) -> None:
        if message.from_user is None or message.chat.type != "private":
            return
        for reply in await services(actions.on_message, sender_of(message.from_user), message.text):
            await send(bot, services, message.chat.id, reply)

    @router.callback_query()
    async def pressed(query: CallbackQuery, bot: Bot) -> None:
        replies = await services(actions.on_callback, sender_of(query.from_user), query.data)
        first = replies[0] if replies else Reply()
        # Every press is answered, with a short notice where useful.
        await query.answer(text=(first.notice or None) and first.notice[:200])
        chat_id = query.message.chat.id if query.message else query.from_user.id
        for reply in replies:
            if reply.number is not None and reply.edit and query.message is not None:
                await services(
                    tg.remember_number_message, reply.number, chat_id, query.message.message_id
                )
                reply.number = None
            await send(bot, services, chat_id, reply, edit_of=query.message)

    @router.pre_checkout_query()
    async def checkout(query: PreCheckoutQuery) -> None:
        refusal = await services(
            actions.on_pre_checkout,
            sender_of(query.from_user),
            query.invoice_payload,
            query.currency,
            query.total_amount,
        )
        await query.answer(ok=refusal is None, error_message=refusal)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


async def handle(bot: Bot, dispatcher: Dispatcher, services: Services, update: Update) -> None:
    """Process one update at most once (its id is claimed in the database first)."""
    if not await services(tg.claim_update, update.update_id):
        log.info("telegram: update %s seen before, dropped", update.update_id)
        return
    try:
        await dispatcher.feed_update(bot, update)
    except TelegramAPIError as exc:
        log.warning("telegram: update %s: answering failed: %s", update.update_id, exc)
    except Exception:
        log.exception("telegram: update %s failed", update.update_id)


async def poll(app: Flask, stop: asyncio.Event | None = None) -> None:
    """Long polling until `stop` is set: each update its own task; the offset goes on from
    the last update taken (stored), so a restart neither loses nor repeats one."""
    stop = stop or asyncio.Event()
    services = Services(app)
    bot = make_bot(app)
    dispatcher = build_dispatcher(services)
    tasks: set[asyncio.Task] = set()
    try:
        delay = 1.0
        while True:  # Telegram (or the network) may be down when we start: wait for it
            try:
                me = await bot.get_me()
                break
            except TelegramAPIError as exc:
                log.warning("telegram: getMe failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                delay = min(delay * 2, 30.0)
        await services(tg.remember_bot, me.username or "")
        log.info("telegram: polling as @%s", me.username)
        last = await services(tg.last_update_id)
        offset = last + 1 if last is not None else None
        delay = 1.0
        while not stop.is_set():
            getting = asyncio.ensure_future(
                bot.get_updates(
                    offset=offset, timeout=POLL_TIMEOUT, allowed_updates=ALLOWED_UPDATES
                )
            )
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                break
            stopping.cancel()
            try:
                updates = getting.result()
            except Exception as exc:  # network, 5xx, 409 (a webhook is set): wait, go on
                log.warning("telegram: getUpdates failed: %s", exc)
                await asyncio.sleep(getattr(exc, "retry_after", None) or delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            for update in updates:
                offset = update.update_id + 1
                task = asyncio.create_task(handle(bot, dispatcher, services, update))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await bot.session.close()
        services.close()


def process_webhook_update(app: Flask, data: dict) -> None:
    """One update POSTed to our webhook (a web process): handled here, at most once."""
    services = Services(app, workers=4)

    async def run() -> None:
        bot = make_bot(app, timeout=30)
        try:
            update = Update.model_validate(data, context={"bot": bot})
            await handle(bot, build_dispatcher(services), services, update)
        finally:
            await bot.session.close()

    try:
        asyncio.run(run())
    finally:
        services.close()
